"""The due index and the funnel counters kept across a clean shutdown (streams/checkpoint.py, issue 12 P4): used at the
next start only while they still describe the orders table, never after any change, and Faust's shutdown order that
the checkpoint relies on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from statemachine import OrderState
from streams.agents import rebuild_partition, seal_on_shutdown
from streams.app import ServiceApp
from streams.checkpoint import Checkpoint, restore_partition, seal_partitions
from streams.dueindex import CHECKPOINT_KEY, DueScanner, LocalDueIndex, index_key
from streams.orders import TableStore, partition_for
from streams.stats import PartitionStats
from tests.unit.streams.test_dueindex import NOW, ReadCounting, faust_like_store, rebuild_worker, stored
from tests.unit.streams.test_stats import DE, order, sent_at


def counted_stats() -> PartitionStats:
    stats = PartitionStats()
    stats.rebuild(3, [])
    for record in (
        order(1, OrderState.SENT, history=[sent_at(NOW - timedelta(days=1))]),
        order(2, OrderState.WAITING, next_due=NOW + timedelta(days=1)),
        order(3, OrderState.CANCELED),
        order(4, OrderState.ELIGIBLE, marketplace=DE),
        order(5, OrderState.SHIPPED, seller="S2", next_due=NOW + timedelta(days=3)),
    ):
        stats.move(3, None, record)
    stats.rebuild(4, [])
    stats.move(4, None, order(9, OrderState.EXPIRED, window_end=NOW - timedelta(days=1)))
    return stats


def test_the_counters_come_back_from_a_checkpoint_as_they_were() -> None:
    stats = counted_stats()
    raw = Checkpoint(changelog_offset=41, partitions=8, counters=stats.export(3)).encode()
    checkpoint = Checkpoint.decode(raw)
    assert checkpoint is not None and checkpoint.changelog_offset == 41 and checkpoint.partitions == 8

    restored = PartitionStats()
    restored.restore(3, checkpoint.counters)
    only_3 = counted_stats()
    only_3.drop([4])
    assert restored.counted() == {3}
    assert restored.snapshot(NOW) == only_3.snapshot(NOW)
    assert restored.forecast("S2", NOW, 7) == only_3.forecast("S2", NOW, 7)
    # Afterwards they move as counters rebuilt from the records do.
    restored.move(3, order(2, OrderState.WAITING, next_due=NOW + timedelta(days=1)), order(2, OrderState.ELIGIBLE))
    only_3.move(3, order(2, OrderState.WAITING, next_due=NOW + timedelta(days=1)), order(2, OrderState.ELIGIBLE))
    assert restored.snapshot(NOW) == only_3.snapshot(NOW)


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"changelog_offset": 1}', b'{"format": 99}', b"\xff"])
def test_anything_but_a_checkpoint_of_this_format_is_none(raw: bytes) -> None:
    assert Checkpoint.decode(raw) is None
    good = Checkpoint(changelog_offset=1, partitions=2, counters=[]).encode()
    assert Checkpoint.decode(good.replace(b'"format":1', b'"format":2')) is None


def sealed_index(tmp_path: Path, offset: int = 42) -> LocalDueIndex:
    """An index whose partition 3 has an entry and a checkpoint at ``offset``, closed and opened again (a restart)."""
    index = LocalDueIndex(tmp_path / "due-index")
    index.add(3, index_key(NOW, "S1/1"))
    assert seal_partitions(index, counted_stats(), [3], offset_of=lambda p: offset, partition_count=8) == [3]
    index.close()
    return LocalDueIndex(tmp_path / "due-index")


def test_a_checkpoint_is_used_once_and_only_while_it_describes_the_table(tmp_path: Path) -> None:
    index = sealed_index(tmp_path)
    stats = PartitionStats()
    assert restore_partition(index, stats, 3, offset_of=lambda p: 42, partition_count=8)
    assert stats.counted() == {3} and stats.snapshot(NOW) == _only(counted_stats(), 3).snapshot(NOW)
    assert index.db(3).get(CHECKPOINT_KEY) is None  # taken: a crash from here on finds none
    assert not restore_partition(index, PartitionStats(), 3, offset_of=lambda p: 42, partition_count=8)
    index.close()


@pytest.mark.parametrize(
    ("offset", "partitions"),
    [(43, 8), (None, 8), (42, 12)],
    ids=["the table got a record since", "the table is gone", "another partition count"],
)
def test_a_checkpoint_that_no_longer_describes_the_table_is_dropped(
    tmp_path: Path, offset: int | None, partitions: int
) -> None:
    index = sealed_index(tmp_path)
    stats = PartitionStats()
    assert not restore_partition(index, stats, 3, offset_of=lambda p: offset, partition_count=partitions)
    assert stats.counted() == set()  # rebuilt from the table instead
    assert index.db(3).get(CHECKPOINT_KEY) is None
    index.close()


class FakeTable:
    """The orders table as ``streams.rocks`` and ``TableStore`` see it: a raw store per partition, a changelog whose
    sends the test confirms (:meth:`confirm`, as Faust's producer does: result, then the send's callback)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.data = SimpleNamespace(_db_for_partition=lambda partition: db, offset_key=b"__faust\x00offset__")
        self.sent: list[tuple[Any, Any]] = []
        self.changelog_topic = SimpleNamespace(send_soon=self.send_soon)

    def send_soon(self, *, callback: Any, **kwargs: Any) -> Any:
        try:
            future: Any = asyncio.get_running_loop().create_future()
        except RuntimeError:  # a test without an event loop
            future = concurrent.futures.Future()
        self.sent.append((future, callback))
        return future

    def confirm(self, offset: int) -> None:
        future, callback = self.sent.pop(0)
        future.set_result(SimpleNamespace(offset=offset))
        callback(future)


@pytest.mark.parametrize(
    "change",
    ["index add", "index remove", "record write", "record delete"],
)
def test_any_change_after_a_clean_shutdown_deletes_the_checkpoint_before_it_is_made(
    tmp_path: Path, change: str
) -> None:
    # A crash after the change must not find a checkpoint describing the partition before it.
    index = sealed_index(tmp_path)
    table_db = faust_like_store(tmp_path / "orders-3.db")
    store = TableStore(FakeTable(table_db), index)
    if change == "index add":
        index.add(3, index_key(NOW, "S1/2"))
    elif change == "index remove":
        index.remove(3, index_key(NOW, "S1/1"))
    elif change == "record write":
        store.put(order(7, OrderState.SHIPPED), 3)
    else:
        store.delete("S1/111-0000000-0000001", 3)
    index.close()  # as good as a crash: the store's writes are in its log either way
    after = LocalDueIndex(tmp_path / "due-index")
    assert not restore_partition(after, PartitionStats(), 3, offset_of=lambda p: 42, partition_count=8)
    after.close()
    table_db.close()


def test_other_partitions_keep_their_checkpoints(tmp_path: Path) -> None:
    index = sealed_index(tmp_path)
    index.add(5, index_key(NOW, "S1/5"))  # another partition changes
    stats = PartitionStats()
    assert restore_partition(index, stats, 3, offset_of=lambda p: 42, partition_count=8)
    index.close()


def test_a_clean_restart_reads_no_record_and_a_second_one_rebuilds(tmp_path: Path) -> None:
    keys = [f"S/{i}" for i in range(300)]
    home = [k for k in keys if partition_for(k.encode(), 4) == 0]
    store = faust_like_store(tmp_path / "orders-0.db")
    for n, key in enumerate(home):
        store.put(*stored(key, NOW - timedelta(minutes=1) if n % 2 else NOW + timedelta(days=2)))
    counting = ReadCounting(store)

    def worker(offset: int, staged: list[Any] | None = None) -> Any:
        w = rebuild_worker(tmp_path, counting, 4, staged or [])
        w.orders_table.data.persisted_offset = lambda tp: offset
        w.orders_table.changelog_topic = SimpleNamespace(get_topic_name=lambda: "app-orders-changelog")
        w.active_partitions = lambda: [0]
        return w

    first = worker(42)
    rebuild_partition(first, 0)
    seal_on_shutdown(first)
    first.index.close()

    again = worker(42)
    rebuild_partition(again, 0)
    assert counting.reads == 1  # the table was not read
    assert again.stats.snapshot(NOW) == first.stats.snapshot(NOW) and again.indexed == {0}
    due = {e.order_key for e in DueScanner(budget=1000).due(0, again.index.db(0), NOW, monotonic=0.0)}
    assert due == set(home[1::2])  # the timers fire as before
    again.index.close()  # a crash: no checkpoint was written this time

    third = worker(42)
    rebuild_partition(third, 0)
    assert counting.reads == 2 and third.stats.snapshot(NOW) == first.stats.snapshot(NOW)
    # A decided write still waiting for its outputs at shutdown: that partition gets no checkpoint.
    third.processor.writes.staged = lambda partition: [object()]
    seal_on_shutdown(third)
    third.index.close()
    fourth = worker(42)
    rebuild_partition(fourth, 0)
    assert counting.reads == 3
    fourth.index.close()
    store.close()


def _only(stats: PartitionStats, partition: int) -> PartitionStats:
    stats.drop(p for p in (3, 4) if p != partition)
    return stats


# --- the moment of the checkpoint: streams drained, tables not closed yet ---------------------------------------


def test_faust_drains_the_streams_before_it_closes_the_tables_at_a_shutdown() -> None:
    # ServiceApp hooks Faust's private _consumer_wait_empty: pin the order it relies on.
    on_stop = inspect.getsource(faust.App.on_stop)
    assert on_stop.index("_stop_consumer()") < on_stop.index("on_before_shutdown")
    stop_consumer = inspect.getsource(faust.App._stop_consumer)
    assert stop_consumer.index("_consumer_wait_empty(") < stop_consumer.index("self.tables.stop()")


def test_the_callbacks_run_after_the_streams_drained_only_when_stopping(caplog: pytest.LogCaptureFixture) -> None:
    app = ServiceApp("checkpoint-test", broker="kafka://localhost:1", store="memory://")
    calls: list[str] = []

    def failing() -> None:
        raise RuntimeError("disk full")

    app.before_tables_stop.extend([lambda: calls.append("first"), failing, lambda: calls.append("last")])

    class Consumer:
        async def wait_empty(self) -> None:
            calls.append("drained")

    asyncio.run(app._consumer_wait_empty(Consumer(), app.log))  # a rebalance: nothing to write
    assert calls == ["drained"]
    app._stopped.set()
    asyncio.run(app._consumer_wait_empty(Consumer(), app.log))  # the shutdown
    assert calls == ["drained", "drained", "first", "last"]  # a failing step does not stop the shutdown
    assert "disk full" in caplog.text


# --- a record reaches the local store only once the changelog has it --------------------------------------------


async def test_a_record_is_stored_only_once_the_changelog_confirmed_it_with_its_offset(tmp_path: Path) -> None:
    # Before: written locally first, then sent. A worker killed in between kept a record the changelog never got; its
    # next process (same data dir) found the replayed input applied already and acknowledged it: lost once the
    # partition moved (chaos suite: an order never checked).
    from streams.orders import StagedWrites

    index = LocalDueIndex(tmp_path / "due-index")
    table = FakeTable(faust_like_store(tmp_path / "orders-1.db"))
    store = TableStore(table, index)
    writes = StagedWrites(store)
    first = order(7, OrderState.SHIPPED)
    key = first.key.encode()
    pending = writes.stage(first.key, 1, first)
    [(_, delivery)] = writes.outputs_confirmed(pending)
    assert table.db.get(key) is None and table.db.get(b"__faust\x00offset__") is None  # not before the broker has it
    assert writes.get(first.key, 1) == first and writes.staged(1) == [first]  # read from the staged writes meanwhile

    table.confirm(41)
    await delivery
    await asyncio.sleep(0)
    assert table.db.get(key) is not None and table.db.get(b"__faust\x00offset__") == b"41"  # both, in one batch
    assert writes.staged(1) == [] and store.get(first.key, 1) == first

    gone = writes.stage(first.key, 1, None)
    [(_, delivery)] = writes.outputs_confirmed(gone)
    assert table.db.get(key) is not None
    table.sent[0][0].set_exception(OSError("broker gone"))  # never confirmed: Faust calls no callback
    with pytest.raises(OSError, match="broker gone"):
        await delivery
    await asyncio.sleep(0)
    assert table.db.get(key) is not None and table.db.get(b"__faust\x00offset__") == b"41"  # the store as it was
    assert writes.get(first.key, 1) == first  # and so are reads: the input comes again and is decided again
    index.close()
    table.db.close()
