"""Follow a run through its output topics: the latest state of every order, dead letters, send attempts.

Reads ``outcomes`` and ``dead-letters`` from the beginning with a plain consumer (no group, every partition):
exactly what an integration of another system would do. It connects as the run's processes do (TLS, SASL: the same
:class:`connectors.kafka.KafkaConnection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.kafka import KafkaConnection, partition_counts
from devstack.demo.scenario import category


@dataclass
class RunView:
    """What the output topics said so far."""

    states: dict[str, str] = field(default_factory=dict)
    """order key -> latest state."""
    reasons: dict[str, str] = field(default_factory=dict)
    dead_letters: list[dict[str, object]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    """send attempt results by kind."""
    events: int = 0

    def by_category(self) -> Counter[str]:
        return Counter(category(state) for state in self.states.values())

    def by_state(self) -> Counter[str]:
        return Counter(self.states.values())


class OutcomeMonitor:
    """Consumes the run's output topics into a :class:`RunView` until stopped."""

    def __init__(self, kafka: KafkaConnection | str, *, outcomes_topic: str, dead_letters_topic: str) -> None:
        self.view = RunView()
        self._connection = kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(bootstrap_servers=kafka)
        self._topics = (outcomes_topic, dead_letters_topic)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        counts = await partition_counts(self._connection, self._topics)
        missing = [topic for topic in self._topics if topic not in counts]
        if missing:
            raise RuntimeError(f"topics missing: {missing}")
        partitions = [TopicPartition(topic, p) for topic in self._topics for p in range(counts[topic])]
        consumer = AIOKafkaConsumer(**self._connection.client_kwargs(), enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        outcomes_topic = self._topics[0]
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    if message.value is None:
                        continue
                    value = json.loads(message.value)
                    if tp.topic != outcomes_topic:
                        self.view.dead_letters.append(value)
                    elif value.get("type") == "state_changed":
                        self.view.states[value["order_key"]] = value["dest"]
                        self.view.reasons[value["order_key"]] = value["reason"]
                        self.view.events += 1
                    elif value.get("type") == "send_attempt":
                        self.view.attempts[value["result"]] += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
