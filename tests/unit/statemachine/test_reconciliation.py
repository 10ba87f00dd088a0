"""Reconciliation events (ORDER_CHANGE facts built from the Orders API) against the core's guarantees.

The core treats them as notifications: deduplicated by NotificationId, never moving an order backwards, never a second
command for a sent order; they fill delivery dates a notification lacked; the transitions they cause say where the
facts came from.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from statemachine import Decision, OrderChanged, OrderRecord, OrderState, Policy, apply, parse_notification
from statemachine.notification import RECONCILIATION_APPLICATION_ID
from statemachine.policy import window_from_delivery
from tests.support.factories import EDD, LDD, T0, WINDOW_END, WINDOW_START, changed, notification_dict, record_in

S = OrderState
RECONCILED_AT = T0 + timedelta(days=2)


def reconciled(status: str = "Shipped", **fields: object) -> OrderChanged:
    return changed(status, **fields).model_copy(update={"reconciled": True})  # type: ignore[arg-type]


def step(record: OrderRecord | None, event: OrderChanged, now: datetime = RECONCILED_AT) -> Decision:
    return apply(record, event, now, Policy())


def test_a_reconciled_notification_is_marked_and_an_amazon_one_is_not() -> None:
    ours = notification_dict()
    ours["NotificationMetadata"]["ApplicationId"] = RECONCILIATION_APPLICATION_ID
    assert OrderChanged.from_notification(parse_notification(json.dumps(ours))).reconciled is True
    assert OrderChanged.from_notification(parse_notification(json.dumps(notification_dict()))).reconciled is False


def test_shipped_for_an_order_the_live_feed_never_saw_schedules_it() -> None:
    decision = step(None, reconciled("Shipped"))
    record = decision.record
    assert record is not None and record.state is S.SHIPPED
    assert (record.window_start, record.window_end) == (WINDOW_START, WINDOW_END)
    assert record.due_at == WINDOW_START
    (event,) = decision.events
    assert (event.source, event.dest, event.trigger) == (S.NEW, S.SHIPPED, "ship")
    assert event.reason.endswith("(reconciliation)")


@pytest.mark.parametrize(
    ("status", "dest", "trigger"), [("Canceled", S.CANCELED, "cancel"), ("Pending", S.PENDING, "hold")]
)
def test_other_statuses_of_an_unknown_order_say_where_they_came_from(status: str, dest: S, trigger: str) -> None:
    (event,) = step(None, reconciled(status)).events
    assert (event.dest, event.trigger) == (dest, trigger)
    assert event.reason.endswith("(reconciliation)")


def test_shipped_for_a_sent_order_changes_no_state_and_commands_nothing() -> None:
    sent = record_in(S.SENT)
    decision = step(sent, reconciled("Shipped", event_time=RECONCILED_AT), RECONCILED_AT + timedelta(days=5))
    assert decision.record is not None and decision.record.state is S.SENT
    assert (decision.commands, decision.events) == ((), ())
    assert decision.record.next_due == sent.next_due


@pytest.mark.parametrize("state", [S.SHIPPED, S.ELIGIBLE, S.WAITING, S.SENT])
@pytest.mark.parametrize("status", ["Unshipped", "Pending", "PartiallyShipped"])
def test_an_earlier_status_never_moves_an_order_backwards(state: S, status: str) -> None:
    before = record_in(state)
    decision = step(before, reconciled(status, event_time=before.last_event_time + timedelta(hours=1)))
    assert decision.record is not None and decision.record.state is state
    assert (decision.commands, decision.events) == ((), ())
    assert decision.record.due_at == before.due_at and decision.record.lease_id == before.lease_id


def test_shipped_for_a_canceled_order_leaves_it_canceled() -> None:
    canceled = record_in(S.CANCELED)
    decision = step(canceled, reconciled("Shipped", event_time=T0 + timedelta(hours=30)))
    assert decision.record is not None and decision.record.state is S.CANCELED
    assert decision.events == ()


def test_the_same_reconciliation_again_is_a_duplicate() -> None:
    event = reconciled("Shipped", notification_id="recon-1")
    first = step(None, event).record
    again = step(first, event, RECONCILED_AT + timedelta(days=1))
    assert again.record is first and not again.changed


def test_delivery_dates_a_notification_lacked_recompute_the_window_and_the_first_check() -> None:
    without = step(None, changed("Shipped", edd=None, ldd=None), T0 + timedelta(days=1)).record
    assert without is not None and without.window_estimated
    # Reconciliation lists the order later; its LastUpdateDate is the shipment, older than the notification.
    decision = step(without, reconciled("Shipped", event_time=T0 + timedelta(hours=20)))
    record = decision.record
    assert record is not None and record.state is S.SHIPPED
    assert (record.earliest_delivery, record.latest_delivery) == (EDD, LDD)
    window = window_from_delivery(EDD, LDD)
    assert (record.window_start, record.window_end, record.window_estimated) == (window.start, window.end, False)
    assert record.due_at == WINDOW_START and record.next_due == WINDOW_START
    assert record.last_reason == "delivery dates changed; rescheduled (reconciliation)"
    assert decision.events == () and decision.commands == ()


def test_delivery_dates_bring_a_waiting_order_s_next_check_no_later_than_the_new_last_check() -> None:
    waiting = step(None, changed("Shipped", edd=None, ldd=None), T0 + timedelta(days=1)).record
    assert waiting is not None
    waiting = waiting.model_copy(update={"state": S.WAITING, "due_at": waiting.window_end})
    decision = step(waiting, reconciled("Shipped"))
    assert decision.record is not None and decision.record.state is S.WAITING
    assert decision.record.window_end == WINDOW_END
    assert decision.record.due_at == WINDOW_END - Policy().timing.last_check_margin
    assert decision.record.last_reason == "delivery dates changed (reconciliation)"
