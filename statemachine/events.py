"""What flows into and out of ``apply``: input events, send commands, and outcome events.

These are also the wire contracts of the internal Kafka topics (JSON, ``frozen``, with a ``schema_version``; fields a
newer version adds are ignored by an older reader, so workers can be upgraded one by one). Input events form a
discriminated union on ``kind``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationError

from statemachine.errors import InvalidNotification
from statemachine.notification import Notification
from statemachine.parse import describe_validation_error
from statemachine.record import OrderState, order_key
from statemachine.types import FrozenModel, IsoDateTime


class _Model(FrozenModel):
    """Our wire events: a field added by a newer version is ignored by an older reader (rolling upgrades)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = 1


EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_PLAUSIBLE = datetime(2100, 1, 1, tzinfo=UTC)
"""Dates outside these bounds did not come from a real order (and would overflow the window arithmetic)."""
MAX_DELIVERY_SPAN = timedelta(days=180)
"""The longest plausible gap between the earliest and the latest delivery date."""

Short = Annotated[str, Field(min_length=1, max_length=64)]
"""Ids and Amazon enum values: short, so a stored record stays small whatever a producer sends."""


class OrderChanged(_Model):
    """The facts of one ORDER_CHANGE notification that the core uses (no buyer data)."""

    kind: Literal["order_changed"] = "order_changed"
    notification_id: Annotated[str, Field(min_length=1, max_length=128)]
    event_time: IsoDateTime
    seller_id: Short
    order_id: Short
    marketplace_id: Short
    status: Short
    fulfillment: Short
    change_time: IsoDateTime | None = None
    purchase_date: IsoDateTime | None = None
    earliest_delivery: IsoDateTime | None = None
    latest_delivery: IsoDateTime | None = None
    reconciled: bool = False
    """The facts come from our reconciliation (the Orders API), not from a notification Amazon published: the same
    rules apply (dedupe by id, never backwards), and the reasons of the transitions they cause say so."""

    @classmethod
    def from_notification(cls, notification: Notification) -> OrderChanged:
        """Keep what the rules need; drop the rest (postal code, items). :class:`InvalidNotification` when the facts
        cannot be those of a real order (dates out of range, inverted or too far apart, oversized values)."""
        try:
            facts = cls._facts(notification)
        except ValidationError as exc:
            raise InvalidNotification(describe_validation_error(exc)) from None
        facts.check_plausible()
        return facts

    def check_plausible(self) -> None:
        """Raise :class:`InvalidNotification` for dates no real order has; the window arithmetic needs sane dates."""
        for name in ("event_time", "change_time", "purchase_date", "earliest_delivery", "latest_delivery"):
            value: datetime | None = getattr(self, name)
            if value is not None and not EARLIEST_PLAUSIBLE <= value < LATEST_PLAUSIBLE:
                raise InvalidNotification(
                    f"{name} {value.date().isoformat()} is outside the plausible range "
                    f"{EARLIEST_PLAUSIBLE.year}..{LATEST_PLAUSIBLE.year - 1}"
                )
        earliest, latest = self.earliest_delivery, self.latest_delivery
        if earliest is not None and latest is not None:
            if latest < earliest:
                raise InvalidNotification("LatestDeliveryDate is before EarliestDeliveryDate")
            if latest - earliest > MAX_DELIVERY_SPAN:
                raise InvalidNotification(
                    f"delivery dates are {(latest - earliest).days} days apart, more than {MAX_DELIVERY_SPAN.days}"
                )

    @classmethod
    def _facts(cls, notification: Notification) -> OrderChanged:
        change = notification.change
        summary = change.Summary
        return cls(
            notification_id=notification.notification_id,
            event_time=notification.EventTime,
            seller_id=change.SellerId,
            order_id=change.AmazonOrderId,
            marketplace_id=summary.MarketplaceId,
            status=str(summary.OrderStatus),
            fulfillment=str(summary.FulfillmentType),
            change_time=change.OrderChangeTrigger.TimeOfOrderChange,
            purchase_date=summary.PurchaseDate,
            earliest_delivery=summary.EarliestDeliveryDate,
            latest_delivery=summary.LatestDeliveryDate,
            reconciled=notification.reconciled,
        )

    @property
    def key(self) -> str:
        return order_key(self.seller_id, self.order_id)


class TimerFired(_Model):
    """A timer looked at the order (its ``next_due`` may have come). Carries no time: ``now`` does."""

    kind: Literal["timer_fired"] = "timer_fired"
    seller_id: str
    order_id: str

    @property
    def key(self) -> str:
        return order_key(self.seller_id, self.order_id)


class SendStarted(_Model):
    """The sender is about to call create for this lease: from now on the order may have been solicited.

    Published and acknowledged by Kafka *before* the call, so a crash after Amazon's 201 and before the result
    still leaves the record saying "maybe sent": the next command creates directly and reads 403 "not available"
    as sent (``docs/state-machine.md``)."""

    kind: Literal["send_started"] = "send_started"
    seller_id: str
    order_id: str
    lease_id: int

    @property
    def key(self) -> str:
        return order_key(self.seller_id, self.order_id)


class SendResultKind(StrEnum):
    """What the sender learned from Amazon (or from the registry) for one command."""

    SENT = "sent"
    """201: the solicitation was created."""
    NOT_YET_AVAILABLE = "not_yet_available"
    """getSolicitationActionsForOrder offered nothing (200, empty actions): check again later."""
    NOT_AVAILABLE = "not_available"
    """403 "not available for this amazonOrderId" on create: already solicited (or not eligible)."""
    OUTSIDE_WINDOW = "outside_window"
    """403 "outside the 5-30 day range"."""
    RETRYABLE_FAILURE = "retryable_failure"
    """429/5xx/timeouts that outlasted the client's own retries."""
    PERMANENT_FAILURE = "permanent_failure"
    """400/404/413/415: retrying cannot help."""
    DEFERRED = "deferred"
    """Not attempted: seller paused, unknown, or its authorization revoked. Try again later."""
    DRY_RUN = "dry_run"
    """Dry-run seller: offered, but the create call was skipped on purpose."""
    NOT_ENABLED = "not_enabled"
    """The order's marketplace is not one the seller has enabled: never solicited (no call was made)."""


class SendResult(_Model):
    """The answer to one :class:`SendCommand`."""

    kind: Literal["send_result"] = "send_result"
    seller_id: str
    order_id: str
    lease_id: int
    result: SendResultKind
    request_id: str | None = None
    reason: str = ""
    retry_after_seconds: float | None = Field(default=None, ge=0)
    maybe_sent: bool = False
    """A create call failed in a way that may have taken effect (with ``not_available``: it did, so the order is
    sent; with ``retryable_failure``: it may have, so the next attempt must create directly)."""

    @property
    def key(self) -> str:
        return order_key(self.seller_id, self.order_id)


class ManualActionKind(StrEnum):
    """What an operator asked for one order."""

    SKIP = "skip"
    """Never solicit this order."""
    SEND_NOW = "send_now"
    """Check and send now, inside Amazon's window, whatever the seller's delay and send hours say."""
    RECHECK = "recheck"
    """Make the order due now: the timer looks at it at its next tick and the normal rules apply."""


NoteText = Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
"""Free text from an operator: bounded, and one line (no control characters), as it ends up in a log line."""
ActorName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]
"""Who acted (an operator or API token *name*, never a secret): short and printable."""


class ManualAction(_Model):
    """An operator's control for one order (skip, send now, re-check), from the API or the CLI.

    Carries no NotificationId: it never touches the deduplication of notifications. Every one that reaches a known
    order yields exactly one :class:`StateChanged` (the audit trail), a refusal too (``source == dest``)."""

    kind: Literal["manual"] = "manual"
    seller_id: Short
    order_id: Short
    action: ManualActionKind
    actor: ActorName
    note: NoteText = ""
    requested_at: IsoDateTime

    @property
    def key(self) -> str:
        return order_key(self.seller_id, self.order_id)


OrderEvent = Annotated[OrderChanged | TimerFired | SendStarted | SendResult | ManualAction, Field(discriminator="kind")]
"""Every event the orders agent applies."""


class SendCommand(_Model):
    """Check the order with getSolicitationActionsForOrder and, if offered, create the solicitation."""

    seller_id: str
    order_id: str
    marketplace_id: str
    lease_id: int
    issued_at: IsoDateTime
    lease_expires_at: IsoDateTime
    deadline: IsoDateTime
    """End of the window: the sender serves a seller's commands with the earliest deadline first."""
    maybe_sent: bool = False
    """An earlier create call may have taken effect: call create directly (a 403 "not available" then means
    "already sent"); do not ask getSolicitationActionsForOrder, which would no longer offer the action."""

    @property
    def key(self) -> str:
        return order_key(self.seller_id, self.order_id)


class StateChanged(_Model):
    """An order moved (or re-issued its command); published on the outcomes topic for audit and integrations."""

    type: Literal["state_changed"] = "state_changed"
    order_key: str
    seller_id: str
    order_id: str
    source: OrderState
    dest: OrderState
    trigger: str
    reason: str
    at: IsoDateTime
    request_id: str | None = None
