"""The SQS -> Kafka bridge behind ``solicit bridge``: every message Amazon puts on the queue ends up on
``solicit.order-changes.v1``, or on ``solicit.dead-letters.v1`` with the reason. Nothing is lost.

The one rule: **a message is deleted from SQS only after Kafka acknowledged its record** (``acks="all"``,
idempotent producer). Whatever dies when (the bridge, Kafka, the network), every message is in Kafka, or still in
SQS and delivered again once its visibility timeout runs out. The price is duplicates. The core drops them by
NotificationId (``statemachine.apply`` is idempotent), so the bridge never tries to be exactly-once.

How it works:

* N poller tasks long-poll the queue (batches of up to ten) and share one producer and one SQS client.
* Per batch, every body goes through the core's parser. A valid notification is produced to the order-changes
  topic, keyed by ``order_key(SellerId, AmazonOrderId)``. The default partitioner (murmur2, the same as Java
  clients and Faust) then puts every event of one order on one partition. The value is the canonical JSON with
  ``Summary.DestinationPostalCode`` set to null: the worker never needs the buyer's postal code, so it does not
  leave the bridge (the field is nullable in Amazon's schema). An invalid body becomes a :class:`DeadLetter`
  (raw body, reason, SQS metadata) and its reason is logged at WARNING. The body itself is never logged.
* The bridge waits for every ack of the batch, then sends one DeleteMessageBatch for the acknowledged messages. A
  message whose produce failed is not deleted: it comes back after the visibility timeout.
* A batch in flight longer than half the visibility timeout has its visibility extended, so no other poller (or
  bridge) receives the same message while it is still being forwarded.
* :meth:`Bridge.stop` (SIGTERM/SIGINT in the CLI) stops receiving, lets in-flight batches finish (produce *and*
  delete), then closes the producer. A long poll still waiting is abandoned. Anything SQS handed out to it comes
  back after the visibility timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field

from connectors.clock import Clock
from connectors.kafka import KafkaConnection, idempotent_producer
from connectors.sqs import MAX_BATCH, MAX_WAIT_SECONDS, QueueMisconfigured, SqsError, SqsMessage, SqsQueue
from statemachine import InvalidNotification, Notification, OrderChanged, order_key, parse_notification
from streams.deadletters import DeadLetter
from streams.topics import DEAD_LETTERS, ORDER_CHANGES

__all__ = [
    "AfterProduce",
    "Bridge",
    "BridgeConfig",
    "BridgeCounters",
    "Outbound",
    "Settled",
    "forwarded_value",
    "route",
    "settle",
]

log = logging.getLogger(__name__)

AfterProduce = Callable[[Sequence[SqsMessage]], Awaitable[None]]
"""Test seam: awaited with the acknowledged messages of a batch, after the acks and before the delete."""

BACKOFF_START_S = 1.0
BACKOFF_CAP_S = 30.0
"""Pause after a failed receive or produce, doubling up to the cap: a broken Kafka must not spin through the queue
(every receive raises the ApproximateReceiveCount that a redrive policy counts)."""


@dataclass
class BridgeCounters:
    """Running totals since start, logged periodically and read by tests."""

    received: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    deleted: int = 0
    produce_failures: int = 0
    delete_failures: int = 0
    visibility_extensions: int = 0
    receive_errors: int = 0

    def summary(self) -> str:
        return " ".join(f"{name}={value}" for name, value in asdict(self).items())


@dataclass(frozen=True, slots=True)
class Outbound:
    """The Kafka record one SQS message becomes."""

    message: SqsMessage
    topic: str
    key: bytes | None
    value: bytes
    rejection: str | None = None
    """Why the body was dead-lettered; None for a forwarded notification."""


@dataclass(frozen=True, slots=True)
class Settled:
    """A batch after its produce: what Kafka acknowledged (to delete) and what failed (to leave in SQS)."""

    acked: list[Outbound] = field(default_factory=list)
    failed: list[tuple[Outbound, BaseException]] = field(default_factory=list)


def forwarded_value(notification: Notification) -> bytes:
    """The record value for a valid notification: canonical JSON without the buyer's postal code."""
    change = notification.change
    summary = change.Summary.model_copy(update={"DestinationPostalCode": None})
    payload = notification.Payload.model_copy(
        update={"OrderChangeNotification": change.model_copy(update={"Summary": summary})}
    )
    return notification.model_copy(update={"Payload": payload}).to_json()


def route(message: SqsMessage, *, order_changes_topic: str, dead_letters_topic: str, now: datetime) -> Outbound:
    """Decide where one message goes and build its record. Pure: parsing never raises out of here."""
    try:
        notification = parse_notification(message.body)
        OrderChanged.from_notification(notification)  # facts no real order has (dates out of range, ...) stop here
    except InvalidNotification as exc:
        letter = DeadLetter.build(
            source="sqs", reason=exc.reason, raw=message.body, at=now, metadata=message.metadata()
        )
        return Outbound(message, dead_letters_topic, None, letter.to_json(), rejection=exc.reason)
    key = order_key(notification.change.SellerId, notification.change.AmazonOrderId)
    return Outbound(message, order_changes_topic, key.encode("utf-8"), forwarded_value(notification))


def settle(outbounds: Sequence[Outbound], results: Sequence[object]) -> Settled:
    """Pair each record with its produce result: an exception means not acknowledged, anything else acknowledged."""
    if len(outbounds) != len(results):
        raise ValueError(f"{len(outbounds)} records but {len(results)} produce results")
    settled = Settled()
    for outbound, result in zip(outbounds, results, strict=True):
        if isinstance(result, BaseException):
            settled.failed.append((outbound, result))
        else:
            settled.acked.append(outbound)
    return settled


class BridgeConfig(BaseModel):
    """The bridge's settings (``SOLICIT_BRIDGE__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_url: str = Field(default="", description="URL of the SQS queue Amazon delivers ORDER_CHANGE to.")
    pollers: int = Field(default=4, ge=1, le=64, description="Concurrent SQS long-poll loops.")
    visibility_timeout: int = Field(
        default=60, ge=1, le=43200, description="Seconds a received message stays hidden while it is forwarded."
    )
    wait_seconds: int = Field(
        default=MAX_WAIT_SECONDS, ge=0, le=MAX_WAIT_SECONDS, description="Long-poll wait of one receive, in seconds."
    )
    max_messages: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH, description="Messages per receive.")
    stats_interval: float = Field(default=30.0, gt=0, description="Seconds between the bridge's counter log lines.")


class Bridge:
    """Forwards one SQS queue to Kafka until :meth:`stop`. Owns its SQS client and producer for the run.

    ``after_produce`` is a test seam only (fault injection between the acks and the delete); production never sets it.
    """

    def __init__(
        self,
        *,
        config: BridgeConfig,
        kafka: KafkaConnection,
        clock: Clock,
        order_changes_topic: str = ORDER_CHANGES.name,
        dead_letters_topic: str = DEAD_LETTERS.name,
        client_id: str = "solicit-bridge",
        after_produce: AfterProduce | None = None,
    ) -> None:
        if not config.queue_url:
            raise ValueError("the bridge needs a queue URL (SOLICIT_BRIDGE__QUEUE_URL)")
        self.config = config
        self.kafka = kafka
        self.queue_url = config.queue_url
        self.pollers = config.pollers
        self.visibility_timeout = config.visibility_timeout
        self.order_changes_topic = order_changes_topic
        self.dead_letters_topic = dead_letters_topic
        self.counters = BridgeCounters()
        self._clock = clock
        self._wait_seconds = config.wait_seconds
        self._max_messages = config.max_messages
        self._stats_interval = config.stats_interval
        self._client_id = client_id
        self._after_produce = after_produce
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None

    def stop(self) -> None:
        """Stop receiving; :meth:`run` returns once the batches in flight are produced and deleted."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Forward until :meth:`stop`. Raises :class:`QueueMisconfigured` or a ``KafkaError`` when it cannot run."""
        async with SqsQueue.open(self.queue_url, max_connections=2 * self.pollers + 2) as queue:
            producer = idempotent_producer(self.kafka, client_id=self._client_id)
            try:
                await producer.start()
                log.info(
                    "bridge started: %d poller(s) on %s -> %s (dead letters: %s), visibility %d s",
                    self.pollers,
                    self.queue_url,
                    self.order_changes_topic,
                    self.dead_letters_topic,
                    self.visibility_timeout,
                )
                stats = asyncio.create_task(self._log_stats())
                try:
                    async with asyncio.TaskGroup() as pollers:
                        for index in range(self.pollers):
                            pollers.create_task(self._poll(queue, producer, index))
                finally:
                    stats.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await stats
            finally:
                await producer.stop()
        log.info("bridge stopped: %s", self.counters.summary())
        if self._fatal is not None:
            raise self._fatal

    # --- one poller -------------------------------------------------------------------------------------

    async def _poll(self, queue: SqsQueue, producer: AIOKafkaProducer, index: int) -> None:
        backoff = _Backoff()
        try:
            while not self._stopping.is_set():
                try:
                    messages = await self._receive(queue)
                except SqsError as exc:
                    if isinstance(exc, QueueMisconfigured):
                        raise
                    self.counters.receive_errors += 1
                    delay = backoff.next()
                    log.warning("poller %d: %s; receiving again in %.0f s", index, exc, delay)
                    await self._pause(delay)
                    continue
                if messages and not await self._forward(queue, producer, messages):
                    await self._pause(backoff.next())
                else:
                    backoff.reset()
        except QueueMisconfigured as exc:
            log.error("poller %d: %s; stopping the bridge", index, exc)
            self._fail(exc)
        except Exception as exc:  # a bug: stop everything gracefully rather than lose one poller silently
            log.exception("poller %d crashed; stopping the bridge", index)
            self._fail(exc)

    async def _receive(self, queue: SqsQueue) -> list[SqsMessage]:
        """One long poll, abandoned (empty result) when the bridge is told to stop meanwhile."""
        receive = asyncio.create_task(
            queue.receive(
                max_messages=self._max_messages,
                wait_seconds=self._wait_seconds,
                visibility_timeout=self.visibility_timeout,
            )
        )
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not receive.done():
                receive.cancel()
        try:
            return await receive
        except asyncio.CancelledError:
            if self._stopping.is_set() and not _current_task_cancelling():
                return []  # our own cancellation of an abandoned long poll
            raise

    async def _forward(self, queue: SqsQueue, producer: AIOKafkaProducer, messages: list[SqsMessage]) -> bool:
        """Produce one batch, wait for the acks, delete what was acknowledged. True when nothing failed."""
        self.counters.received += len(messages)
        now = self._clock.now()
        outbounds = [
            route(m, order_changes_topic=self.order_changes_topic, dead_letters_topic=self.dead_letters_topic, now=now)
            for m in messages
        ]
        for outbound in outbounds:
            if outbound.rejection is not None:
                log.warning(
                    "SQS message %s (receive #%d) is not a usable ORDER_CHANGE notification, dead-lettering it: %s",
                    outbound.message.message_id,
                    outbound.message.receive_count,
                    outbound.rejection,
                )
        async with self._kept_invisible(queue, messages):
            settled = settle(outbounds, await _produce(producer, outbounds))
            self._count_produced(settled)
            if settled.acked and self._after_produce is not None:
                await self._after_produce([o.message for o in settled.acked])
        deleted = await self._delete(queue, [o.message for o in settled.acked])
        return deleted and not settled.failed

    def _count_produced(self, settled: Settled) -> None:
        dead = sum(1 for o in settled.acked if o.rejection is not None)
        self.counters.dead_lettered += dead
        self.counters.forwarded += len(settled.acked) - dead
        self.counters.produce_failures += len(settled.failed)
        if settled.failed:
            outbound, error = settled.failed[0]
            log.warning(
                "Kafka did not acknowledge %d of %d record(s) (first: SQS message %s to %s: %r); "
                "they stay in SQS and come back after the visibility timeout",
                len(settled.failed),
                len(settled.failed) + len(settled.acked),
                outbound.message.message_id,
                outbound.topic,
                error,
            )

    async def _delete(self, queue: SqsQueue, messages: list[SqsMessage]) -> bool:
        if not messages:
            return True
        try:
            failures = await queue.delete_batch(messages)
        except QueueMisconfigured:
            raise
        except SqsError as exc:
            self.counters.delete_failures += len(messages)
            log.warning(
                "could not delete %d forwarded message(s): %s; they will be forwarded again (duplicates are dropped "
                "downstream by NotificationId)",
                len(messages),
                exc,
            )
            return False
        self.counters.deleted += len(messages) - len(failures)
        self.counters.delete_failures += len(failures)
        for failure in failures:
            log.warning(
                "SQS refused to delete forwarded message %s (%s: %s); it will be forwarded again",
                failure.message.message_id,
                failure.code,
                failure.detail,
            )
        return True

    # --- visibility ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _kept_invisible(self, queue: SqsQueue, messages: list[SqsMessage]) -> AsyncIterator[None]:
        """While the body runs, extend the messages' visibility every half visibility timeout."""
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep_invisible(queue, messages, done))
        try:
            yield
        finally:
            done.set()
            await keeper

    async def _keep_invisible(self, queue: SqsQueue, messages: list[SqsMessage], done: asyncio.Event) -> None:
        interval = self.visibility_timeout / 2
        while True:
            try:
                await asyncio.wait_for(done.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            try:
                failures = await queue.extend_visibility(messages, self.visibility_timeout)
            except SqsError as exc:
                log.warning("could not extend the visibility of %d message(s): %s", len(messages), exc)
                continue
            self.counters.visibility_extensions += 1
            for failure in failures:
                log.warning(
                    "could not extend the visibility of message %s (%s: %s); another consumer may receive it too",
                    failure.message.message_id,
                    failure.code,
                    failure.detail,
                )

    # --- lifecycle helpers --------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self.stop()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the bridge is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _log_stats(self) -> None:
        last_forwarded, last_time = 0, self._clock.monotonic()
        while True:
            await asyncio.sleep(self._stats_interval)
            now = self._clock.monotonic()
            forwarded = self.counters.forwarded + self.counters.dead_lettered
            rate = (forwarded - last_forwarded) / max(now - last_time, 1e-9)
            log.info("bridge: %s (%.1f msg/s produced since the last report)", self.counters.summary(), rate)
            last_forwarded, last_time = forwarded, now


async def _produce(producer: AIOKafkaProducer, outbounds: Sequence[Outbound]) -> list[object]:
    """Send every record (in order, so one order's events keep their order), then wait for all the acks.

    Returns one entry per record: its RecordMetadata, or the exception that says it was not acknowledged.
    """
    pending: list[asyncio.Future[object] | BaseException] = []
    for outbound in outbounds:
        try:
            pending.append(await producer.send(outbound.topic, outbound.value, key=outbound.key))
        except KafkaError as exc:  # e.g. no metadata for the topic within request_timeout_ms
            pending.append(exc)
    futures = [p for p in pending if isinstance(p, asyncio.Future)]
    results = iter(await asyncio.gather(*futures, return_exceptions=True))
    return [p if isinstance(p, BaseException) else next(results) for p in pending]


def _current_task_cancelling() -> bool:
    """True when someone cancelled the running task itself (not just a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Backoff:
    def __init__(self) -> None:
        self._next = BACKOFF_START_S

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, BACKOFF_CAP_S)
        return delay

    def reset(self) -> None:
        self._next = BACKOFF_START_S
