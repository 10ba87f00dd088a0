"""The demo's traffic: sellers, orders of every kind, the notifications Amazon would send, and what must happen.

Everything is relative to ``now`` (business time when the traffic is fed), so the same scenario works at any
simulated speed. Per regular seller (8 orders):

=============  ==================================================================  ==========
kind           notifications                                                       expected
=============  ==================================================================  ==========
mfn (x3)       Shipped, delivery 4 to 2 days ago: due 1-3 days from now             sent
sequence       Unshipped, Shipped, the Shipped again (same id), a late Unshipped    sent
afn            Shipped (FBA, no delivery dates); Amazon's window opens in 8 days:   sent
               our estimate checks in 6 days, re-checks daily, sends on day 8
canceled       Unshipped, then Canceled                                             canceled
old            Shipped, delivered 45 days ago: the window is closed                 expired
future         Shipped, delivery in 60 days                                         waiting
=============  ==================================================================  ==========

Special sellers: #2 is paused (its sendable orders wait), #3 is dry-run (they end ``skipped``), #4 sends only
9:00-18:00 local time, #5 revoked its authorization at Amazon (its orders are deferred). Two orders come from a
seller missing from the registry (deferred). A handful of malformed bodies end on the dead-letter topic, and
one notification arrives double-encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from statemachine.types import format_datetime

DAY = timedelta(days=1)
MARKETPLACES = (("NA", "ATVPDKIKX0DER"), ("EU", "A1PA6795UKMFR9"), ("FE", "A1VC38T7YXB528"))

TERMINAL = {"sent", "expired", "canceled", "failed", "skipped"}


def category(state: str) -> str:
    """The summary column of an order state."""
    return state if state in TERMINAL else "waiting"


@dataclass
class PlannedOrder:
    """One order of the scenario."""

    seller_id: str
    order_id: str
    marketplace_id: str
    kind: str
    expected: str
    """Summary category it must end in: sent, skipped, canceled, expired or waiting."""
    truth: dict[str, Any] | None
    """The order as Amazon (the sandbox) knows it, or None when Amazon is never asked."""
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.seller_id}/{self.order_id}"


@dataclass
class Scenario:
    """Sellers (registry import file and the sandbox's view), orders, malformed bodies, in send order."""

    registry_file: dict[str, Any]
    sandbox_sellers: list[dict[str, Any]]
    revoked: list[str]
    orders: list[PlannedOrder]
    bodies: list[str]
    """Every SQS message body, in the order to send them (notifications, duplicates, malformed ones)."""
    malformed: int

    def expected(self) -> dict[str, str]:
        return {order.key: order.expected for order in self.orders}

    def must_be_sent(self) -> set[str]:
        return {order.key for order in self.orders if order.expected == "sent"}


def seller_id(index: int) -> str:
    return f"A{index:02d}DEMOSELLER"


def build(now: datetime, *, sellers: int = 24) -> Scenario:
    """The scenario for ``sellers`` sellers, with ``now`` the business time at which it is fed."""
    if sellers < 6:
        raise ValueError("the demo scenario needs at least 6 sellers (five play special roles)")
    entries: list[dict[str, Any]] = []
    sandbox_sellers: list[dict[str, Any]] = []
    orders: list[PlannedOrder] = []
    ids = _Ids()
    for index in range(1, sellers + 1):
        region, marketplace_id = MARKETPLACES[index % len(MARKETPLACES)]
        sid = seller_id(index)
        token = f"Atzr|demo-refresh-token-{index:02d}"
        policy: dict[str, Any] = {}
        if index == 2:
            policy["paused"] = True
        if index == 3:
            policy["dry_run"] = True
        if index == 4:
            policy["send_hours"] = {"start_hour": 9, "end_hour": 18}
        entries.append(
            {
                "seller_id": sid,
                "name": f"Demo Seller {index:02d}",
                "group": f"Agency {'ABC'[index % 3]}",
                "region": region,
                "marketplace_ids": [marketplace_id],
                "refresh_token": token,
                "policy": policy,
            }
        )
        sandbox_sellers.append({"seller_id": sid, "refresh_token": token})
        held = "waiting" if index in (2, 5) else "skipped" if index == 3 else "sent"
        orders.extend(_seller_orders(now, sid, marketplace_id, index, held, ids))
    stranger = "AUNREGISTEREDSELLER"
    for _ in range(2):
        orders.append(_shipped(now, stranger, "ATVPDKIKX0DER", ids.next(99), "mfn", "waiting", edd=now - 3 * DAY))

    bodies: list[str] = []
    for order in orders:
        bodies.extend(json.dumps(n) for n in order.notifications)
    # One notification double-encoded, as Amazon's own sample handles.
    bodies[0] = json.dumps(bodies[0])
    malformed = [
        "this is not JSON",
        "{}",
        "[1, 2, 3]",
        json.dumps({**orders[0].notifications[0], "NotificationType": "ANY_OFFER_CHANGED"}),
        json.dumps(_without_seller(orders[1].notifications[0])),
        json.dumps(_with_bad_date(orders[2].notifications[0])),
    ]
    # Spread the malformed bodies through the stream.
    step = max(1, len(bodies) // (len(malformed) + 1))
    for position, body in enumerate(malformed, start=1):
        bodies.insert(position * step, body)
    return Scenario(
        registry_file={"sellers": entries},
        sandbox_sellers=sandbox_sellers,
        revoked=[seller_id(5)],
        orders=orders,
        bodies=bodies,
        malformed=len(malformed),
    )


class _Ids:
    def __init__(self) -> None:
        self._n = 0

    def next(self, seller_index: int) -> str:
        self._n += 1
        return f"{100 + seller_index:03d}-{self._n:07d}-{seller_index * 1000 + self._n:07d}"


def _seller_orders(
    now: datetime, sid: str, marketplace_id: str, index: int, held: str, ids: _Ids
) -> list[PlannedOrder]:
    out = [_shipped(now, sid, marketplace_id, ids.next(index), "mfn", held, edd=now - (4 - j) * DAY) for j in range(3)]

    sequence = _shipped(now, sid, marketplace_id, ids.next(index), "sequence", held, edd=now - 3 * DAY)
    shipped = sequence.notifications[0]
    sequence.notifications = [
        _notification(now - 3 * DAY, sid, sequence.order_id, marketplace_id, "Unshipped", edd=now - 3 * DAY),
        shipped,
        shipped,  # SQS delivered it twice: same NotificationId
        _notification(now - 2.5 * DAY, sid, sequence.order_id, marketplace_id, "Unshipped", edd=now - 3 * DAY),
    ]
    out.append(sequence)

    afn_id = ids.next(index)
    afn = PlannedOrder(
        sid,
        afn_id,
        marketplace_id,
        "afn",
        held,
        truth={**_truth(sid, afn_id, marketplace_id, now + 3 * DAY, now + 5 * DAY), "fulfillment_channel": "AFN"},
        notifications=[
            _notification(now - 2 * DAY, sid, afn_id, marketplace_id, "Shipped", fulfillment="AFN", edd=None)
        ],
    )
    out.append(afn)

    canceled_id = ids.next(index)
    out.append(
        PlannedOrder(
            sid,
            canceled_id,
            marketplace_id,
            "canceled",
            "canceled",
            truth=_truth(sid, canceled_id, marketplace_id, now, now + 2 * DAY, status="Canceled"),
            notifications=[
                _notification(now - 3 * DAY, sid, canceled_id, marketplace_id, "Unshipped", edd=now),
                _notification(now - 2 * DAY, sid, canceled_id, marketplace_id, "Canceled", edd=now),
            ],
        )
    )
    out.append(_shipped(now, sid, marketplace_id, ids.next(index), "old", "expired", edd=now - 50 * DAY))
    out.append(_shipped(now, sid, marketplace_id, ids.next(index), "future", "waiting", edd=now + 60 * DAY))
    return out


def _shipped(
    now: datetime, sid: str, marketplace_id: str, order_id: str, kind: str, expected: str, *, edd: datetime
) -> PlannedOrder:
    return PlannedOrder(
        sid,
        order_id,
        marketplace_id,
        kind,
        expected,
        truth=_truth(sid, order_id, marketplace_id, edd, edd + 2 * DAY),
        notifications=[_notification(min(now - DAY, edd), sid, order_id, marketplace_id, "Shipped", edd=edd)],
    )


def _truth(
    sid: str, order_id: str, marketplace_id: str, edd: datetime, ldd: datetime, status: str = "Shipped"
) -> dict[str, Any]:
    return {
        "seller_id": sid,
        "order_id": order_id,
        "marketplace_id": marketplace_id,
        "earliest_delivery": edd.isoformat(),
        "latest_delivery": ldd.isoformat(),
        "status": status,
    }


_counter = iter(range(1, 10**9))


def _notification(
    at: datetime,
    sid: str,
    order_id: str,
    marketplace_id: str,
    status: str,
    *,
    fulfillment: str = "MFN",
    edd: datetime | None,
) -> dict[str, Any]:
    """An ORDER_CHANGE notification as Amazon sends it (schema of OrderChangeNotification.json)."""
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
            {"OrderItemId": f"OI{order_id[-7:]}", "SellerSKU": "DEMO-SKU", "SupplySourceId": None, "Quantity": 1}
        ],
    }
    if edd is not None and fulfillment == "MFN":
        summary["EarliestDeliveryDate"] = format_datetime(edd)
        summary["LatestDeliveryDate"] = format_datetime(edd + 2 * DAY)
    number = next(_counter)
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
            "ApplicationId": "amzn1.sellerapps.app.demo",
            "SubscriptionId": f"subscription-{sid}",
            "PublishTime": format_datetime(at),
            "NotificationId": f"demo-{order_id}-{number}",
        },
    }


def _without_seller(notification: dict[str, Any]) -> dict[str, Any]:
    broken: dict[str, Any] = json.loads(json.dumps(notification))
    del broken["Payload"]["OrderChangeNotification"]["SellerId"]
    return broken


def _with_bad_date(notification: dict[str, Any]) -> dict[str, Any]:
    broken: dict[str, Any] = json.loads(json.dumps(notification))
    broken["EventTime"] = "last tuesday"
    return broken
