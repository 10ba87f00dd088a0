"""``OrdersClient`` (Orders v0 getOrders) against a scripted Amazon: paging, pacing, retries, access, reading orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.clock import ManualClock
from connectors.spapi import (
    AccessDenied,
    ClientConfig,
    OrdersClient,
    OrdersPage,
    OrdersQuery,
    RejectedRequest,
    RetryLater,
)
from connectors.spapi.orders import GET_ORDERS_BURST, GET_ORDERS_RATE, OPERATION_GET_ORDERS
from tests.support.spapi_fakes import LWA_URL, US, FakeAmazon, FakeSleep, app, seller, spapi_error

NOW = datetime(2026, 3, 20, tzinfo=UTC)
CA = "A2EUQ1WTGCTBG2"
QUERY = OrdersQuery(marketplace_ids=(US,), created_after=NOW - timedelta(days=30))
FAST = ClientConfig(backoff_base=0.5, backoff_cap=4.0, max_attempts=3)


def order(number: int, **fields: Any) -> dict[str, Any]:
    return {
        "AmazonOrderId": f"111-0000000-{number:07d}",
        "PurchaseDate": "2026-03-01T10:00:00Z",
        "LastUpdateDate": "2026-03-03T10:00:00Z",
        "OrderStatus": "Shipped",
        "FulfillmentChannel": "MFN",
        "MarketplaceId": US,
        "EarliestDeliveryDate": "2026-03-05T07:00:00Z",
        "LatestDeliveryDate": "2026-03-07T06:59:59Z",
        "ShippingAddress": {"PostalCode": "48817"},
        "BuyerInfo": {"BuyerEmail": "someone@example.com"},
        **fields,
    }


def page(*orders: dict[str, Any], token: str | None = None, rate: str | None = "0.0167") -> httpx.Response:
    payload: dict[str, Any] = {"Orders": list(orders), "CreatedBefore": "2026-03-19T23:58:00Z"}
    if token is not None:
        payload["NextToken"] = token
    headers = {"x-amzn-RequestId": f"rid-{len(orders)}-{token}"}
    if rate is not None:
        headers["x-amzn-RateLimit-Limit"] = rate
    return httpx.Response(200, json={"payload": payload}, headers=headers)


def make(amazon: FakeAmazon, config: ClientConfig = FAST) -> tuple[OrdersClient, ManualClock, FakeSleep]:
    clock = ManualClock(NOW)
    sleep = FakeSleep(clock)
    client = OrdersClient(
        app=app(), clock=clock, lwa_endpoint=LWA_URL, config=config, transport=httpx.MockTransport(amazon.handler),
        sleep=sleep,
    )  # fmt: skip
    return client, clock, sleep


async def every_page(client: OrdersClient, query: OrdersQuery = QUERY) -> list[OrdersPage]:
    return [p async for p in client.pages(seller(), query)]


async def test_pages_repeat_the_query_with_next_token_until_none() -> None:
    token = "2YgYW55IGNhcm5h+bCBwbGVhc3VyZS4=/"  # Amazon's tokens hold + / and =
    amazon = FakeAmazon(page(order(1), order(2), token=token), page(order(3)))
    client, _, _ = make(amazon)
    async with client:
        pages = await every_page(client)
    assert [[o.AmazonOrderId[-1] for o in p.orders] for p in pages] == [["1", "2"], ["3"]]
    first, second = amazon.spapi_requests
    assert first.url.host == "sellingpartnerapi-na.amazon.com" and first.url.path == "/orders/v0/orders"
    assert dict(first.url.params) == {
        "MarketplaceIds": US,
        "MaxResultsPerPage": "100",
        "CreatedAfter": "2026-02-18T00:00:00.000Z",
    }
    assert dict(second.url.params) == {**dict(first.url.params), "NextToken": token}
    assert "%2B" in str(second.url) and "%2F" in str(second.url)  # encoded, never a literal + (a space)
    assert first.headers["x-amz-access-token"].startswith("Atza|")
    assert "user-agent" in first.headers


async def test_an_order_keeps_ids_status_and_dates_and_drops_buyer_data() -> None:
    amazon = FakeAmazon(page(order(1, NumberOfItemsShipped=1, OrderType="StandardOrder")))
    client, _, _ = make(amazon)
    async with client:
        (got,) = (await client.get_orders(seller(), QUERY)).orders
    assert got.AmazonOrderId == "111-0000000-0000001" and got.OrderStatus == "Shipped"
    assert got.EarliestDeliveryDate == datetime(2026, 3, 5, 7, tzinfo=UTC)
    assert got.LatestDeliveryDate == datetime(2026, 3, 7, 6, 59, 59, tzinfo=UTC)
    assert got.NumberOfItemsShipped == 1
    assert "ShippingAddress" not in got.model_dump() and "BuyerInfo" not in got.model_dump()


async def test_an_unreadable_order_is_skipped_and_counted_not_fatal() -> None:
    amazon = FakeAmazon(page(order(1), {"AmazonOrderId": "111-0000000-0000002"}, order(3, PurchaseDate="soon")))
    client, _, _ = make(amazon)
    async with client:
        result = await client.get_orders(seller(), QUERY)
    assert [o.AmazonOrderId for o in result.orders] == ["111-0000000-0000001"]
    assert result.unreadable == 2


async def test_listing_by_last_update_and_several_marketplaces_of_one_region() -> None:
    amazon = FakeAmazon(page())
    client, _, _ = make(amazon)
    query = OrdersQuery(marketplace_ids=(US, CA), last_updated_after=NOW - timedelta(days=3), page_size=50)
    async with client:
        await every_page(client, query)
    (request,) = amazon.spapi_requests
    assert dict(request.url.params) == {
        "MarketplaceIds": f"{US},{CA}",
        "MaxResultsPerPage": "50",
        "LastUpdatedAfter": "2026-03-17T00:00:00.000Z",
    }


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"marketplace_ids": ()}, "1 to 50"),
        ({"marketplace_ids": (US,)}, "exactly one"),
        ({"marketplace_ids": (US,), "created_after": NOW, "last_updated_after": NOW}, "exactly one"),
        ({"marketplace_ids": (US,), "created_after": NOW, "page_size": 101}, "page_size"),
        ({"marketplace_ids": (US, "A1PA6795UKMFR9"), "created_after": NOW}, "one region"),
    ],
)
def test_a_query_amazon_would_refuse_is_refused_before_any_call(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OrdersQuery(**fields)


async def test_pages_past_the_burst_wait_for_the_plan_a_page_a_minute() -> None:
    pages = [page(order(n), token=f"t{n}") for n in range(GET_ORDERS_BURST + 1)] + [page(order(99))]
    amazon = FakeAmazon(*pages)
    client, clock, sleep = make(amazon)
    async with client:
        got = await every_page(client)
    assert len(got) == GET_ORDERS_BURST + 2
    # One token of the burst is kept as headroom: 19 pages at once, then one per 1/rate seconds.
    waited = sum(sleep.calls)
    assert waited == pytest.approx((len(got) - (GET_ORDERS_BURST - 1)) / GET_ORDERS_RATE, rel=1e-6)
    assert clock.monotonic() == pytest.approx(waited)


async def test_the_rate_amazon_announces_is_adopted() -> None:
    amazon = FakeAmazon(*[page(order(n), token=f"t{n}", rate="1.0") for n in range(25)], page(order(99), rate="1.0"))
    client, _, sleep = make(amazon)
    async with client:
        await every_page(client)
    assert sum(sleep.calls) == pytest.approx(26 - (GET_ORDERS_BURST - 1), rel=1e-6)
    assert client.limiter.bucket(("SELLER1", OPERATION_GET_ORDERS)).rate == 1.0


async def test_429_and_5xx_are_retried_and_a_429_slows_the_bucket() -> None:
    throttled = spapi_error(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
    amazon = FakeAmazon(throttled, spapi_error(503, "ServiceUnavailable", "busy"), page(order(1)))
    client, _, sleep = make(amazon)
    async with client:
        result = await client.get_orders(seller(), QUERY)
    assert len(result.orders) == 1 and len(amazon.spapi_requests) == 3
    assert sleep.calls and max(sleep.calls) > 1  # the throttled bucket waits for a refill at Amazon's rate


async def test_failures_beyond_the_attempts_are_retry_later() -> None:
    amazon = FakeAmazon(*[spapi_error(500, "InternalFailure", "oops", request_id="r500")] * 3)
    client, _, _ = make(amazon)
    async with client:
        with pytest.raises(RetryLater) as caught:
            await client.get_orders(seller(), QUERY)
    assert caught.value.request_id == "r500" and caught.value.status == 500


async def test_no_answer_is_retried() -> None:
    amazon = FakeAmazon(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), page(order(1)))
    client, _, _ = make(amazon)
    async with client:
        assert len((await client.get_orders(seller(), QUERY)).orders) == 1


async def test_an_unreadable_success_is_retried() -> None:
    amazon = FakeAmazon(httpx.Response(200, text="<html>"), httpx.Response(200, json={"payload": {}}), page(order(1)))
    client, _, _ = make(amazon)
    async with client:
        assert len((await client.get_orders(seller(), QUERY)).orders) == 1


async def test_400_is_a_rejected_request_never_retried() -> None:
    amazon = FakeAmazon(spapi_error(400, "InvalidInput", "Invalid Input", request_id="r400"))
    client, _, _ = make(amazon)
    async with client:
        with pytest.raises(RejectedRequest) as caught:
            await client.get_orders(seller(), QUERY)
    assert caught.value.status == 400 and caught.value.request_id == "r400"
    assert len(amazon.spapi_requests) == 1


async def test_403_is_retried_once_with_a_fresh_token_then_access_denied() -> None:
    denied = spapi_error(403, "Unauthorized", "Access to requested resource is denied.", request_id="r403")
    amazon = FakeAmazon(denied, denied)
    client, _, _ = make(amazon)
    async with client:
        with pytest.raises(AccessDenied) as caught:
            await client.get_orders(seller(), QUERY)
    assert caught.value.request_id == "r403" and caught.value.seller_id == "SELLER1"
    assert len(amazon.lwa_requests) == 2  # the second attempt used a freshly exchanged token
    tokens = {r.headers["x-amz-access-token"] for r in amazon.spapi_requests}
    assert len(tokens) == 2


async def test_a_transient_lwa_failure_is_retried() -> None:
    amazon = FakeAmazon(page(order(1)), lwa=[httpx.Response(503, json={"error": "server_error"})])
    client, _, _ = make(amazon)
    async with client:
        assert len((await client.get_orders(seller(), QUERY)).orders) == 1
    assert len(amazon.lwa_requests) == 2


async def test_a_token_repeated_by_amazon_stops_the_paging() -> None:
    amazon = FakeAmazon(page(order(1), token="same"), page(order(2), token="same"))
    client, _, _ = make(amazon)
    async with client:
        assert len(await every_page(client)) == 2
