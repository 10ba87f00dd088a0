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


# --- issue 12 P4: a million orders at a restart: bounded memory, one read of the table ----------------------------


def test_a_rebuilt_index_leaves_no_entry_in_memory(tmp_path: Path) -> None:
    # The default write buffer (64 MiB a partition) kept every rebuilt entry in the memtable: ~70 MiB a million.
    from streams.dueindex import LocalDueIndex

    index = LocalDueIndex(tmp_path / "due-index")
    records = [stored(f"S/{i}", NOW + timedelta(minutes=i)) for i in range(25_000)]
    assert index.rebuild(0, records) == 25_000
    db = index.db(0)
    assert db.property_int_value("rocksdb.num-entries-active-mem-table") == 0
    assert db.property_int_value("rocksdb.num-entries-imm-mem-tables") == 0
    assert len(DueScanner(budget=30_000).due(0, db, NOW + timedelta(days=30), monotonic=0.0)) == 25_000
    index.close()


class ReadCounting:
    """A partition store of the orders table that counts its full reads."""

    def __init__(self, db: Any) -> None:
        self.db, self.reads = db, 0

    def items(self, read_opt: Any = None) -> Any:
        self.reads += 1
        return self.db.items(read_opt=read_opt)


def faust_like_store(path: Path) -> Any:
    """A store opened as Faust opens a table partition: its own block cache."""
    from rocksdict import BlockBasedOptions, Cache

    options = Options(raw_mode=True)
    options.create_if_missing(True)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(16 << 20))
    options.set_block_based_table_factory(table)
    return Rdict(str(path), options=options)


def test_a_bulk_read_of_the_orders_table_leaves_its_block_cache_empty(tmp_path: Path) -> None:
    # Reading every record through the cache filled each partition's cache: +100 MiB resident at a million orders.
    from types import SimpleNamespace

    from streams import rocks

    store = faust_like_store(tmp_path / "orders-0.db")
    for i in range(5_000):
        store.put(*stored(f"S/{i}", NOW))
    store.flush()
    table = SimpleNamespace(data=SimpleNamespace(_dbs={0: store}))
    assert sum(1 for _ in rocks.partition_items(table, 0)) == 5_000
    assert store.property_int_value("rocksdb.block-cache-usage") < 64 << 10  # index and filter blocks at most
    assert list(rocks.partition_items(table, 1)) == []  # not open here
    store.close()


def rebuild_worker(tmp_path: Path, store: Any, partitions: int, staged: list[Any]) -> Any:
    from types import SimpleNamespace

    from streams.dueindex import LocalDueIndex
    from streams.stats import PartitionStats

    return SimpleNamespace(
        settings=SimpleNamespace(kafka=SimpleNamespace(partitions=partitions)),
        orders_table=SimpleNamespace(data=SimpleNamespace(_dbs={0: store})),
        index=LocalDueIndex(tmp_path / "due-index"),
        stats=PartitionStats(),
        processor=SimpleNamespace(
            writes=SimpleNamespace(staged=lambda partition: staged),
            store=SimpleNamespace(get=lambda key, partition: None),
        ),
        scanner=DueScanner(),
        indexed=set(),
    )


def test_a_partition_s_index_and_counters_are_rebuilt_from_one_read_of_the_table(tmp_path: Path) -> None:
    from streams.agents import rebuild_partition
    from streams.orders import partition_for

    keys = [f"S/{i}" for i in range(400)]
    home = [k for k in keys if partition_for(k.encode(), 4) == 0]
    foreign = next(k for k in keys if partition_for(k.encode(), 4) != 0)  # stored there by an older version
    store = faust_like_store(tmp_path / "orders-0.db")
    for key in [*home, foreign]:
        store.put(*stored(key, NOW - timedelta(minutes=1)))
    store.put(b"__faust\x00offset__", b"42")
    counting = ReadCounting(store)
    staged_key = next(k for k in (f"S/staged-{i}" for i in range(100)) if partition_for(k.encode(), 4) == 0)
    staged = [_record(staged_key, NOW - timedelta(minutes=2))]  # decided, its write not confirmed yet
    w = rebuild_worker(tmp_path, counting, 4, staged)
    w.scanner.cursor(0).hint = upper_bound(NOW)  # a hint from before the rebuild must not hide anything

    rebuild_partition(w, 0)
    assert counting.reads == 1
    due = {e.order_key for e in w.scanner.due(0, w.index.db(0), NOW, monotonic=0.0)}
    assert due == {*home, staged_key}
    assert 0 in w.indexed and w.stats.counted() == {0}
    assert w.stats.snapshot(NOW)["S"]["ATVPDKIKX0DER"]["funnel"]["shipped"] == len(home) + 1  # foreign left out
    rebuild_partition(w, 0)  # the periodic sweep: the counters stay as they are, the index is rebuilt
    assert counting.reads == 2 and w.stats.counted() == {0}
    w.index.close()
    store.close()


def _record(key: str, due: datetime | None) -> Any:
    from streams.orders import decode_record

    return decode_record(stored(key, due)[1])


def test_a_tick_rebuilds_stale_partitions_one_at_a_time_firing_after_each_until_a_rebalance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    from types import SimpleNamespace

    from streams import agents

    events: list[str] = []
    app = SimpleNamespace(rebalancing=False, in_recovery=False)

    def rebuild(w: Any, partition: int) -> None:
        events.append(f"rebuild {partition}")
        w.indexed.add(partition)
        app.rebalancing = partition == 2  # a rebalance begins while partition 2 is rebuilt

    async def fire(w: Any) -> None:
        events.append(f"fire {sorted(w.indexed)}")

    async def pause(seconds: float) -> None:
        events.append(f"pause {seconds}")

    monkeypatch.setattr(agents, "rebuild_partition", rebuild)
    monkeypatch.setattr(agents, "fire_indexed", fire)
    monkeypatch.setattr(agents.asyncio, "sleep", pause)
    ready = asyncio.Event()
    ready.set()
    w = SimpleNamespace(app=app, ready=ready, indexed={1}, active_partitions=lambda: [0, 1, 2, 3])
    asyncio.run(agents.timer_tick(w))
    pause_s = f"pause {agents.REBUILD_PAUSE}"
    assert events == ["rebuild 0", "fire [0, 1]", pause_s, "rebuild 2", "fire [0, 1, 2]", pause_s]  # then: not steady
    events.clear()
    app.rebalancing = False
    asyncio.run(agents.timer_tick(w))
    assert events == ["rebuild 3", "fire [0, 1, 2, 3]"]
    events.clear()
    asyncio.run(agents.timer_tick(w))
    assert events == ["fire [0, 1, 2, 3]"]  # nothing stale: an ordinary tick


def test_the_partition_check_hashes_keys_as_kafka_does() -> None:
    # The rebuild checks every stored key's partition; murmur2 is computed four bytes at a time (issue 12 P4).
    import random

    from aiokafka.partitioner import murmur2 as kafkas

    from streams.orders import murmur2, partition_for

    rng = random.Random(7)
    for length in [*range(12), *range(12, 200, 7)]:
        for _ in range(50):
            key = rng.randbytes(length)
            assert murmur2(key) == kafkas(key) & 0xFFFFFFFF
            assert partition_for(key, 12) == (kafkas(key) & 0x7FFFFFFF) % 12
    key = b"A3TH9S8BH6GOGM/903-8868176-2219830"
    assert partition_for(key, 12) == (kafkas(key) & 0x7FFFFFFF) % 12
