"""The order record: everything the orders table keeps about one order, and nothing more.

Buyer personal data (postal code, items, prices) is not kept: a record holds ids, the status facts that drive
the schedule, the computed window, the next due time, counters, the last reason, a bounded history of
transitions and a bounded set of NotificationIds already applied (for deduplication).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict

from statemachine.types import FrozenModel, IsoDateTime


class OrderState(StrEnum):
    """Where an order is. ``NEW`` exists only inside ``apply``; stored records are never NEW."""

    NEW = "new"
    PENDING = "pending"
    """Known, not shipped yet."""
    SHIPPED = "shipped"
    """Shipped; waiting for its first send time."""
    ELIGIBLE = "eligible"
    """Due: a send command is out under a lease."""
    WAITING = "waiting"
    """The last attempt did not send (not yet offered, failure, seller paused); a re-check is scheduled."""
    SENT = "sent"
    """Amazon has a solicitation for this order (ours, or one it reports as already made)."""
    EXPIRED = "expired"
    """The window (or the wait for shipment) ended without a send."""
    CANCELED = "canceled"
    """The order was canceled before a send."""
    FAILED = "failed"
    """A permanent error (bad request, unknown order): never retried."""
    SKIPPED = "skipped"
    """Dry run: everything but the send happened."""


TERMINAL_STATES = frozenset(
    {OrderState.SENT, OrderState.EXPIRED, OrderState.CANCELED, OrderState.FAILED, OrderState.SKIPPED}
)


def order_key(seller_id: str, order_id: str) -> str:
    """The one key of an order everywhere (tables, topics, logs): ``<seller id>/<order id>``."""
    return f"{seller_id}/{order_id}"


class Transition(FrozenModel):
    """One entry of an order's history."""

    at: IsoDateTime
    source: OrderState
    dest: OrderState
    trigger: str
    reason: str
    request_id: str | None = None
    """Amazon's request id of the call that caused this transition, if one did."""


class OrderRecord(FrozenModel):
    """One order, as stored in the orders table (JSON).

    Fields a newer version adds are kept (``extra="allow"``): an older worker that rewrites the record during a
    rolling upgrade carries them along instead of failing to read it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    schema_version: int = 1
    seller_id: str
    order_id: str
    marketplace_id: str
    fulfillment: str
    state: OrderState

    # Facts from notifications (the newest notification wins, by EventTime)
    amazon_status: str
    last_event_time: IsoDateTime
    purchase_date: IsoDateTime | None = None
    earliest_delivery: IsoDateTime | None = None
    latest_delivery: IsoDateTime | None = None
    shipped_at: IsoDateTime | None = None

    # Computed schedule
    window_start: IsoDateTime | None = None
    window_end: IsoDateTime | None = None
    window_estimated: bool = False
    due_at: IsoDateTime | None = None
    """Next check-and-send time (shipped, waiting)."""
    lease_id: int = 0
    """Number of the latest send command; results carry it back."""
    lease_expires_at: IsoDateTime | None = None
    next_due: IsoDateTime | None = None
    """When a timer must look at this order next (the due-time index key); None = never."""

    # Counters and outcome
    commands_issued: int = 0
    checks: int = 0
    """Send attempts that came back "not yet" (the API did not offer the solicitation)."""
    failures: int = 0
    """Consecutive retryable failures."""
    maybe_sent: bool = False
    """A create call failed ambiguously (it may have taken effect): the next attempt creates directly and reads
    403 "not available" as "already sent" instead of asking getSolicitationActionsForOrder first."""
    last_reason: str = ""
    last_request_id: str | None = None
    created_at: IsoDateTime
    updated_at: IsoDateTime

    history: tuple[Transition, ...] = ()
    applied_notifications: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``<seller id>/<order id>``."""
        return order_key(self.seller_id, self.order_id)

    @property
    def terminal(self) -> bool:
        """Whether nothing will ever be sent for this order any more."""
        return self.state in TERMINAL_STATES
