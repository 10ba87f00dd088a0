"""Issue 9's defects in the pure core: each test fails on the code before its fix.

* 9.4 a crash after the POST: ``SendStarted`` marks the order "maybe sent"; a later "not offered" then means "create
  again", never "wait and expire";
* 9.5 input that parses but breaks later: implausible dates are an :class:`InvalidNotification`, not an
  ``OverflowError`` inside ``apply``;
* 9.10 an order that ships after the pending cut-off is still solicited;
* 9.13 records and events written by a newer version are read, and unknown fields kept.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from statemachine import (
    InvalidNotification,
    OrderChanged,
    OrderRecord,
    OrderState,
    SendResult,
    SendResultKind,
    SendStarted,
    apply,
    parse_notification,
)
from tests.support.factories import ORDER, SELLER, T0, WINDOW_END, changed, notification_dict, record_in, result, timer

S = OrderState
K = SendResultKind


def started(lease_id: int) -> SendStarted:
    return SendStarted(seller_id=SELLER, order_id=ORDER, lease_id=lease_id)


def eligible() -> OrderRecord:
    record = record_in(S.SHIPPED)
    assert record.due_at is not None
    out = apply(record, timer(), record.due_at)
    assert out.record is not None and out.record.state is S.ELIGIBLE
    return out.record


# --- 9.4: crash between Amazon's 201 and the result ---------------------------------------------------------------


def test_a_send_started_marks_the_order_maybe_sent_without_moving_it() -> None:
    record = eligible()
    out = apply(record, started(record.lease_id), record.updated_at)
    assert out.record is not None
    assert out.record.maybe_sent
    assert out.record.state is S.ELIGIBLE
    assert out.events == () and out.commands == ()
    again = apply(out.record, started(record.lease_id), record.updated_at)
    assert not again.changed  # idempotent


def test_after_a_crash_the_reissued_command_creates_directly() -> None:
    record = eligible()
    after_start = apply(record, started(record.lease_id), record.updated_at).record
    assert after_start is not None and after_start.lease_expires_at is not None
    # The worker died after the POST: no result ever comes; the lease runs out and the command is issued again.
    out = apply(after_start, timer(), after_start.lease_expires_at)
    (command,) = out.commands
    assert command.maybe_sent  # the sender will POST, and read 403 "not available" as sent
    sent = apply(out.record, result(K.NOT_AVAILABLE, command.lease_id, maybe_sent=True), after_start.lease_expires_at)
    assert sent.record is not None and sent.record.state is S.SENT


def test_not_offered_after_a_create_that_may_have_taken_effect_creates_again_instead_of_expiring() -> None:
    # Before the fix the redelivered (old) command's GET said "not offered", the order waited a day at a time and
    # ended expired although the buyer had been asked.
    record = eligible()
    maybe = apply(record, started(record.lease_id), record.updated_at).record
    assert maybe is not None
    out = apply(maybe, result(K.NOT_YET_AVAILABLE, maybe.lease_id), maybe.updated_at)
    (command,) = out.commands
    assert command.maybe_sent and command.lease_id == maybe.lease_id + 1
    assert out.record is not None and out.record.state is S.ELIGIBLE


def test_a_send_started_for_a_finished_order_changes_nothing() -> None:
    sent = record_in(S.SENT)
    assert not apply(sent, started(sent.lease_id), sent.updated_at).changed
    assert not apply(None, started(1), T0).changed


# --- 9.5: dates that parse but cannot be an order's ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        ({"EarliestDeliveryDate": "9999-12-31T00:00:00Z", "LatestDeliveryDate": "9999-12-31T00:00:00Z"}, "plausible"),
        ({"EarliestDeliveryDate": "1970-01-02T00:00:00Z", "LatestDeliveryDate": "1970-01-03T00:00:00Z"}, "plausible"),
        ({"EarliestDeliveryDate": "2026-03-10T00:00:00Z", "LatestDeliveryDate": "2026-03-01T00:00:00Z"}, "before"),
        ({"EarliestDeliveryDate": "2026-03-10T00:00:00Z", "LatestDeliveryDate": "2027-03-10T00:00:00Z"}, "apart"),
        ({"OrderStatus": "Shipped" * 40}, "at most 64"),
    ],
)
def test_implausible_facts_are_an_invalid_notification(summary: dict[str, str], reason: str) -> None:
    body = notification_dict()
    body["Payload"]["OrderChangeNotification"]["Summary"].update(summary)
    notification = parse_notification(json.dumps(body))
    with pytest.raises(InvalidNotification, match=reason):
        OrderChanged.from_notification(notification)


# --- 9.10: shipped after the pending cut-off ---------------------------------------------------------------------


def test_an_order_that_ships_after_expiring_pending_is_scheduled_again() -> None:
    pending = record_in(S.PENDING)
    assert pending.next_due is not None
    expired = apply(pending, timer(), pending.next_due).record
    assert expired is not None and expired.state is S.EXPIRED and expired.shipped_at is None
    ships_at = pending.next_due + timedelta(days=3)
    late = changed("Shipped", event_time=ships_at, edd=ships_at + timedelta(days=2), ldd=ships_at + timedelta(days=4))
    out = apply(expired, late, ships_at)
    assert out.record is not None and out.record.state is S.SHIPPED
    assert out.record.due_at == ships_at + timedelta(days=7)


def test_an_order_that_expired_after_shipping_stays_expired() -> None:
    expired = record_in(S.EXPIRED)
    late = changed("Shipped", event_time=WINDOW_END + timedelta(days=2))
    out = apply(expired, late, WINDOW_END + timedelta(days=2))
    assert out.record is not None and out.record.state is S.EXPIRED


# --- 9.13: rolling upgrades ---------------------------------------------------------------------------------------


def test_a_record_written_by_a_newer_version_is_read_and_its_new_fields_kept() -> None:
    stored = json.loads(record_in(S.SHIPPED).model_dump_json())
    stored["added_later"] = {"by": "v2"}
    record = OrderRecord.model_validate_json(json.dumps(stored))
    assert record.state is S.SHIPPED
    out = apply(record, timer(), record.due_at or T0)
    assert out.record is not None
    assert json.loads(out.record.model_dump_json())["added_later"] == {"by": "v2"}


def test_an_event_from_a_newer_version_is_read() -> None:
    newer = json.loads(result(K.SENT, 1).model_dump_json()) | {"added_later": 1}
    assert SendResult.model_validate_json(json.dumps(newer)).result is K.SENT


def test_plausible_facts_pass_with_or_without_delivery_dates() -> None:
    for summary in ({}, {"LatestDeliveryDate": None}, {"EarliestDeliveryDate": None, "LatestDeliveryDate": None}):
        body = notification_dict()
        body["Payload"]["OrderChangeNotification"]["Summary"].update(summary)
        facts = OrderChanged.from_notification(parse_notification(json.dumps(body)))
        assert facts.order_id == ORDER


def test_an_order_in_a_marketplace_the_seller_has_not_enabled_is_skipped_with_the_reason() -> None:
    record = eligible()
    reason = "marketplace A1PA6795UKMFR9 is not enabled for seller S"
    out = apply(record, result(K.NOT_ENABLED, record.lease_id, reason=reason), record.updated_at)
    assert out.record is not None and out.record.state is S.SKIPPED
    assert out.record.last_reason == f"not solicited: {reason}"
    assert out.commands == ()


# --- issue 10: marketplace rules ----------------------------------------------------------------------------------


def test_a_marketplace_override_changes_delay_and_send_hours_for_that_marketplace_only() -> None:
    from statemachine import MarketplacePolicy, Policy, SellerPolicy, SendHours

    de = "A1PA6795UKMFR9"
    seller = SellerPolicy(
        delay_days=5,
        send_hours=SendHours(start_hour=9, end_hour=17),
        marketplaces={de: MarketplacePolicy(delay_days=12, send_hours=None)},
    )
    assert seller.for_marketplace(de).delay_days == 12
    assert seller.for_marketplace(de).send_hours is None  # explicitly "any time"
    assert seller.for_marketplace("ATVPDKIKX0DER") is seller
    policy = Policy(seller=seller)
    us = apply(None, changed("Shipped"), T0, policy).record
    germany = apply(None, changed("Shipped", marketplace=de), T0, policy).record
    assert us is not None and germany is not None and us.earliest_delivery is not None
    assert germany.due_at == us.earliest_delivery + timedelta(days=12)
    assert us.due_at != germany.due_at


def test_a_switched_off_marketplace_is_not_enabled_and_inherits_nothing_else() -> None:
    from statemachine import MarketplacePolicy, SellerPolicy

    seller = SellerPolicy(delay_days=7, marketplaces={"A1PA6795UKMFR9": MarketplacePolicy(enabled=False)})
    assert not seller.enabled("A1PA6795UKMFR9")
    assert seller.enabled("ATVPDKIKX0DER")
    assert seller.for_marketplace("A1PA6795UKMFR9").delay_days == 7
