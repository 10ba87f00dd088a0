"""Builders for notifications, events and records in every state, driven through ``apply`` itself."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from statemachine import (
    OrderChanged,
    OrderRecord,
    OrderState,
    Policy,
    SendResult,
    SendResultKind,
    TimerFired,
    apply,
)

SELLER = "A3TH9S8BH6GOGM"
ORDER = "903-8868176-2219830"
US = "ATVPDKIKX0DER"

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
"""Purchase time of the standard order."""
EDD = T0 + timedelta(days=3)
LDD = T0 + timedelta(days=7)
WINDOW_START = EDD + timedelta(days=5)
WINDOW_END = LDD + timedelta(days=30)

_ids = itertools.count(1)


def notification_dict(
    *,
    status: str = "Shipped",
    seller: str = SELLER,
    order: str = ORDER,
    fulfillment: str = "MFN",
    marketplace: str = US,
    event_time: datetime | None = None,
    edd: datetime | None = EDD,
    ldd: datetime | None = LDD,
    notification_id: str | None = None,
) -> dict[str, Any]:
    """An ORDER_CHANGE notification as Amazon sends it (dict, ready for json.dumps)."""
    event_time = event_time or T0 + timedelta(days=1)
    summary: dict[str, Any] = {
        "MarketplaceId": marketplace,
        "OrderStatus": status,
        "PurchaseDate": T0.isoformat().replace("+00:00", "Z"),
        "DestinationPostalCode": "48110",
        "FulfillmentType": fulfillment,
        "OrderType": "StandardOrder",
        "OrderItems": [{"OrderItemId": "OIID1", "SellerSKU": "SKU1", "SupplySourceId": None, "Quantity": 1}],
    }
    if edd is not None:
        summary["EarliestDeliveryDate"] = edd.isoformat()
    if ldd is not None:
        summary["LatestDeliveryDate"] = ldd.isoformat()
    return {
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": event_time.isoformat(),
        "Payload": {
            "OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": seller,
                "AmazonOrderId": order,
                "OrderChangeType": "OrderStatusChange",
                "OrderChangeTrigger": {"TimeOfOrderChange": event_time.isoformat(), "ChangeReason": "test"},
                "Summary": summary,
            }
        },
        "NotificationMetadata": {
            "ApplicationId": "app-1",
            "SubscriptionId": "sub-1",
            "PublishTime": event_time.isoformat(),
            "NotificationId": notification_id or f"n-{next(_ids)}",
        },
    }


def changed(
    status: str = "Shipped",
    *,
    event_time: datetime | None = None,
    notification_id: str | None = None,
    fulfillment: str = "MFN",
    edd: datetime | None = EDD,
    ldd: datetime | None = LDD,
    marketplace: str = US,
) -> OrderChanged:
    """The core's view of a notification."""
    event_time = event_time or T0 + timedelta(days=1)
    return OrderChanged(
        notification_id=notification_id or f"n-{next(_ids)}",
        event_time=event_time,
        seller_id=SELLER,
        order_id=ORDER,
        marketplace_id=marketplace,
        status=status,
        fulfillment=fulfillment,
        change_time=event_time,
        purchase_date=T0,
        earliest_delivery=edd,
        latest_delivery=ldd,
    )


def timer() -> TimerFired:
    return TimerFired(seller_id=SELLER, order_id=ORDER)


def result(kind: SendResultKind, lease_id: int, **extra: Any) -> SendResult:
    return SendResult(seller_id=SELLER, order_id=ORDER, lease_id=lease_id, result=kind, request_id="rid-1", **extra)


def record_in(state: OrderState, policy: Policy | None = None) -> OrderRecord:
    """A realistic record in ``state``, built by applying the events that lead there."""
    policy = policy or Policy()

    def run(record: OrderRecord | None, event: Any, now: datetime) -> OrderRecord:
        out = apply(record, event, now, policy)
        assert out.record is not None
        return out.record

    if state is OrderState.PENDING:
        return run(None, changed("Unshipped", event_time=T0), T0)
    shipped = run(None, changed("Shipped"), T0 + timedelta(days=1))
    if state is OrderState.SHIPPED:
        return shipped
    if state is OrderState.EXPIRED:
        return run(shipped, timer(), WINDOW_END + timedelta(days=1))
    if state is OrderState.CANCELED:
        return run(shipped, changed("Canceled", event_time=T0 + timedelta(days=2)), T0 + timedelta(days=2))
    assert shipped.next_due is not None
    eligible = run(shipped, timer(), shipped.next_due)
    if state is OrderState.ELIGIBLE:
        return eligible
    after = {
        OrderState.WAITING: SendResultKind.NOT_YET_AVAILABLE,
        OrderState.SENT: SendResultKind.SENT,
        OrderState.FAILED: SendResultKind.PERMANENT_FAILURE,
        OrderState.SKIPPED: SendResultKind.DRY_RUN,
    }[state]
    assert shipped.next_due is not None
    return run(eligible, result(after, eligible.lease_id), shipped.next_due + timedelta(minutes=1))
