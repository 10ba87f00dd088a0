"""Measure the SQS -> Kafka bridge's throughput against moto, next to moto's own ceiling.

    .venv/bin/python bench/bridge_throughput.py [--messages 2000] [--pollers 1 4]

For each poller count: load ``--messages`` valid ORDER_CHANGE bodies into a fresh queue (SendMessageBatch), run
the real :class:`streams.bridge.Bridge` (acks=all, idempotent producer, production long-poll settings) until every
message is deleted, and check that every record is in Kafka. The baseline is a bare receive(10) + DeleteMessageBatch
loop with the same number of pollers against the same moto server and no Kafka. That is the most any SQS consumer
gets out of moto, so ``ratio`` = bridge / baseline shows what the bridge itself costs.

moto runs in its own process (``python -m moto.server``), as a remote SQS would, so it does not share our GIL.
Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a :class:`devstack.local_kafka.LocalBroker` on free ports in a temp
dir, stopped at the end. moto is slow (receive deep-copies messages, delete is O(queue length)), so absolute
figures say more about moto than about AWS. The ratio is what to watch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.clock import SystemClock
from connectors.sqs import SqsQueue
from devstack.local_kafka import LocalBroker, find_free_ports
from streams.bridge import Bridge, BridgeConfig
from streams.settings import KafkaSettings
from streams.topic_admin import ensure_topics
from streams.topics import DEAD_LETTERS, ORDER_CHANGES

PARTITIONS = 12

REGION = "us-east-1"


def body(i: int) -> str:
    """One valid ORDER_CHANGE body; 200 sellers x 10 orders, unique NotificationId."""
    return json.dumps(
        {
            "NotificationVersion": "1.0",
            "NotificationType": "ORDER_CHANGE",
            "PayloadVersion": "1.0",
            "EventTime": "2026-03-03T12:00:00.000Z",
            "Payload": {
                "OrderChangeNotification": {
                    "NotificationLevel": "OrderLevel",
                    "SellerId": f"SELLER{i % 200:04d}",
                    "AmazonOrderId": f"111-{i:07d}-0000001",
                    "OrderChangeType": "OrderStatusChange",
                    "OrderChangeTrigger": {"TimeOfOrderChange": "2026-03-03T12:00:00.000Z", "ChangeReason": "bench"},
                    "Summary": {
                        "MarketplaceId": "ATVPDKIKX0DER",
                        "OrderStatus": "Shipped",
                        "PurchaseDate": "2026-03-02T12:00:00.000Z",
                        "DestinationPostalCode": "48110",
                        "FulfillmentType": "MFN",
                        "OrderType": "StandardOrder",
                        "EarliestDeliveryDate": "2026-03-05T12:00:00.000Z",
                        "LatestDeliveryDate": "2026-03-09T12:00:00.000Z",
                        "OrderItems": [
                            {"OrderItemId": "OIID1", "SellerSKU": "SKU1", "SupplySourceId": None, "Quantity": 1}
                        ],
                    },
                }
            },
            "NotificationMetadata": {
                "ApplicationId": "bench-app",
                "SubscriptionId": "bench-sub",
                "PublishTime": "2026-03-03T12:00:00.000Z",
                "NotificationId": f"bench-{i}",
            },
        }
    )


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    (port,) = find_free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def kafka() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        port, controller = find_free_ports(2)
        broker = LocalBroker(data_dir=Path(tmp), port=port, controller_port=controller)
        report = broker.start()
        try:
            yield report.bootstrap
        finally:
            broker.stop()


async def load_queue(client: Any, messages: int) -> str:
    url = str((await client.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}"))["QueueUrl"])
    semaphore = asyncio.Semaphore(8)

    async def send(start: int) -> None:
        async with semaphore:
            entries = [{"Id": str(i), "MessageBody": body(i)} for i in range(start, min(start + 10, messages))]
            await client.send_message_batch(QueueUrl=url, Entries=entries)

    await asyncio.gather(*(send(start) for start in range(0, messages, 10)))
    return url


async def baseline(url: str, pollers: int, messages: int) -> float:
    """Seconds a bare receive + delete loop takes to drain ``messages``."""
    done = 0
    async with SqsQueue.open(url, max_connections=2 * pollers + 2) as queue:

        async def poll() -> None:
            nonlocal done
            while done < messages:
                batch = await queue.receive(wait_seconds=1, visibility_timeout=60)
                if batch:
                    await queue.delete_batch(batch)
                    done += len(batch)

        began = time.perf_counter()
        await asyncio.gather(*(poll() for _ in range(pollers)))
        return time.perf_counter() - began


async def bridge_run(url: str, bootstrap: str, pollers: int, messages: int) -> tuple[float, int]:
    """Seconds the bridge takes (start included) until every message is deleted and in Kafka; and duplicates."""
    topic, dead = f"bench-changes-{uuid.uuid4().hex[:8]}", f"bench-dead-{uuid.uuid4().hex[:8]}"
    # Created up front, as `solicit bridge` does, so the run measures forwarding rather than topic creation.
    specs = (dataclasses.replace(ORDER_CHANGES, name=topic), dataclasses.replace(DEAD_LETTERS, name=dead))
    kafka = KafkaSettings(bootstrap_servers=bootstrap, partitions=PARTITIONS)
    await ensure_topics(kafka, specs)
    bridge = Bridge(
        config=BridgeConfig(queue_url=url, pollers=pollers, stats_interval=3600.0),
        kafka=kafka,
        clock=SystemClock(),
        order_changes_topic=topic,
        dead_letters_topic=dead,
    )
    began = time.perf_counter()
    task = asyncio.create_task(bridge.run())
    while bridge.counters.deleted < messages:
        if task.done():
            task.result()
            raise RuntimeError("the bridge stopped early")
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - began
    bridge.stop()
    await task
    in_kafka = await records_in(bootstrap, topic)
    # At least once: moto's non-atomic receive now and then hands one message to two pollers.
    if in_kafka < messages or in_kafka != bridge.counters.forwarded:
        raise RuntimeError(f"{in_kafka} records in Kafka for {messages} messages ({bridge.counters.summary()})")
    return elapsed, in_kafka - messages


async def records_in(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def sqs_client() -> AsyncIterator[Any]:
    async with get_session().create_client("sqs") as client:
        yield client


async def measure(bootstrap: str, messages: int, poller_counts: list[int]) -> None:
    print(f"messages={messages} kafka={bootstrap} partitions={PARTITIONS}")
    print(f"{'pollers':>7} {'baseline msg/s':>15} {'bridge msg/s':>13} {'ratio':>6} {'duplicates':>10}")
    async with sqs_client() as client:
        for pollers in poller_counts:
            base_s = await baseline(await load_queue(client, messages), pollers, messages)
            bridge_s, duplicates = await bridge_run(await load_queue(client, messages), bootstrap, pollers, messages)
            base_rate, bridge_rate = messages / base_s, messages / bridge_s
            ratio = bridge_rate / base_rate
            print(f"{pollers:>7} {base_rate:>15.1f} {bridge_rate:>13.1f} {ratio:>6.2f} {duplicates:>10}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--pollers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    with moto_server() as endpoint, kafka() as bootstrap:
        os.environ.update(
            AWS_ENDPOINT_URL_SQS=endpoint,
            AWS_DEFAULT_REGION=REGION,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
        )
        asyncio.run(measure(bootstrap, args.messages, args.pollers))


if __name__ == "__main__":
    main()
