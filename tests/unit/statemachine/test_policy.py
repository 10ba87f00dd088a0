"""Timing policy and marketplace data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from devstack.spapi_models import MARKETPLACES as MARKETPLACE_TABLE
from statemachine import OrderState, SendHours, Timing
from statemachine.marketplaces import MARKETPLACES, Region, marketplace, region_of
from statemachine.policy import estimated_delivery, retry_delay, window_for, window_from_delivery, within_send_hours
from statemachine.record import TERMINAL_STATES
from tests.support.factories import EDD, LDD, SELLER, T0, record_in


def test_window_is_five_days_after_the_earliest_to_thirty_days_after_the_latest_delivery() -> None:
    window = window_from_delivery(EDD, LDD)
    assert (window.start, window.end, window.estimated) == (EDD + timedelta(days=5), LDD + timedelta(days=30), False)


@pytest.mark.parametrize("latest", [None, EDD - timedelta(days=1)])
def test_a_missing_or_inconsistent_latest_delivery_date_gives_the_short_window(latest: datetime | None) -> None:
    assert window_from_delivery(EDD, latest).end == EDD + timedelta(days=30)


def test_orders_without_delivery_dates_get_an_estimated_window_from_the_shipment() -> None:
    timing = Timing(afn_transit_days=2, afn_max_transit_days=6)
    window = window_for(None, None, T0, timing)
    assert (window.start, window.end, window.estimated) == (T0 + timedelta(days=7), T0 + timedelta(days=36), True)
    assert estimated_delivery(T0, Timing(afn_transit_days=4, afn_max_transit_days=1)) == (
        T0 + timedelta(days=4),
        T0 + timedelta(days=4),
    )


def test_send_hours_validate() -> None:
    with pytest.raises(ValidationError, match="start_hour must be before end_hour"):
        SendHours(start_hour=20, end_hour=8)
    with pytest.raises(ValidationError):
        SendHours(start_hour=-1, end_hour=8)


@pytest.mark.parametrize(
    ("marketplace_id", "when", "expected"),
    [
        # US (Los Angeles, UTC-8 in winter): 03:00 UTC = 19:00 local, after hours -> next day 09:00 local.
        ("ATVPDKIKX0DER", datetime(2026, 1, 10, 3, 0, tzinfo=UTC), datetime(2026, 1, 10, 17, 0, tzinfo=UTC)),
        # Japan (UTC+9): 23:00 UTC = 08:00 local, before hours -> same day 09:00 local.
        ("A1VC38T7YXB528", datetime(2026, 1, 10, 23, 0, tzinfo=UTC), datetime(2026, 1, 11, 0, 0, tzinfo=UTC)),
        # Germany in summer (UTC+2): 10:00 UTC = 12:00 local, inside hours -> unchanged.
        ("A1PA6795UKMFR9", datetime(2026, 7, 1, 10, 0, tzinfo=UTC), datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
        # UK across the spring DST change: Saturday 20:00 UTC (after hours) -> Sunday 09:00 BST = 08:00 UTC.
        ("A1F83G8C2ARO7P", datetime(2026, 3, 28, 20, 0, tzinfo=UTC), datetime(2026, 3, 29, 8, 0, tzinfo=UTC)),
        # Unknown marketplace: hours are taken in UTC.
        ("AUNKNOWN", datetime(2026, 1, 10, 3, 0, tzinfo=UTC), datetime(2026, 1, 10, 9, 0, tzinfo=UTC)),
    ],
)
def test_due_times_move_to_the_next_allowed_local_hour(marketplace_id: str, when: datetime, expected: datetime) -> None:
    hours = SendHours(start_hour=9, end_hour=18)
    assert within_send_hours(when, hours, marketplace_id, deadline=when + timedelta(days=3)) == expected


def test_send_hours_never_push_a_send_past_the_deadline() -> None:
    when = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
    hours = SendHours(start_hour=9, end_hour=18)
    assert within_send_hours(when, hours, "ATVPDKIKX0DER", deadline=when + timedelta(hours=1)) == when
    assert within_send_hours(when, None, "ATVPDKIKX0DER", deadline=when) == when


def test_retry_delay_grows_is_capped_and_is_jittered_per_order() -> None:
    timing = Timing(retry_initial=timedelta(minutes=1), retry_max=timedelta(minutes=30))
    delays = [retry_delay(n, timing, "S/1") for n in range(1, 10)]
    assert delays == sorted(delays)
    assert timedelta(minutes=1) <= delays[0] <= timedelta(minutes=1.25)
    assert delays[-1] == timedelta(minutes=30)
    spread = {retry_delay(1, timing, f"S/{i}") for i in range(50)}
    assert len(spread) > 25
    assert retry_delay(1, timing, "S/7") == retry_delay(1, timing, "S/7")
    assert retry_delay(10_000, timing, "S/7") == timedelta(minutes=30)


def test_the_marketplace_table_matches_the_reference() -> None:
    assert len(MARKETPLACES) == 23
    assert region_of("A21TJRUUN4KGV") is Region.EU  # India uses the EU endpoint
    assert region_of("A1VC38T7YXB528") is Region.FE
    assert region_of("ATVPDKIKX0DER") is Region.NA
    assert region_of("NOPE") is None
    assert marketplace("NOPE") is None
    for entry in MARKETPLACES.values():
        assert entry.zone.key == entry.time_zone  # every zone name resolves


@pytest.mark.spapi_models
def test_every_marketplace_id_of_amazons_table_is_in_ours_with_its_region() -> None:
    lines = [line.split("\t") for line in MARKETPLACE_TABLE.read_text().splitlines() if not line.startswith("#")]
    rows = [(mid, region) for _cc, _country, mid, region in lines]
    assert len(rows) == 23
    assert {mid: Region(region) for mid, region in rows} == {m.marketplace_id: m.region for m in MARKETPLACES.values()}


def test_records_know_their_key_and_whether_they_are_terminal() -> None:
    shipped = record_in(OrderState.SHIPPED)
    assert shipped.key == f"{SELLER}/{shipped.order_id}"
    assert not shipped.terminal
    assert record_in(OrderState.SENT).terminal
    assert OrderState.SENT in TERMINAL_STATES


def test_a_command_carries_the_order_key() -> None:
    from statemachine import TimerFired, apply

    shipped = record_in(OrderState.SHIPPED)
    assert shipped.next_due is not None
    (command,) = apply(shipped, TimerFired(seller_id=SELLER, order_id=shipped.order_id), shipped.next_due).commands
    assert command.key == shipped.key
