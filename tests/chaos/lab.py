"""The chaos lab: the real stack on its own Kafka broker, and the harm done to it.

* :class:`ChaosLab` owns a :class:`~devstack.local_kafka.LocalBroker` (so it may stop and restart it) and a
  :class:`~devstack.demo.stack.Stack` on it: the sandbox, two workers and a bridge. The bridge runs under
  ``tests.support.bridge_faults hold-after-produce``: every acknowledged batch is held a moment before its SQS
  delete, so a SIGKILL can land exactly between Kafka's ack and the delete (the worst moment: redelivery).
* :class:`Feeder` sends the plan's deliveries: SQS messages (batches of ten, paced so moto's queue stays short)
  and records produced straight to ``order-changes`` with librdkafka's CRC32 partitioner.
* :class:`Supervisor` restarts a service that died on its own (as systemd or Kubernetes would) and remembers it.

Blocking work (process starts, the broker's restart, SQS calls) runs in threads, so the event loop keeps reading
the output topics meanwhile.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import botocore.session

from devstack.demo.stack import ChildProcess, Stack, StackConfig
from devstack.local_kafka import LocalBroker
from streams.topics import ORDER_CHANGES
from tests.chaos.audit import RunCounters
from tests.chaos.kafka_io import DirectProducer, crc32_partition
from tests.chaos.plan import ChaosPlan, Delivery
from tests.support.bridge_faults import HOLDING

WORKER_IDS = ("a", "b")


def sqs_client(endpoint: str) -> Any:
    """A plain botocore SQS client on the moto server (any credentials do)."""
    return botocore.session.get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x"
    )


WORKING = ("rebuilt from the orders table", "kept from the last clean shutdown")
"""What a worker logs once it owns partitions whose due index is complete (and so has something to checkpoint)."""


@dataclass
class ChaosLab:
    """The stack of one chaos run and the broker under it."""

    broker: LocalBroker
    stack: Stack
    counters: RunCounters = field(default_factory=RunCounters)
    bridge: ChildProcess | None = None
    bridge_hold_seconds: float = 0.3
    _killed: set[int] = field(default_factory=set)

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    # --- services -------------------------------------------------------------------------------------------
    def start_bridge(self) -> ChildProcess:
        """The bridge, holding each acknowledged batch ``bridge_hold_seconds`` before deleting it from SQS."""
        runs = sum(1 for child in self.stack.children if child.name.startswith("bridge"))
        argv = [
            sys.executable,
            "-m",
            "tests.support.bridge_faults",
            "hold-after-produce",
            str(self.bridge_hold_seconds),
        ]
        log = self.config.run_dir / "logs" / f"bridge-{runs + 1}.log"
        child = ChildProcess(f"bridge-{runs + 1}", argv, self.config.env(), log).start()
        self.stack.children.append(child)
        self.bridge = child
        return child

    def start_worker(self, worker_id: str) -> ChildProcess:
        return self.stack.start_worker(worker_id, wait=False)

    def workers(self) -> dict[str, ChildProcess]:
        return dict(self.stack.workers)

    # --- harm -------------------------------------------------------------------------------------------------
    def kill_worker(self, worker_id: str) -> None:
        """SIGKILL one worker (no commit, no flush, no goodbye) and start a new process in its place."""
        worker = self.stack.workers[worker_id]
        self._killed.add(worker.pid)
        worker.kill()
        self.counters.kills += 1
        self.start_worker(worker_id)

    def restart_worker_cleanly(self, worker_id: str) -> int | None:
        """SIGTERM one worker, wait for its clean exit (it checkpoints its partitions: streams/checkpoint.py) and start
        a new process in its place; the old one's exit code."""
        worker = self.stack.workers[worker_id]
        deadline = time.monotonic() + 30  # a worker just started has nothing to checkpoint yet: let it work first
        while time.monotonic() < deadline and not _working(worker):
            time.sleep(0.5)
        self._killed.add(worker.pid)  # stopped by us: not an unexpected exit
        code = worker.stop()
        self.counters.clean_restarts += 1
        self.start_worker(worker_id)
        return code

    def kill_bridge_mid_batch(self, timeout: float = 20.0) -> bool:
        """SIGKILL the bridge while it holds an acknowledged, undeleted batch; start a new one. False if none came."""
        bridge = self.bridge
        assert bridge is not None
        before = _count(bridge, HOLDING)
        deadline = time.monotonic() + timeout
        while _count(bridge, HOLDING) == before:
            if time.monotonic() > deadline or not bridge.alive():
                return False
            time.sleep(0.02)
        self._killed.add(bridge.pid)
        bridge.kill()
        self.counters.bridge_kills += 1
        self.start_bridge()
        return True

    def restart_broker(self, down_seconds: float = 3.0) -> None:
        """Stop the broker (SIGTERM), leave it down a moment, start it again on the same ports and data."""
        self.broker.stop()
        time.sleep(down_seconds)
        self.broker.start()
        self.counters.broker_restarts += 1

    def storm_429(self, calls: int) -> None:
        """The next ``calls`` SP-API calls (any seller, any operation) are throttled: a 429 storm."""
        self.stack.sandbox("POST", "faults", {"scripted": [{"fault": "429"}] * calls})
        self.counters.storm_429s += calls

    # --- supervision ------------------------------------------------------------------------------------------
    def revive(self) -> None:
        """Restart any worker or bridge that died without being killed by us, and remember it."""
        for worker_id, worker in self.workers().items():
            if not worker.alive() and worker.pid not in self._killed:
                self._note_exit(worker)
                self.start_worker(worker_id)
        if self.bridge is not None and not self.bridge.alive() and self.bridge.pid not in self._killed:
            self._note_exit(self.bridge)
            self.start_bridge()

    def _note_exit(self, child: ChildProcess) -> None:
        assert child.process is not None
        self._killed.add(child.pid)
        self.counters.unexpected_exits.append(f"{child.name} ({child.process.returncode})")

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every process's log, the broker's included, for a failure report."""
        parts = [f"--- {child.name}\n{child.log_tail(lines)}" for child in self.stack.children]
        parts.append(f"--- kafka broker\n{self.broker.log_tail(lines)}")
        return "\n".join(parts)

    def tracebacks(self) -> dict[str, int]:
        """Process log -> number of Python tracebacks in it."""
        counts = {}
        for child in self.stack.children:
            try:
                text = child.log_path.read_text(errors="replace")
            except OSError:
                continue
            if "Traceback" in text:
                counts[child.name] = text.count("Traceback")
        return counts


def _count(child: ChildProcess, needle: str) -> int:
    try:
        return child.log_path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


class Feeder:
    """Sends the plan's deliveries in order: SQS in batches of ten, direct records with the CRC32 partitioner.

    Paced at ``rate`` deliveries per second, and waiting while moto's queue holds more than ``max_depth``
    messages (moto's delete costs O(queue length), so a long queue slows everything down).
    """

    def __init__(self, lab: ChaosLab, plan: ChaosPlan, *, rate: float = 40.0, max_depth: int = 300) -> None:
        self.lab = lab
        self.plan = plan
        self.rate = rate
        self.max_depth = max_depth
        self.topic = ORDER_CHANGES.named(lab.config.topic_prefix)
        self._sqs = sqs_client(lab.config.sqs_endpoint)
        self.done = 0

    async def run(self) -> None:
        producer = DirectProducer(self.lab.config.kafka_bootstrap)
        await producer.start()
        try:
            started = time.monotonic()
            deliveries = self.plan.deliveries
            for start in range(0, len(deliveries), 10):
                chunk = deliveries[start : start + 10]
                await self._send(chunk, producer)
                self.done += len(chunk)
                ahead = self.done / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
                await self._wait_for_room()
        finally:
            await producer.stop()

    async def _send(self, chunk: list[Delivery], producer: DirectProducer) -> None:
        bodies = [d.body for d in chunk if d.channel == "sqs"]
        if bodies:
            await asyncio.to_thread(self._send_sqs, bodies)
            self.lab.counters.sqs_messages += len(bodies)
        partitions = self.lab.config.partitions
        for delivery in (d for d in chunk if d.channel == "kafka"):
            key = delivery.key.encode()
            await producer.send(self.topic, key, delivery.body.encode(), crc32_partition(key, partitions))
            self.lab.counters.direct_records += 1

    async def _wait_for_room(self) -> None:
        """Hold the feed while moto's queue is longer than ``max_depth``."""
        depth = await asyncio.to_thread(self._depth)
        while depth > self.max_depth:
            await asyncio.sleep(0.5)
            depth = await asyncio.to_thread(self._depth)

    def _send_sqs(self, bodies: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
        answer = self._sqs.send_message_batch(QueueUrl=self.lab.config.queue_url, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused messages: {answer['Failed']}")

    def _depth(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.lab.config.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))


def _working(worker: ChildProcess) -> bool:
    text = worker.log_path.read_text(errors="replace")
    return any(mark in text for mark in WORKING)
