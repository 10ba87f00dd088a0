"""The guarantees of ``apply``: idempotency, no going backwards, cancel is final, leases, windows, re-checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from statemachine import (
    Decision,
    OrderRecord,
    OrderState,
    Policy,
    SellerPolicy,
    SendHours,
    SendResultKind,
    Timing,
    apply,
)
from statemachine.events import OrderChanged, SendResult, TimerFired
from tests.support.factories import (
    EDD,
    LDD,
    T0,
    WINDOW_END,
    WINDOW_START,
    changed,
    record_in,
    result,
    timer,
)

S = OrderState
K = SendResultKind
Event = OrderChanged | TimerFired | SendResult


def step(record: OrderRecord | None, event: Event, now: datetime, policy: Policy | None = None) -> Decision:
    return apply(record, event, now, policy or Policy())


def stored(outcome: Decision) -> OrderRecord:
    assert outcome.record is not None
    return outcome.record


# --- idempotency ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Unshipped", "Shipped", "Canceled", "Pending", "SomethingNew"])
def test_replaying_the_same_notification_changes_nothing(status: str) -> None:
    event = changed(status)
    first = stored(step(None, event, T0 + timedelta(days=1)))
    again = step(first, event, T0 + timedelta(days=2))
    assert again.record is first
    assert (again.changed, again.commands, again.events) == (False, (), ())


def test_a_notification_applied_long_ago_is_still_harmless_after_the_dedupe_set_rolled_over() -> None:
    policy = Policy(timing=Timing(notification_ids_limit=2))
    shipped_event = changed("Shipped")
    record = stored(step(None, shipped_event, T0 + timedelta(days=1), policy))
    for hours in (1, 2, 3):
        record = stored(step(record, changed("Shipped", event_time=T0 + timedelta(days=1, hours=hours)), T0, policy))
    assert shipped_event.notification_id not in record.applied_notifications
    assert len(record.applied_notifications) == 2
    replay = step(record, shipped_event, T0 + timedelta(days=2), policy)
    assert stored(replay).state is S.SHIPPED
    assert replay.commands == ()
    assert stored(replay).due_at == record.due_at


def test_a_duplicate_send_result_changes_nothing() -> None:
    eligible = record_in(S.ELIGIBLE)
    answer = result(K.NOT_YET_AVAILABLE, eligible.lease_id)
    waiting = stored(step(eligible, answer, eligible.updated_at))
    again = step(waiting, answer, waiting.updated_at + timedelta(seconds=5))
    assert again.record is waiting
    assert not again.changed


def test_an_early_or_repeated_timer_changes_nothing() -> None:
    shipped = record_in(S.SHIPPED)
    assert shipped.next_due is not None
    assert step(shipped, timer(), shipped.next_due - timedelta(hours=1)).record is shipped
    eligible = stored(step(shipped, timer(), shipped.next_due))
    assert step(eligible, timer(), shipped.next_due + timedelta(minutes=1)).record is eligible


def test_a_timer_or_result_for_an_unknown_order_stores_nothing() -> None:
    assert step(None, timer(), T0) == Decision(record=None)
    assert step(None, result(K.SENT, 1), T0) == Decision(record=None)


# --- never backwards -----------------------------------------------------------------------------------


def test_a_late_unshipped_after_shipped_does_not_move_the_order_back() -> None:
    shipped = stored(step(None, changed("Shipped", event_time=T0 + timedelta(days=2)), T0 + timedelta(days=2)))
    late = step(shipped, changed("Unshipped", event_time=T0 + timedelta(hours=1)), T0 + timedelta(days=2))
    assert stored(late).state is S.SHIPPED
    assert stored(late).amazon_status == "Shipped"  # the older notification does not overwrite newer facts
    assert stored(late).due_at == shipped.due_at
    assert late.events == ()


def test_a_newer_non_shipped_status_is_noted_but_does_not_unship() -> None:
    shipped = record_in(S.SHIPPED)
    newer = stored(step(shipped, changed("Pending", event_time=shipped.last_event_time + timedelta(days=1)), T0))
    assert newer.state is S.SHIPPED
    assert newer.amazon_status == "Pending"


def test_older_notifications_only_fill_gaps_in_the_facts() -> None:
    record = stored(step(None, changed("Unshipped", event_time=T0 + timedelta(days=2), edd=None, ldd=None), T0))
    assert record.earliest_delivery is None
    older = stored(step(record, changed("Unshipped", event_time=T0 + timedelta(days=1)), T0))
    assert (older.earliest_delivery, older.latest_delivery) == (EDD, LDD)
    conflicting = changed("Unshipped", event_time=T0, edd=EDD + timedelta(days=9), ldd=LDD + timedelta(days=9))
    assert stored(step(older, conflicting, T0)).earliest_delivery == EDD


# --- cancel is final -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.PENDING, S.SHIPPED, S.ELIGIBLE, S.WAITING])
def test_canceled_stops_an_active_order_for_good(state: OrderState) -> None:
    record = record_in(state)
    canceled = stored(step(record, changed("Canceled", event_time=record.last_event_time), record.updated_at))
    assert canceled.state is S.CANCELED
    # Nothing brings it back: a new Shipped notification, timers, results.
    later = [
        changed("Shipped", event_time=record.last_event_time + timedelta(days=1)),
        timer(),
        result(K.NOT_YET_AVAILABLE, canceled.lease_id),
        result(K.RETRYABLE_FAILURE, canceled.lease_id),
        timer(),
    ]
    now = canceled.updated_at
    for event in later:
        now += timedelta(days=3)
        out = step(canceled, event, now)
        assert out.commands == ()
        canceled = stored(out)
        assert canceled.state is S.CANCELED


def test_a_first_notification_that_is_canceled_records_a_canceled_order() -> None:
    out = step(None, changed("Canceled"), T0)
    assert stored(out).state is S.CANCELED
    assert [(e.source, e.dest) for e in out.events] == [(S.NEW, S.CANCELED)]


def test_a_sent_result_after_cancel_is_recorded_as_sent() -> None:
    eligible = record_in(S.ELIGIBLE)
    canceled = stored(step(eligible, changed("Canceled", event_time=eligible.last_event_time), eligible.updated_at))
    late = stored(step(canceled, result(K.SENT, eligible.lease_id), canceled.updated_at))
    assert late.state is S.SENT


# --- leases --------------------------------------------------------------------------------------------


def test_one_command_per_lease_and_a_lost_command_is_issued_again_after_the_lease_timeout() -> None:
    timing = Timing(lease_timeout=timedelta(minutes=30))
    policy = Policy(timing=timing)
    shipped = record_in(S.SHIPPED, policy)
    assert shipped.due_at is not None
    first = step(shipped, timer(), shipped.due_at, policy)
    (command,) = first.commands
    eligible = stored(first)
    assert command.lease_expires_at == shipped.due_at + timedelta(minutes=30)

    # Timers inside the lease do nothing.
    for minutes in (1, 10, 29):
        assert step(eligible, timer(), shipped.due_at + timedelta(minutes=minutes), policy).commands == ()

    # The lease runs out: a new command under a new lease.
    again = step(eligible, timer(), command.lease_expires_at, policy)
    (reissued,) = again.commands
    assert reissued.lease_id == command.lease_id + 1
    reissued_record = stored(again)
    assert reissued_record.state is S.ELIGIBLE
    assert reissued_record.commands_issued == 2

    # The first sender comes back late: its "not yet" is stale and ignored, its "sent" is the truth.
    assert step(reissued_record, result(K.NOT_YET_AVAILABLE, command.lease_id), command.lease_expires_at).record is (
        reissued_record
    )
    sent = stored(step(reissued_record, result(K.SENT, command.lease_id), command.lease_expires_at))
    assert sent.state is S.SENT
    # A sent order is never commanded again, whatever happens.
    for days in (1, 10, 100):
        out = step(sent, timer(), command.lease_expires_at + timedelta(days=days), policy)
        assert out.commands == ()


def test_a_run_of_reissues_keeps_one_history_entry() -> None:
    eligible = record_in(S.ELIGIBLE)
    record, now = eligible, eligible.updated_at
    for _ in range(5):
        assert record.lease_expires_at is not None
        now = record.lease_expires_at
        record = stored(step(record, timer(), now))
    assert record.commands_issued == 6
    assert [h.trigger for h in record.history] == ["ship", "command", "reissue"]
    assert record.history[-1].at == now


def test_a_window_that_closes_while_a_command_is_out_expires_the_order() -> None:
    eligible = record_in(S.ELIGIBLE)
    out = step(eligible, timer(), WINDOW_END + timedelta(seconds=1))
    assert stored(out).state is S.EXPIRED
    assert out.commands == ()
    assert "outstanding" in stored(out).last_reason


# --- window and timing ---------------------------------------------------------------------------------


def test_a_shipped_order_is_due_at_the_window_start_by_default_and_expires_when_the_window_passed() -> None:
    shipped = record_in(S.SHIPPED)
    assert (shipped.window_start, shipped.window_end) == (WINDOW_START, WINDOW_END)
    assert shipped.due_at == EDD + timedelta(days=5) == WINDOW_START
    assert not shipped.window_estimated
    expired = stored(step(shipped, timer(), WINDOW_END + timedelta(minutes=1)))
    assert expired.state is S.EXPIRED


@pytest.mark.parametrize(
    ("delay_days", "expected"),
    [(0, WINDOW_START), (5, WINDOW_START), (10, EDD + timedelta(days=10)), (29, EDD + timedelta(days=29))],
)
def test_the_seller_delay_is_clamped_into_the_window(delay_days: float, expected: datetime) -> None:
    policy = Policy(seller=SellerPolicy(delay_days=delay_days))
    assert record_in(S.SHIPPED, policy).due_at == expected


def test_a_delay_past_the_last_check_is_clamped_to_the_last_check() -> None:
    # Issue 9.3: the first check is never later than last_check_margin before the window closes.
    policy = Policy(seller=SellerPolicy(delay_days=29), timing=Timing(last_check_margin=timedelta(days=10)))
    assert record_in(S.SHIPPED, policy).due_at == WINDOW_END - timedelta(days=10)


@pytest.mark.parametrize("delay_days", [30, 45, 60])
def test_a_delay_that_cannot_fit_amazons_window_is_refused(delay_days: float) -> None:
    # Issue 9.3: delay_days >= 30 used to pass validation and then every order expired unchecked.
    with pytest.raises(ValueError, match="less than or equal to 29"):
        SellerPolicy(delay_days=delay_days)


def test_send_hours_move_the_due_time_into_the_marketplace_local_hours() -> None:
    # Germany, 9:00-12:00 Berlin time. The window starts at 12:00 UTC = 13:00 CET: outside, so the next day.
    policy = Policy(seller=SellerPolicy(send_hours=SendHours(start_hour=9, end_hour=12)))
    shipped = stored(step(None, changed("Shipped", marketplace="A1PA6795UKMFR9"), T0, policy))
    assert shipped.due_at is not None
    assert datetime(2026, 3, 11, 8, 0, tzinfo=UTC) <= shipped.due_at < datetime(2026, 3, 11, 11, 0, tzinfo=UTC)
    again = stored(step(None, changed("Shipped", marketplace="A1PA6795UKMFR9"), T0, policy))
    assert again.due_at == shipped.due_at  # the spread is stable per order


def test_orders_moved_into_send_hours_are_spread_over_them_not_piled_at_the_start() -> None:
    # Issue 9.9: every deferred order of a seller used to fall due at start_hour exactly.
    from statemachine.policy import within_send_hours

    hours = SendHours(start_hour=9, end_hour=17)
    night = datetime(2026, 3, 11, 5, 0, tzinfo=UTC)  # 22:00 the day before in Los Angeles
    deadline = night + timedelta(days=5)
    due = [within_send_hours(night, hours, "ATVPDKIKX0DER", deadline=deadline, seed=f"S/{i}") for i in range(400)]
    opens = datetime(2026, 3, 11, 16, 0, tzinfo=UTC)  # 09:00 PDT
    assert all(opens <= d < opens + timedelta(hours=8) for d in due)
    per_hour = {hour: sum(1 for d in due if (d - opens) // timedelta(hours=1) == hour) for hour in range(8)}
    assert min(per_hour.values()) >= 30  # about 50 an hour, not 400 at once


def test_not_yet_available_inside_the_window_rechecks_daily_until_the_deadline_then_expires() -> None:
    shipped = record_in(S.SHIPPED)
    record, now, checks = shipped, shipped.due_at, 0
    assert now is not None
    late = timedelta(milliseconds=50)  # a timer always fires a little after the due time
    while True:
        out = step(record, timer(), now + late)
        if not out.commands:
            record = stored(out)
            break
        (command,) = out.commands
        assert now + late < WINDOW_END  # every check happens inside the window
        record = stored(out)
        answer = step(record, result(K.NOT_YET_AVAILABLE, command.lease_id), now + late + timedelta(seconds=2))
        record = stored(answer)
        checks += 1
        assert record.state is S.WAITING
        assert record.due_at is not None
        assert record.due_at <= WINDOW_END
        now = record.due_at
    # Daily from the window start up to two hours before its end, then a few closer looks, and only then expired.
    assert (WINDOW_END - WINDOW_START).days + 1 <= checks <= (WINDOW_END - WINDOW_START).days + 12
    assert record.state is S.EXPIRED
    assert now == WINDOW_END
    assert record.checks == checks
    assert "window closed" in record.last_reason


def test_the_last_check_is_made_before_the_deadline_even_when_the_timer_is_late() -> None:
    # Issue 9.3: the last check was scheduled at the deadline, the timer fired a few ms later, and the order
    # expired "before it could be checked" although its window was open when the check was due.
    record = record_in(S.SHIPPED)
    assert record.due_at is not None
    waiting = stored(step(stored(step(record, timer(), record.due_at)), result(K.NOT_YET_AVAILABLE, 1), record.due_at))
    near_end = WINDOW_END - timedelta(hours=5)
    answer = stored(step(stored(step(waiting, timer(), near_end)), result(K.NOT_YET_AVAILABLE, 2), near_end))
    assert answer.due_at == WINDOW_END - timedelta(hours=2)
    fired = step(answer, timer(), answer.due_at + timedelta(seconds=30))
    assert [c.lease_id for c in fired.commands] == [3]  # checked, not expired


def test_an_order_without_delivery_dates_is_scheduled_from_an_estimate_and_the_api_decides() -> None:
    shipped_at = T0 + timedelta(days=1)
    event = changed("Shipped", fulfillment="AFN", edd=None, ldd=None, event_time=shipped_at)
    record = stored(step(None, event, shipped_at))
    assert record.window_estimated
    assert record.shipped_at == shipped_at
    assert record.due_at == shipped_at + timedelta(days=3 + 5)
    assert record.window_end == shipped_at + timedelta(days=7 + 30)
    # First check: not yet. Re-check a day later: offered and sent.
    assert record.due_at is not None
    out = step(record, timer(), record.due_at)
    waiting = stored(step(stored(out), result(K.NOT_YET_AVAILABLE, out.commands[0].lease_id), record.due_at))
    assert waiting.due_at == record.due_at + timedelta(days=1)
    assert waiting.due_at is not None
    out = step(waiting, timer(), waiting.due_at)
    sent = stored(step(stored(out), result(K.SENT, out.commands[0].lease_id), waiting.due_at))
    assert sent.state is S.SENT


def test_new_delivery_dates_reschedule_a_shipped_order_and_shorten_a_waiting_one() -> None:
    shipped = record_in(S.SHIPPED)
    later = changed("Shipped", event_time=shipped.last_event_time + timedelta(hours=1), edd=EDD + timedelta(days=2))
    moved = stored(step(shipped, later, shipped.updated_at))
    assert moved.due_at == EDD + timedelta(days=7)
    assert moved.last_reason == "delivery dates changed; rescheduled"

    waiting = record_in(S.WAITING)
    earlier_end = changed(
        "Shipped",
        event_time=waiting.last_event_time + timedelta(hours=1),
        edd=EDD - timedelta(days=25),
        ldd=EDD - timedelta(days=25),
    )
    shortened = stored(step(waiting, earlier_end, waiting.updated_at))
    assert shortened.window_end == EDD + timedelta(days=5)
    assert waiting.due_at is not None
    assert shortened.window_end < waiting.due_at
    assert shortened.due_at == shortened.window_end - Timing().last_check_margin

    eligible = record_in(S.ELIGIBLE)
    updated = stored(step(eligible, earlier_end, eligible.updated_at))
    assert updated.state is S.ELIGIBLE
    assert updated.window_end == EDD + timedelta(days=5)


def test_a_pending_order_that_never_ships_expires_after_the_pending_timeout() -> None:
    pending = record_in(S.PENDING)
    assert pending.next_due == T0 + timedelta(days=60)
    assert stored(step(pending, timer(), T0 + timedelta(days=59))).state is S.PENDING
    assert stored(step(pending, timer(), T0 + timedelta(days=60))).state is S.EXPIRED


def test_terminal_records_are_purged_after_the_retention() -> None:
    sent = record_in(S.SENT)
    assert sent.next_due == sent.history[-1].at + timedelta(days=90)
    assert not step(sent, timer(), sent.next_due - timedelta(seconds=1)).delete
    out = step(sent, timer(), sent.next_due)
    assert out.delete
    assert out.changed


# --- send results --------------------------------------------------------------------------------------


def test_retryable_failures_back_off_exponentially_up_to_the_cap_and_honour_retry_after() -> None:
    timing = Timing(retry_initial=timedelta(minutes=5), retry_max=timedelta(hours=1))
    policy = Policy(timing=timing)
    record = record_in(S.ELIGIBLE, policy)
    delays = []
    now = record.updated_at
    for _ in range(6):
        out = step(record, result(K.RETRYABLE_FAILURE, record.lease_id, reason="503"), now, policy)
        record = stored(out)
        assert record.due_at is not None
        delays.append(record.due_at - now)
        now = record.due_at
        record = stored(step(record, timer(), now, policy))
    assert delays == sorted(delays)
    assert delays[0] >= timedelta(minutes=5)
    assert delays[-1] == timedelta(hours=1)
    assert record.failures == 6
    out = step(record, result(K.RETRYABLE_FAILURE, record.lease_id, retry_after_seconds=3 * 3600), now, policy)
    assert stored(out).due_at == now + timedelta(hours=3)


def test_after_an_ambiguous_create_failure_the_next_command_creates_directly_and_not_available_means_sent() -> None:
    eligible = record_in(S.ELIGIBLE)
    assert eligible.maybe_sent is False
    failed = stored(
        step(
            eligible,
            result(K.RETRYABLE_FAILURE, eligible.lease_id, reason="500 after POST", maybe_sent=True),
            eligible.updated_at,
        )
    )
    assert failed.maybe_sent
    assert failed.due_at is not None
    out = step(failed, timer(), failed.due_at)
    (command,) = out.commands
    assert command.maybe_sent
    # A plain retryable failure later does not clear the flag.
    again = stored(step(stored(out), result(K.RETRYABLE_FAILURE, command.lease_id), failed.due_at))
    assert again.maybe_sent
    assert again.due_at is not None
    out = step(again, timer(), again.due_at)
    sent = stored(step(stored(out), result(K.NOT_AVAILABLE, out.commands[0].lease_id, maybe_sent=True), again.due_at))
    assert sent.state is S.SENT
    assert sent.last_reason.startswith("already solicited")


def test_a_success_or_not_yet_resets_the_failure_count() -> None:
    record = record_in(S.ELIGIBLE)
    failed_once = stored(step(record, result(K.RETRYABLE_FAILURE, record.lease_id), record.updated_at))
    assert failed_once.failures == 1
    assert failed_once.due_at is not None
    again = stored(step(failed_once, timer(), failed_once.due_at))
    not_yet = stored(step(again, result(K.NOT_YET_AVAILABLE, again.lease_id), again.updated_at))
    assert not_yet.failures == 0


def test_failures_near_the_end_of_the_window_get_a_last_try_at_the_deadline_then_expire() -> None:
    eligible = record_in(S.ELIGIBLE)
    near_end = WINDOW_END - timedelta(minutes=1)
    out = step(eligible, result(K.RETRYABLE_FAILURE, eligible.lease_id), near_end)
    assert stored(out).due_at == WINDOW_END
    later = stored(step(stored(out), timer(), WINDOW_END))
    expired = stored(step(later, result(K.RETRYABLE_FAILURE, later.lease_id), WINDOW_END + timedelta(seconds=1)))
    assert expired.state is S.EXPIRED
    assert expired.last_reason.startswith("window closed (retryable failure")


def test_deferred_waits_for_the_given_time_or_a_recheck_interval() -> None:
    eligible = record_in(S.ELIGIBLE)
    now = eligible.updated_at
    paused = stored(step(eligible, result(K.DEFERRED, eligible.lease_id, reason="seller paused"), now))
    assert paused.due_at == now + timedelta(days=1)
    assert paused.last_reason == "deferred: seller paused"
    later = stored(step(eligible, result(K.DEFERRED, eligible.lease_id, retry_after_seconds=600), now))
    assert later.due_at == now + timedelta(minutes=10)


def test_not_available_after_the_window_expires_instead_of_claiming_sent() -> None:
    eligible = record_in(S.ELIGIBLE)
    out = stored(step(eligible, result(K.NOT_AVAILABLE, eligible.lease_id), WINDOW_END + timedelta(hours=1)))
    assert out.state is S.EXPIRED


def test_outside_window_late_in_the_window_expires_and_early_rechecks() -> None:
    eligible = record_in(S.ELIGIBLE)
    early = stored(step(eligible, result(K.OUTSIDE_WINDOW, eligible.lease_id), WINDOW_START + timedelta(hours=1)))
    assert early.state is S.WAITING
    late = stored(step(eligible, result(K.OUTSIDE_WINDOW, eligible.lease_id), WINDOW_END - timedelta(days=2)))
    assert late.state is S.EXPIRED


def test_sent_keeps_the_request_id_and_a_readable_history() -> None:
    sent = record_in(S.SENT)
    assert sent.last_request_id == "rid-1"
    assert [h.request_id for h in sent.history] == [None, None, "rid-1"]  # the call behind each step, if any
    assert [(h.source.value, h.dest.value) for h in sent.history] == [
        ("new", "shipped"),
        ("shipped", "eligible"),
        ("eligible", "sent"),
    ]


def test_the_history_is_bounded() -> None:
    policy = Policy(timing=Timing(history_limit=3))
    record = record_in(S.ELIGIBLE, policy)
    now = record.updated_at
    for _ in range(5):
        record = stored(step(record, result(K.RETRYABLE_FAILURE, record.lease_id), now, policy))
        assert record.due_at is not None
        now = record.due_at
        record = stored(step(record, timer(), now, policy))
    assert len(record.history) == 3


# --- misuse --------------------------------------------------------------------------------------------


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        apply(None, timer(), datetime(2026, 1, 1))


def test_an_event_for_another_order_is_refused() -> None:
    record = record_in(S.SHIPPED)
    other = TimerFired(seller_id=record.seller_id, order_id="111-0000000-0000000")
    with pytest.raises(ValueError, match="applied to the record of"):
        apply(record, other, T0)
