"""How fast does one worker take in ORDER_CHANGE records? Against a bare consumer reading the same records.

    .venv/bin/python bench/worker_throughput.py [--orders 20000] [--partitions 4]

Produces N Shipped notifications (windows a month away, so nothing is sent) into a fresh ``order-changes``
topic, then:

* baseline: a plain aiokafka consumer reads all N records (no parsing, no state);
* measured: a real ``solicit worker`` process (Faust, RocksDB tables with changelogs, the due index) applies them;
  timed from the moment its agents start until N ``state_changed`` events are on the outcomes topic.

Prints records/s for both, their ratio, and the worker's resident memory at the end. Uses
``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts a broker from the cached jars in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack.demo.scenario import _notification
from devstack.demo.stack import ChildProcess, local_kafka, solicit_argv
from streams.settings import KafkaSettings
from streams.topic_admin import ensure_topics
from streams.topics import ORDER_CHANGES, OUTCOMES


async def produce(bootstrap: str, topic: str, count: int) -> None:
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(count):
            seller = f"A{i % 50:02d}BENCHSELLER"
            order = f"{100 + i % 50:03d}-{i:07d}-0000001"
            body = _notification(
                now - timedelta(days=1), seller, order, "ATVPDKIKX0DER", "Shipped", edd=now + timedelta(days=30)
            )
            futures.append(
                await producer.send(topic, key=f"{seller}/{order}".encode(), value=json.dumps(body).encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, partitions: int, count: int, *, only_state_changes: bool) -> float:
    """Seconds from the first to the ``count``-th record (or state change) read from the start of ``topic``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, start = 0, 0.0
        while seen < count:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for message in messages:
                    if not only_state_changes or b'"state_changed"' in (message.value or b""):
                        if seen == 0:
                            start = time.perf_counter()
                        seen += 1
        return time.perf_counter() - start
    finally:
        await consumer.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(orders: int, partitions: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="solicit-bench-") as tmp,
        local_kafka(Path(tmp) / "kafka") as (bootstrap, _),
    ):
        prefix = f"bench-{uuid.uuid4().hex[:6]}."
        await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, partitions=partitions, topic_prefix=prefix))
        changes, outcomes = ORDER_CHANGES.named(prefix), OUTCOMES.named(prefix)
        start = time.perf_counter()
        await produce(bootstrap, changes, orders)
        print(f"produced {orders} notifications in {time.perf_counter() - start:.1f} s")

        baseline = await consume(bootstrap, changes, partitions, orders, only_state_changes=False)
        print(f"baseline, bare consumer:   {orders / baseline:10,.0f} records/s ({baseline:.1f} s)")

        env_prefix = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SOLICIT_KAFKA__TOPIC_PREFIX": prefix,
            "SOLICIT_WORKER__APP_ID": f"bench-{prefix}",
            "SOLICIT_KAFKA__PARTITIONS": str(partitions),
            "SOLICIT_WORKER__DATA_DIR": str(Path(tmp) / "state"),
            "SOLICIT_WORKER__ID": "bench",
            "SOLICIT_WORKER__STANDBY_REPLICAS": "0",
            "SOLICIT_LOG_LEVEL": "warning",
        }
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLICIT_")} | env_prefix
        worker = ChildProcess("worker", solicit_argv("worker"), env, Path(tmp) / "worker.log").start()
        try:
            launched = time.perf_counter()
            measured = await consume(bootstrap, outcomes, partitions, orders, only_state_changes=True)
            total = time.perf_counter() - launched
            memory = rss_mb(worker.pid)
        finally:
            worker.stop()
        print(
            f"worker, applied + stored:  {orders / measured:10,.0f} records/s ({measured:.1f} s from the first"
            f" outcome to the last; {total:.1f} s from launch, start-up included)"
        )
        print(f"ratio (worker / bare consumer time): {measured / baseline:.1f}")
        print(f"worker resident memory at the end: {memory:.0f} MiB for {orders} orders")
        with contextlib.suppress(OSError):
            tail = (Path(tmp) / "worker.log").read_text().splitlines()[-3:]
            if any("ERROR" in line for line in tail):
                print("\n".join(tail))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.partitions))
