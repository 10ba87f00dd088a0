"""No token or secret may appear in any exception text, repr, traceback or log line, on any error path."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from connectors.spapi import ClientConfig, SellerCredentials, SpApiError
from connectors.spapi.lwa import AccessToken
from tests.support.spapi_fakes import ORDER, US, FakeAmazon, actions, make_client, seller, spapi_error, token_response

SECRETS = ("REFRESH-SECRET", "CLIENT-SECRET", "ACCESS-SECRET")
DENIED = "Access to requested resource is denied."
CONFIG = ClientConfig(max_attempts=2, backoff_base=0.1, backoff_cap=0.2)


def lwa_error(status: int, error: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "error_description": f"{error} happened"})


SCENARIOS: dict[str, Callable[[], FakeAmazon]] = {
    "authorization-revoked": lambda: FakeAmazon(lwa=[lwa_error(400, "invalid_grant")]),
    "app-credentials-rejected": lambda: FakeAmazon(lwa=[lwa_error(401, "invalid_client")]),
    "lwa-outage": lambda: FakeAmazon(lwa=[httpx.Response(503), httpx.ConnectError("refused")]),
    "access-denied": lambda: FakeAmazon(*[spapi_error(403, "Unauthorized", DENIED)] * 2),
    "revoked-after-403": lambda: FakeAmazon(
        spapi_error(403, "Unauthorized", DENIED), lwa=[token_response(1), lwa_error(400, "invalid_grant")]
    ),
    "rejected-400": lambda: FakeAmazon(spapi_error(400, "InvalidInput", "Missing or invalid request parameters")),
    "rejected-404": lambda: FakeAmazon(spapi_error(404, "NotFound", "The resource specified does not exist.")),
    "rejected-413": lambda: FakeAmazon(spapi_error(413, "RequestTooLarge", "too large")),
    "rejected-415": lambda: FakeAmazon(spapi_error(415, "UnsupportedMediaType", "unsupported")),
    "throttled": lambda: FakeAmazon(*[spapi_error(429, "QuotaExceeded", "quota")] * 2),
    "server-errors": lambda: FakeAmazon(
        spapi_error(500, "InternalFailure", "x"), spapi_error(503, "ServiceUnavailable", "y")
    ),
    "timeouts": lambda: FakeAmazon(httpx.ReadTimeout("read timed out"), httpx.ConnectError("refused")),
}


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_error_paths_never_reveal_secrets(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    amazon = SCENARIOS[name]()
    client, _, _ = make_client(amazon, config=CONFIG)
    async with client:
        with pytest.raises(SpApiError) as caught:
            await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
        assert_clean(repr(client))
    error = caught.value
    assert_clean(str(error))
    assert_clean(repr(error))
    assert_clean("".join(traceback.format_exception(error)))
    assert_clean(repr(vars(error)))
    assert_clean(caplog.text)


async def test_successful_calls_log_nothing_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client, _, _ = make_client(FakeAmazon(actions(), actions()), config=CONFIG)
    async with client:
        await client.get_solicitation_actions(seller(), ORDER, US)
        await client.get_solicitation_actions(seller(), ORDER, US)
    assert caplog.records  # the test would be vacuous if nothing was logged
    assert_clean(caplog.text)


def test_credential_values_print_redacted() -> None:
    credentials = SellerCredentials(seller_id="S1", refresh_token=SecretStr("Atzr|REFRESH-SECRET-9"))
    token = AccessToken(value=SecretStr("Atza|ACCESS-SECRET-9"), expires_at=1.0, refresh_at=0.5)
    for text in (str(credentials), repr(credentials), str(token), repr(token)):
        assert_clean(text)
    assert "S1" in repr(credentials)


def test_credentials_refuse_plain_strings() -> None:
    with pytest.raises(TypeError):
        SellerCredentials(seller_id="S1", refresh_token="Atzr|plain")  # type: ignore[arg-type]
