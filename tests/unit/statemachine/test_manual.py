"""Operators' manual controls (skip, send now, re-check): what each does, when it is refused, and the audit trail.

Every action on a known order yields exactly one outcome event; a refusal has ``source == dest`` and leaves the record
as it was. Send now never leaves the window; a skipped order is never commanded, but Amazon's "sent" still counts.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from statemachine import (
    TERMINAL_STATES,
    Decision,
    ManualAction,
    ManualActionKind,
    OrderEvent,
    OrderRecord,
    OrderState,
    Policy,
    SellerPolicy,
    SendHours,
    SendResultKind,
    StateChanged,
    apply,
)
from statemachine.machine import TRANSITIONS, Trigger
from statemachine.types import format_datetime
from tests.support.factories import ORDER, SELLER, T0, WINDOW_END, WINDOW_START, changed, record_in, result, timer

S = OrderState
K = SendResultKind
A = ManualActionKind
TERMINAL = sorted(TERMINAL_STATES)
ACTIVE = [S.PENDING, S.SHIPPED, S.ELIGIBLE, S.WAITING]
LATE_FIRST_CHECK = Policy(seller=SellerPolicy(delay_days=10))
"""The first check falls well inside the window, so a send now at the window's start is ahead of the schedule."""


def manual(action: ManualActionKind, actor: str = "alice", note: str = "customer asked") -> ManualAction:
    return ManualAction(seller_id=SELLER, order_id=ORDER, action=action, actor=actor, note=note, requested_at=T0)


def stored(outcome: Decision) -> OrderRecord:
    assert outcome.record is not None
    return outcome.record


def only_event(outcome: Decision) -> StateChanged:
    (event,) = outcome.events
    return event


def assert_refused(record: OrderRecord, outcome: Decision, trigger: Trigger, reason: str) -> None:
    assert outcome.record is record
    assert not outcome.changed and not outcome.delete
    assert outcome.commands == ()
    event = only_event(outcome)
    assert (event.source, event.dest, event.trigger) == (record.state, record.state, trigger.value)
    assert event.reason == reason
    assert event.request_id is None


# --- the event ------------------------------------------------------------------------------------------


def test_a_manual_action_is_read_from_the_order_events_union_and_keyed_like_the_order() -> None:
    raw = json.dumps(
        {
            "kind": "manual",
            "seller_id": SELLER,
            "order_id": ORDER,
            "action": "send_now",
            "actor": "ops-token",
            "requested_at": "2026-03-10T12:00:00Z",
        }
    )
    event = TypeAdapter(OrderEvent).validate_json(raw)
    assert isinstance(event, ManualAction)
    assert (event.action, event.note, event.key) == (A.SEND_NOW, "", f"{SELLER}/{ORDER}")
    assert event.requested_at.tzinfo is not None


@pytest.mark.parametrize(
    "bad",
    [
        {"actor": ""},
        {"actor": "x" * 65},
        {"actor": "eve\nINFO forged line"},
        {"note": "x" * 501},
        {"note": "two\nlines"},
        {"order_id": ""},
        {"action": "resurrect"},
    ],
)
def test_a_malformed_manual_action_is_refused_by_the_model(bad: dict[str, str]) -> None:
    fields = {"seller_id": SELLER, "order_id": ORDER, "action": "skip", "actor": "alice", "requested_at": T0} | bad
    with pytest.raises(ValidationError):
        ManualAction.model_validate(fields)


@pytest.mark.parametrize("action", list(A))
def test_an_unknown_order_gets_no_record_and_no_event(action: ManualActionKind) -> None:
    outcome = apply(None, manual(action), T0)
    assert outcome == Decision(record=None)


# --- skip -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ACTIVE)
def test_skip_stops_an_active_order_for_good_and_says_who_and_why(state: OrderState) -> None:
    record = record_in(state)
    now = record.updated_at + timedelta(minutes=5)
    outcome = apply(record, manual(A.SKIP), now)
    skipped = stored(outcome)
    assert skipped.state is S.SKIPPED
    assert outcome.commands == ()
    assert (skipped.next_due, skipped.due_at, skipped.lease_expires_at) == (None, None, None)
    event = only_event(outcome)
    assert (event.source, event.dest, event.trigger) == (state, S.SKIPPED, "manual_skip")
    assert event.reason.startswith("skipped by alice: customer asked")
    assert skipped.history[-1].reason == skipped.last_reason == event.reason
    # Not a notification, not a lease: neither is touched.
    assert skipped.applied_notifications == record.applied_notifications
    assert skipped.lease_id == record.lease_id
    # No timer ever looks at it again, not even to purge it.
    assert apply(skipped, timer(), now + timedelta(days=400)).record is skipped


def test_a_skip_without_a_note_names_only_the_actor() -> None:
    outcome = apply(record_in(S.SHIPPED), manual(A.SKIP, note=""), T0 + timedelta(days=2))
    assert only_event(outcome).reason == "skipped by alice"


def test_skipping_an_eligible_order_says_a_command_was_already_out() -> None:
    outcome = apply(record_in(S.ELIGIBLE), manual(A.SKIP), WINDOW_START)
    assert only_event(outcome).reason == "skipped by alice: customer asked (a send command was already out)"


@pytest.mark.parametrize(
    ("kind", "maybe_sent"),
    [(K.SENT, False), (K.NOT_AVAILABLE, True)],
    ids=["sent", "not-available-after-ambiguous"],
)
def test_amazons_sent_for_the_in_flight_command_still_wins_over_a_skip(kind: SendResultKind, maybe_sent: bool) -> None:
    eligible = record_in(S.ELIGIBLE)
    skipped = stored(apply(eligible, manual(A.SKIP), eligible.updated_at + timedelta(minutes=1)))
    later = skipped.updated_at + timedelta(minutes=2)
    outcome = apply(skipped, result(kind, eligible.lease_id, maybe_sent=maybe_sent), later)
    sent = stored(outcome)
    assert sent.state is S.SENT
    assert only_event(outcome).source is S.SKIPPED
    assert outcome.commands == ()
    # A sent order is purged after the retention like any other.
    assert sent.next_due == later + Policy().timing.retention


@pytest.mark.parametrize("kind", [k for k in K if k is not K.SENT])
def test_any_other_result_for_a_skipped_order_changes_nothing(kind: SendResultKind) -> None:
    eligible = record_in(S.ELIGIBLE)
    skipped = stored(apply(eligible, manual(A.SKIP), eligible.updated_at + timedelta(minutes=1)))
    outcome = apply(skipped, result(kind, eligible.lease_id), skipped.updated_at + timedelta(minutes=2))
    assert outcome.record is skipped
    assert (outcome.changed, outcome.commands, outcome.events) == (False, (), ())


@pytest.mark.parametrize("status", ["Shipped", "Canceled", "Unshipped"])
def test_later_notifications_never_bring_a_skipped_order_back(status: str) -> None:
    skipped = stored(apply(record_in(S.PENDING), manual(A.SKIP), T0 + timedelta(hours=1)))
    outcome = apply(skipped, changed(status, event_time=T0 + timedelta(days=3)), T0 + timedelta(days=3))
    after = stored(outcome)
    assert after.state is S.SKIPPED
    assert (outcome.commands, outcome.events, after.next_due) == ((), (), None)


@pytest.mark.parametrize("state", TERMINAL)
def test_skip_of_a_finished_order_is_refused_and_audited(state: OrderState) -> None:
    record = record_in(state)
    outcome = apply(record, manual(A.SKIP), WINDOW_END)
    reason = f"skip refused: order is already {state.value} (requested by alice: customer asked)"
    assert_refused(record, outcome, Trigger.MANUAL_SKIP, reason)


def test_a_skip_replayed_after_it_took_effect_is_a_refusal_not_a_second_skip() -> None:
    skipped = stored(apply(record_in(S.WAITING), manual(A.SKIP), WINDOW_START + timedelta(days=1)))
    again = apply(skipped, manual(A.SKIP), WINDOW_START + timedelta(days=1, seconds=1))
    assert_refused(
        skipped,
        again,
        Trigger.MANUAL_SKIP,
        "skip refused: order is already skipped (requested by alice: customer asked)",
    )


# --- send now -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.SHIPPED, S.WAITING])
def test_send_now_issues_a_command_at_once_like_a_due_timer(state: OrderState) -> None:
    hours = SellerPolicy(delay_days=10, send_hours=SendHours(start_hour=20, end_hour=21))
    policy = Policy(seller=hours)
    record = record_in(state, policy)
    now = max(WINDOW_START, record.updated_at) + timedelta(minutes=1)
    assert record.due_at is not None and record.due_at > now  # not due by the schedule
    outcome = apply(record, manual(A.SEND_NOW), now, policy)
    eligible = stored(outcome)
    assert eligible.state is S.ELIGIBLE
    (command,) = outcome.commands
    assert command.issued_at == now  # neither the seller's delay nor its send hours hold it back
    assert command.lease_id == eligible.lease_id == record.lease_id + 1
    assert command.deadline == eligible.window_end == WINDOW_END
    assert command.maybe_sent == record.maybe_sent
    assert eligible.next_due == eligible.lease_expires_at == now + policy.timing.lease_timeout
    assert eligible.commands_issued == record.commands_issued + 1
    event = only_event(outcome)
    assert (event.source, event.dest, event.trigger) == (state, S.ELIGIBLE, "manual_send")
    assert event.reason == "send now requested by alice: customer asked"


def test_send_now_at_the_very_start_of_the_window_is_allowed() -> None:
    record = record_in(S.SHIPPED, LATE_FIRST_CHECK)
    assert len(apply(record, manual(A.SEND_NOW), WINDOW_START, LATE_FIRST_CHECK).commands) == 1


def test_a_send_now_replayed_after_it_took_effect_is_refused_and_issues_nothing() -> None:
    record = record_in(S.SHIPPED, LATE_FIRST_CHECK)
    eligible = stored(apply(record, manual(A.SEND_NOW), WINDOW_START, LATE_FIRST_CHECK))
    again = apply(eligible, manual(A.SEND_NOW), WINDOW_START + timedelta(seconds=1), LATE_FIRST_CHECK)
    assert_refused(
        eligible,
        again,
        Trigger.MANUAL_SEND,
        "send now refused: a send is already in flight (requested by alice: customer asked)",
    )


def test_after_send_now_the_old_lease_is_stale_and_the_new_one_counts() -> None:
    waiting = record_in(S.WAITING)
    now = waiting.updated_at + timedelta(minutes=1)
    eligible = stored(apply(waiting, manual(A.SEND_NOW), now))
    stale = apply(eligible, result(K.NOT_YET_AVAILABLE, waiting.lease_id), now + timedelta(minutes=1))
    assert stale.record is eligible and not stale.changed
    answered = stored(apply(eligible, result(K.NOT_YET_AVAILABLE, eligible.lease_id), now + timedelta(minutes=1)))
    assert answered.state is S.WAITING


@pytest.mark.parametrize(
    ("state", "now", "why"),
    [
        (S.PENDING, WINDOW_START, "not shipped yet"),
        (S.SHIPPED, WINDOW_START - timedelta(microseconds=1), f"window opens {format_datetime(WINDOW_START)}"),
        (S.SHIPPED, WINDOW_END, "window closed"),
        (S.WAITING, WINDOW_END + timedelta(days=1), "window closed"),
        (S.ELIGIBLE, WINDOW_START + timedelta(days=1), "a send is already in flight"),
        *[(s, WINDOW_START + timedelta(days=1), f"order is already {s.value}") for s in TERMINAL],
    ],
    ids=lambda v: v.value if isinstance(v, S) else "",
)
def test_send_now_is_refused_outside_the_window_or_the_right_state(state: OrderState, now: datetime, why: str) -> None:
    record = record_in(state)
    outcome = apply(record, manual(A.SEND_NOW, note=""), now)
    assert_refused(record, outcome, Trigger.MANUAL_SEND, f"send now refused: {why} (requested by alice)")


# --- re-check -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.SHIPPED, S.WAITING])
def test_recheck_makes_the_order_due_now_and_the_timer_then_applies_the_normal_rules(state: OrderState) -> None:
    record = record_in(state, LATE_FIRST_CHECK)
    now = max(WINDOW_START, record.updated_at) + timedelta(hours=1)
    outcome = apply(record, manual(A.RECHECK), now, LATE_FIRST_CHECK)
    due = stored(outcome)
    assert due.state is state
    assert outcome.commands == ()
    assert due.due_at == due.next_due == now
    event = only_event(outcome)
    assert (event.source, event.dest, event.trigger) == (state, state, "manual_recheck")
    assert event.reason == "re-check requested by alice: customer asked"
    assert due.history[-1].trigger == "manual_recheck"
    assert due.lease_id == record.lease_id
    tick = apply(due, timer(), now + timedelta(seconds=2), LATE_FIRST_CHECK)
    assert stored(tick).state is S.ELIGIBLE
    assert len(tick.commands) == 1


def test_a_recheck_after_the_window_closed_lets_the_timer_expire_the_order() -> None:
    record = record_in(S.WAITING)
    now = WINDOW_END + timedelta(minutes=1)
    due = stored(apply(record, manual(A.RECHECK), now))
    tick = apply(due, timer(), now)
    assert stored(tick).state is S.EXPIRED
    assert tick.commands == ()


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (S.PENDING, "not shipped yet"),
        (S.ELIGIBLE, "a send is already in flight"),
        *[(s, f"order is already {s.value}") for s in TERMINAL],
    ],
    ids=lambda v: v.value if isinstance(v, S) else "",
)
def test_recheck_is_refused_unless_shipped_or_waiting(state: OrderState, why: str) -> None:
    record = record_in(state)
    outcome = apply(record, manual(A.RECHECK, actor="ops-token"), WINDOW_START + timedelta(days=1))
    reason = f"re-check refused: {why} (requested by ops-token: customer asked)"
    assert_refused(record, outcome, Trigger.MANUAL_RECHECK, reason)


# --- what manual actions leave alone --------------------------------------------------------------------


@pytest.mark.parametrize("action", list(A))
def test_a_manual_action_leaves_notification_dedup_alone(action: ManualActionKind) -> None:
    first = changed("Shipped")
    record = stored(apply(None, first, T0 + timedelta(days=1)))
    after = stored(apply(record, manual(action), WINDOW_START))
    assert after.applied_notifications == record.applied_notifications == (first.notification_id,)
    replay = apply(after, first, WINDOW_START + timedelta(minutes=1))
    assert replay.record is after
    assert (replay.changed, replay.commands, replay.events) == (False, (), ())


def test_only_shipped_or_waiting_orders_can_be_commanded_by_hand() -> None:
    (sources,) = [src for trigger, src, _dest in TRANSITIONS if trigger is Trigger.MANUAL_SEND]
    assert sorted(sources) == [S.SHIPPED, S.WAITING]
    skip_sources = [src for trigger, src, _dest in TRANSITIONS if trigger is Trigger.MANUAL_SKIP]
    assert skip_sources == [ACTIVE]
