"""The due index and the funnel counters of a partition, kept across a clean shutdown (issue 12 P4: a restart need not
read every record of the orders table again; at a million orders that read was ~25 s of CPU).

**Written** at a clean shutdown (:func:`seal_partitions`), once Faust has drained the streams and before it closes
the tables, for each active partition whose index and counters are complete and which has no decided write still
waiting for its outputs (the index and the counters then describe exactly the records in the table): a
:class:`Checkpoint` (the table's persisted changelog offset of the partition, the partition count, the counters) is
put in the partition's index store (:meth:`streams.dueindex.LocalDueIndex.seal`).

**Used** when the timer first looks at the partition after a start (:func:`restore_partition`, from
``streams.agents.rebuild_partition``), instead of reading the table, only when all of these hold:

* it is still there: the first change to the partition's index or records after it was written deletes it, synced,
  before the change is made (:meth:`~streams.dueindex.LocalDueIndex.unseal`; ``streams.orders.TableStore`` calls it
  before each record write); loading it deletes it too. So after a crash, whatever ran before it, there is no
  checkpoint that describes another state than the one on disk;
* the table's persisted changelog offset of the partition is the checkpoint's: nothing reached the table since (a
  changelog record recovered from another worker's writes, our own confirmed write, a standby's copy all move it);
* the partition count and the format are the same.

Otherwise the partition is rebuilt from the table, as after a crash. The periodic sweep still rebuilds the index
from the table (``SOLICIT_WORKER__INDEX_SWEEP_INTERVAL``), so the checkpoint is a shortcut, never the only copy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from streams.dueindex import LocalDueIndex
from streams.stats import PartitionStats

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    """What a partition's index and counters describe: the table as of ``changelog_offset``."""

    changelog_offset: int
    partitions: int
    counters: list[list[Any]]
    format: int = FORMAT

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Checkpoint | None:
        """None for anything that is not a checkpoint of this format."""
        try:
            data = json.loads(raw)
            found = cls(
                changelog_offset=int(data["changelog_offset"]),
                partitions=int(data["partitions"]),
                counters=list(data["counters"]),
                format=int(data["format"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return found if found.format == FORMAT else None


def seal_partitions(
    index: LocalDueIndex,
    stats: PartitionStats,
    partitions: Iterable[int],
    *,
    offset_of: Callable[[int], int | None],
    partition_count: int,
) -> list[int]:
    """Write the checkpoint of each of ``partitions`` (complete, nothing pending: the caller's choice); ``offset_of``
    gives the table's persisted changelog offset of a partition. The partitions sealed."""
    sealed = []
    for partition in partitions:
        offset = offset_of(partition)
        if offset is None:
            continue
        checkpoint = Checkpoint(changelog_offset=offset, partitions=partition_count, counters=stats.export(partition))
        index.seal(partition, checkpoint.encode())
        sealed.append(partition)
    return sealed


def restore_partition(
    index: LocalDueIndex,
    stats: PartitionStats,
    partition: int,
    *,
    offset_of: Callable[[int], int | None],
    partition_count: int,
) -> bool:
    """Take ``partition``'s checkpoint and, when it still describes the table (the table's persisted changelog offset,
    from ``offset_of``; the same partition count), restore the counters from it: True when the index and the counters
    need no rebuild."""
    raw = index.take_checkpoint(partition)
    if raw is None:
        return False
    checkpoint = Checkpoint.decode(raw)
    if (
        checkpoint is None
        or checkpoint.partitions != partition_count
        or checkpoint.changelog_offset != offset_of(partition)
    ):
        log.info("partition %d: its checkpoint no longer describes the table; rebuilding", partition)
        return False
    try:
        stats.restore(partition, checkpoint.counters)
    except (ValueError, KeyError, TypeError):
        log.warning("partition %d: its checkpoint's counters are unreadable; rebuilding", partition)
        return False
    return True
