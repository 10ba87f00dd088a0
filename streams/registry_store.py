"""Kafka IO of the sellers registry: publish records and tombstones, read the compacted topic, keep a live view.

The registry is the compacted topic ``solicit.sellers.v1`` (:data:`streams.topics.SELLERS`), key = seller id,
value = :class:`streams.registry.SellerRecord` JSON, ``None`` = removed. There is no other store: the CLI reads the
topic to answer ``sellers list`` and to edit one seller, and the worker keeps a :class:`SellerDirectory`.

Reading never joins a consumer group: every reader wants the *whole* table, so partitions are assigned manually and
read from the beginning up to the end offsets taken at the start ("everything published before I looked"). A record
that does not decode (another schema, a hand-written value) is skipped with a WARNING naming its key and offset, never
its value, which holds the encrypted token. Producers use ``acks=all`` and idempotence, so a publish that returned is
on every in-sync replica, once, in order.

Decryption is not done here: records travel and are cached encrypted, and the sender decrypts a token at the moment
it needs one (:class:`connectors.crypto.TokenCipher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.registry import RegistryLoadTimeout, SellerRecord, SellersTopicMissing, UndecodableSellerRecord
from streams.topics import SELLERS

__all__ = [
    "DEFAULT_LOAD_TIMEOUT_S",
    "ChangeCallback",
    "SellerChange",
    "SellerDirectory",
    "load_registry",
    "publish_records",
    "publish_tombstone",
]

logger = logging.getLogger(__name__)

DEFAULT_LOAD_TIMEOUT_S = 60.0
"""How long reading the sellers topic to its end may take before :class:`RegistryLoadTimeout`."""

_CLIENT_ID = "solicit-sellers"


# --- writing -------------------------------------------------------------------------------------------------------


async def publish_records(bootstrap_servers: str, records: Iterable[SellerRecord], *, topic: str = SELLERS.name) -> int:
    """Publish every record (key = seller id) and wait until the broker has acknowledged all; return the count."""
    return await _produce(bootstrap_servers, topic, [(record.seller_id, record.to_json()) for record in records])


async def publish_tombstone(bootstrap_servers: str, seller_id: str, *, topic: str = SELLERS.name) -> None:
    """Remove a seller: publish ``None`` under its key (compaction later drops its older records)."""
    await _produce(bootstrap_servers, topic, [(seller_id, None)])


async def _produce(bootstrap_servers: str, topic: str, messages: list[tuple[str, bytes | None]]) -> int:
    if not messages:
        return 0
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, client_id=_CLIENT_ID, acks="all", enable_idempotence=True
    )
    try:
        await producer.start()
        # Send everything, then wait for every acknowledgement: one round trip per batch, not per seller.
        pending = [await producer.send(topic, value, key=key.encode("utf-8")) for key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(messages)


# --- reading -------------------------------------------------------------------------------------------------------


async def load_registry(
    bootstrap_servers: str, *, topic: str = SELLERS.name, load_timeout: float = DEFAULT_LOAD_TIMEOUT_S
) -> dict[str, SellerRecord]:
    """Every seller on the topic now: read from the beginning to the current end offsets, tombstones applied.

    Raises :class:`SellersTopicMissing` when the topic does not exist, :class:`RegistryLoadTimeout` when the end is
    not reached within ``load_timeout`` seconds.
    """
    consumer = _consumer(bootstrap_servers)
    try:
        await consumer.start()
        sellers: dict[str, SellerRecord] = {}
        async with _deadline(topic, load_timeout):
            partitions = await _assign_all(consumer, topic, bootstrap_servers)
            await _read_to_end(consumer, partitions, lambda message: _apply(sellers, message))
        return sellers
    finally:
        await consumer.stop()


def _consumer(bootstrap_servers: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id=_CLIENT_ID,
        group_id=None,  # no group: every reader needs every partition, and there is nothing to commit
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


@contextlib.asynccontextmanager
async def _deadline(topic: str, seconds: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise RegistryLoadTimeout(topic, seconds) from None


async def _assign_all(consumer: AIOKafkaConsumer, topic: str, bootstrap_servers: str) -> list[TopicPartition]:
    partitions = [TopicPartition(topic, p) for p in await _partition_ids(bootstrap_servers, topic)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return partitions


async def _partition_ids(bootstrap_servers: str, topic: str) -> list[int]:
    """The topic's partitions, from fresh metadata (the consumer only learns them after an assignment)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=_CLIENT_ID)
    try:
        await admin.start()
        # Listing first: a metadata request naming a missing topic could auto-create it on some brokers.
        if topic not in await admin.list_topics():
            raise SellersTopicMissing(topic, bootstrap_servers)
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise SellersTopicMissing(topic, bootstrap_servers)
    return sorted(partition["partition"] for partition in described["partitions"])


async def _read_to_end(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    apply: Callable[[ConsumerRecord[bytes, bytes]], object],
) -> None:
    """Apply every message up to the end offsets as of now. Compaction leaves offset gaps, so positions decide."""
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for messages in batches.values():
            for message in messages:
                apply(message)
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}


@dataclass(frozen=True, slots=True)
class SellerChange:
    """One change the live view applied: ``before``/``after`` are None for an added/removed seller."""

    seller_id: str
    before: SellerRecord | None
    after: SellerRecord | None


ChangeCallback = Callable[[SellerChange], None]
"""Called for each change after :meth:`SellerDirectory.start`; must be quick (set an Event, schedule a task)."""


def _apply(sellers: dict[str, SellerRecord], message: ConsumerRecord[bytes, bytes]) -> SellerChange | None:
    """Apply one topic message to ``sellers``; the change, or None when nothing changed or it was skipped."""
    where = f"{message.topic}[{message.partition}]@{message.offset}"
    if message.key is None:
        logger.warning("sellers registry: skipped the record at %s: it has no key", where)
        return None
    try:
        seller_id = message.key.decode("utf-8")
    except UnicodeDecodeError:
        logger.warning("sellers registry: skipped the record at %s: its key is not UTF-8", where)
        return None
    before = sellers.get(seller_id)
    if message.value is None:
        if before is None:
            return None
        del sellers[seller_id]
        return SellerChange(seller_id, before, None)
    try:
        after = SellerRecord.from_json(message.value, key=seller_id)
    except UndecodableSellerRecord as exc:
        logger.warning("sellers registry: skipped the record for seller %r at %s: %s", seller_id, where, exc.reason)
        return None
    sellers[seller_id] = after
    return SellerChange(seller_id, before, after)


# --- the live view -------------------------------------------------------------------------------------------------


class SellerDirectory(Mapping[str, SellerRecord]):
    """The worker's live, read-only view of the registry: loaded fully at start, then kept current by a tail task.

    ``await start()`` returns once every record published before it was called is applied, so the worker knows
    its sellers before it handles an order. A background task then applies each later change and calls the
    ``on_change`` callbacks with a :class:`SellerChange` (not for the initial load). A failing callback is logged
    and does not stop the tail. Usable as ``async with SellerDirectory(...) as sellers:``.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str = SELLERS.name,
        on_change: ChangeCallback | None = None,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT_S,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._load_timeout = load_timeout
        self._callbacks: list[ChangeCallback] = [on_change] if on_change is not None else []
        self._sellers: dict[str, SellerRecord] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tail: asyncio.Task[None] | None = None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def running(self) -> bool:
        """True while the tail task runs (it only ends by :meth:`stop` or an unexpected error, which is logged)."""
        return self._tail is not None and not self._tail.done()

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        """Add an ``on_change`` callback; returns a function that removes it again."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    async def start(self) -> None:
        """Load every seller up to the current end of the topic, then start tailing it."""
        if self._consumer is not None:
            raise RuntimeError("SellerDirectory.start() called twice")
        consumer = _consumer(self._bootstrap_servers)
        try:
            await consumer.start()
            async with _deadline(self._topic, self._load_timeout):
                partitions = await _assign_all(consumer, self._topic, self._bootstrap_servers)
                await _read_to_end(consumer, partitions, lambda message: _apply(self._sellers, message))
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._tail = asyncio.create_task(self._follow(consumer), name=f"sellers-directory:{self._topic}")
        self._tail.add_done_callback(self._tail_ended)
        logger.info("sellers registry: %d seller(s) loaded from %s; following changes", len(self), self._topic)

    async def stop(self) -> None:
        """Stop tailing and close the consumer. Safe to call twice, or without start()."""
        tail, self._tail = self._tail, None
        if tail is not None:
            tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tail
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> SellerDirectory:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # Mapping: get(), `in`, len(), iteration over seller ids, all over the current state.
    def __getitem__(self, seller_id: str) -> SellerRecord:
        return self._sellers[seller_id]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._sellers))

    def __len__(self) -> int:
        return len(self._sellers)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                # aiokafka reconnects by itself; an error surfacing here is logged and the read retried.
                logger.warning("sellers registry: reading %s failed (%s); retrying in 1 s", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            for messages in batches.values():
                for message in messages:
                    change = _apply(self._sellers, message)
                    if change is not None:
                        self._notify(change)

    def _notify(self, change: SellerChange) -> None:
        for callback in list(self._callbacks):
            try:
                callback(change)
            except Exception:
                logger.exception("sellers registry: an on_change callback failed for seller %r", change.seller_id)

    def _tail_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "sellers registry: following %s stopped; the sellers view is frozen",
                self._topic,
                exc_info=task.exception(),
            )
