"""Kafka through aiokafka: every client's connection settings in one place, the producer, topic admin, and the
reader of compacted topics.

Every Kafka client of the service (the bridge's producer, the sellers registry's reader and writer, topic admin, the
CLI; the Faust worker through :meth:`KafkaConnection.faust_broker`) is built from one :class:`KafkaConnection`, so
a setting that concerns the connection (addresses today; TLS and SASL next) is made once and reaches every client.

Producers here use ``acks=all`` and idempotence: a send that returned is on every in-sync replica, once, in order.

The compacted-topic reader never joins a consumer group: every reader wants the *whole* topic, so partitions are
assigned by hand and read from the beginning to the end offsets taken at the start ("everything published before I
looked"); :class:`TopicFollower` then keeps following it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "KafkaConnection",
    "NewTopicSpec",
    "TopicFollower",
    "TopicMissing",
    "admin_client",
    "create_missing_topics",
    "idempotent_producer",
    "partition_counts",
    "produce_all",
    "read_to_end",
]

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
"""Where every command looks for Kafka unless told otherwise (the port ``solicit kafka up`` uses)."""


class KafkaConnection(BaseModel):
    """How to reach the cluster: the one place every Kafka client's connection settings come from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(
        default=DEFAULT_BOOTSTRAP,
        min_length=1,
        description="Kafka bootstrap servers, comma separated (also read from the standard KAFKA_BOOTSTRAP_SERVERS).",
    )

    def servers(self) -> list[str]:
        """The bootstrap addresses, one ``host:port`` each."""
        return [host.strip() for host in self.bootstrap_servers.split(",") if host.strip()]

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) takes for the connection."""
        return {"bootstrap_servers": self.servers()}

    def faust_broker(self) -> list[str]:
        """Faust's ``broker`` setting for the same cluster."""
        return [f"kafka://{host}" for host in self.servers()]


class TopicMissing(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The topic does not exist on the cluster."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist")
        self.topic = topic


# --- producing ------------------------------------------------------------------------------------------------------


def idempotent_producer(connection: KafkaConnection, *, client_id: str, **kwargs: Any) -> AIOKafkaProducer:
    """A producer with ``acks=all`` and idempotence (not started)."""
    return AIOKafkaProducer(
        **connection.client_kwargs(), client_id=client_id, acks="all", enable_idempotence=True, **kwargs
    )


async def produce_all(
    connection: KafkaConnection, topic: str, messages: Sequence[tuple[bytes, bytes | None]], *, client_id: str
) -> int:
    """Send every (key, value) and wait until the broker acknowledged all of them; return the count."""
    if not messages:
        return 0
    producer = idempotent_producer(connection, client_id=client_id)
    try:
        await producer.start()
        # Send everything, then wait for every acknowledgement: one round trip per batch, not per message.
        pending = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(messages)


# --- admin ------------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin_client(connection: KafkaConnection, *, client_id: str = "solicit-admin") -> AsyncIterator[Any]:
    """A started admin client, closed on exit."""
    admin = AIOKafkaAdminClient(**connection.client_kwargs(), client_id=client_id)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


@dataclass(frozen=True)
class NewTopicSpec:
    """A topic to create when it is missing."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


async def create_missing_topics(connection: KafkaConnection, topics: Iterable[NewTopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Existing topics are left alone."""
    async with admin_client(connection) as admin:
        existing = set(await admin.list_topics())
        created: list[str] = []
        for topic in topics:  # one by one: a concurrent creator makes only its own topic fail
            if topic.name in existing:
                continue
            new = NewTopic(
                name=topic.name,
                num_partitions=topic.partitions,
                replication_factor=topic.replication_factor,
                topic_configs=dict(topic.config),
            )
            try:
                await admin.create_topics([new])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created


async def partition_counts(connection: KafkaConnection, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each named topic that exists."""
    async with admin_client(connection) as admin:
        described = await admin.describe_topics(list(names))
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}


async def _partition_ids(connection: KafkaConnection, topic: str) -> list[int]:
    """The topic's partitions, from fresh metadata (a consumer only learns them after an assignment)."""
    async with admin_client(connection) as admin:
        # Listing first: a metadata request naming a missing topic could auto-create it on some brokers.
        if topic not in await admin.list_topics():
            raise TopicMissing(topic)
        (described,) = await admin.describe_topics([topic])
    if described["error_code"] != 0 or not described["partitions"]:
        raise TopicMissing(topic)
    return sorted(partition["partition"] for partition in described["partitions"])


# --- reading a whole topic --------------------------------------------------------------------------------------------

Apply = Callable[[ConsumerRecord[bytes, bytes]], object]
"""Called with each record in offset order (per partition)."""


def _groupless_consumer(connection: KafkaConnection, client_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **connection.client_kwargs(),
        client_id=client_id,
        group_id=None,  # no group: every reader needs every partition, and there is nothing to commit
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _assign_from_start(consumer: AIOKafkaConsumer, connection: KafkaConnection, topic: str) -> list[Any]:
    partitions = [TopicPartition(topic, p) for p in await _partition_ids(connection, topic)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return partitions


async def _consume_to_end(consumer: AIOKafkaConsumer, partitions: list[Any], apply: Apply) -> None:
    """Apply every record up to the end offsets as of now. Compaction leaves offset gaps, so positions decide."""
    ends: dict[Any, int] = await consumer.end_offsets(partitions)
    remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for records in batches.values():
            for record in records:
                apply(record)
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}


async def read_to_end(connection: KafkaConnection, topic: str, apply: Apply, *, within: float, client_id: str) -> None:
    """Apply every record of ``topic`` published before this call, from the beginning.

    Raises :class:`TopicMissing` when the topic does not exist and :class:`TimeoutError` when its end is not reached
    within ``within`` seconds.
    """
    consumer = _groupless_consumer(connection, client_id)
    try:
        await consumer.start()
        async with asyncio.timeout(within):
            partitions = await _assign_from_start(consumer, connection, topic)
            await _consume_to_end(consumer, partitions, apply)
    finally:
        await consumer.stop()


class TopicFollower:
    """Reads a whole topic, then follows it: :meth:`start` returns once every record published before it was applied;
    a background task applies each later record. Transient read errors are logged and retried."""

    def __init__(self, connection: KafkaConnection, topic: str, apply: Apply, *, client_id: str) -> None:
        self._connection = connection
        self._topic = topic
        self._apply = apply
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._tail: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while the tail task runs (it ends only by :meth:`stop` or an unexpected error, which is logged)."""
        return self._tail is not None and not self._tail.done()

    async def start(self, *, within: float) -> None:
        """Read to the current end (``TimeoutError`` after ``within`` s, :class:`TopicMissing`), then follow."""
        if self._consumer is not None:
            raise RuntimeError(f"following {self._topic} started twice")
        consumer = _groupless_consumer(self._connection, self._client_id)
        try:
            await consumer.start()
            async with asyncio.timeout(within):
                partitions = await _assign_from_start(consumer, self._connection, self._topic)
                await _consume_to_end(consumer, partitions, self._apply)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._tail = asyncio.create_task(self._follow(consumer), name=f"follow:{self._topic}")
        self._tail.add_done_callback(self._tail_ended)

    async def stop(self) -> None:
        """Stop following and close the consumer. Safe to call twice, or without start()."""
        tail, self._tail = self._tail, None
        if tail is not None:
            tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tail
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                # aiokafka reconnects by itself; an error surfacing here is logged and the read retried.
                log.warning("reading %s failed (%s); retrying in 1 s", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record)

    def _tail_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("following %s stopped; its view is frozen", self._topic, exc_info=task.exception())
