"""Reconciliation's pure parts: the ORDER_CHANGE it builds from an order, the run for one seller, the daily schedule."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr

from connectors.clock import ManualClock
from connectors.crypto import TokenCipher, generate_key
from connectors.spapi import AccessDenied, AmazonOrder, OrdersPage, OrdersQuery, RetryLater, SellerCredentials
from devstack import spapi_models
from statemachine import OrderChanged, parse_notification
from statemachine.notification import RECONCILIATION_APPLICATION_ID
from streams.orders import partition_for
from streams.reconcile import (
    DailyReconciliation,
    ReconcileConfig,
    Reconciler,
    daily_slot,
    order_change_notification,
    reconciliation_id,
)
from streams.registry import SellerRecord

NOW = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)
US, CA = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"
KEY = generate_key()
CIPHER = TokenCipher(SecretStr(KEY))


def amazon_order(number: int = 1, **fields: Any) -> AmazonOrder:
    values: dict[str, Any] = {
        "AmazonOrderId": f"111-0000000-{number:07d}",
        "PurchaseDate": "2026-03-01T10:00:00Z",
        "LastUpdateDate": "2026-03-03T10:00:00Z",
        "OrderStatus": "Shipped",
        "FulfillmentChannel": "MFN",
        "MarketplaceId": US,
        "OrderType": "StandardOrder",
        "NumberOfItemsShipped": 1,
        "NumberOfItemsUnshipped": 0,
        "EarliestDeliveryDate": "2026-03-05T07:00:00Z",
        "LatestDeliveryDate": "2026-03-07T06:59:59Z",
        **fields,
    }
    return AmazonOrder.model_validate(values)


def seller_record(
    seller_id: str = "A2SELLER", marketplaces: tuple[str, ...] = (US,), app: str = "default"
) -> SellerRecord:
    return SellerRecord(
        seller_id=seller_id,
        name="Shop",
        region="NA",
        marketplace_ids=marketplaces,
        app=app,
        refresh_token_encrypted=CIPHER.encrypt(SecretStr("Atzr|token")),
        updated_at=NOW,
    )


def test_the_notification_is_amazon_s_schema_and_reads_back_as_the_order_s_facts() -> None:
    notification = order_change_notification("A2SELLER", amazon_order(), marketplace_id=US, published_at=NOW)
    body = notification.model_dump(mode="json", exclude_unset=True)  # what we state (the wire adds nulls, as bridged)
    schema = json.loads(spapi_models.ORDER_CHANGE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(body, schema)
    facts = OrderChanged.from_notification(parse_notification(notification.to_json()))
    assert facts.reconciled and body["NotificationMetadata"]["ApplicationId"] == RECONCILIATION_APPLICATION_ID
    assert (facts.seller_id, facts.order_id, facts.marketplace_id) == ("A2SELLER", "111-0000000-0000001", US)
    assert (facts.status, facts.fulfillment) == ("Shipped", "MFN")
    assert facts.event_time == facts.change_time == datetime(2026, 3, 3, 10, tzinfo=UTC)
    assert facts.earliest_delivery == datetime(2026, 3, 5, 7, tzinfo=UTC)
    assert facts.latest_delivery == datetime(2026, 3, 7, 6, 59, 59, tzinfo=UTC)
    assert facts.purchase_date == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert body["Payload"]["OrderChangeNotification"]["Summary"]["DestinationPostalCode"] is None
    assert body["NotificationMetadata"]["PublishTime"] == "2026-03-20T09:30:00.000Z"


def test_an_fba_order_has_no_delivery_dates_and_defaults_fill_what_getorders_may_leave_out() -> None:
    order = amazon_order(FulfillmentChannel=None, OrderType=None, EarliestDeliveryDate=None, LatestDeliveryDate=None)
    notification = order_change_notification("A2SELLER", order, marketplace_id=US, published_at=NOW)
    summary = notification.model_dump(mode="json", exclude_unset=True)["Payload"]["OrderChangeNotification"]["Summary"]
    assert "EarliestDeliveryDate" not in summary and "LatestDeliveryDate" not in summary
    facts = OrderChanged.from_notification(parse_notification(notification.to_json()))
    assert facts.earliest_delivery is None and facts.latest_delivery is None
    assert (summary["FulfillmentType"], summary["OrderType"]) == ("MFN", "StandardOrder")


def test_the_id_is_the_same_for_the_same_facts_and_new_for_any_fact_we_use() -> None:
    base = reconciliation_id("A2SELLER", amazon_order(), US)
    assert base == reconciliation_id("A2SELLER", amazon_order(), US)
    assert len(base) <= 128
    changed = [
        reconciliation_id("A2OTHER", amazon_order(), US),
        reconciliation_id("A2SELLER", amazon_order(2), US),
        reconciliation_id("A2SELLER", amazon_order(LastUpdateDate="2026-03-04T10:00:00Z"), US),
        reconciliation_id("A2SELLER", amazon_order(OrderStatus="Canceled"), US),
        reconciliation_id("A2SELLER", amazon_order(LatestDeliveryDate="2026-03-08T06:59:59Z"), US),
        reconciliation_id("A2SELLER", amazon_order(EarliestDeliveryDate=None), US),
        reconciliation_id("A2SELLER", amazon_order(), CA),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


class FakeOrders:
    """An OrdersClient that serves scripted pages (or raises) and records the queries."""

    def __init__(self, *pages: OrdersPage | Exception) -> None:
        self.script = list(pages)
        self.queries: list[tuple[str, OrdersQuery]] = []

    async def pages(self, seller: SellerCredentials, query: OrdersQuery) -> AsyncIterator[OrdersPage]:
        self.queries.append((seller.refresh_token.get_secret_value(), query))
        for step in self.script:
            if isinstance(step, Exception):
                raise step
            yield step


class Published:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    async def __call__(self, records: Sequence[tuple[str, bytes]]) -> None:
        self.records.extend(records)


def reconciler(orders: FakeOrders | None, published: Published, cipher: TokenCipher | None = CIPHER) -> Reconciler:
    return Reconciler(
        clients=lambda app: orders if app == "default" else None,  # type: ignore[arg-type,return-value]
        cipher=cipher,
        publish=published,
        clock=ManualClock(NOW),
        config=ReconcileConfig(lookback=timedelta(days=3), page_size=50),
    )


async def test_a_backfill_lists_by_purchase_date_and_publishes_every_page_under_the_order_keys() -> None:
    orders = FakeOrders(
        OrdersPage((amazon_order(1), amazon_order(2)), "t", "r1", unreadable=1),
        OrdersPage((amazon_order(3, MarketplaceId=None), amazon_order(4, MarketplaceId=CA)), None, "r2"),
    )
    published = Published()
    report = await reconciler(orders, published).backfill(seller_record(), days=30)
    assert report.error is None
    assert (report.orders, report.pages, report.published, report.skipped) == (4, 2, 3, 2)
    assert [key for key, _ in published.records] == [f"A2SELLER/111-0000000-000000{n}" for n in (1, 2, 3)]
    token, query = orders.queries[0]
    assert token == "Atzr|token"
    assert query == OrdersQuery(marketplace_ids=(US,), created_after=NOW - timedelta(days=30), page_size=50)
    assert (
        "backfill since 2026-02-18T09:30:00.000Z: 4 order(s) in 2 page(s), 3 published, 2 skipped" in report.summary()
    )


async def test_a_daily_run_lists_by_last_update_over_the_lookback() -> None:
    orders = FakeOrders(OrdersPage((), None, "r"))
    slot = NOW - timedelta(hours=2)
    report = await reconciler(orders, Published()).daily(seller_record(marketplaces=(US, CA)), slot)
    assert report.error is None and report.kind == "daily"
    ((_, query),) = orders.queries
    assert query.last_updated_after == slot - timedelta(days=3) and query.created_after is None
    assert query.marketplace_ids == (US, CA)


@pytest.mark.parametrize(
    ("orders", "seller", "cipher", "error"),
    [
        (FakeOrders(), seller_record(app="other"), CIPHER, "no LWA credentials configured for app 'other'"),
        (FakeOrders(), seller_record(), None, "no SOLICIT_SECRET_KEY"),
        (FakeOrders(), seller_record(), TokenCipher(SecretStr(generate_key())), "A2SELLER"),
        (FakeOrders(AccessDenied("denied", seller_id="A2SELLER")), seller_record(), CIPHER, "denied"),
        (FakeOrders(RetryLater("throttled", retry_after=60)), seller_record(), CIPHER, "throttled"),
        (FakeOrders(RuntimeError("kafka down")), seller_record(), CIPHER, "RuntimeError: kafka down"),
    ],
)
async def test_failures_are_reported_not_raised(
    orders: FakeOrders, seller: SellerRecord, cipher: TokenCipher | None, error: str
) -> None:
    report = await reconciler(orders, Published(), cipher).backfill(seller)
    assert report.error is not None and error in report.error
    assert "failed after" in report.summary()


@pytest.mark.parametrize("seller_id", ["A2SELLER", "A3OTHER", "AZZZ"])
def test_a_seller_s_slot_is_a_fixed_time_of_day_in_the_last_day(seller_id: str) -> None:
    slot = daily_slot(seller_id, NOW)
    assert NOW - timedelta(days=1) < slot <= NOW
    assert daily_slot(seller_id, slot) == slot
    assert daily_slot(seller_id, NOW + timedelta(days=1)) == slot + timedelta(days=1)
    assert daily_slot(seller_id, slot - timedelta(microseconds=1)) == slot - timedelta(days=1)


def test_slots_spread_sellers_over_the_day() -> None:
    slots = {daily_slot(f"A{n:04d}SELLER", NOW).time() for n in range(50)}
    assert len(slots) == 50


class Daily:
    """A DailyReconciliation over a manual clock, with the partitions this worker owns settable."""

    def __init__(self, sellers: dict[str, SellerRecord], partitions: int = 4) -> None:
        self.clock = ManualClock(NOW)
        self.owned_partitions: set[int] = set(range(partitions))
        self.runs: list[tuple[str, datetime]] = []

        class Recording(Reconciler):
            async def daily(inner, seller: SellerRecord, slot: datetime) -> Any:
                self.runs.append((seller.seller_id, slot))
                return await super().daily(seller, slot)

        self.daily = DailyReconciliation(
            sellers=sellers,
            owned_partitions=lambda: self.owned_partitions,
            partitions=partitions,
            reconciler=Recording(
                clients=lambda app: FakeOrders(OrdersPage((), None, "r")),  # type: ignore[arg-type,return-value]
                cipher=CIPHER,
                publish=Published(),
                clock=self.clock,
                config=ReconcileConfig(),
            ),
            clock=self.clock,
        )


def test_a_seller_this_worker_comes_to_own_runs_from_its_next_slot_once_a_day() -> None:
    sellers = {"A2SELLER": seller_record()}
    world = Daily(sellers)
    slot = daily_slot("A2SELLER", NOW)
    assert world.daily.due(NOW) == []  # newly owned: the current slot may have run elsewhere
    next_slot = slot + timedelta(days=1)
    assert world.daily.due(next_slot - timedelta(seconds=1)) == []
    assert world.daily.due(next_slot) == [("A2SELLER", next_slot)]
    assert world.daily.due(next_slot + timedelta(hours=5)) == []  # once a day
    two_days_later = next_slot + timedelta(days=2, hours=1)
    assert world.daily.due(two_days_later) == [("A2SELLER", next_slot + timedelta(days=2))]  # missed days: one run


def test_only_sellers_of_owned_send_commands_partitions_run_and_a_lost_seller_is_forgotten() -> None:
    sellers = {f"A{n}SELLER": seller_record(f"A{n}SELLER") for n in range(12)}
    world = Daily(sellers)
    mine = {p for p in range(4) if p % 2 == 0}
    world.owned_partitions = mine
    ours = {s for s in sellers if partition_for(s.encode(), 4) in mine}
    assert world.daily.owned() == ours and 0 < len(ours) < len(sellers)
    world.daily.due(NOW)
    later = NOW + timedelta(days=1)
    assert {seller_id for seller_id, _ in world.daily.due(later)} == ours
    world.owned_partitions = set()
    assert world.daily.due(later + timedelta(days=1)) == []
    world.owned_partitions = mine  # owned again: from the next slot, as any newly owned seller
    assert world.daily.due(later + timedelta(days=2)) == []


async def test_tick_runs_each_due_seller_in_its_own_task_and_stop_closes() -> None:
    sellers = {"A2SELLER": seller_record()}
    world = Daily(sellers)
    closed: list[str] = []

    async def close() -> None:
        closed.append("closed")

    world.daily._closers = (close,)
    assert world.daily.tick() == 0
    world.clock.advance(timedelta(days=1))
    assert world.daily.tick() == 1
    await asyncio.sleep(0.01)
    assert world.runs == [("A2SELLER", daily_slot("A2SELLER", world.clock.now()))]
    assert world.daily.reports[-1].error is None
    await world.daily.stop()
    assert closed == ["closed"]
