"""ORDER_CHANGE notification models, faithful to Amazon's ``OrderChangeNotification.json`` schema.

What the schema says, we say: required fields are required, nullable ones accept ``null``, optional ones may
be absent, and unknown extra fields are kept (``extra="allow"``) so a notification round-trips unchanged.
Where the schema is too loose to act on, we are stricter:

* every date field (``EventTime``, ``PublishTime``, the delivery/ship dates, ...) must be an ISO-8601
  date-time; a timestamp without an offset is taken as UTC (Amazon publishes UTC);
* ``NotificationType`` must be ``ORDER_CHANGE``;
* types are strict: ``"10"`` is not an integer and ``1`` is not a string.

Enums (OrderStatus, OrderChangeType, FulfillmentType, ...) stay open: a value Amazon adds tomorrow parses as a
plain string instead of failing the whole notification; known values become the enum member.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from statemachine.types import IsoDateTime, OrderIdStr, SellerIdStr

E = TypeVar("E", bound=StrEnum)


def _open(enum: type[E]) -> AfterValidator:
    def to_member(value: str) -> str:
        try:
            return enum(value)
        except ValueError:
            return value

    return AfterValidator(to_member)


class NotificationLevel(StrEnum):
    ORDER_LEVEL = "OrderLevel"
    ORDER_ITEM_LEVEL = "OrderItemLevel"


class OrderChangeType(StrEnum):
    ORDER_STATUS_CHANGE = "OrderStatusChange"
    BUYER_REQUESTED_CHANGE = "BuyerRequestedChange"
    DELIVERY_TIP_CHANGE = "DeliveryTipChange"


class OrderStatus(StrEnum):
    PENDING = "Pending"
    UNSHIPPED = "Unshipped"
    PARTIALLY_SHIPPED = "PartiallyShipped"
    SHIPPED = "Shipped"
    CANCELED = "Canceled"
    UNFULFILLABLE = "Unfulfillable"
    INVOICE_UNCONFIRMED = "InvoiceUnconfirmed"
    PENDING_AVAILABILITY = "PendingAvailability"


class FulfillmentType(StrEnum):
    AFN = "AFN"
    MFN = "MFN"


class OrderType(StrEnum):
    STANDARD_ORDER = "StandardOrder"
    LONG_LEAD_TIME_ORDER = "LongLeadTimeOrder"
    PREORDER = "Preorder"
    BACK_ORDER = "BackOrder"
    SOURCING_ON_DEMAND_ORDER = "SourcingOnDemandOrder"


OpenNotificationLevel = Annotated[str, _open(NotificationLevel)]
OpenOrderChangeType = Annotated[str, _open(OrderChangeType)]
OpenOrderStatus = Annotated[str, _open(OrderStatus)]
OpenFulfillmentType = Annotated[str, _open(FulfillmentType)]
OpenOrderType = Annotated[str, _open(OrderType)]


MarketplaceIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$")]


class _AmazonModel(BaseModel):
    """Inbound Amazon data: strict types, unknown fields kept, immutable."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class OrderItem(_AmazonModel):
    OrderItemId: str
    SellerSKU: str
    SupplySourceId: str | None
    Quantity: int
    OrderItemStatus: str | None = None
    QuantityShipped: int | None = None
    IsBuyerRequestedCancel: bool | None = None
    ItemEarliestDeliveryDate: IsoDateTime | None = None
    ItemLatestDeliveryDate: IsoDateTime | None = None


class Summary(_AmazonModel):
    MarketplaceId: MarketplaceIdStr
    OrderStatus: OpenOrderStatus
    PurchaseDate: IsoDateTime | None
    DestinationPostalCode: str | None
    FulfillmentType: OpenFulfillmentType
    OrderType: OpenOrderType
    OrderItems: list[OrderItem]
    NumberOfItemsShipped: int | None = None
    NumberOfItemsUnshipped: int | None = None
    EarliestDeliveryDate: IsoDateTime | None = None
    LatestDeliveryDate: IsoDateTime | None = None
    EarliestShipDate: IsoDateTime | None = None
    LatestShipDate: IsoDateTime | None = None
    CancelNotifyDate: IsoDateTime | None = None
    OrderPrograms: list[str] | None = None
    ShippingPrograms: list[str] | None = None
    EasyShipShipmentStatus: str | None = None
    ElectronicInvoiceStatus: str | None = None


class OrderChangeTrigger(_AmazonModel):
    TimeOfOrderChange: IsoDateTime | None
    ChangeReason: str


class OrderChangeNotification(_AmazonModel):
    NotificationLevel: OpenNotificationLevel
    SellerId: SellerIdStr
    AmazonOrderId: OrderIdStr
    OrderChangeType: OpenOrderChangeType
    OrderChangeTrigger: OrderChangeTrigger
    Summary: Summary


class Payload(_AmazonModel):
    OrderChangeNotification: OrderChangeNotification


RECONCILIATION_APPLICATION_ID = "solicit-reconciliation"
"""``NotificationMetadata.ApplicationId`` of the notifications our reconciliation builds from the Orders API
(``streams/reconcile.py``): Amazon's schema and facts, not published by Amazon. The core applies them like any other
notification and says so in the reasons of the transitions they cause."""


class NotificationMetadata(_AmazonModel):
    ApplicationId: str
    SubscriptionId: str
    PublishTime: IsoDateTime
    NotificationId: Annotated[str, Field(min_length=1)]


class Notification(_AmazonModel):
    """One ORDER_CHANGE notification, as delivered in an SQS message body."""

    NotificationVersion: str
    NotificationType: Literal["ORDER_CHANGE"]
    PayloadVersion: str
    EventTime: IsoDateTime
    Payload: Payload
    NotificationMetadata: NotificationMetadata

    @property
    def change(self) -> OrderChangeNotification:
        """The order-level part of the payload."""
        return self.Payload.OrderChangeNotification

    @property
    def notification_id(self) -> str:
        """Amazon's unique id of this notification instance: the dedupe key."""
        return self.NotificationMetadata.NotificationId

    @property
    def reconciled(self) -> bool:
        """Built by our reconciliation from the Orders API (:data:`RECONCILIATION_APPLICATION_ID`)."""
        return self.NotificationMetadata.ApplicationId == RECONCILIATION_APPLICATION_ID

    def to_json(self) -> bytes:
        """Canonical JSON (UTC ``Z`` date-times, unknown fields kept)."""
        return self.model_dump_json(by_alias=True).encode()
