"""``apply(record, event, now, policy) -> Decision``: the single entry point of the order core.

Pure: the new record, the commands to emit and the outcome events are computed from the arguments alone.
The orders agent stores ``outcome.record``, sends ``outcome.commands`` and publishes ``outcome.events``.

Guarantees (each has tests):

* **Idempotent.** A notification whose NotificationId was applied already changes nothing; a duplicate or
  stale send result (another lease, or the order moved on) changes nothing; a timer that fires early changes
  nothing.
* **Never backwards.** Only the first notification of an order can make it PENDING; after that, a late
  Unshipped/Pending never undoes Shipped, and nothing undoes a terminal state. Facts (dates) are taken
  from the newest notification by EventTime; older ones only fill gaps.
* **Canceled is final.** Canceled stops an active order for good; no command is issued afterwards.
* **One command per lease.** A command is issued when the order comes due, under a lease. Only when the lease
  runs out without a result (the sender may have died) is the command issued again, under a new lease. Sent
  is terminal: nothing is ever commanded from it.
* **Amazon is the truth.** A "sent" answer is accepted even late, even from a terminal state, because the
  record must say what Amazon did.
* **Manual controls are audited.** An operator's skip, send now or re-check of a known order yields exactly one
  outcome event, a refusal too (``source == dest``, the record unchanged); send now never leaves Amazon's window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from statemachine.events import (
    ManualAction,
    ManualActionKind,
    OrderChanged,
    SendCommand,
    SendResult,
    SendResultKind,
    SendStarted,
    StateChanged,
    TimerFired,
)
from statemachine.machine import Trigger, fire
from statemachine.notification import OrderStatus
from statemachine.policy import (
    DEFAULT_POLICY,
    Policy,
    SellerPolicy,
    Window,
    estimated_delivery,
    first_send_time,
    last_check,
    retry_delay,
    window_for,
    within_send_hours,
)
from statemachine.record import OrderRecord, OrderState, Transition
from statemachine.types import format_datetime

S = OrderState
_ACTIVE = frozenset({S.PENDING, S.SHIPPED, S.ELIGIBLE, S.WAITING})
_LAST_GAP = timedelta(minutes=1)
"""Inside the last margin, a re-check closer than this to the deadline is not worth a call: the next look is at the
deadline, which expires the order."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``apply`` decided.

    ``record`` is the record to store (``None``: there is no order to store, e.g. a timer for an unknown
    order). ``changed`` says whether it differs from the input. ``delete`` asks the caller to remove the record
    (its retention after a terminal state is over).
    """

    record: OrderRecord | None
    commands: tuple[SendCommand, ...] = ()
    events: tuple[StateChanged, ...] = ()
    changed: bool = False
    delete: bool = False


Event = OrderChanged | TimerFired | SendStarted | SendResult | ManualAction


def apply(record: OrderRecord | None, event: Event, now: datetime, policy: Policy = DEFAULT_POLICY) -> Decision:
    """Apply one event to one order's record at time ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if record is not None and record.key != event.key:
        raise ValueError(f"event for {event.key} applied to the record of {record.key}")
    step = _Step(record, now, policy)
    if isinstance(event, OrderChanged):
        step.order_changed(event)
    elif isinstance(event, TimerFired):
        step.timer_fired()
    elif isinstance(event, SendStarted):
        step.send_started()
    elif isinstance(event, ManualAction):
        step.manual(event)
    else:
        step.send_result(event)
    return step.decision()


class _Step:
    """The working state of one ``apply`` call: a record being rebuilt, plus what to emit."""

    def __init__(self, record: OrderRecord | None, now: datetime, policy: Policy) -> None:
        self.original = record
        self.record = record
        self.now = now
        self.policy = policy
        self.timing = policy.timing
        self.commands: list[SendCommand] = []
        self.events: list[StateChanged] = []
        self.delete = False

    # --- result -----------------------------------------------------------------------------------------

    def decision(self) -> Decision:
        record = self.record
        if record is not None and record is not self.original:
            record = record.model_copy(update={"next_due": self._next_due(record), "updated_at": self.now})
        changed = record is not self.original or self.delete
        return Decision(
            record=record,
            commands=tuple(self.commands),
            events=tuple(self.events),
            changed=changed,
            delete=self.delete,
        )

    def _next_due(self, record: OrderRecord) -> datetime | None:
        if record.state is S.PENDING:
            return (record.purchase_date or record.created_at) + self.timing.pending_timeout
        if record.state in (S.SHIPPED, S.WAITING):
            return record.due_at
        if record.state is S.ELIGIBLE:
            return record.lease_expires_at
        if record.state is S.SKIPPED and record.history[-1].trigger == Trigger.MANUAL_SKIP.value:
            # Kept, never purged: a purged record would be created again by a later notification (a preorder that
            # ships months on) and solicited. Only a "sent" from Amazon moves it again (then retention applies).
            return None
        # Terminal: look again when the retention is over, to purge the record. Every terminal state is
        # reached through a transition, so the history is never empty here.
        return record.history[-1].at + self.timing.retention

    # --- helpers ----------------------------------------------------------------------------------------

    def _update(self, **changes: Any) -> OrderRecord:
        assert self.record is not None
        self.record = self.record.model_copy(update=changes)
        return self.record

    def _move(self, trigger: Trigger, reason: str, request_id: str | None = None, **changes: Any) -> None:
        record = self.record
        assert record is not None
        dest = fire(record.state, trigger)
        entry = Transition(
            at=self.now, source=record.state, dest=dest, trigger=trigger.value, reason=reason, request_id=request_id
        )
        history = record.history
        if trigger is Trigger.REISSUE and history and history[-1].trigger == Trigger.REISSUE.value:
            history = history[:-1]  # one entry for a run of re-issues (a paused seller re-issues for days)
        history = (*history, entry)[-self.timing.history_limit :]
        self._update(
            state=dest,
            last_reason=reason,
            last_request_id=request_id if request_id is not None else record.last_request_id,
            history=history,
            **changes,
        )
        self.events.append(
            StateChanged(
                order_key=record.key,
                seller_id=record.seller_id,
                order_id=record.order_id,
                source=record.state,
                dest=dest,
                trigger=trigger.value,
                reason=reason,
                at=self.now,
                request_id=request_id,
            )
        )

    def _deadline(self) -> datetime:
        assert self.record is not None and self.record.window_end is not None
        return self.record.window_end

    def _seller(self) -> SellerPolicy:
        """The seller's policy for this order's marketplace (its overrides applied)."""
        assert self.record is not None
        return self.policy.seller.for_marketplace(self.record.marketplace_id)

    def _window(self) -> Window:
        record = self.record
        assert record is not None and record.window_start is not None and record.window_end is not None
        return Window(start=record.window_start, end=record.window_end, estimated=record.window_estimated)

    def _send_time(self, at: datetime, latest: datetime) -> datetime:
        assert self.record is not None
        record = self.record
        return within_send_hours(at, self._seller().send_hours, record.marketplace_id, deadline=latest, seed=record.key)

    def _wait_or_expire(
        self, trigger: Trigger, at: datetime, reason: str, request_id: str | None, **changes: Any
    ) -> None:
        """Schedule the next check at ``at``, at the window's last check at the latest; expire only once the window
        has closed.

        Inside the last margin, each further check halves the time left, so an order is looked at again before the
        deadline rather than at it (where the timer's lateness would make it expire unchecked)."""
        deadline = self._deadline()
        if self.now >= deadline:
            self._move(Trigger.EXPIRE, f"window closed ({reason})", request_id, **changes)
            return
        latest = last_check(self._window(), self.timing)
        if at > latest:
            left = deadline - self.now
            at = latest if self.now < latest else (self.now + left / 2 if left > _LAST_GAP else deadline)
            latest = max(latest, at)
        self._move(trigger, reason, request_id, due_at=self._send_time(at, latest), lease_expires_at=None, **changes)

    def _issue_command(self, trigger: Trigger, reason: str) -> None:
        record = self.record
        assert record is not None
        lease_id = record.lease_id + 1
        lease_expires_at = self.now + self.timing.lease_timeout
        self._move(
            trigger,
            reason,
            lease_id=lease_id,
            lease_expires_at=lease_expires_at,
            due_at=None,
            commands_issued=record.commands_issued + 1,
        )
        self.commands.append(
            SendCommand(
                seller_id=record.seller_id,
                order_id=record.order_id,
                marketplace_id=record.marketplace_id,
                lease_id=lease_id,
                issued_at=self.now,
                lease_expires_at=lease_expires_at,
                deadline=self._deadline(),
                maybe_sent=record.maybe_sent,
            )
        )

    # --- notifications ----------------------------------------------------------------------------------

    def order_changed(self, event: OrderChanged) -> None:
        if self.record is None:
            self.record = OrderRecord(
                seller_id=event.seller_id,
                order_id=event.order_id,
                marketplace_id=event.marketplace_id,
                fulfillment=event.fulfillment,
                state=S.NEW,
                amazon_status=event.status,
                last_event_time=event.event_time,
                purchase_date=event.purchase_date,
                earliest_delivery=event.earliest_delivery,
                latest_delivery=event.latest_delivery,
                created_at=self.now,
                updated_at=self.now,
            )
        elif event.notification_id in self.record.applied_notifications:
            return
        record = self._remember(event)
        via = _via(event)

        if event.status == OrderStatus.CANCELED:
            if record.state is S.NEW or record.state in _ACTIVE:
                self._move(Trigger.CANCEL, f"order canceled{via}", due_at=None, lease_expires_at=None)
        elif event.status == OrderStatus.SHIPPED:
            if record.state in (S.NEW, S.PENDING) or (record.state is S.EXPIRED and record.shipped_at is None):
                # An order that expired waiting for its shipment (a preorder, say) ships after all: its window is
                # Amazon's to judge, so it is scheduled like any shipped order.
                self._ship(event, via)
            elif record.state in (S.SHIPPED, S.WAITING, S.ELIGIBLE):
                self._reschedule(via)
        elif record.state is S.NEW:
            self._move(Trigger.HOLD, f"order is {event.status}, not shipped yet{via}")

    def _remember(self, event: OrderChanged) -> OrderRecord:
        """Record the NotificationId and merge the notification's facts (newest EventTime wins)."""
        record = self.record
        assert record is not None
        ids = (*record.applied_notifications, event.notification_id)[-self.timing.notification_ids_limit :]
        newer = event.event_time >= record.last_event_time

        def pick(new: datetime | None, old: datetime | None) -> datetime | None:
            if new is None:
                return old
            return new if newer or old is None else old

        changes: dict[str, Any] = {
            "applied_notifications": ids,
            "purchase_date": pick(event.purchase_date, record.purchase_date),
            "earliest_delivery": pick(event.earliest_delivery, record.earliest_delivery),
            "latest_delivery": pick(event.latest_delivery, record.latest_delivery),
        }
        if newer:
            changes.update(
                amazon_status=event.status,
                last_event_time=event.event_time,
                marketplace_id=event.marketplace_id,
                fulfillment=event.fulfillment,
            )
        return self._update(**changes)

    def _ship(self, event: OrderChanged, via: str) -> None:
        shipped_at = event.change_time or event.event_time
        record = self._update(shipped_at=shipped_at)
        window = window_for(record.earliest_delivery, record.latest_delivery, shipped_at, self.timing)
        self._update(window_start=window.start, window_end=window.end, window_estimated=window.estimated)
        due = self._first_due()
        how = "estimated window, no delivery dates" if window.estimated else "delivery window"
        self._move(Trigger.SHIP, f"shipped; first check {due.isoformat()} ({how}){via}", due_at=due)

    def _first_due(self) -> datetime:
        record = self.record
        assert record is not None
        earliest = record.earliest_delivery
        if earliest is None:
            assert record.shipped_at is not None
            earliest = estimated_delivery(record.shipped_at, self.timing)[0]
        policy = Policy(seller=self._seller(), timing=self.timing)
        return first_send_time(self._window(), earliest, policy, record.marketplace_id, seed=record.key)

    def _reschedule(self, via: str) -> None:
        """New facts for a shipped order: recompute the window; a not-yet-checked order also its send time."""
        record = self.record
        assert record is not None and record.shipped_at is not None
        window = window_for(record.earliest_delivery, record.latest_delivery, record.shipped_at, self.timing)
        if (window.start, window.end, window.estimated) == (
            record.window_start,
            record.window_end,
            record.window_estimated,
        ):
            return
        record = self._update(window_start=window.start, window_end=window.end, window_estimated=window.estimated)
        if record.state is S.SHIPPED:
            self._update(due_at=self._first_due(), last_reason=f"delivery dates changed; rescheduled{via}")
        elif record.state is S.WAITING:
            assert record.due_at is not None
            latest = last_check(window, self.timing)
            self._update(due_at=min(record.due_at, latest), last_reason=f"delivery dates changed{via}")

    # --- timers -----------------------------------------------------------------------------------------

    def timer_fired(self) -> None:
        record = self.record
        if record is None or record.next_due is None or self.now < record.next_due:
            return
        if record.state is S.PENDING:
            self._move(Trigger.EXPIRE, "not shipped in time", due_at=None)
        elif record.state in (S.SHIPPED, S.WAITING):
            if self.now > self._deadline():
                self._move(Trigger.EXPIRE, "window closed before the order could be checked", due_at=None)
            else:
                self._issue_command(Trigger.COMMAND, "due: check and send")
        elif record.state is S.ELIGIBLE:
            if self.now > self._deadline():
                self._move(
                    Trigger.EXPIRE,
                    "window closed while a send was outstanding",
                    due_at=None,
                    lease_expires_at=None,
                )
            else:
                self._issue_command(Trigger.REISSUE, f"no result for command {record.lease_id}; issued again")
        else:
            self.delete = True

    # --- send results -----------------------------------------------------------------------------------

    def send_started(self) -> None:
        """A create call is about to go out (for whichever lease): the order may be solicited from now on."""
        record = self.record
        if record is None or record.state not in _ACTIVE or record.maybe_sent:
            return
        self._update(maybe_sent=True, last_reason="a create call went out; it may have taken effect")

    def send_result(self, result: SendResult) -> None:
        record = self.record
        if record is None:
            return
        kind = result.result
        if kind is SendResultKind.SENT or (kind is SendResultKind.NOT_AVAILABLE and result.maybe_sent):
            self._confirm_sent(result)
            return
        if record.state is not S.ELIGIBLE or result.lease_id != record.lease_id:
            return  # stale or duplicate: another lease, or the order moved on
        _RESULT_HANDLERS[kind](self, result)

    def _confirm_sent(self, result: SendResult) -> None:
        assert self.record is not None
        if self.record.state is S.SENT:
            return
        reason = (
            "solicitation created"
            if result.result is SendResultKind.SENT
            else "already solicited: 403 not available after an attempt that may have taken effect"
        )
        self._move(Trigger.CONFIRM_SENT, reason, result.request_id, due_at=None, lease_expires_at=None, failures=0)

    def _not_yet_available(self, result: SendResult) -> None:
        assert self.record is not None
        if self.record.maybe_sent:
            # An earlier create may have reached Amazon (which then stops offering the action): only another
            # create can tell, and it reads 403 "not available" as sent.
            self._issue_command(Trigger.REISSUE, "not offered after a create that may have taken effect; create again")
            return
        self._wait_or_expire(
            Trigger.NOT_YET,
            self.now + self.timing.recheck_interval,
            "not offered yet; re-check later",
            result.request_id,
            checks=self.record.checks + 1,
            failures=0,
        )

    def _not_available(self, result: SendResult) -> None:
        # GET offered it, then POST says "not available": someone (Seller Central, an earlier attempt) solicited in
        # between. Inside the window that is the only reading that fits.
        rid = result.request_id
        if self.now > self._deadline():
            self._move(Trigger.EXPIRE, f"not available and window closed{_detail(result)}", rid, lease_expires_at=None)
            return
        reason = "already solicited: Amazon says not available for this order"
        self._move(Trigger.CONFIRM_SENT, reason, rid, lease_expires_at=None, failures=0)

    def _outside_window(self, result: SendResult) -> None:
        record = self.record
        assert record is not None and record.window_start is not None
        rid = result.request_id
        middle = record.window_start + (self._deadline() - record.window_start) / 2
        if self.now >= middle:
            self._move(Trigger.EXPIRE, "Amazon says outside the 5-30 day range", rid, lease_expires_at=None)
            return
        self._wait_or_expire(
            Trigger.NOT_YET,
            self.now + self.timing.recheck_interval,
            "Amazon says outside the 5-30 day range; re-check later",
            rid,
            checks=record.checks + 1,
        )

    def _retryable_failure(self, result: SendResult) -> None:
        record = self.record
        assert record is not None
        failures = record.failures + 1
        delay = retry_delay(failures, self.timing, record.key)
        if result.retry_after_seconds is not None:
            delay = max(delay, timedelta(seconds=result.retry_after_seconds))
        self._wait_or_expire(
            Trigger.RETRY,
            self.now + delay,
            f"retryable failure{_detail(result)}",
            result.request_id,
            failures=failures,
            maybe_sent=record.maybe_sent or result.maybe_sent,
        )

    def _permanent_failure(self, result: SendResult) -> None:
        self._move(Trigger.FAIL, f"permanent failure{_detail(result)}", result.request_id, lease_expires_at=None)

    def _deferred(self, result: SendResult) -> None:
        delay = (
            timedelta(seconds=result.retry_after_seconds)
            if result.retry_after_seconds is not None
            else self.timing.recheck_interval
        )
        self._wait_or_expire(Trigger.DEFER, self.now + delay, f"deferred{_detail(result)}", result.request_id)

    def _dry_run(self, result: SendResult) -> None:
        self._move(Trigger.SKIP, "dry run: offered, not sent", result.request_id, lease_expires_at=None)

    def _not_enabled(self, result: SendResult) -> None:
        self._move(Trigger.SKIP, f"not solicited{_detail(result)}", result.request_id, lease_expires_at=None)

    # --- manual controls --------------------------------------------------------------------------------

    def manual(self, action: ManualAction) -> None:
        """An operator's control. A known order gets exactly one outcome event, a refusal too; an unknown order gets
        none and no record (the API answers 404 before it publishes)."""
        if self.record is None:
            return
        _MANUAL_HANDLERS[action.action](self, action)

    def _manual_skip(self, action: ManualAction) -> None:
        record = self.record
        assert record is not None
        if record.terminal:
            self._refuse(action, f"order is already {record.state.value}")
            return
        # An eligible order's command may be at the sender already: its "sent" still moves the order to sent.
        in_flight = " (a send command was already out)" if record.state is S.ELIGIBLE else ""
        self._move(Trigger.MANUAL_SKIP, f"skipped by {_by(action)}{in_flight}", due_at=None, lease_expires_at=None)

    def _manual_send(self, action: ManualAction) -> None:
        record = self.record
        assert record is not None
        refusal = _not_checkable(record)
        if refusal is None:
            assert record.window_start is not None and record.window_end is not None
            if self.now < record.window_start:
                refusal = f"window opens {format_datetime(record.window_start)}"
            elif self.now >= record.window_end:
                refusal = "window closed"
        if refusal is not None:
            self._refuse(action, refusal)
            return
        self._issue_command(Trigger.MANUAL_SEND, f"send now requested by {_by(action)}")

    def _manual_recheck(self, action: ManualAction) -> None:
        record = self.record
        assert record is not None
        refusal = _not_checkable(record)
        if refusal is not None:
            self._refuse(action, refusal)
            return
        self._move(Trigger.MANUAL_RECHECK, f"re-check requested by {_by(action)}", due_at=self.now)

    def _refuse(self, action: ManualAction, why: str) -> None:
        """Audit a refused action: an outcome event with ``source == dest``; the record stays as it was (a history
        entry would also push back the purge of a terminal record)."""
        record = self.record
        assert record is not None
        trigger, label = _MANUAL[action.action]
        self.events.append(
            StateChanged(
                order_key=record.key,
                seller_id=record.seller_id,
                order_id=record.order_id,
                source=record.state,
                dest=record.state,
                trigger=trigger.value,
                reason=f"{label} refused: {why} (requested by {_by(action)})",
                at=self.now,
            )
        )


def _not_checkable(record: OrderRecord) -> str | None:
    """Why send now / re-check cannot apply to ``record`` (None: it is shipped or waiting, so they can)."""
    if record.state is S.PENDING:
        return "not shipped yet"
    if record.state is S.ELIGIBLE:
        return "a send is already in flight"
    if record.terminal:
        return f"order is already {record.state.value}"
    return None


def _by(action: ManualAction) -> str:
    """Who asked, and why when they said."""
    return f"{action.actor}: {action.note}" if action.note else action.actor


def _via(event: OrderChanged) -> str:
    """How a reason names the facts' source: nothing for Amazon's notifications, a marker for our reconciliation."""
    return " (reconciliation)" if event.reconciled else ""


def _detail(result: SendResult) -> str:
    return f": {result.reason}" if result.reason else ""


_RESULT_HANDLERS: dict[SendResultKind, Callable[[_Step, SendResult], None]] = {
    SendResultKind.NOT_YET_AVAILABLE: _Step._not_yet_available,
    SendResultKind.NOT_AVAILABLE: _Step._not_available,
    SendResultKind.OUTSIDE_WINDOW: _Step._outside_window,
    SendResultKind.RETRYABLE_FAILURE: _Step._retryable_failure,
    SendResultKind.PERMANENT_FAILURE: _Step._permanent_failure,
    SendResultKind.DEFERRED: _Step._deferred,
    SendResultKind.DRY_RUN: _Step._dry_run,
    SendResultKind.NOT_ENABLED: _Step._not_enabled,
}
"""What a result of the current lease does; SENT (and NOT_AVAILABLE after an ambiguous create) never get here."""

_MANUAL_HANDLERS: dict[ManualActionKind, Callable[[_Step, ManualAction], None]] = {
    ManualActionKind.SKIP: _Step._manual_skip,
    ManualActionKind.SEND_NOW: _Step._manual_send,
    ManualActionKind.RECHECK: _Step._manual_recheck,
}

_MANUAL: dict[ManualActionKind, tuple[Trigger, str]] = {
    ManualActionKind.SKIP: (Trigger.MANUAL_SKIP, "skip"),
    ManualActionKind.SEND_NOW: (Trigger.MANUAL_SEND, "send now"),
    ManualActionKind.RECHECK: (Trigger.MANUAL_RECHECK, "re-check"),
}
"""Each action's trigger (also on its refusals) and how a refusal's reason names it."""


__all__ = ["Decision", "Event", "apply"]
