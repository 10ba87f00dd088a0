"""Random event sequences (notifications in any order, duplicates, timers, late and stale results) never
break the core's guarantees."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine import OrderRecord, OrderState, SendResultKind, apply
from tests.support.factories import EDD, LDD, T0, changed, result, timer

S = OrderState

STATUSES = ["Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled", "Unfulfillable", "Brandnew"]

notification_step = st.tuples(
    st.just("notify"),
    st.sampled_from(STATUSES),
    st.integers(min_value=-5 * 24, max_value=40 * 24),  # event time, hours after T0
    st.sampled_from(["MFN", "AFN"]),
    st.booleans(),  # replay an earlier notification id
)
timer_step = st.tuples(st.just("timer"))
result_step = st.tuples(
    st.just("result"),
    st.sampled_from(list(SendResultKind)),
    st.integers(min_value=-2, max_value=1),  # lease offset: 0 = current lease
    st.booleans(),  # maybe_sent
)
steps = st.lists(
    st.tuples(
        st.one_of(notification_step, timer_step, result_step),
        st.integers(min_value=0, max_value=6 * 24 * 60),  # minutes to advance the clock
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_histories_keep_every_guarantee(plan: list[tuple[tuple[Any, ...], int]]) -> None:
    record: OrderRecord | None = None
    now = T0
    seen_ids: list[str] = []
    last_lease = 0
    was_sent = was_canceled = left_pending = False

    for action, advance in plan:
        now += timedelta(minutes=advance)
        if action[0] == "notify":
            _, status, hours, fulfillment, replay = action
            afn = fulfillment == "AFN"
            event = changed(
                status,
                event_time=T0 + timedelta(hours=hours),
                fulfillment=fulfillment,
                edd=None if afn else EDD,
                ldd=None if afn else LDD,
                notification_id=seen_ids[-1] if replay and seen_ids else None,
            )
            seen_ids.append(event.notification_id)
        elif action[0] == "timer":
            event = timer()
        else:
            _, kind, offset, ambiguous = action
            lease = (record.lease_id if record else 0) + offset
            event = result(kind, lease, maybe_sent=ambiguous)

        before = record
        outcome = apply(record, event, now)
        if outcome.delete:
            assert before is not None
            assert before.terminal
            record = None  # purged: a later notification starts a new life for the key
            last_lease = 0
            was_sent = was_canceled = left_pending = False
            continue
        record = outcome.record

        if record is None:
            assert before is None
            continue
        assert record.state is not S.NEW
        assert record.next_due is not None
        if record.state in (S.SHIPPED, S.WAITING):
            assert record.due_at is not None
            assert record.window_end is not None
            assert record.due_at <= record.window_end
        if record.state is S.ELIGIBLE:
            assert record.lease_expires_at is not None
            assert record.lease_expires_at > now - timedelta(seconds=1) or not outcome.commands

        for command in outcome.commands:
            assert not was_sent, "a sent order was commanded again"
            assert not was_canceled, "a canceled order was commanded"
            assert command.lease_id == last_lease + 1, "one command per lease, leases in order"
            assert before is not None
            if before.state is S.ELIGIBLE:  # a re-issue only after the previous lease ran out
                assert before.lease_expires_at is not None
                assert now >= before.lease_expires_at
            else:
                assert before.state in (S.SHIPPED, S.WAITING)
            last_lease = command.lease_id
        assert len(outcome.commands) <= 1

        if was_sent:
            assert record.state is S.SENT
        if left_pending:
            assert record.state is not S.PENDING, "an order went backwards to pending"
        if was_canceled and record.state is not S.SENT:
            assert record.state is S.CANCELED
        was_sent = was_sent or record.state is S.SENT
        was_canceled = was_canceled or record.state is S.CANCELED
        left_pending = left_pending or record.state is not S.PENDING
        assert [(e.source, e.dest) for e in outcome.events] == [
            (h.source, h.dest) for h in record.history[len(record.history) - len(outcome.events) :]
        ]
