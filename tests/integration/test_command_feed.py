"""The sender's feed of send-commands on the real broker: a command not settled before a crash is read again by the
next owner at once (issue 9.8: commands were acknowledged when queued, and came back only when their leases ran
out, 30 minutes later)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from connectors.kafka import KafkaConnection
from streams.command_feed import CommandFeed, OffsetTracker
from tests.support.kafka import KafkaTopicFactory

pytestmark = pytest.mark.integration


class Receiver:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, bytes | None]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, partition: int, offset: int, value: bytes | None) -> None:
        self.seen.append((partition, offset, value))
        self.arrived.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(30):
            while len(self.seen) < count:
                self.arrived.clear()
                await self.arrived.wait()


def feed(bootstrap: str, topic: str, group: str, receiver: Receiver, tracker: OffsetTracker) -> CommandFeed:
    return CommandFeed(
        connection=KafkaConnection(bootstrap_servers=bootstrap),
        topic=topic,
        group_id=group,
        receive=receiver,
        revoked=lambda _partitions: None,
        tracker=tracker,
        commit_interval=0.1,
    )


async def test_unsettled_commands_come_back_to_the_next_owner(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    for index in range(5):
        await producer.send_and_wait(topic, f"command-{index}".encode(), key=b"S1")
    await producer.stop()

    first, tracker = Receiver(), OffsetTracker()
    crashed = feed(kafka_bootstrap, topic, "g-feed", first, tracker)
    await crashed.start()
    await first.until(5)
    tracker.settled((0, 0))
    tracker.settled((0, 1))
    tracker.settled((0, 3))  # 2 is still in flight: nothing from 2 on may be committed
    await asyncio.sleep(0.5)
    await crashed.stop()  # commits what is settled, then goes away as a crashed worker would

    second = Receiver()
    successor = feed(kafka_bootstrap, topic, "g-feed", second, OffsetTracker())
    await successor.start()
    try:
        await second.until(3)
    finally:
        await successor.stop()
    assert [offset for _partition, offset, _value in second.seen] == [2, 3, 4]
