"""The sender's own consumer of ``send-commands``: commits an offset only once every command before it is settled.

Why not a Faust agent: Faust commits what its agent acknowledged, and holding an acknowledgement until a command is
carried out (seconds to hours behind a seller's rate limit) would block Faust's rebalances, which wait for every
unacknowledged event. So the sender reads its topic with a consumer of its own, in its own group
(``<app id>-sender``): every command is queued at once; the committed offset of a partition stays at the oldest
command not yet settled (:class:`OffsetTracker`). After a crash or a partition move, the next owner reads from there:
commands in flight come back at once instead of when their leases run out (issue 9.8). A command settled and read
again costs at most one repeated check: the core ignores a result for an old lease, and the "maybe sent" rule keeps
a second create from being a second solicitation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from connectors.kafka import KafkaConnection

log = logging.getLogger(__name__)

Receive = Callable[[int, int, bytes | None], Awaitable[None]]
"""(partition, offset, value) of one command record."""


@dataclass
class _Partition:
    next_offset: int = 0
    """One past the last offset read."""
    pending: set[int] = field(default_factory=set)
    committed: int = -1


class OffsetTracker:
    """Per partition: the offsets read and not yet settled, and the offset that is safe to commit."""

    def __init__(self) -> None:
        self._partitions: dict[int, _Partition] = {}

    def read(self, partition: int, offset: int) -> None:
        state = self._partitions.setdefault(partition, _Partition(next_offset=offset))
        state.pending.add(offset)
        state.next_offset = max(state.next_offset, offset + 1)

    def settled(self, ticket: tuple[int, int]) -> None:
        state = self._partitions.get(ticket[0])
        if state is not None:
            state.pending.discard(ticket[1])

    def committable(self, partition: int) -> int | None:
        """The offset to commit for ``partition`` (the oldest unsettled, else one past the last read)."""
        state = self._partitions.get(partition)
        if state is None:
            return None
        return min(state.pending) if state.pending else state.next_offset

    def to_commit(self) -> dict[int, int]:
        """Partitions whose committable offset moved since the last commit, with that offset."""
        moves: dict[int, int] = {}
        for partition, state in self._partitions.items():
            offset = self.committable(partition)
            if offset is not None and offset > state.committed:
                moves[partition] = offset
        return moves

    def committed(self, offsets: dict[int, int]) -> None:
        for partition, offset in offsets.items():
            self._partitions[partition].committed = offset

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)

    def unsettled(self) -> int:
        return sum(len(state.pending) for state in self._partitions.values())


class CommandFeed:
    """Reads ``send-commands`` into the sender; commits the tracker's offsets every ``commit_interval`` seconds."""

    def __init__(
        self,
        *,
        connection: KafkaConnection,
        topic: str,
        group_id: str,
        receive: Receive,
        revoked: Callable[[set[int]], None],
        tracker: OffsetTracker,
        commit_interval: float = 1.0,
        max_unsettled: int = 100_000,
    ) -> None:
        self.topic = topic
        self.tracker = tracker
        self._receive = receive
        self._revoked = revoked
        self._commit_interval = commit_interval
        self._max_unsettled = max_unsettled
        self._connection = connection
        self._group_id = group_id
        self._consumer_: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._consumer_ is None:
            raise RuntimeError("the command feed is not started")
        return self._consumer_

    def assigned(self) -> set[int]:
        """The partitions of the command topic this worker's sender owns now (none before it joined its group)."""
        if self._consumer_ is None:
            return set()
        return {tp.partition for tp in self._consumer_.assignment()}

    async def start(self) -> None:
        """Join the sender's consumer group and start feeding (aiokafka needs a running loop to build a consumer)."""
        self._consumer_ = AIOKafkaConsumer(
            **self._connection.client_kwargs(),
            group_id=self._group_id,
            client_id=f"{self._group_id}-feed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=600_000,
        )
        await self._consumer.start()
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"command-feed:{self.topic}")

    async def stop(self) -> None:
        if self._consumer_ is None:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(KafkaError):
            await self.commit()
        await self._consumer.stop()

    async def commit(self, partitions: set[int] | None = None) -> None:
        """Commit the settled prefix of each partition (of ``partitions`` only, when given)."""
        moves = self.tracker.to_commit()
        if partitions is not None:
            moves = {p: o for p, o in moves.items() if p in partitions}
        if moves:
            await self._consumer.commit({TopicPartition(self.topic, p): o for p, o in moves.items()})
            self.tracker.committed(moves)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + self._commit_interval
        while True:
            if self.tracker.unsettled() < self._max_unsettled:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        self.tracker.read(tp.partition, record.offset)
                        await self._receive(tp.partition, record.offset, record.value)
            else:  # the sender is far behind: let it catch up before reading more
                await asyncio.sleep(0.5)
            if loop.time() >= next_commit:
                next_commit = loop.time() + self._commit_interval
                try:
                    await self.commit()
                except KafkaError as exc:  # a rebalance in progress and the like: the next round commits
                    log.warning("committing send-commands offsets failed (%s); retrying", exc)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, feed: CommandFeed) -> None:
        self.feed = feed

    async def on_partitions_revoked(self, revoked: Any) -> None:
        partitions = {tp.partition for tp in revoked}
        with contextlib.suppress(KafkaError):
            await self.feed.commit(partitions)
        self.feed.tracker.forget(partitions)
        self.feed._revoked(partitions)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
