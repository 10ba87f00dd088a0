"""The orders table's partitions share one block cache and one memtable budget (streams/rocks.py, issue 12 P4): Faust
gave each partition its own, so memory grew with the partitions a worker owns."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import rocks
from streams.app import build_app, build_table
from streams.settings import Settings


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("SOLICIT_SECRET_KEY", "x" * 44)
    settings = Settings(
        worker={
            "data_dir": tmp_path,
            "rocksdb_block_cache_mb": 8,
            "rocksdb_memtables_mb": 4,
            "rocksdb_write_buffer_mb": 1,
        },
        kafka={"bootstrap_servers": "localhost:1", "partitions": 4},
    )
    return build_table(build_app(settings), settings)


def test_every_partition_of_the_orders_table_shares_one_cache_and_one_memtable_budget(table: object) -> None:
    shared = table.data.rocksdb_options  # type: ignore[attr-defined]
    assert isinstance(shared, rocks.SharedMemoryOptions)
    first, second = rocks.partition_store(table, 0), rocks.partition_store(table, 1)
    value = bytes(range(256)) * 8
    for i in range(300):
        first.put(f"S/{i:06d}".encode(), value)
    assert shared.buffers.get_usage() > 0  # the first partition's memtable counts against the one budget
    used_by_second = shared.buffers.get_usage()
    for i in range(300):
        second.put(f"S/{i:06d}".encode(), value)
    assert shared.buffers.get_usage() > used_by_second  # and so does the second's
    first.flush()
    for i in range(300):
        assert first.get(f"S/{i:06d}".encode()) == value
    cached = first.property_int_value("rocksdb.block-cache-usage")
    assert cached > 0 and second.property_int_value("rocksdb.block-cache-usage") == cached  # one cache
    assert first.property_int_value("rocksdb.block-cache-capacity") == 8 << 20


def test_the_shared_options_keep_faust_s_settings(table: object) -> None:
    shared = table.data.rocksdb_options  # type: ignore[attr-defined]
    assert shared.faust.write_buffer_size == 1 << 20 and shared.faust.max_write_buffer_number == 2
    assert shared.faust.target_file_size_base == 16 << 20
