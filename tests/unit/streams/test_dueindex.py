"""The due-time index on a real RocksDB (rocksdict, raw mode, as Faust opens it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rocksdict import Options, Rdict

from streams.dueindex import PREFIX, DueEntry, DueScanner, active_partitions, index_key, scan_due, upper_bound

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    database = Rdict(str(tmp_path / "due-index-0.db"), options=options)
    database.put(b"__faust\x00offset__", b"42")  # Faust keeps its offset in the same DB
    yield database
    database.close()


class CountingDB:
    """Counts iterator steps, to show that a scan's cost follows the due entries only."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.steps = 0

    def iter(self, read_opt: Any) -> Any:
        outer = self
        inner = self.db.iter(read_opt)

        class Iterator:
            def seek(self, key: bytes) -> None:
                inner.seek(key)

            def valid(self) -> bool:
                return bool(inner.valid())

            def key(self) -> bytes:
                return bytes(inner.key())

            def next(self) -> None:
                outer.steps += 1
                inner.next()

        return Iterator()


def test_keys_sort_by_due_time_and_round_trip() -> None:
    early = index_key(NOW, "S1/111-0000000-0000002")
    late = index_key(NOW + timedelta(milliseconds=1), "S1/111-0000000-0000001")
    assert early < late < upper_bound(NOW + timedelta(seconds=1))
    entry = DueEntry.parse(late)
    assert entry.order_key == "S1/111-0000000-0000001"
    assert entry.due_ms == int((NOW + timedelta(milliseconds=1)).timestamp() * 1000)
    with pytest.raises(ValueError, match="not a due-index key"):
        DueEntry.parse(b"__faust\x00offset__")


def test_a_scan_returns_only_what_is_due_in_due_order(db: Any) -> None:
    for minutes, order in [(-5, "A"), (10, "B"), (-1, "C"), (0, "D")]:
        db.put(index_key(NOW + timedelta(minutes=minutes), f"S/{order}"), b"")
    assert [e.order_key for e in scan_due(db, start=PREFIX, now=NOW, limit=100)] == ["S/A", "S/C", "S/D"]
    assert len(scan_due(db, start=PREFIX, now=NOW, limit=2)) == 2


def test_a_million_orders_not_yet_due_cost_nothing_per_tick(db: Any) -> None:
    # 200,000 future entries stand in for a million: the scan must not visit any of them.
    for i in range(200_000):
        db.put(index_key(NOW + timedelta(days=1, seconds=i), f"S/future-{i}"), b"")
    for i in range(7):
        db.put(index_key(NOW - timedelta(seconds=i), f"S/due-{i}"), b"")
    counting = CountingDB(db)
    found = DueScanner().due(0, counting, NOW, monotonic=0.0)
    assert len(found) == 7
    assert counting.steps == 7  # one step per due entry, whatever lies beyond


def test_entries_in_flight_are_not_handed_out_again_until_they_are_done_or_stale(db: Any) -> None:
    key = index_key(NOW - timedelta(minutes=1), "S/A")
    db.put(key, b"")
    scanner = DueScanner(retry_after=60.0)
    assert [e.key for e in scanner.due(0, db, NOW, monotonic=100.0)] == [key]
    assert scanner.due(0, db, NOW, monotonic=110.0) == []
    assert len(scanner.cursor(0).inflight) == 1
    assert [e.key for e in scanner.due(0, db, NOW, monotonic=161.0)] == [key]  # lost firing: handed out again
    scanner.done(0, key)
    db.delete(key)
    assert scanner.due(0, db, NOW, monotonic=170.0) == []
    assert scanner.cursor(0).inflight == {}


def test_the_hint_skips_deleted_heads_and_new_earlier_entries_lower_it(db: Any) -> None:
    scanner = DueScanner()
    old = [index_key(NOW - timedelta(hours=2, seconds=i), f"S/old-{i}") for i in range(50)]
    for key in old:
        db.put(key, b"")
    assert len(scanner.due(0, db, NOW, monotonic=0.0)) == 50
    for key in old:
        scanner.done(0, key)
        db.delete(key)
    later = index_key(NOW - timedelta(hours=1), "S/later")
    db.put(later, b"")
    assert [e.key for e in scanner.due(0, db, NOW, monotonic=1.0)] == [later]
    assert scanner.cursor(0).hint == later

    earlier = index_key(NOW - timedelta(days=3), "S/back-dated")  # e.g. an old order arriving late
    db.put(earlier, b"")
    scanner.scheduled(0, earlier)
    assert [e.key for e in scanner.due(0, db, NOW, monotonic=2.0)] == [earlier]


def test_forgetting_partitions_resets_their_cursor(db: Any) -> None:
    scanner = DueScanner()
    db.put(index_key(NOW, "S/A"), b"")
    scanner.due(0, db, NOW, monotonic=0.0)
    scanner.forget([0])
    assert scanner.cursor(0).inflight == {}
    scanner.due(0, db, NOW, monotonic=0.0)
    scanner.reset()
    assert scanner.cursor(0).inflight == {}


def test_budget_limits_one_tick(db: Any) -> None:
    for i in range(30):
        db.put(index_key(NOW - timedelta(seconds=i), f"S/{i}"), b"")
    scanner = DueScanner(budget=10)
    assert len(scanner.due(0, db, NOW, monotonic=0.0)) == 10
    assert len(scanner.due(0, db, NOW, monotonic=0.0)) == 10
    assert len(scanner.due(0, db, NOW, monotonic=0.0)) == 10
    assert scanner.due(0, db, NOW, monotonic=0.0) == []


def test_active_partitions_filters_by_changelog_topic() -> None:
    class TP:
        def __init__(self, topic: str, partition: int) -> None:
            self.topic, self.partition = topic, partition

    assigned = [TP("app-due-index-changelog", 1), TP("other", 2), TP("app-due-index-changelog", 5)]
    assert sorted(active_partitions(assigned, "app-due-index-changelog")) == [1, 5]


# --- issue 9.2: the index is derived from the records, so it can never diverge from them ---------------------------


def stored(record_key: str, due: datetime | None) -> tuple[bytes, bytes]:
    from statemachine.record import OrderState
    from streams.orders import encode_record
    from tests.support.factories import record_in

    record = record_in(OrderState.SHIPPED)
    seller_id, _, order_id = record_key.partition("/")
    record = record.model_copy(update={"seller_id": seller_id, "order_id": order_id, "next_due": due})
    return record.key.encode(), encode_record(record)


def test_a_record_whose_index_write_was_lost_fires_after_the_rebuild(tmp_path: Path) -> None:
    # Before: a crash after the orders changelog but before the due-index changelog left the record at "next check E"
    # and the index at an old T1; T1 fired early and was deleted, E was never written: the order never fired again.
    from streams.dueindex import LocalDueIndex, stored_due_ms

    index = LocalDueIndex(tmp_path / "due-index")
    index.add(0, index_key(NOW - timedelta(days=3), "S/A"))  # the stale entry (T1)
    records = [stored("S/A", NOW - timedelta(minutes=5)), stored("S/B", NOW + timedelta(days=9)), stored("S/C", None)]
    records.append((b"__faust\x00offset__", b"42"))
    assert index.rebuild(0, records) == 2
    due = DueScanner().due(0, index.db(0), NOW, monotonic=0.0)
    assert [e.order_key for e in due] == ["S/A"]
    assert due[0].due_ms == stored_due_ms(records[0][1])
    index.close()


def test_a_rebuild_leaves_out_records_of_another_partition(tmp_path: Path) -> None:
    from streams.dueindex import LocalDueIndex

    index = LocalDueIndex(tmp_path / "due-index")
    records = [stored("S/A", NOW), stored("S/B", NOW)]
    assert index.rebuild(1, records, belongs=lambda key: key == b"S/A") == 1
    assert [DueEntry.parse(k).order_key for k in index.db(1).keys()] == ["S/A"]  # noqa: SIM118 - an Rdict
    index.drop(1)
    assert not (tmp_path / "due-index" / "p1").exists()
    index.close()


def test_records_written_before_the_prefix_are_read_the_slow_way() -> None:
    from streams.dueindex import stored_due_ms

    legacy = b'{"next_due": "2026-03-10T12:00:00Z", "state": "shipped"}'
    assert stored_due_ms(legacy) == int(NOW.timestamp() * 1000)
    assert stored_due_ms(b'{"next_due": null}') is None
    assert stored_due_ms(b"not json") is None


def test_tombstones_at_the_head_are_walked_once_not_every_tick(db: Any) -> None:
    # Issue 12 P2: the hint moved only when an entry was found, so every idle tick walked the deleted keys again.
    for minute in range(2000):
        key = index_key(NOW - timedelta(minutes=minute), f"S/{minute}")
        db.put(key, b"")
        db.delete(key)
    scanner = DueScanner()
    assert scanner.due(0, db, NOW, monotonic=0.0) == []
    assert scanner.cursor(0).hint == upper_bound(NOW)  # the next seek starts past every tombstone
    later = index_key(NOW + timedelta(minutes=1), "S/late")
    db.put(later, b"")
    assert [e.key for e in scanner.due(0, db, NOW + timedelta(minutes=2), monotonic=1.0)] == [later]
    earlier = index_key(NOW - timedelta(hours=1), "S/back-in-time")  # an old order arriving late
    db.put(earlier, b"")
    scanner.scheduled(0, earlier)
    assert earlier in [e.key for e in scanner.due(0, db, NOW + timedelta(minutes=3), monotonic=2.0)]
