"""Every (state, event) pair: where the order goes, and whether a command is issued or the record dropped.

Rows are the stored states; columns are the events the orders agent can apply. A cell names the expected
destination; ``+cmd`` means a send command is emitted, ``del`` that the record is to be purged, ``=`` that
the outcome is "unchanged" (the very same record comes back).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from statemachine import OrderRecord, OrderState, SendResultKind, apply
from statemachine.errors import InvalidTransition
from statemachine.events import OrderChanged, SendResult, TimerFired
from statemachine.machine import TRANSITIONS, Trigger, fire
from tests.support.factories import WINDOW_END, changed, record_in, result, timer

S = OrderState
K = SendResultKind

Event = OrderChanged | TimerFired | SendResult
Maker = Callable[[OrderRecord], tuple[Event, datetime]]


def _soon(record: OrderRecord) -> datetime:
    return record.updated_at + timedelta(minutes=1)


def _later_notification(status: str) -> Maker:
    return lambda r: (changed(status, event_time=r.last_event_time + timedelta(hours=1)), _soon(r))


def _send(kind: SendResultKind, **extra: object) -> Maker:
    return lambda r: (result(kind, r.lease_id, **extra), _soon(r))


def _timer_at(when: Callable[[OrderRecord], datetime]) -> Maker:
    return lambda r: (timer(), when(r))


def _next_due(r: OrderRecord) -> datetime:
    assert r.next_due is not None
    return r.next_due


EVENTS: dict[str, Maker] = {
    "notify-unshipped": _later_notification("Unshipped"),
    "notify-shipped": _later_notification("Shipped"),
    "notify-canceled": _later_notification("Canceled"),
    "notify-duplicate": lambda r: (
        changed("Canceled", notification_id=r.applied_notifications[-1], event_time=r.last_event_time),
        _soon(r),
    ),
    "timer-early": _timer_at(lambda r: _next_due(r) - timedelta(seconds=1)),
    "timer-due": _timer_at(_next_due),
    "timer-after-window": _timer_at(lambda r: WINDOW_END + timedelta(days=2)),
    "sent": _send(K.SENT),
    "not-yet": _send(K.NOT_YET_AVAILABLE),
    "not-available": _send(K.NOT_AVAILABLE),
    "not-available-after-ambiguous": _send(K.NOT_AVAILABLE, maybe_sent=True),
    "outside-window": _send(K.OUTSIDE_WINDOW),
    "retryable": _send(K.RETRYABLE_FAILURE, reason="503"),
    "permanent": _send(K.PERMANENT_FAILURE, reason="400 InvalidInput"),
    "deferred": _send(K.DEFERRED, reason="seller paused"),
    "dry-run": _send(K.DRY_RUN),
    "stale-lease": lambda r: (result(K.NOT_YET_AVAILABLE, r.lease_id + 7), _soon(r)),
}

# Cells that differ from "=" (unchanged). "state" alone means: changed, moved (or stayed) there, no command.
TABLE: dict[S, dict[str, str]] = {
    S.PENDING: {
        "notify-unshipped": "pending",
        "notify-shipped": "shipped",
        "notify-canceled": "canceled",
        "timer-due": "expired",
        "sent": "sent",
        "not-available-after-ambiguous": "sent",
    },
    S.SHIPPED: {
        "notify-unshipped": "shipped",
        "notify-shipped": "shipped",
        "notify-canceled": "canceled",
        "timer-due": "eligible +cmd",
        "timer-after-window": "expired",
        "sent": "sent",
        "not-available-after-ambiguous": "sent",
    },
    S.ELIGIBLE: {
        "notify-unshipped": "eligible",
        "notify-shipped": "eligible",
        "notify-canceled": "canceled",
        "timer-due": "eligible +cmd",
        "timer-after-window": "expired",
        "sent": "sent",
        "not-yet": "waiting",
        "not-available": "sent",
        "not-available-after-ambiguous": "sent",
        "outside-window": "waiting",
        "retryable": "waiting",
        "permanent": "failed",
        "deferred": "waiting",
        "dry-run": "skipped",
    },
    S.WAITING: {
        "notify-unshipped": "waiting",
        "notify-shipped": "waiting",
        "notify-canceled": "canceled",
        "timer-due": "eligible +cmd",
        "timer-after-window": "expired",
        "sent": "sent",
        "not-available-after-ambiguous": "sent",
    },
    S.SENT: {
        "notify-unshipped": "sent",
        "notify-shipped": "sent",
        "notify-canceled": "sent",
        "timer-due": "sent del",
    },
}
for _terminal in (S.EXPIRED, S.CANCELED, S.FAILED, S.SKIPPED):
    TABLE[_terminal] = {
        "notify-unshipped": _terminal.value,
        "notify-shipped": _terminal.value,
        "notify-canceled": _terminal.value,
        "timer-due": f"{_terminal.value} del",
        "sent": "sent",
        "not-available-after-ambiguous": "sent",
    }

CASES = [(state, event) for state in TABLE for event in EVENTS]


def test_the_table_covers_every_stored_state() -> None:
    assert set(TABLE) == set(OrderState) - {S.NEW}


@pytest.mark.parametrize(("state", "event_name"), CASES, ids=[f"{s.value}-{e}" for s, e in CASES])
def test_state_event_pair(state: OrderState, event_name: str) -> None:
    record = record_in(state)
    assert record.state is state
    event, now = EVENTS[event_name](record)
    outcome = apply(record, event, now)

    expected = TABLE[state].get(event_name, "=")
    if expected == "=":
        assert outcome.record is record
        assert not outcome.changed
        assert outcome.commands == ()
        assert outcome.events == ()
        return
    dest, *flags = expected.split()
    assert outcome.changed
    assert outcome.record is not None
    assert outcome.record.state.value == dest
    assert bool(outcome.commands) == ("+cmd" in flags)
    assert outcome.delete == ("del" in flags)
    if outcome.commands:
        (command,) = outcome.commands
        assert command.lease_id == outcome.record.lease_id == record.lease_id + 1
        assert command.deadline == outcome.record.window_end
    if dest != state.value or "+cmd" in flags:
        (moved,) = outcome.events
        assert (moved.source, moved.dest) == (state, outcome.record.state)
        assert outcome.record.history[-1].dest == outcome.record.state
    else:
        assert outcome.events == ()


@pytest.mark.parametrize("trigger", list(Trigger))
@pytest.mark.parametrize("state", list(OrderState))
def test_the_machine_allows_exactly_the_table(state: OrderState, trigger: Trigger) -> None:
    edges = {(t, s): d for t, sources, d in TRANSITIONS for s in sources}
    if (trigger, state) in edges:
        assert fire(state, trigger) is edges[(trigger, state)]
    else:
        with pytest.raises(InvalidTransition, match=f"'{trigger.value}' is not allowed from '{state.value}'"):
            fire(state, trigger)


def test_nothing_leaves_sent_and_nothing_is_commanded_from_a_terminal_state() -> None:
    for trigger, sources, _dest in TRANSITIONS:
        assert S.SENT not in sources or trigger is Trigger.CONFIRM_SENT
        if trigger in (Trigger.COMMAND, Trigger.REISSUE):
            assert all(s in (S.SHIPPED, S.WAITING, S.ELIGIBLE) for s in sources)
