"""Kafka as the harness sees it: another system producing to ``order-changes``, and a reader of the output topics.

* :func:`crc32_partition` is librdkafka's default partitioner (``consistent_random``) for a non-empty key:
  ``crc32(key) % partitions``. Java clients, aiokafka and Faust use murmur2 instead, so a librdkafka producer
  (Go, C, Python's confluent-kafka) puts an order on another partition than the bridge does, most of the time.
* :class:`DirectProducer` produces records with an explicit partition (CRC32, or any partition a test chooses).
* :class:`OutputLog` follows ``outcomes`` and ``dead-letters`` from the beginning with a plain consumer (no group),
  surviving a broker restart: the latest state of every order, its history, every dead letter and its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

log = logging.getLogger(__name__)


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's ``consistent_random`` partitioner for a non-empty key: CRC32 of the key modulo the count."""
    return zlib.crc32(key) % partitions


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The Java/aiokafka/Faust default partitioner: positive murmur2 of the key modulo the count."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class DirectProducer:
    """Produces straight to a topic, each record on a partition chosen by the caller (acks=all, idempotent)."""

    def __init__(self, bootstrap: str, *, max_request_size: int = 1024 * 1024) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="chaos-direct-producer",
            acks="all",
            enable_idempotence=True,
            max_request_size=max_request_size,
            request_timeout_ms=60_000,
        )
        self.sent = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int) -> tuple[int, int]:
        """Send one record, wait for the broker's acknowledgement; return its (partition, offset)."""
        metadata = await self._producer.send_and_wait(topic, value, key=key, partition=partition)
        self.sent += 1
        return int(metadata.partition), int(metadata.offset)


@dataclass
class OutputLog:
    """What ``outcomes`` and ``dead-letters`` said so far (filled by :class:`OutputFollower`)."""

    states: dict[str, str] = field(default_factory=dict)
    """order key -> dest of its latest ``state_changed``."""
    history: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """order key -> ``source->dest (reason)`` of every ``state_changed``, in order."""
    attempts: Counter[str] = field(default_factory=Counter)
    """``send_attempt`` results by kind."""
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    dead_letter_sizes: list[int] = field(default_factory=list)
    """Bytes of each dead-letter record value, in the order read."""
    state_events: int = 0
    last_change: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when an order last moved to a new state (the run is quiet when this is old)."""

    def apply_outcome(self, value: dict[str, Any]) -> None:
        if value.get("type") == "state_changed":
            key, dest = value["order_key"], value["dest"]
            self.history[key].append(f"{value['source']}->{dest} ({value.get('reason', '')})")
            if self.states.get(key) != dest:
                self.last_change = time.monotonic()
            self.states[key] = dest
            self.state_events += 1
        elif value.get("type") == "send_attempt":
            self.attempts[str(value.get("result"))] += 1

    def apply_dead_letter(self, raw: bytes) -> None:
        self.dead_letter_sizes.append(len(raw))
        try:
            self.dead_letters.append(json.loads(raw))
        except ValueError:
            self.dead_letters.append({"unreadable": raw[:200].decode("utf-8", "replace")})


class OutputFollower:
    """Reads ``outcomes`` and ``dead-letters`` from the beginning into an :class:`OutputLog` until stopped.

    Partitions are assigned by hand (no group, nothing committed). Read errors (a broker restart) are logged and
    the read retried from the consumer's position, so nothing is read twice and nothing is skipped.
    """

    def __init__(self, bootstrap: str, *, outcomes: str, dead_letters: str, partitions: int) -> None:
        self.log = OutputLog()
        self._bootstrap = bootstrap
        self._outcomes = outcomes
        self._partitions = [TopicPartition(t, p) for t in (outcomes, dead_letters) for p in range(partitions)]
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.read_errors = 0

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
        )
        await consumer.start()
        consumer.assign(self._partitions)
        await consumer.seek_to_beginning(*self._partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="chaos-output-follower")

    async def caught_up(self, within: float = 30.0) -> bool:
        """True once everything published before this call has been read."""
        assert self._consumer is not None
        deadline = time.monotonic() + within
        ends = await self._consumer.end_offsets(self._partitions)
        while time.monotonic() < deadline:
            positions = {tp: await self._consumer.position(tp) for tp in self._partitions}
            if all(positions[tp] >= ends[tp] for tp in self._partitions):
                return True
            await asyncio.sleep(0.2)
        return False

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker restarting: aiokafka reconnects, we read on
                self.read_errors += 1
                log.warning("reading the output topics failed (%r); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                for record in records:
                    if record.value is None:
                        continue
                    if tp.topic == self._outcomes:
                        self.log.apply_outcome(json.loads(record.value))
                    else:
                        self.log.apply_dead_letter(record.value)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
