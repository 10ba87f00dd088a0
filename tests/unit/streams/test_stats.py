"""The funnel counters (streams/stats.py): moved with every record write, equal to a rebuild from the records, summed
across workers; and the web API's tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from statemachine import OrderRecord, OrderState
from statemachine.record import Transition
from streams.orders import encode_record, record_json
from streams.stats import (
    AlertWindows,
    Contribution,
    PartitionStats,
    RecentActivity,
    empty_summary,
    merge,
    with_ratios,
)
from streams.web.auth import Tokens, internal_token, presented_token

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
US, DE = "ATVPDKIKX0DER", "A1PA6795UKMFR9"


def order(n: int, state: OrderState, *, seller: str = "S1", marketplace: str = US, **changes: Any) -> OrderRecord:
    fields: dict[str, Any] = {
        "seller_id": seller,
        "order_id": f"111-0000000-{n:07d}",
        "marketplace_id": marketplace,
        "fulfillment": "MFN",
        "state": state,
        "amazon_status": "Shipped",
        "last_event_time": NOW - timedelta(days=10),
        "window_start": NOW - timedelta(days=2),
        "window_end": NOW + timedelta(hours=30),
        "created_at": NOW - timedelta(days=10),
        "updated_at": NOW - timedelta(days=1),
    }
    fields.update(changes)
    return OrderRecord(**fields)


def sent_at(at: datetime) -> Transition:
    return Transition(at=at, source=OrderState.ELIGIBLE, dest=OrderState.SENT, trigger="confirm_sent", reason="sent")


def test_the_send_day_counts_for_no_sends() -> None:
    stats = PartitionStats()
    stats.move(0, None, order(1, OrderState.SENT, history=(sent_at(NOW - timedelta(hours=30)),)))
    windows = AlertWindows(closing_hours=48, recent_days=3)
    assert stats.snapshot(NOW, windows)["S1"][US]["alert"]["sent"] == 1
    rebuilt = PartitionStats()
    rebuilt.rebuild(0, [Contribution.from_json(record_json(encode_record(order(1, OrderState.SENT, history=(
        sent_at(NOW - timedelta(hours=30)),)))))])  # fmt: skip
    assert rebuilt.snapshot(NOW, windows) == stats.snapshot(NOW, windows)


def funnel(stats: PartitionStats, seller: str = "S1", marketplace: str = US) -> dict[str, int]:
    return dict(stats.snapshot(NOW)[seller][marketplace]["funnel"])


def test_a_record_moving_through_states_moves_the_counters() -> None:
    stats = PartitionStats()
    shipped = order(1, OrderState.SHIPPED, next_due=NOW + timedelta(hours=1))
    stats.move(0, None, shipped)
    eligible = shipped.model_copy(update={"state": OrderState.ELIGIBLE, "next_due": None})
    stats.move(0, shipped, eligible)
    sent = eligible.model_copy(update={"state": OrderState.SENT})
    stats.move(0, eligible, sent)
    counts = funnel(stats)
    assert counts["sent"] == 1 and counts["eligible"] == 0 and counts["shipped"] == 0 and counts["received"] == 1
    summary = stats.snapshot(NOW)["S1"][US]
    assert summary["coverage"]["7d"] == {"eligible": 1, "solicited": 1}
    assert summary["closing_48h_unsent"] == 0  # sent: nothing left to close


def test_the_counters_equal_a_rebuild_from_the_stored_records() -> None:
    records = [
        order(1, OrderState.SENT),
        order(2, OrderState.WAITING, next_due=NOW + timedelta(days=1)),
        order(3, OrderState.CANCELED),
        order(4, OrderState.ELIGIBLE, marketplace=DE),
        order(5, OrderState.PENDING, window_start=None, window_end=None, next_due=NOW + timedelta(days=3)),
        order(6, OrderState.EXPIRED, window_start=NOW - timedelta(days=40), window_end=NOW - timedelta(days=5)),
    ]
    moved = PartitionStats()
    for record in records:
        moved.move(3, None, record)
    rebuilt = PartitionStats()
    contributions = [Contribution.from_json(record_json(encode_record(r))) for r in records]
    assert rebuilt.rebuild(3, [c for c in contributions if c is not None]) == len(records)
    assert rebuilt.snapshot(NOW) == moved.snapshot(NOW)
    assert rebuilt.counted() == {3}


def test_coverage_closing_and_the_alert_windows() -> None:
    stats = PartitionStats()
    stats.move(0, None, order(1, OrderState.SENT))
    stats.move(0, None, order(2, OrderState.WAITING, next_due=NOW))  # closes in 30 h, unsent
    stats.move(0, None, order(3, OrderState.CANCELED))  # never solicitable: not in coverage
    stats.move(0, None, order(4, OrderState.SHIPPED, window_start=NOW - timedelta(days=20), next_due=NOW))
    stats.move(0, None, order(5, OrderState.SENT, history=(sent_at(NOW - timedelta(days=4)),)))  # sent long ago
    summary = stats.snapshot(NOW, AlertWindows(closing_hours=24, recent_days=3))["S1"][US]
    assert summary["coverage"]["1d"] == {"eligible": 0, "solicited": 0}
    assert summary["coverage"]["7d"] == {"eligible": 3, "solicited": 2}
    assert summary["coverage"]["30d"] == {"eligible": 4, "solicited": 2}
    assert summary["closing_48h_unsent"] == 2
    # 30 h is beyond a 24 h alert window; order 4 has waited 20 days in its window (order 2 only 2); order 5 was sent
    # 4 days ago, order 1 without a known send time.
    assert summary["alert"] == {"closing": 0, "stale": 1, "sent": 0}


def test_a_deleted_record_leaves_no_trace_and_a_revoked_partition_is_dropped() -> None:
    stats = PartitionStats()
    stats.rebuild(1, [])
    stats.rebuild(2, [])
    record = order(1, OrderState.SENT)
    stats.move(1, None, record)
    stats.move(2, None, order(2, OrderState.SENT))
    stats.move(1, record, None)
    assert funnel(stats)["received"] == 1
    stats.drop([2])
    assert stats.snapshot(NOW) == {} and stats.counted() == {1}


def test_the_forecast_counts_checks_per_day_and_overdue_ones_today() -> None:
    stats = PartitionStats()
    stats.move(0, None, order(1, OrderState.WAITING, next_due=NOW - timedelta(days=2)))
    stats.move(0, None, order(2, OrderState.SHIPPED, next_due=NOW + timedelta(days=1)))
    stats.move(1, None, order(3, OrderState.SHIPPED, next_due=NOW + timedelta(days=1)))
    stats.move(0, None, order(4, OrderState.ELIGIBLE, next_due=NOW + timedelta(days=1)))  # a lease, not a check
    stats.move(0, None, order(5, OrderState.SHIPPED, seller="S2", next_due=NOW))
    days = stats.forecast("S1", NOW, 3)
    assert days == {"2026-03-20": 1, "2026-03-21": 2, "2026-03-22": 0}


def test_workers_shares_add_up_and_ratios_are_recomputed() -> None:
    a, b = PartitionStats(), PartitionStats()
    a.move(0, None, order(1, OrderState.SENT))
    b.move(1, None, order(2, OrderState.EXPIRED))
    total = with_ratios(merge([a.snapshot(NOW)["S1"][US], b.snapshot(NOW)["S1"][US]]))
    assert total["funnel"]["received"] == 2 and total["funnel"]["sent"] == 1
    assert total["coverage"]["7d"] == {"eligible": 2, "solicited": 1, "ratio": 0.5}
    assert with_ratios(empty_summary())["coverage"]["30d"]["ratio"] is None


def test_recent_activity_counts_the_last_hour_and_day() -> None:
    activity = RecentActivity()
    activity.record("S1", "sent", NOW - timedelta(hours=25))  # too old
    activity.record("S1", "sent", NOW - timedelta(hours=5))
    activity.record("S1", "sent", NOW - timedelta(minutes=10))
    activity.record("S1", "throttled", NOW - timedelta(minutes=1))
    activity.record("S1", "dead_lettered", NOW)
    snapshot = activity.snapshot(NOW)["S1"]
    assert snapshot["sends"] == {"1h": 1, "1d": 2}
    assert snapshot["throttled"] == {"1h": 1, "1d": 1}
    assert snapshot["dead_lettered"] == 1


def test_tokens_name_the_caller_and_the_workers_share_one() -> None:
    tokens = Tokens({"ops": SecretStr("s3cret-ops"), "ci": SecretStr("ci-token")}, internal=internal_token("key"))
    assert tokens.who("s3cret-ops") == "ops" and tokens.who("ci-token") == "ci"
    assert tokens.who("s3cret-op") is None and tokens.who("") is None and tokens.who(None) is None
    assert tokens.who(tokens.internal()) == "worker"
    assert internal_token("key") == internal_token("key") != internal_token("other")
    assert internal_token("") is None
    assert presented_token("Bearer abc", "cookie") == "abc"
    assert presented_token("Basic abc", "cookie") is None  # a wrong scheme is not silently replaced by the cookie
    assert presented_token(None, "cookie") == "cookie"


def test_the_quick_read_of_a_stored_record_agrees_with_the_full_parse() -> None:
    # Issue 12 P4: a restart reads every record; its fields are picked out by a regular expression, not a JSON parse.
    import json

    from streams.stats import _picked

    def full(raw: bytes) -> Contribution | None:
        return Contribution._parsed(raw)

    sent = sent_at(NOW - timedelta(hours=3))
    reason = 'quoted "at" and {"at":"1999-01-01T00:00:00Z"} in a reason'
    earlier = Transition(
        at=NOW - timedelta(days=2), source=OrderState.SHIPPED, dest=OrderState.ELIGIBLE, trigger="cmd", reason=reason
    )
    records = [
        order(1, OrderState.SENT, history=(earlier, sent)),
        order(2, OrderState.WAITING, next_due=NOW + timedelta(days=1), history=(earlier,)),
        order(3, OrderState.PENDING, window_start=None, window_end=None),
        order(4, OrderState.SENT, history=()),  # sent without a history: no send time, read in full
        order(5, OrderState.SHIPPED, marketplace='odd "quoted" id', next_due=NOW + timedelta(days=2)),
    ]
    for record in records:
        raw = record_json(encode_record(record))
        assert Contribution.from_json(raw) == full(raw) == Contribution.of(record)
    assert _picked(record_json(encode_record(records[0]))) is not None  # the quick path was taken
    assert _picked(record_json(encode_record(records[3]))) is None
    assert _picked(record_json(encode_record(records[4]))) is None  # an escaped quote: read in full
    spaced = json.dumps(json.loads(record_json(encode_record(records[1]))), indent=1).encode()  # another writer
    assert _picked(spaced) is None and Contribution.from_json(spaced) == Contribution.of(records[1])
    bad = b'{"seller_id":"S","marketplace_id":"M","state":"shipped","window_start":"no","window_end":null,'
    assert Contribution.from_json(bad + b'"next_due":null,"history":[]}') is None
    nested = b'{"seller_id":"S","marketplace_id":"M","state":"shipped","later":{"state":"sent"},"window_start":null,'
    nested += b'"window_end":null,"next_due":null,"history":[]}'  # a field a later version might add, read in full
    assert _picked(nested) is None
    assert Contribution.from_json(nested) == Contribution.parts("S", "M", "shipped", None, None)


def test_a_move_alone_does_not_make_a_partition_s_counters_complete() -> None:
    # Issue 12 P4: after a restart the agent moves orders of partitions whose rebuild has not run yet; counted as
    # complete, those partitions were never rebuilt (counters holding only the moves) and /readyz answered too early.
    stats = PartitionStats()
    stats.move(4, None, order(1, OrderState.SHIPPED))
    assert stats.counted() == set()
    stats.rebuild(4, [Contribution.of(order(1, OrderState.SHIPPED)), Contribution.of(order(2, OrderState.SENT))])
    assert stats.counted() == {4} and funnel(stats)["received"] == 2  # the rebuild replaced the early move
    stats.drop([4])
    assert stats.counted() == set()
