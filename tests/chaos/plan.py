"""The chaos run's traffic: sellers, orders of every kind, how each notification travels, and what must happen.

Everything is relative to ``now`` (business time when the plan is built). Per registered seller (40 orders):

==========  ====  =========================================================================  ========
kind        n     notifications (and Amazon's truth in the sandbox)                          expected
==========  ====  =========================================================================  ========
open        12    Shipped MFN; delivered 6-8 days ago, window open now for 30+ more days     sent
soon         4    Unshipped, Shipped; delivered 3 days ago: the window opens in about 2 days  sent
afn          4    Shipped FBA without dates; our estimate checks in 4 days, Amazon's window  sent
                  opens in 5 (one re-check)
sequence     4    Unshipped, Shipped, the Shipped again (same id), a later Unshipped         sent
canceled     4    Unshipped, Canceled (Amazon: Canceled, dates of an open window)             canceled
pending      4    Unshipped only (Amazon: Unshipped)                                          pending
closed       4    Shipped, delivered 60 days ago: the window closed 28 days ago               expired
future       4    Shipped, delivery in 120 days                                               shipped
==========  ====  =========================================================================  ========

Every fifth seller sends only 9:00-18:00 local time. One more seller (40 open-window orders) is missing from the
registry: Amazon (the sandbox) knows it and its orders, the service must not solicit them. Order ids are unique
across sellers, so a call for one seller's order made with another seller's token shows in the sandbox's ledger.

Delivery: each notification goes through SQS, or (``direct_share``) straight to ``order-changes`` from "another
system" partitioning like librdkafka (CRC32). Some SQS messages are sent twice (``duplicate_share``), and the whole
list is shuffled, so an order's notifications arrive out of order and across both paths.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from devstack.demo.scenario import category
from statemachine.types import format_datetime

DAY = timedelta(days=1)
MARKETPLACES = (("NA", "ATVPDKIKX0DER"), ("EU", "A1PA6795UKMFR9"), ("FE", "A1VC38T7YXB528"))
WINDOW_OPENS = timedelta(days=5)
WINDOW_CLOSES = timedelta(days=30)
UNKNOWN_SELLER = "AUNREGISTEREDCHAOS"

Channel = Literal["sqs", "kafka"]


@dataclass(frozen=True)
class Kind:
    """One kind of order: how many per seller and the state it must end in (a ``category``)."""

    name: str
    per_seller: int
    expected: str


KINDS = (
    Kind("open", 12, "sent"),
    Kind("soon", 4, "sent"),
    Kind("afn", 4, "sent"),
    Kind("sequence", 4, "sent"),
    Kind("canceled", 4, "canceled"),
    Kind("pending", 4, "waiting"),
    Kind("closed", 4, "expired"),
    Kind("future", 4, "waiting"),
)
EXACT_STATE = {"pending": "pending", "future": "shipped"}
"""Kinds whose non-terminal end state is known exactly (the others only by category)."""


@dataclass
class ChaosOrder:
    """One order: who, what kind, what must happen, what Amazon knows, and the notifications Amazon sends."""

    seller_id: str
    order_id: str
    marketplace_id: str
    kind: str
    expected: str
    """Category it must end in: ``sent``, ``canceled``, ``expired`` or ``waiting`` (any non-terminal state)."""
    truth: dict[str, Any]
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.seller_id}/{self.order_id}"

    @property
    def eligible(self) -> bool:
        """Must be solicited exactly once: a registered seller's shipped order whose window opens during the run."""
        return self.expected == "sent"

    def window(self) -> tuple[datetime, datetime]:
        """Amazon's window for this order: [EarliestDeliveryDate + 5 d, LatestDeliveryDate + 30 d]."""
        earliest = datetime.fromisoformat(self.truth["earliest_delivery"])
        latest = datetime.fromisoformat(self.truth["latest_delivery"])
        return earliest + WINDOW_OPENS, latest + WINDOW_CLOSES

    def reached(self, state: str | None) -> bool:
        """Is ``state`` (the order's latest state on ``outcomes``) where this order must end?"""
        if state is None or category(state) != self.expected:
            return False
        exact = EXACT_STATE.get(self.kind)
        return exact is None or state == exact


@dataclass(frozen=True)
class Delivery:
    """One notification on its way: through SQS, or produced straight to ``order-changes`` under ``key``."""

    channel: Channel
    key: str
    body: str


@dataclass
class ChaosPlan:
    """Sellers (registry file and the sandbox's view), orders, and every delivery in send order."""

    registry_file: dict[str, Any]
    sandbox_sellers: list[dict[str, Any]]
    orders: list[ChaosOrder]
    deliveries: list[Delivery]

    def by_key(self) -> dict[str, ChaosOrder]:
        return {order.key: order for order in self.orders}

    def owners(self) -> dict[str, str]:
        """Order id -> the seller it belongs to (order ids are unique across sellers)."""
        return {order.order_id: order.seller_id for order in self.orders}

    def eligible(self) -> set[str]:
        return {order.key for order in self.orders if order.eligible}

    def truths(self) -> list[dict[str, Any]]:
        return [order.truth for order in self.orders]

    def count(self, channel: Channel) -> int:
        return sum(1 for delivery in self.deliveries if delivery.channel == channel)


def seller_id(index: int) -> str:
    return f"A{index:03d}CHAOSSELLER"


def build(
    now: datetime,
    *,
    sellers: int = 50,
    seed: int = 9,
    direct_share: float = 0.10,
    duplicate_share: float = 0.05,
) -> ChaosPlan:
    """The plan for ``sellers`` registered sellers (plus the unregistered one), reproducible from ``seed``."""
    rng = random.Random(seed)
    ids = _OrderIds()
    entries: list[dict[str, Any]] = []
    sandbox_sellers: list[dict[str, Any]] = []
    orders: list[ChaosOrder] = []
    for index in range(1, sellers + 1):
        region, marketplace_id = MARKETPLACES[index % len(MARKETPLACES)]
        sid = seller_id(index)
        token = f"Atzr|chaos-refresh-token-{index:03d}"
        policy = {"send_hours": {"start_hour": 9, "end_hour": 18}} if index % 5 == 0 else {}
        entries.append(
            {
                "seller_id": sid,
                "name": f"Chaos Seller {index:03d}",
                "region": region,
                "marketplace_ids": [marketplace_id],
                "refresh_token": token,
                "policy": policy,
            }
        )
        sandbox_sellers.append({"seller_id": sid, "refresh_token": token})
        for kind in KINDS:
            for j in range(kind.per_seller):
                orders.append(_order(now, kind.name, kind.expected, sid, marketplace_id, ids.next(index), j))
    sandbox_sellers.append({"seller_id": UNKNOWN_SELLER, "refresh_token": "Atzr|chaos-refresh-token-unknown"})
    for j in range(40):
        orders.append(_order(now, "unknown", "waiting", UNKNOWN_SELLER, "ATVPDKIKX0DER", ids.next(999), j))
    deliveries = _deliveries(orders, rng, direct_share=direct_share, duplicate_share=duplicate_share)
    return ChaosPlan(
        registry_file={"sellers": entries}, sandbox_sellers=sandbox_sellers, orders=orders, deliveries=deliveries
    )


class _OrderIds:
    """Amazon-style 3-7-7 order ids, unique across every seller of the plan."""

    def __init__(self) -> None:
        self._n = 0

    def next(self, seller_index: int) -> str:
        self._n += 1
        return f"{seller_index % 900 + 100:03d}-{self._n:07d}-{(seller_index * 7919 + self._n) % 10**7:07d}"


def _order(now: datetime, kind: str, expected: str, sid: str, mkt: str, order_id: str, j: int) -> ChaosOrder:
    """One order of ``kind``: Amazon's truth and the notifications Amazon sends for it."""
    order = ChaosOrder(sid, order_id, mkt, kind, expected, truth={})

    span = _span(kind)

    def note(at: datetime, status: str, edd: datetime | None, fulfillment: str = "MFN") -> dict[str, Any]:
        ldd = edd + span if edd is not None else None
        return notification(at, sid, order_id, mkt, status, edd=edd, ldd=ldd, fulfillment=fulfillment)

    if kind in ("open", "unknown"):
        edd = now - (6 + j % 3) * DAY
        order.notifications = [note(now - DAY, "Shipped", edd)]
    elif kind == "soon":
        edd = now - (3 + (j % 2) / 2) * DAY
        order.notifications = [note(now - 2 * DAY, "Unshipped", edd), note(now - DAY, "Shipped", edd)]
    elif kind == "afn":
        edd = now  # Amazon's truth: window opens in 5 days; we only know the shipment (4 days ago)
        order.notifications = [note(now - 4 * DAY, "Shipped", None, fulfillment="AFN")]
    elif kind == "sequence":
        edd = now - 7 * DAY
        shipped = note(now - 4 * DAY, "Shipped", edd)
        late = note(now - 3 * DAY, "Unshipped", edd)
        order.notifications = [note(now - 5 * DAY, "Unshipped", edd), shipped, shipped, late]
    elif kind == "canceled":
        edd = now - 7 * DAY
        order.notifications = [note(now - 3 * DAY, "Unshipped", edd), note(now - 2 * DAY, "Canceled", edd)]
    elif kind == "pending":
        edd = now - 7 * DAY
        order.notifications = [note(now - DAY, "Unshipped", edd)]
    elif kind == "closed":
        edd = now - 60 * DAY
        order.notifications = [note(now - 58 * DAY, "Shipped", edd)]
    elif kind == "future":
        edd = now + 120 * DAY
        order.notifications = [note(now - DAY, "Shipped", edd)]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    status = {"canceled": "Canceled", "pending": "Unshipped"}.get(kind, "Shipped")
    order.truth = truth(sid, order_id, mkt, edd, edd + span, status)
    if kind == "afn":
        order.truth["fulfillment_channel"] = "AFN"  # getOrders gives no delivery dates for it either
    return order


def _span(kind: str) -> timedelta:
    """LatestDeliveryDate - EarliestDeliveryDate: wide for open windows, so they outlast the run's chaos."""
    return 10 * DAY if kind in ("open", "unknown", "sequence", "soon") else 2 * DAY


def _deliveries(
    orders: list[ChaosOrder], rng: random.Random, *, direct_share: float, duplicate_share: float
) -> list[Delivery]:
    """Every notification once (some straight to Kafka), some SQS ones twice, all shuffled."""
    out: list[Delivery] = []
    for order in orders:
        for payload in order.notifications:
            body = json.dumps(payload)
            channel: Channel = "kafka" if rng.random() < direct_share else "sqs"
            out.append(Delivery(channel, order.key, body))
            if channel == "sqs" and rng.random() < duplicate_share:
                out.append(Delivery("sqs", order.key, body))
    rng.shuffle(out)
    return out


def truth(
    sid: str, order_id: str, marketplace_id: str, edd: datetime, ldd: datetime, status: str = "Shipped"
) -> dict[str, Any]:
    """The order as Amazon knows it (``POST /_sandbox/orders``)."""
    return {
        "seller_id": sid,
        "order_id": order_id,
        "marketplace_id": marketplace_id,
        "earliest_delivery": edd.isoformat(),
        "latest_delivery": ldd.isoformat(),
        "status": status,
    }


_numbers = iter(range(1, 10**9))


def notification(
    at: datetime,
    sid: str,
    order_id: str,
    marketplace_id: str,
    status: str,
    *,
    edd: datetime | None,
    ldd: datetime | None,
    fulfillment: str = "MFN",
) -> dict[str, Any]:
    """An ORDER_CHANGE notification as Amazon sends it (``OrderChangeNotification.json``), published at ``at``."""
    summary: dict[str, Any] = {
        "MarketplaceId": marketplace_id,
        "OrderStatus": status,
        "PurchaseDate": format_datetime(at - DAY),
        "DestinationPostalCode": "10115",
        "FulfillmentType": fulfillment,
        "OrderType": "StandardOrder",
        "NumberOfItemsShipped": 1 if status == "Shipped" else 0,
        "NumberOfItemsUnshipped": 0 if status == "Shipped" else 1,
        "OrderItems": [
            {"OrderItemId": f"OI{order_id[-7:]}", "SellerSKU": "SKU", "SupplySourceId": None, "Quantity": 1}
        ],
    }
    if edd is not None:
        summary["EarliestDeliveryDate"] = format_datetime(edd)
    if ldd is not None:
        summary["LatestDeliveryDate"] = format_datetime(ldd)
    return {
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": format_datetime(at),
        "Payload": {
            "OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": sid,
                "AmazonOrderId": order_id,
                "OrderChangeType": "OrderStatusChange",
                "OrderChangeTrigger": {"TimeOfOrderChange": format_datetime(at), "ChangeReason": f"Order {status}"},
                "Summary": summary,
            }
        },
        "NotificationMetadata": {
            "ApplicationId": "amzn1.sellerapps.app.chaos",
            "SubscriptionId": f"subscription-{sid}",
            "PublishTime": format_datetime(at),
            "NotificationId": f"chaos-{order_id}-{next(_numbers)}",
        },
    }
