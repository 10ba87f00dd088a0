"""The sandbox's getOrders rules, called directly (no HTTP) on a manual clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.clock import ManualClock
from devstack.sandbox import SandboxState, ScriptedFault, SellerIn
from devstack.sandbox.orders import get_orders, order_view
from devstack.sandbox.protocol import Reply
from statemachine.types import format_datetime
from tests.unit.devstack.test_sandbox_state import DE, EDD, US, facts, make_state, order, token_for

NOW = EDD + timedelta(days=10)


def listing(state: SandboxState, token: str | None, **query: Any) -> Reply:
    params = {name: value if isinstance(value, list) else [value] for name, value in query.items()}
    params.setdefault("MarketplaceIds", [US])
    return get_orders(state, facts(token, query=params, path="/orders/v0/orders"))


def after(days: float) -> str:
    return format_datetime(NOW - timedelta(days=days))


def ids(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.body
    return [o["AmazonOrderId"] for o in reply.body["payload"]["Orders"]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def state(clock: ManualClock) -> SandboxState:
    state = make_state(clock)
    state.add_orders(
        [
            order(f"111-0000001-{n:07d}", earliest_delivery=EDD - timedelta(days=n), latest_delivery=EDD)
            for n in range(1, 8)
        ]
    )
    return state


def test_lists_the_seller_s_orders_purchased_after_the_date_oldest_first(state: SandboxState) -> None:
    state.add_orders([order("222-0000001-0000001", seller_id="S2"), order("333-0000001-0000001", marketplace_id=DE)])
    reply = listing(state, token_for(state), CreatedAfter=after(20))
    # Purchased 5 days before the earliest delivery: EDD - n - 5 days, i.e. 15 + n days before now.
    assert ids(reply) == [f"111-0000001-{n:07d}" for n in (5, 4, 3, 2, 1)]
    assert reply.body["payload"]["CreatedBefore"] == format_datetime(NOW - timedelta(minutes=2))
    assert "NextToken" not in reply.body["payload"]
    assert reply.content_type == "application/json"
    assert reply.headers["x-amzn-RateLimit-Limit"] == "0.0167"


def test_pages_follow_next_token_and_stay_fixed_while_orders_arrive(state: SandboxState, clock: ManualClock) -> None:
    token = token_for(state)
    first = listing(state, token, CreatedAfter=after(30), MaxResultsPerPage="3")
    assert len(ids(first)) == 3
    next_token = first.body["payload"]["NextToken"]
    arriving = order("111-0000002-0000001", purchase_date=NOW + timedelta(minutes=5), earliest_delivery=NOW)
    state.add_orders([arriving])  # bought while the client pages: after the listing's upper bound
    clock.advance(timedelta(minutes=10))  # the new order is past the bound now, but not in this listing
    second = listing(state, token, NextToken=next_token)
    assert len(ids(second)) == 3
    third = listing(state, token, NextToken=second.body["payload"]["NextToken"], CreatedAfter=after(30))
    assert len(ids(third)) == 1 and "NextToken" not in third.body["payload"]
    assert sorted(ids(first) + ids(second) + ids(third)) == [f"111-0000001-{n:07d}" for n in range(1, 8)]


def test_last_updated_filters_by_last_update(state: SandboxState) -> None:
    state.add_orders([order("111-0000003-0000001", last_updated=NOW - timedelta(hours=5))])
    reply = listing(state, token_for(state), LastUpdatedAfter=after(1))
    assert ids(reply) == ["111-0000003-0000001"]
    assert "LastUpdatedBefore" in reply.body["payload"]


def test_status_and_channel_filters(state: SandboxState) -> None:
    state.add_orders(
        [
            order("111-0000004-0000001", status="Canceled"),
            order("111-0000004-0000002", fulfillment_channel="AFN"),
        ]
    )
    token = token_for(state)
    assert ids(listing(state, token, CreatedAfter=after(30), OrderStatuses="Canceled")) == ["111-0000004-0000001"]
    assert ids(listing(state, token, CreatedAfter=after(30), FulfillmentChannels="AFN")) == ["111-0000004-0000002"]


def test_an_order_as_getorders_shows_it() -> None:
    mfn = order_view(order())
    assert mfn["PurchaseDate"] == format_datetime(EDD - timedelta(days=5))
    assert mfn["LastUpdateDate"] == format_datetime(EDD - timedelta(days=2))
    assert (mfn["EarliestDeliveryDate"], mfn["LatestDeliveryDate"]) == (
        format_datetime(EDD),
        "2026-03-04T12:00:00.000Z",
    )
    assert mfn["OrderStatus"] == "Shipped" and mfn["NumberOfItemsShipped"] == 1
    afn = order_view(order(fulfillment_channel="AFN"))
    assert "EarliestDeliveryDate" not in afn and "LatestDeliveryDate" not in afn
    pending = order_view(order(status="Pending"))
    assert pending["LastUpdateDate"] == pending["PurchaseDate"]
    assert "EarliestDeliveryDate" in pending and "LatestDeliveryDate" not in pending
    given = order_view(order(purchase_date=EDD - timedelta(days=9), last_updated=EDD))
    assert (given["PurchaseDate"], given["LastUpdateDate"]) == (
        format_datetime(EDD - timedelta(days=9)),
        format_datetime(EDD),
    )


@pytest.mark.parametrize(
    ("query", "details"),
    [
        ({"MarketplaceIds": []}, "MarketplaceIds is required"),
        ({"MarketplaceIds": "NOPE"}, "unknown MarketplaceIds"),
        ({"MarketplaceIds": f"{US},{US}"}, "different values"),
        ({}, "exactly one of CreatedAfter and LastUpdatedAfter"),
        ({"CreatedAfter": after(5), "LastUpdatedAfter": after(5)}, "exactly one"),
        ({"CreatedAfter": after(5), "LastUpdatedBefore": after(1)}, "cannot be set when CreatedAfter"),
        ({"LastUpdatedAfter": after(5), "CreatedBefore": after(1)}, "cannot be set when LastUpdatedAfter"),
        ({"CreatedAfter": after(5), "CreatedBefore": after(6)}, "equal to or after"),
        ({"CreatedAfter": after(5), "CreatedBefore": after(0)}, "two minutes before"),
        ({"CreatedAfter": "yesterday"}, "Invalid Date-Time"),
        ({"CreatedAfter": [after(5), after(4)]}, "given 2 times"),
        ({"CreatedAfter": after(5), "MaxResultsPerPage": "0"}, "1 to 100"),
        ({"CreatedAfter": after(5), "MaxResultsPerPage": "ten"}, "integer"),
        ({"NextToken": "not-a-token"}, "not a token"),
    ],
)
def test_bad_requests_are_400_invalid_input(state: SandboxState, query: dict[str, Any], details: str) -> None:
    reply = listing(state, token_for(state), **query)
    assert reply.status == 400
    (error,) = reply.body["errors"]
    assert error["code"] == "InvalidInput" and details in error["details"]
    assert reply.headers["x-amzn-RateLimit-Limit"] == "0.0167"


def test_next_token_overrides_the_other_criteria(state: SandboxState) -> None:
    token = token_for(state)
    first = listing(state, token, CreatedAfter=after(30), MaxResultsPerPage="2")
    next_token = first.body["payload"]["NextToken"]
    same = listing(state, token, NextToken=next_token)
    other = listing(
        state, token, NextToken=next_token, MarketplaceIds=DE, OrderStatuses="Canceled", CreatedAfter=after(1)
    )
    assert ids(same) == ids(other) and len(ids(same)) == 2
    assert listing(state, token, NextToken=next_token, MarketplaceIds=[]).status == 400  # still required


def test_no_or_unknown_token_is_403_without_the_rate_header(state: SandboxState) -> None:
    for token in (None, "Atza|unknown"):
        reply = listing(state, token, CreatedAfter=after(5))
        assert reply.status == 403 and "x-amzn-RateLimit-Limit" not in reply.headers


def test_the_getorders_bucket_is_amazon_s_plan_and_apart_from_solicitations(clock: ManualClock) -> None:
    state = make_state(clock, orders_burst=2, orders_rate=0.5)
    state.add_orders([order()])
    token = token_for(state)
    statuses = [listing(state, token, CreatedAfter=after(30)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert state.solicitation_actions("111-0000001-0000001", facts(token)).status == 200
    clock.advance(2.0)
    assert listing(state, token, CreatedAfter=after(30)).status == 200


def test_scripted_faults_apply_to_getorders(state: SandboxState) -> None:
    token = token_for(state)
    state.script_faults([ScriptedFault(fault=f, operation="getOrders") for f in ("429", "500", "503")])
    statuses = [listing(state, token, CreatedAfter=after(30)).status for _ in range(4)]
    assert statuses == [429, 500, 503, 200]
    assert [c.fault for c in state.calls if c.operation == "getOrders"] == ["429", "500", "503", None]


def test_a_seller_registered_with_access_denied_gets_403(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_seller(SellerIn(seller_id="S3", refresh_token=SecretStr("Atzr|three"), access_denied=True))
    reply = listing(state, token_for(state, "Atzr|three"), CreatedAfter=after(5))
    assert reply.status == 403


def test_dates_without_an_offset_are_utc(state: SandboxState) -> None:
    naive = (NOW - timedelta(days=30)).replace(tzinfo=None).isoformat()
    assert len(ids(listing(state, token_for(state), CreatedAfter=naive))) == 7


def test_purchase_dates_between_the_bounds_only(state: SandboxState) -> None:
    start: datetime = NOW - timedelta(days=30)
    reply = listing(state, token_for(state), CreatedAfter=format_datetime(start), CreatedBefore=after(18))
    assert ids(reply) == [f"111-0000001-{n:07d}" for n in (7, 6, 5, 4, 3)]
