"""A prototype of the batched orders loop docs/benchmarks.md proposes (P1): the worker's processor without Faust.

Variant ``d`` of ``bench/ingest.py`` (``python -m bench.faust_baselines d``). The same
:class:`streams.orders.OrdersProcessor` (parse, apply, stage, emit; the same due index) in a plain aiokafka loop:

1. ``getmany`` a batch of records;
2. hand each to the processor: its outputs are sent without waiting for each (one delivery future per output);
3. await the batch's outputs together, then write the batch's records (RocksDB + a changelog send each) and await
   those together: outputs first, then state, as the worker does record by record (:mod:`streams.orders`);
4. commit the batch's offsets once.

A crash anywhere before 4 replays the batch: outputs are repeated, never lost (at-least-once, as now). What a
product version also needs (rebalance handling, changelog recovery and standbys, the offset guard) is not here;
docs/benchmarks.md says what it costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rocksdict import Options, Rdict

from statemachine import OrderRecord, SendCommand, StateChanged
from streams.app import PRODUCER_BATCHING
from streams.deadletters import DeadLetter
from streams.dueindex import LocalDueIndex
from streams.orders import Delivery, OrdersProcessor, decode_record, encode_record
from streams.topics import DEAD_LETTERS, ORDER_EVENTS, OUTCOMES, SEND_COMMANDS

if TYPE_CHECKING:
    from bench.faust_baselines import Counter
    from streams.settings import Settings


class RocksStore:
    """The orders "table": one RocksDB per partition and a changelog topic, plus the worker's local due index."""

    def __init__(self, root: Path, producer: AIOKafkaProducer, changelog: str) -> None:
        self.root, self.producer, self.changelog = root, producer, changelog
        self.index = LocalDueIndex(root / "due-index")
        self.dbs: dict[int, Rdict] = {}

    def db(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(str(self.root / f"orders-{partition}"), options=Options(raw_mode=True))
        return self.dbs[partition]

    def get(self, key: str, partition: int) -> OrderRecord | None:
        raw = self.db(partition).get(key.encode())
        return decode_record(raw) if raw is not None else None

    def put(self, record: OrderRecord, partition: int, value: bytes | None = None) -> Delivery:
        key, value = record.key.encode(), value if value is not None else encode_record(record)
        self.db(partition)[key] = value
        sent: Delivery = self.producer.send_and_wait(self.changelog, value, key=key, partition=partition)
        return sent

    def delete(self, key: str, partition: int) -> Delivery:
        self.db(partition).delete(key.encode())
        sent: Delivery = self.producer.send_and_wait(self.changelog, None, key=key.encode(), partition=partition)
        return sent

    def index_add(self, partition: int, key: bytes) -> None:
        self.index.add(partition, key)

    def index_remove(self, partition: int, key: bytes) -> None:
        self.index.remove(partition, key)


class ProducerEmitter:
    """The processor's outputs straight to aiokafka: each send returns its delivery future without waiting for it."""

    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self.producer, self.prefix = producer, prefix

    async def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Delivery:
        future: Delivery = await self.producer.send(topic, value, key=key, partition=partition)
        return future

    async def command(self, command: SendCommand) -> Delivery:
        payload = command.model_dump_json().encode()
        return await self._send(SEND_COMMANDS.named(self.prefix), command.seller_id.encode(), payload)

    async def outcome(self, event: StateChanged) -> Delivery:
        payload = event.model_dump_json().encode()
        return await self._send(OUTCOMES.named(self.prefix), event.order_key.encode(), payload)

    async def dead_letter(self, letter: DeadLetter) -> Delivery:
        key = letter.key.encode() if letter.key is not None else None
        return await self._send(DEAD_LETTERS.named(self.prefix), key, letter.to_json())

    async def reroute(self, topic: str, partition: int, key: bytes, value: bytes) -> Delivery:
        return await self._send(topic, key, value, partition)


async def run_batched(settings: Settings, topic: str, counter: Counter) -> None:
    """Process ``topic`` a batch at a time until SIGTERM, telling ``counter`` about each record."""
    task = asyncio.ensure_future(_run(settings, topic, counter))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _run(settings: Settings, topic: str, counter: Counter) -> None:
    kafka, worker = settings.kafka, settings.worker
    changelog = f"{worker.app_id}-orders-changelog"
    await _create(kafka.client_kwargs(), changelog, kafka.partitions)
    linger_ms, batch = int(PRODUCER_BATCHING["producer_linger"] * 1000), PRODUCER_BATCHING["producer_max_batch_size"]
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", linger_ms=linger_ms, max_batch_size=batch)
    consumer = AIOKafkaConsumer(
        topic, **kafka.client_kwargs(), group_id=worker.app_id, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    worker.state_dir().mkdir(parents=True, exist_ok=True)
    store = RocksStore(worker.state_dir(), producer, changelog)
    processor = OrdersProcessor(
        store=store,
        emitter=ProducerEmitter(producer, kafka.topic_prefix),
        policies=lambda seller_id: None,
        clock=settings.sim.clock(),
        timing=settings.timing,
        partitions=kafka.partitions,
        changes_topic=topic,
        events_topic=ORDER_EVENTS.named(kafka.topic_prefix),
    )
    await producer.start()
    await consumer.start()
    try:
        while True:
            await _one_batch(consumer, processor, counter)
    finally:
        await consumer.stop()
        await producer.stop()


async def _one_batch(consumer: AIOKafkaConsumer, processor: OrdersProcessor, counter: Counter) -> None:
    batches = await consumer.getmany(timeout_ms=500, max_records=2000)
    outputs: list[Any] = []
    writes = []
    for messages in batches.values():
        for m in messages:
            handled = await processor.handle(
                topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value
            )
            outputs += handled.outputs
            if handled.write is not None:
                writes.append(handled.write)
            counter.processed()
    await asyncio.gather(*outputs)  # outputs first ...
    await asyncio.gather(*[delivery for w in writes for _, delivery in processor.outputs_confirmed(w)])  # ... state
    if batches:
        await consumer.commit()  # ... then the offsets, once per batch


async def _create(client: dict[str, Any], name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
