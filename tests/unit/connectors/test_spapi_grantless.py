"""Grantless LWA tokens: ``client_credentials`` with a scope, cached per (app, scope), next to the sellers' tokens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from connectors.clock import ManualClock
from connectors.spapi import AppCredentialsRejected, RetryLater
from connectors.spapi.lwa import GRANTLESS_SCOPES, SCOPE_NOTIFICATIONS, LwaTokenCache
from tests.support.spapi_fakes import CLIENT_SECRET, LWA_URL, REFRESH_TOKEN, FakeAmazon, app, seller, token_response

MIGRATION = "sellingpartnerapi::migration"


def make_cache(amazon: FakeAmazon) -> tuple[LwaTokenCache, ManualClock, httpx.AsyncClient]:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    http = httpx.AsyncClient(transport=httpx.MockTransport(amazon.handler))
    cache = LwaTokenCache(http=http, app=app(), token_url=LWA_URL, monotonic=clock.monotonic, refresh_margin=300.0)
    return cache, clock, http


async def test_the_request_is_client_credentials_with_the_scope_and_no_refresh_token() -> None:
    amazon = FakeAmazon()
    cache, _, http = make_cache(amazon)
    async with http:
        token = await cache.grantless_token(SCOPE_NOTIFICATIONS)
    assert token.value.get_secret_value() == "Atza|ACCESS-SECRET-1"
    assert amazon.form() == {
        "grant_type": "client_credentials",
        "scope": "sellingpartnerapi::notifications",
        "client_id": app().client_id,
        "client_secret": CLIENT_SECRET,
    }
    assert amazon.lwa_requests[0].headers["content-type"].startswith("application/x-www-form-urlencoded")


async def test_one_token_per_scope_reused_and_refreshed_ahead_of_expiry() -> None:
    amazon = FakeAmazon(expires_in=3600)
    cache, clock, http = make_cache(amazon)
    async with http:
        first = await cache.grantless_token(SCOPE_NOTIFICATIONS)
        assert await cache.grantless_token(SCOPE_NOTIFICATIONS) is first
        other = await cache.grantless_token(MIGRATION)
        assert other is not first and amazon.form(1)["scope"] == MIGRATION
        clock.advance(3600 - 299)  # inside the refresh margin
        renewed = await cache.grantless_token(SCOPE_NOTIFICATIONS)
    assert renewed is not first
    assert len(amazon.lwa_requests) == 3
    assert cache.cached_tokens == 2


async def test_grantless_and_seller_tokens_never_mix() -> None:
    amazon = FakeAmazon()
    cache, _, http = make_cache(amazon)
    async with http:
        grantless = await cache.grantless_token()
        sellers = await cache.access_token(seller())
        assert await cache.grantless_token() is grantless
        assert await cache.access_token(seller()) is sellers
    assert grantless.value.get_secret_value() != sellers.value.get_secret_value()
    assert [amazon.form(i)["grant_type"] for i in range(2)] == ["client_credentials", "refresh_token"]
    assert amazon.form(1)["refresh_token"] == REFRESH_TOKEN and "scope" not in amazon.form(1)


async def test_concurrent_callers_share_one_exchange() -> None:
    release = asyncio.Event()
    amazon = FakeAmazon()

    async def slow(request: httpx.Request) -> httpx.Response:
        amazon.lwa_requests.append(request)
        await release.wait()
        return token_response(len(amazon.lwa_requests))

    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
        cache = LwaTokenCache(http=http, app=app(), token_url=LWA_URL, monotonic=clock.monotonic)
        waiters = [asyncio.create_task(cache.grantless_token()) for _ in range(20)]
        await asyncio.sleep(0)
        release.set()
        tokens = await asyncio.gather(*waiters)
    assert len({id(token) for token in tokens}) == 1
    assert len(amazon.lwa_requests) == 1


async def test_invalidate_forgets_only_the_refused_token() -> None:
    amazon = FakeAmazon()
    cache, _, http = make_cache(amazon)
    async with http:
        first = await cache.grantless_token()
        cache.invalidate_grantless(SCOPE_NOTIFICATIONS, first)
        second = await cache.grantless_token()
        cache.invalidate_grantless(SCOPE_NOTIFICATIONS, first)  # stale: the newer token stays
        assert await cache.grantless_token() is second
    assert len(amazon.lwa_requests) == 2


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(400, json={"error": "invalid_scope", "error_description": "bad scope"}), "invalid_scope"),
        (httpx.Response(401, json={"error": "invalid_client", "error_description": "no"}), "invalid_client"),
        # invalid_grant names a seller's refresh token; for the app itself it is a configuration problem too
        (httpx.Response(400, json={"error": "invalid_grant", "error_description": "?"}), "invalid_grant"),
    ],
)
async def test_lwa_refusals_are_the_apps_to_fix(response: httpx.Response, error: str) -> None:
    cache, _, http = make_cache(FakeAmazon(lwa=[response]))
    async with http:
        with pytest.raises(AppCredentialsRejected) as caught:
            await cache.grantless_token()
    assert caught.value.error == error
    assert "grantless scope" in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


async def test_lwa_outage_is_retry_later() -> None:
    cache, _, http = make_cache(FakeAmazon(lwa=[httpx.Response(503)]))
    async with http:
        with pytest.raises(RetryLater, match=r"LWA answered 503 for app .* \(scope sellingpartnerapi::notifications\)"):
            await cache.grantless_token()


async def test_an_unknown_scope_is_a_programming_error() -> None:
    cache, _, http = make_cache(FakeAmazon())
    async with http:
        with pytest.raises(ValueError, match="not a grantless LWA scope"):
            await cache.grantless_token("sellingpartnerapi::orders")
    assert SCOPE_NOTIFICATIONS in GRANTLESS_SCOPES
