"""The durable due-time index: which orders of a partition need a timer look, found without scanning the table.

Layout (docs/architecture.md, "Durable timers"): a RocksDB-backed Faust table, co-partitioned with the orders
table, whose keys are ``0x01 ‖ big-endian u64 due time in ms ‖ order key`` with empty values. RocksDB orders keys
bytewise, so within a partition the index is sorted by due time. Faust's own offset key (``__faust\\x00offset__``)
sorts after every ``0x01`` key and is never reached by our bounded scans.

* **Writes** happen only in the orders agent (inside stream iteration, as Faust requires): when an order's
  ``next_due`` changes, its old index key is deleted and the new one inserted in the same event. The index is
  durable through its changelog topic and restored by Faust's recovery like any table.
* **Reads** happen in the timer, which cannot write tables: for each *active* partition it opens one RocksDB
  iterator bounded above by ``0x01 ‖ be64(now + 1)`` and seeks to a per-partition hint (the smallest key it may
  still need), so a tick costs one seek plus the due entries: a million orders due next month cost nothing.
  Deleted keys leave tombstones at the head of the index; the hint skips them.
* Each due entry becomes a ``TimerFired`` event sent to the order's own partition of ``order-events``; the
  orders agent re-checks and acts. Entries already sent and not yet processed are remembered (``inflight``) so a
  slow agent does not get the same entry again every tick.

This module is the only place that touches Faust's private store internals (``table.data._dbs``, in
:func:`partition_stores`), and pins the assumptions there: raw mode, one ``Rdict`` per partition.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from statemachine import TimerFired

PREFIX = b"\x01"
_U64 = struct.Struct(">Q")


def due_ms(when: datetime) -> int:
    """Milliseconds since the epoch (UTC), clamped at zero."""
    return max(0, int(when.astimezone(UTC).timestamp() * 1000))


def index_key(due: datetime, order_key: str) -> bytes:
    """The index key of ``order_key`` due at ``due``."""
    return index_key_ms(due_ms(due), order_key)


def index_key_ms(ms: int, order_key: str) -> bytes:
    """The index key of ``order_key`` due at ``ms`` milliseconds since the epoch."""
    return PREFIX + _U64.pack(ms) + order_key.encode()


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


class RawDB(Protocol):
    """The part of a rocksdict ``Rdict`` (raw mode) the scan uses."""

    def iter(self, read_opt: Any) -> Any: ...


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
        if entries:
            cursor.hint = entries[0].key
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


def partition_stores(table: Any) -> dict[int, RawDB]:
    """The raw RocksDB store of each partition of a Faust RocksDB table this process has opened.

    Faust's private internals (``table.data._dbs``: partition -> ``Rdict``); this function is the only reader.
    """
    stores: dict[int, RawDB] = table.data._dbs
    return stores


def collect_due(
    scanner: DueScanner, table: Any, partitions: Iterable[int], now: datetime, monotonic: float
) -> list[tuple[int, DueEntry]]:
    """The entries due by ``now`` in each of ``partitions`` of the index ``table``, not handed out yet."""
    stores = partition_stores(table)
    found: list[tuple[int, DueEntry]] = []
    for partition in partitions:
        db = stores.get(partition)
        if db is not None:
            found.extend((partition, entry) for entry in scanner.due(partition, db, now, monotonic))
    return found


def active_partitions(assigned: Iterable[Any], changelog_topic: str) -> Iterator[int]:
    """Partitions of ``changelog_topic`` among the assignor's active topic-partitions."""
    for tp in assigned:
        if tp.topic == changelog_topic:
            yield tp.partition
