"""The one module that touches Faust's private RocksDB store internals (``table.data``: ``_dbs``,
``_db_for_partition``), pinning the assumptions in one place: raw bytes, one ``Rdict`` per partition.

Why: Faust's public table API picks the partition from the *current stream event*. The orders agent writes a record
only once the outputs of its event are confirmed (:class:`streams.orders.StagedWrites`), from a callback where the
current event is another one, or none. So reads and writes name their partition explicitly here. The due index
reads whole partitions (:mod:`streams.dueindex`); the web API reads one seller's orders (:func:`scan_from`).

Faust's ``_key_index`` (an LRU cache of key -> partition) is not fed: it serves only Faust's own lookups without a
partition (``table[key]`` outside an event), which this service never makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from rocksdict import ReadOptions


class RawDB(Protocol):
    """The part of a rocksdict ``Rdict`` (raw mode) we use."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def write(self, batch: Any) -> None: ...

    def iter(self, read_opt: Any) -> Any: ...

    def items(self, read_opt: Any = None) -> Any: ...


def partition_stores(table: Any) -> dict[int, RawDB]:
    """The raw store of each partition of ``table`` this process has opened."""
    stores: dict[int, RawDB] = table.data._dbs
    return stores


def partition_store(table: Any, partition: int) -> RawDB:
    """The raw store of ``partition`` (opened if needed)."""
    db: RawDB = table.data._db_for_partition(partition)
    return db


def partition_items(table: Any, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of ``partition``'s open store; nothing when it is not open here.

    A bulk read (the due index and the counters are rebuilt from it): it bypasses the block cache, which it would
    otherwise fill with every block of the partition (measured: +100 MiB resident at a million orders)."""
    store = partition_stores(table).get(partition)
    if store is not None:
        options = ReadOptions()
        options.fill_cache(False)  # type: ignore[call-arg]  # the stub omits the flag the binding takes
        yield from store.items(read_opt=options)


def apply_confirmed(table: Any, partition: int, key: bytes, value: bytes | None, offset: int) -> None:
    """The changelog confirmed ``key`` = ``value`` (None: deleted) at ``offset``: write it and that offset to the
    partition's store in one atomic batch, so the store never holds a change the changelog lacks, nor an offset past
    a change it lacks (Faust's recovery reads the changelog from the stored offset on)."""
    from rocksdict import WriteBatch

    batch = WriteBatch(raw_mode=True)
    if value is None:
        batch.delete(key)
    else:
        batch.put(key, value)
    batch.put(table.data.offset_key, str(offset).encode())
    partition_store(table, partition).write(batch)


def get(table: Any, partition: int, key: bytes) -> bytes | None:
    return partition_store(table, partition).get(key)


def scan_from(table: Any, partition: int, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of ``partition``'s open store with keys starting with ``prefix``, from ``start`` on, in
    key order; nothing when the store is not open here."""
    store = partition_stores(table).get(partition)
    if store is None:
        return
    it = store.iter(ReadOptions())
    it.seek(start)
    while it.valid():
        key = it.key()
        if not key.startswith(prefix):
            break
        yield key, it.value()
        it.next()


def persisted_offset(table: Any, partition: int) -> int | None:
    """The offset of the last changelog record of ``partition`` that the table's store holds (Faust keeps it in the
    store, moves it with each confirmed changelog write and each record recovered): None before the first."""
    from faust.types import TP

    offset: int | None = table.data.persisted_offset(TP(table.changelog_topic.get_topic_name(), partition))
    return offset


class SharedMemoryOptions:
    """How the orders table's partitions are opened: Faust's settings (bloom filter, binary-search index, file sizes),
    but **one** block cache and **one** memtable budget (a RocksDB ``WriteBufferManager``) for all of them.

    Why: Faust's ``RocksDBOptions`` gives each partition its own block cache and memtables, so memory grows with the
    partitions a worker owns (12 x 16 MiB of cache and 12 x 2 x 4 MiB of memtables could take ~290 MiB, issue 12 P4);
    shared, the table's RocksDB memory stays under ``block_cache + memtables`` however many partitions come. Faust
    has no setting for it; its store opens every partition through ``rocksdb_options.open`` (:func:`share_memory`).
    """

    def __init__(self, faust_options: Any, *, block_cache_bytes: int, memtables_bytes: int) -> None:
        from rocksdict import Cache, WriteBufferManager

        self.faust = faust_options
        self.cache = Cache(block_cache_bytes)
        self.buffers = WriteBufferManager(memtables_bytes, False)

    def open(self, path: Any, *, read_only: bool = False) -> Any:
        from rocksdict import AccessType, Rdict

        db = Rdict(str(path), options=self.as_options(), access_type=AccessType.read_write())
        db.set_read_options(ReadOptions())
        return db

    def as_options(self) -> Any:
        from rocksdict import BlockBasedIndexType, BlockBasedOptions, Options

        faust = self.faust
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(faust.max_open_files)
        options.set_write_buffer_size(faust.write_buffer_size)
        options.set_target_file_size_base(faust.target_file_size_base)
        options.set_max_write_buffer_number(faust.max_write_buffer_number)
        options.set_write_buffer_manager(self.buffers)
        table = BlockBasedOptions()
        table.set_bloom_filter(faust.bloom_filter_size, block_based=True)
        table.set_block_cache(self.cache)
        table.set_index_type(BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


def share_memory(table: Any, *, block_cache_bytes: int, memtables_bytes: int) -> SharedMemoryOptions:
    """Open ``table``'s partitions with :class:`SharedMemoryOptions` (before the first is opened)."""
    store = table.data
    if store.rocksdb_options.ttl is not None or not store.rocksdb_options.use_rocksdict:
        raise ValueError("the orders table is opened with rocksdict and no TTL")
    shared = SharedMemoryOptions(
        store.rocksdb_options, block_cache_bytes=block_cache_bytes, memtables_bytes=memtables_bytes
    )
    store.rocksdb_options = shared
    return shared
