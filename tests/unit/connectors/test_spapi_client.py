from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from connectors.spapi import (
    AccessDenied,
    ActionsResult,
    AppCredentialsRejected,
    AuthorizationRevoked,
    ClientConfig,
    NotAvailable,
    OutsideWindow,
    RejectedRequest,
    RetryLater,
    Sent,
    SolicitationsClient,
    UnknownMarketplace,
)
from connectors.spapi.client import OPERATION_CREATE, OPERATION_GET
from tests.support.spapi_fakes import (
    ACCESS_PREFIX,
    CLIENT_SECRET,
    ORDER,
    REFRESH_TOKEN,
    US,
    FakeAmazon,
    actions,
    created,
    make_client,
    seller,
    spapi_error,
    token_response,
)

NOT_AVAILABLE = "The requested solicitation is not available for this amazonOrderId."
OUTSIDE = "You can't use this feature to request a review outside the 5-30 day range after the order delivery date."
DENIED = "Access to requested resource is denied."
FAST = ClientConfig(backoff_base=0.5, backoff_cap=4.0, max_attempts=4)


async def call(client: SolicitationsClient, operation: str) -> object:
    if operation == OPERATION_GET:
        return await client.get_solicitation_actions(seller(), ORDER, US)
    return await client.create_product_review_and_seller_feedback(seller(), ORDER, US)


async def test_get_sends_the_documented_request_to_the_regional_host() -> None:
    amazon = FakeAmazon(actions("productReviewAndSellerFeedback", request_id="r-get"))
    client, _, _ = make_client(amazon)
    async with client:
        result = await client.get_solicitation_actions(seller(), ORDER, "A1PA6795UKMFR9")
    assert result == ActionsResult(offered=True, request_id="r-get")
    (request,) = amazon.spapi_requests
    assert request.method == "GET"
    assert (
        str(request.url)
        == f"https://sellingpartnerapi-eu.amazon.com/solicitations/v1/orders/{ORDER}?marketplaceIds=A1PA6795UKMFR9"
    )
    assert request.headers["x-amz-access-token"] == f"{ACCESS_PREFIX}1"
    assert re.fullmatch(r"solicit/\S+ \(Language=Python/3\.\d+\.\d+; Platform=\S+/\S+\)", request.headers["user-agent"])
    assert request.content == b""


async def test_post_has_no_body_and_marketplace_in_the_query_string() -> None:
    amazon = FakeAmazon(created(request_id="r-post"))
    client, _, _ = make_client(amazon, spapi_endpoint="http://sandbox.test:8000/")
    async with client:
        result = await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert result == Sent(request_id="r-post")
    (request,) = amazon.spapi_requests
    assert request.method == "POST"
    assert str(request.url) == (
        f"http://sandbox.test:8000/solicitations/v1/orders/{ORDER}/solicitations/productReviewAndSellerFeedback"
        f"?marketplaceIds={US}"
    )
    assert request.content == b""
    assert "content-type" not in request.headers


async def test_lwa_request_is_the_documented_form() -> None:
    amazon = FakeAmazon(actions())
    client, _, _ = make_client(amazon)
    async with client:
        await client.get_solicitation_actions(seller(), ORDER, US)
    (request,) = amazon.lwa_requests
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert amazon.form() == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH_TOKEN,
        "client_id": "amzn1.application-oa2-client.test",
        "client_secret": CLIENT_SECRET,
    }


@pytest.mark.parametrize(
    ("response", "offered"),
    [
        (actions("productReviewAndSellerFeedback"), True),
        (actions(), False),
        (actions("somethingElse"), False),
        (spapi_error(403, "Unauthorized", NOT_AVAILABLE), False),
        (spapi_error(403, "Unauthorized", OUTSIDE), False),
    ],
    ids=["offered", "empty", "other-action", "403-not-available", "403-outside-window"],
)
async def test_get_maps_domain_answers_to_offered(response: httpx.Response, offered: bool) -> None:
    client, _, _ = make_client(FakeAmazon(response))
    async with client:
        result = await client.get_solicitation_actions(seller(), ORDER, US)
    assert result == ActionsResult(offered=offered, request_id="rid")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (created(), Sent(request_id="rid")),
        (spapi_error(403, "Unauthorized", NOT_AVAILABLE), NotAvailable(request_id="rid")),
        (spapi_error(403, "Unauthorized", OUTSIDE), OutsideWindow(request_id="rid")),
    ],
    ids=["201", "403-not-available", "403-outside-window"],
)
async def test_create_maps_domain_answers_to_results(response: httpx.Response, expected: object) -> None:
    client, _, _ = make_client(FakeAmazon(response))
    async with client:
        assert await client.create_product_review_and_seller_feedback(seller(), ORDER, US) == expected


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "InvalidInput", "Missing or invalid request parameters: [marketplaceIds]"),
        (404, "NotFound", "The resource specified does not exist."),
        (413, "RequestTooLarge", "The request size exceeded the maximum accepted size."),
        (415, "UnsupportedMediaType", "The request payload is in an unsupported format."),
        (409, "Conflict", "An undocumented 4xx."),
    ],
)
@pytest.mark.parametrize("operation", [OPERATION_GET, OPERATION_CREATE])
async def test_rejected_requests_are_dead_letters_never_retried(
    status: int, code: str, message: str, operation: str
) -> None:
    amazon = FakeAmazon(spapi_error(status, code, message, request_id="r-bad"))
    client, _, sleep = make_client(amazon)
    async with client:
        with pytest.raises(RejectedRequest) as caught:
            await call(client, operation)
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (status, code, "r-bad")
    assert len(amazon.spapi_requests) == 1
    assert sleep.calls == []


async def test_rejected_request_with_a_non_json_body_keeps_status_and_request_id() -> None:
    html = httpx.Response(400, text="<html>Bad Request</html>", headers={"x-amzn-RequestId": "r-html"})
    client, _, _ = make_client(FakeAmazon(html))
    async with client:
        with pytest.raises(RejectedRequest) as caught:
            await client.get_solicitation_actions(seller(), ORDER, US)
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (400, None, "r-html")


@pytest.mark.parametrize(
    "response",
    [
        spapi_error(403, "Unauthorized", DENIED, "The access token you provided is revoked, malformed or invalid."),
        spapi_error(403, "Unauthorized", "A message nobody has documented."),
        spapi_error(403, "MissingAuthenticationToken", "Missing Authentication Token"),
        httpx.Response(403, text="<html>Forbidden</html>", headers={"x-amzn-RequestId": "rid"}),
        spapi_error(401, "Unauthorized", "Unauthorized"),
    ],
    ids=["access-denied", "unknown-403-message", "gateway-403", "html-403", "401"],
)
async def test_access_problems_retry_once_with_a_fresh_token_then_raise_access_denied(
    response: httpx.Response,
) -> None:
    amazon = FakeAmazon(response, response)
    client, _, _ = make_client(amazon)
    async with client:
        with pytest.raises(AccessDenied) as caught:
            await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert caught.value.seller_id == "SELLER1"
    assert caught.value.request_id == "rid"
    assert len(amazon.lwa_requests) == 2
    assert [r.headers["x-amz-access-token"] for r in amazon.spapi_requests] == [
        f"{ACCESS_PREFIX}1",
        f"{ACCESS_PREFIX}2",
    ]


async def test_access_denied_that_a_fresh_token_cures_is_not_an_error() -> None:
    amazon = FakeAmazon(spapi_error(403, "Unauthorized", DENIED), created(request_id="r-ok"))
    client, _, _ = make_client(amazon)
    async with client:
        assert await client.create_product_review_and_seller_feedback(seller(), ORDER, US) == Sent("r-ok")
    assert len(amazon.lwa_requests) == 2


@pytest.mark.parametrize("status", [429, 500, 503, 408])
async def test_transient_statuses_are_retried_then_succeed(status: int) -> None:
    amazon = FakeAmazon(spapi_error(status, "X", "transient"), actions("productReviewAndSellerFeedback"))
    client, _, sleep = make_client(amazon)
    async with client:
        result = await client.get_solicitation_actions(seller(), ORDER, US)
    assert result.offered
    assert len(amazon.spapi_requests) == 2
    assert len(sleep.calls) >= 1


@pytest.mark.parametrize(
    ("status", "operation", "maybe_sent"),
    [
        (429, OPERATION_GET, False),
        (500, OPERATION_GET, False),
        (429, OPERATION_CREATE, False),
        (500, OPERATION_CREATE, True),
        (503, OPERATION_CREATE, True),
    ],
)
async def test_exhausted_retries_raise_retry_later_with_the_last_request_id(
    status: int, operation: str, maybe_sent: bool
) -> None:
    responses = [spapi_error(status, "E", "failing", request_id=f"r{i}") for i in range(FAST.max_attempts)]
    amazon = FakeAmazon(*responses)
    client, _, _ = make_client(amazon, config=FAST)
    async with client:
        with pytest.raises(RetryLater) as caught:
            await call(client, operation)
    error = caught.value
    assert len(amazon.spapi_requests) == FAST.max_attempts
    assert error.status == status
    assert error.request_id == f"r{FAST.max_attempts - 1}"
    assert error.maybe_sent is maybe_sent
    assert error.retry_after > 0


async def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    config = ClientConfig(backoff_base=0.5, backoff_cap=2.0, max_attempts=6, call_deadline=1000.0, burst=100)
    amazon = FakeAmazon(*[spapi_error(503, "ServiceUnavailable", "busy") for _ in range(6)])
    client, _, sleep = make_client(amazon, config=config)
    async with client:
        with pytest.raises(RetryLater):
            await client.get_solicitation_actions(seller(), ORDER, US)
    ceilings = [0.5, 1.0, 2.0, 2.0, 2.0]
    assert len(sleep.calls) == len(ceilings)
    for waited, ceiling in zip(sleep.calls, ceilings, strict=True):
        assert ceiling / 2 <= waited <= ceiling


async def test_the_call_deadline_bounds_retries() -> None:
    config = ClientConfig(backoff_base=2.0, backoff_cap=2.0, max_attempts=100, call_deadline=7.0, burst=100)
    amazon = FakeAmazon(*[spapi_error(500, "InternalFailure", "boom") for _ in range(100)])
    client, clock, _ = make_client(amazon, config=config)
    started = clock.monotonic()
    async with client:
        with pytest.raises(RetryLater):
            await client.get_solicitation_actions(seller(), ORDER, US)
    assert clock.monotonic() - started <= 7.0
    assert 3 <= len(amazon.spapi_requests) <= 7


@pytest.mark.parametrize(
    ("failure", "ambiguous"),
    [
        (spapi_error(500, "InternalFailure", "We encountered an internal error. Please try again."), True),
        (spapi_error(503, "ServiceUnavailable", "Temporary overloading or maintenance of the server."), True),
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.RemoteProtocolError("server disconnected"), True),
        (httpx.ConnectError("connection refused"), False),
        (httpx.ConnectTimeout("connect timed out"), False),
        (spapi_error(429, "QuotaExceeded", "You exceeded your quota for the requested resource."), False),
    ],
    ids=["500", "503", "read-timeout", "disconnect", "connect-error", "connect-timeout", "429"],
)
async def test_not_available_after_an_ambiguous_post_is_flagged(
    failure: httpx.Response | Exception, ambiguous: bool
) -> None:
    amazon = FakeAmazon(failure, spapi_error(403, "Unauthorized", NOT_AVAILABLE, request_id="r-403"))
    client, _, _ = make_client(amazon)
    async with client:
        result = await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert result == NotAvailable(request_id="r-403", maybe_sent=ambiguous)
    assert [r.method for r in amazon.spapi_requests] == ["POST", "POST"]


async def test_transport_errors_are_retried_and_then_retry_later() -> None:
    amazon = FakeAmazon(*[httpx.ReadTimeout("slow") for _ in range(FAST.max_attempts)])
    client, _, _ = make_client(amazon, config=FAST)
    async with client:
        with pytest.raises(RetryLater) as caught:
            await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert caught.value.maybe_sent is True
    assert caught.value.status is None
    assert caught.value.request_id is None


async def test_429_slows_only_that_sellers_bucket_and_rate_header_adapts_it() -> None:
    amazon = FakeAmazon(
        spapi_error(429, "QuotaExceeded", "You exceeded your quota for the requested resource."),
        actions(rate="2.0"),
        actions(),
    )
    client, clock, _ = make_client(amazon)
    async with client:
        await client.get_solicitation_actions(seller("A"), ORDER, US)
        await client.get_solicitation_actions(seller("B", "Atzr|other"), ORDER, US)
        slowed = client.limiter.bucket(("A", OPERATION_GET))
        untouched = client.limiter.bucket(("B", OPERATION_GET))
    assert slowed.slowed_until > clock.monotonic()
    assert slowed.rate == 2.0
    assert untouched.slowed_until < clock.monotonic()
    assert untouched.rate == 1.0


async def test_rate_limit_wait_beyond_the_deadline_is_handed_to_the_caller() -> None:
    config = ClientConfig(rate=0.1, burst=1, burst_headroom=0, call_deadline=5.0)
    amazon = FakeAmazon(actions())
    client, _, sleep = make_client(amazon, config=config)
    async with client:
        await client.get_solicitation_actions(seller(), ORDER, US)
        with pytest.raises(RetryLater) as caught:
            await client.get_solicitation_actions(seller(), ORDER, US)
    assert caught.value.retry_after == pytest.approx(10.0)
    assert len(amazon.spapi_requests) == 1
    assert sleep.calls == []


async def test_client_paces_requests_by_its_bucket() -> None:
    config = ClientConfig(rate=1.0, burst=5, burst_headroom=1)
    amazon = FakeAmazon(*[actions() for _ in range(6)])
    client, _, sleep = make_client(amazon, config=config)
    async with client:
        for _ in range(6):
            await client.get_solicitation_actions(seller(), ORDER, US)
    # Four immediate (burst 5 minus one token of headroom), then one per second.
    assert sleep.calls == [pytest.approx(1.0), pytest.approx(1.0)]


async def test_unknown_marketplace_fails_before_any_request() -> None:
    amazon = FakeAmazon()
    client, _, _ = make_client(amazon, spapi_endpoint="http://sandbox.test")
    async with client:
        with pytest.raises(UnknownMarketplace):
            await client.create_product_review_and_seller_feedback(seller(), ORDER, "NOPE")
    assert amazon.lwa_requests == []
    assert amazon.spapi_requests == []


async def test_invalid_grant_is_authorization_revoked_and_never_retried() -> None:
    body = {"error_description": "The request has an invalid grant parameter : refresh_token", "error": "invalid_grant"}
    revoked = httpx.Response(400, json=body)
    amazon = FakeAmazon(lwa=[revoked])
    client, _, sleep = make_client(amazon)
    async with client:
        with pytest.raises(AuthorizationRevoked) as caught:
            await client.get_solicitation_actions(seller(), ORDER, US)
    assert caught.value.seller_id == "SELLER1"
    assert len(amazon.lwa_requests) == 1
    assert amazon.spapi_requests == []
    assert sleep.calls == []


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(401, json={"error_description": "Client authentication failed", "error": "invalid_client"}),
        httpx.Response(400, json={"error": "unsupported_grant_type"}),
        httpx.Response(403, text="<html>nope</html>"),
    ],
    ids=["invalid_client", "unsupported_grant_type", "html-403"],
)
async def test_lwa_rejecting_the_app_is_app_credentials_rejected(response: httpx.Response) -> None:
    amazon = FakeAmazon(lwa=[response])
    client, _, _ = make_client(amazon)
    async with client:
        with pytest.raises(AppCredentialsRejected) as caught:
            await client.get_solicitation_actions(seller(), ORDER, US)
    assert caught.value.status == response.status_code
    assert amazon.spapi_requests == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, text="oops"),
        httpx.Response(429, text="slow down"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"token_type": "bearer"}),
    ],
    ids=["500", "429", "connect-error", "timeout", "malformed-200"],
)
async def test_transient_lwa_failures_are_retried(failure: httpx.Response | Exception) -> None:
    amazon = FakeAmazon(actions(), lwa=[failure])
    client, _, sleep = make_client(amazon)
    async with client:
        assert (await client.get_solicitation_actions(seller(), ORDER, US)).offered is False
    assert len(amazon.lwa_requests) == 2
    assert len(sleep.calls) == 1


async def test_persistent_lwa_outage_becomes_retry_later() -> None:
    amazon = FakeAmazon(lwa=[httpx.Response(503, text="down") for _ in range(FAST.max_attempts)])
    client, _, _ = make_client(amazon, config=FAST)
    async with client:
        with pytest.raises(RetryLater) as caught:
            await client.get_solicitation_actions(seller(), ORDER, US)
    assert caught.value.status == 503
    assert amazon.spapi_requests == []


async def test_tokens_are_cached_per_seller_and_refreshed_ahead_of_expiry() -> None:
    amazon = FakeAmazon(*[actions() for _ in range(5)], expires_in=3600)
    client, clock, _ = make_client(amazon, config=ClientConfig(token_refresh_margin=300.0, burst=100))
    async with client:
        await client.get_solicitation_actions(seller("A"), ORDER, US)
        await client.get_solicitation_actions(seller("A"), ORDER, US)
        await client.get_solicitation_actions(seller("B", "Atzr|b"), ORDER, US)
        assert len(amazon.lwa_requests) == 2
        clock.advance(3299)
        await client.get_solicitation_actions(seller("A"), ORDER, US)
        assert len(amazon.lwa_requests) == 2
        clock.advance(2)  # 299 s before expiry: inside the refresh margin
        await client.get_solicitation_actions(seller("A"), ORDER, US)
        assert len(amazon.lwa_requests) == 3
    assert amazon.spapi_requests[-1].headers["x-amz-access-token"] == f"{ACCESS_PREFIX}3"


async def test_a_failed_refresh_ahead_of_expiry_keeps_using_the_valid_token() -> None:
    amazon = FakeAmazon(actions(), actions(), lwa=[token_response(1), httpx.Response(503, text="down")])
    client, clock, sleep = make_client(amazon, config=ClientConfig(token_refresh_margin=300.0))
    async with client:
        await client.get_solicitation_actions(seller(), ORDER, US)
        clock.advance(3400)
        await client.get_solicitation_actions(seller(), ORDER, US)
    assert len(amazon.lwa_requests) == 2
    assert amazon.spapi_requests[-1].headers["x-amz-access-token"] == f"{ACCESS_PREFIX}1"
    assert sleep.calls == []


async def test_concurrent_requests_share_one_token_exchange() -> None:
    lwa_calls = 0
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal lwa_calls
        if request.url.path == "/auth/o2/token":
            lwa_calls += 1
            await release.wait()
            return token_response(lwa_calls)
        return actions()

    client, _, _ = make_client(handler, config=ClientConfig(burst=100))
    async with client:
        calls = [asyncio.create_task(client.get_solicitation_actions(seller(), ORDER, US)) for _ in range(25)]
        await asyncio.sleep(0.01)
        release.set()
        results = await asyncio.gather(*calls)
    assert len(results) == 25
    assert lwa_calls == 1
