"""The due-time index: which orders of a partition need a timer look, found without scanning the orders table.

Layout (docs/architecture.md, "Durable timers"): per partition, a local RocksDB store (:class:`LocalDueIndex`, in
the worker's state directory) whose keys are ``0x01 ‖ big-endian u64 due time in ms ‖ order key`` with empty values.
RocksDB orders keys bytewise, so the index is sorted by due time.

* **Derived, never diverging.** The index has no changelog of its own: it is a pure function of the orders table.
  Each stored record begins with its ``next_due`` (:data:`RECORD_V2`), and :meth:`LocalDueIndex.rebuilding` recreates
  a partition's index from the table's store by reading those eight bytes, after the partition was assigned and
  recovered, and again by a periodic sweep (the worker reads the table once for this and its funnel counters:
  ``streams.agents.rebuild_partition``). A crash between a record's write and its index write therefore cannot
  leave an order that never fires (issue 9.2), and the index costs no Kafka send per event. After a clean shutdown
  the rebuild is skipped while the partition's checkpoint still describes the table (:mod:`streams.checkpoint`).
* **Memory.** A partition's store keeps little in memory (1 MiB memtables, one 8 MiB block cache for all partitions;
  a rebuild writes in batches and ends with a flush), so a million scheduled orders live on disk, not in RAM.
* **Writes** happen in the orders agent: when an order's ``next_due`` changes, its old index key is deleted and the
  new one inserted, in the same synchronous step that writes the record.
* **Reads** happen in the timer: for each *active* partition it opens one RocksDB iterator bounded above by
  ``0x01 ‖ be64(now + 1)`` and seeks to a per-partition hint (the smallest key it may still need), so a tick costs one
  seek plus the due entries: a million orders due next month cost nothing. The hint moves past deleted keys whether
  or not anything is due, so tombstones at the head are walked once, not every tick; files mostly made of deleted
  entries are compacted in the background (``bench/timers.py`` measures both).
* Each due entry becomes a :class:`DueFiring` on the order's own partition of ``order-events``; the orders agent
  re-checks and acts. Entries handed out and not yet handled are remembered (``inflight``) so a slow agent does not
  get the same entry again every tick.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from statemachine import TimerFired
from streams.rocks import RawDB

PREFIX = b"\x01"
_U64 = struct.Struct(">Q")

CHECKPOINT_KEY = b"\x00checkpoint"
"""Key of a partition's checkpoint in its index store (:mod:`streams.checkpoint`); it sorts before every entry, so a
scan (which starts at :data:`PREFIX`) never sees it."""

RECORD_V2 = b"\x02"
"""First byte of a stored order record: ``0x02 ‖ be64(next_due in ms, 0 = none) ‖ JSON`` (``streams.orders``)."""


def due_ms(when: datetime) -> int:
    """Milliseconds since the epoch (UTC), clamped at zero."""
    return max(0, int(when.astimezone(UTC).timestamp() * 1000))


def index_key(due: datetime, order_key: str) -> bytes:
    """The index key of ``order_key`` due at ``due``."""
    return index_key_ms(due_ms(due), order_key)


def index_key_ms(ms: int, order_key: str) -> bytes:
    """The index key of ``order_key`` due at ``ms`` milliseconds since the epoch."""
    return PREFIX + _U64.pack(ms) + order_key.encode()


def stored_due_ms(value: bytes) -> int | None:
    """The ``next_due`` of a stored order record, in ms (None: never due), without parsing the record.

    Records written before :data:`RECORD_V2` are plain JSON; they are read the slow way."""
    if value[:1] == RECORD_V2 and len(value) >= 9:
        ms: int = _U64.unpack_from(value, 1)[0]
        return ms or None
    try:
        due = json.loads(value).get("next_due")
    except (ValueError, AttributeError):
        return None
    return due_ms(datetime.fromisoformat(due)) if isinstance(due, str) else None


def upper_bound(now: datetime) -> bytes:
    """Exclusive upper bound of the keys due at or before ``now``."""
    return PREFIX + _U64.pack(due_ms(now) + 1)


@dataclass(frozen=True, slots=True)
class DueEntry:
    """One index entry: when, and which order."""

    key: bytes
    due_ms: int
    order_key: str

    @classmethod
    def parse(cls, key: bytes) -> DueEntry:
        if len(key) <= 9 or not key.startswith(PREFIX):
            raise ValueError(f"not a due-index key: {key[:20]!r}")
        return cls(key=key, due_ms=_U64.unpack(key[1:9])[0], order_key=key[9:].decode())


class DueFiring(TimerFired):
    """The ``TimerFired`` the timer publishes: the core's event plus the index entry it came from, so the orders
    agent can delete a leftover entry (streams bookkeeping; ``apply`` does not use it)."""

    index_due_ms: int | None = None

    @classmethod
    def of(cls, entry: DueEntry) -> DueFiring:
        seller_id, _, order_id = entry.order_key.partition("/")
        return cls(seller_id=seller_id, order_id=order_id, index_due_ms=entry.due_ms)


def scan_due(db: RawDB, *, start: bytes, now: datetime, limit: int) -> list[DueEntry]:
    """At most ``limit`` entries due at or before ``now``, from ``start`` on, in due order."""
    from rocksdict import ReadOptions

    options = ReadOptions()
    options.set_iterate_upper_bound(upper_bound(now))
    iterator = db.iter(options)
    iterator.seek(max(start, PREFIX))
    found: list[DueEntry] = []
    while iterator.valid() and len(found) < limit:
        key = iterator.key()
        if key.startswith(PREFIX) and len(key) > 9:
            found.append(DueEntry.parse(key))
        iterator.next()
    return found


@dataclass
class PartitionCursor:
    """What the timer remembers about one partition between ticks."""

    hint: bytes = PREFIX
    inflight: dict[bytes, float] = field(default_factory=dict)
    """Entries handed out and not yet handled, with the (monotonic) time they were handed out."""


class DueScanner:
    """Per-partition hints and in-flight entries: the timer's memory. One event loop, no threads.

    An entry handed out but never handled (its ``TimerFired`` was lost with a failed send) is handed out again
    after ``retry_after`` real seconds: the orders agent ignores a repeated firing, so this is only a safety net.
    """

    def __init__(self, *, budget: int = 1000, retry_after: float = 60.0) -> None:
        self.budget = budget
        self.retry_after = retry_after
        self._cursors: dict[int, PartitionCursor] = {}

    def cursor(self, partition: int) -> PartitionCursor:
        return self._cursors.setdefault(partition, PartitionCursor())

    def due(self, partition: int, db: RawDB, now: datetime, monotonic: float) -> list[DueEntry]:
        """Entries of ``partition`` due by ``now`` not handed out yet (or handed out too long ago)."""
        cursor = self.cursor(partition)
        entries = scan_due(db, start=cursor.hint, now=now, limit=self.budget + len(cursor.inflight))
        # Nothing due: no live key lies between the hint and now, so the next scan may start past now (and past
        # any tombstones there). Keys inserted earlier than that lower the hint again (``scheduled``).
        cursor.hint = entries[0].key if entries else upper_bound(now)
        stale_before = monotonic - self.retry_after
        fresh = [e for e in entries if cursor.inflight.get(e.key, stale_before) <= stale_before][: self.budget]
        for entry in fresh:
            cursor.inflight[entry.key] = monotonic
        return fresh

    def scheduled(self, partition: int, key: bytes) -> None:
        """The agent inserted ``key``: make sure the next scan starts at or before it."""
        cursor = self.cursor(partition)
        if key < cursor.hint:
            cursor.hint = key

    def done(self, partition: int, key: bytes) -> None:
        """The agent handled (or dropped) the entry ``key``."""
        self.cursor(partition).inflight.pop(key, None)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions moved away (or came back after a rebalance): start over from the index head."""
        for partition in partitions:
            self._cursors.pop(partition, None)

    def reset(self) -> None:
        self._cursors.clear()


INDEX_WRITE_BUFFER = 1 << 20
"""Memtable size of one partition's index: full memtables are flushed to (compact, prefix-compressed) SST files, so
a million entries do not stay in memory (the default, 64 MiB a partition, kept every entry there: ~70 MiB a
million)."""
INDEX_BLOCK_CACHE = 8 << 20
"""One block cache for the index stores of every partition: a tick reads a block or two per partition."""
REBUILD_BATCH = 10_000
"""Entries per write while rebuilding: each batch lands in one memtable, so memory stays bounded."""


class IndexBuild:
    """A partition's index being rebuilt (:meth:`LocalDueIndex.rebuilding`): records in, entries written in batches."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.count = 0
        self._batch = WriteBatch(raw_mode=True)
        self._pending = 0

    def add(self, key: bytes, value: bytes) -> None:
        """The stored record ``value`` of the order ``key``: its entry, when it is scheduled."""
        due = stored_due_ms(value)
        if due is None:
            return
        self._batch.put(index_key_ms(due, key.decode("utf-8", "replace")), b"")
        self.count += 1
        self._pending += 1
        if self._pending >= REBUILD_BATCH:
            self._write()

    def _write(self) -> None:
        if self._pending:
            self.db.write(self._batch)
            self._batch, self._pending = WriteBatch(raw_mode=True), 0

    def finish(self) -> None:
        """Write what is left and flush the memtable to disk (the rebuilt index need not stay in memory)."""
        self._write()
        self.db.flush()


class LocalDueIndex:
    """The worker's due index: one local RocksDB store per partition, derived from the orders table."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dbs: dict[int, Any] = {}
        self._cache: Cache | None = None
        self._sealed: set[int] = set()
        """Partitions whose store holds a checkpoint: the first change to the partition deletes it."""

    def db(self, partition: int) -> Any:
        """The store of ``partition`` (opened on first use)."""
        found = self._dbs.get(partition)
        if found is None:
            self.root.mkdir(parents=True, exist_ok=True)
            found = self._dbs[partition] = Rdict(str(self.root / f"p{partition}"), options=self._options())
            if found.get(CHECKPOINT_KEY) is not None:
                self._sealed.add(partition)
        return found

    def seal(self, partition: int, checkpoint: bytes) -> None:
        """Keep ``checkpoint`` with ``partition``'s index until the partition changes (:mod:`streams.checkpoint`)."""
        self.db(partition).put(CHECKPOINT_KEY, checkpoint, write_opt=_synced())
        self._sealed.add(partition)

    def unseal(self, partition: int) -> None:
        """``partition`` is about to change (its index or its records): its checkpoint, if any, no longer holds.

        The delete is synced to disk before the change is made, so no crash can leave a checkpoint that describes a
        partition other than the one on disk."""
        db = self.db(partition)  # opening the store finds its checkpoint
        if partition in self._sealed:
            db.delete(CHECKPOINT_KEY, write_opt=_synced())
            self._sealed.discard(partition)

    def take_checkpoint(self, partition: int) -> bytes | None:
        """``partition``'s checkpoint, deleted from the store as it is read (None: there is none)."""
        found: bytes | None = self.db(partition).get(CHECKPOINT_KEY)
        self.unseal(partition)
        return found

    def _options(self) -> Options:
        if self._cache is None:
            self._cache = Cache(INDEX_BLOCK_CACHE)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(INDEX_WRITE_BUFFER)
        options.set_max_write_buffer_number(2)
        # A file of mostly deleted entries (fired and handled) is compacted in the background, so seeks do not merge
        # tombstones from ever more files (bench/timers.py: 1.25x -> 1.10x after 100,000 deletes at the head).
        options.add_compact_on_deletion_collector_factory(1000, 500, 0.5)
        table = BlockBasedOptions()
        table.set_block_cache(self._cache)
        options.set_block_based_table_factory(table)
        return options

    def add(self, partition: int, key: bytes) -> None:
        self.unseal(partition)
        self.db(partition)[key] = b""

    def remove(self, partition: int, key: bytes) -> None:
        self.unseal(partition)
        self.db(partition).delete(key)

    def drop(self, partition: int) -> None:
        """Forget ``partition``'s index (its store, with its checkpoint, is removed from disk)."""
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()
        self._sealed.discard(partition)
        shutil.rmtree(self.root / f"p{partition}", ignore_errors=True)

    @contextmanager
    def rebuilding(self, partition: int) -> Iterator[IndexBuild]:
        """Replace ``partition``'s index with the entries of the records given to the :class:`IndexBuild`."""
        self.drop(partition)
        build = IndexBuild(self.db(partition))
        yield build
        build.finish()

    def rebuild(
        self, partition: int, records: Iterable[tuple[bytes, bytes]], belongs: Callable[[bytes], bool] = lambda _: True
    ) -> int:
        """Replace ``partition``'s index with the entries of ``records`` (key, stored value) that ``belongs`` to the
        partition; return their count. A record that does not belong (stored there by an older version) is left out:
        its timer would fire on the wrong partition forever."""
        with self.rebuilding(partition) as build:
            for key, value in records:
                if not key.startswith(b"__faust") and belongs(key):
                    build.add(key, value)
        return build.count

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
        self._sealed.clear()


def _synced() -> WriteOptions:
    options = WriteOptions()
    options.sync = True
    return options


def collect_due(
    scanner: DueScanner, index: LocalDueIndex, partitions: Iterable[int], now: datetime, monotonic: float
) -> list[tuple[int, DueEntry]]:
    """The entries due by ``now`` in each of ``partitions``, not handed out yet."""
    found: list[tuple[int, DueEntry]] = []
    for partition in partitions:
        found.extend((partition, entry) for entry in scanner.due(partition, index.db(partition), now, monotonic))
    return found


def active_partitions(assigned: Iterable[Any], changelog_topic: str) -> Iterator[int]:
    """Partitions of ``changelog_topic`` among the assignor's active topic-partitions."""
    for tp in assigned:
        if tp.topic == changelog_topic:
            yield tp.partition
