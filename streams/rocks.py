"""The one module that touches Faust's private RocksDB store internals (``table.data``: ``_dbs``, ``_key_index``,
``_db_for_partition``), pinning the assumptions in one place: raw bytes, one ``Rdict`` per partition.

Why: Faust's public table API picks the partition from the *current stream event*. The orders agent writes a record
only once the outputs of its event are confirmed (:class:`streams.orders.StagedWrites`), from a callback where the
current event is another one, or none. So reads and writes name their partition explicitly here. The due index
reads whole partitions (:mod:`streams.dueindex`).
"""

from __future__ import annotations

from typing import Any, Protocol


class RawDB(Protocol):
    """The part of a rocksdict ``Rdict`` (raw mode) we use."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def iter(self, read_opt: Any) -> Any: ...

    def items(self) -> Any: ...


def partition_stores(table: Any) -> dict[int, RawDB]:
    """The raw store of each partition of ``table`` this process has opened."""
    stores: dict[int, RawDB] = table.data._dbs
    return stores


def partition_store(table: Any, partition: int) -> RawDB:
    """The raw store of ``partition`` (opened if needed)."""
    db: RawDB = table.data._db_for_partition(partition)
    return db


def get(table: Any, partition: int, key: bytes) -> bytes | None:
    return partition_store(table, partition).get(key)


def put(table: Any, partition: int, key: bytes, value: bytes) -> None:
    partition_store(table, partition).put(key, value)
    table.data._key_index[key] = partition


def delete(table: Any, partition: int, key: bytes) -> None:
    partition_store(table, partition).delete(key)
    table.data._key_index.pop(key, None)
