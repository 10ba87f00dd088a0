"""Alerts against a real broker: published keyed by alert id, read back as the latest event of each, and shown by
``solicit sellers list`` as each seller's attention state."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from connectors.crypto import TokenCipher, generate_key
from connectors.kafka import KafkaConnection
from statemachine.marketplaces import Region
from streams.alert_feed import AlertPublisher, AlertsTopicMissing, read_alerts
from streams.alerts import Alert, AlertKind
from streams.directory import publish_records
from streams.registry import SellerRecord
from tests.support.kafka import KafkaTopicFactory

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
US = "ATVPDKIKX0DER"
AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def alert(kind: AlertKind, subject: str, status: Literal["raised", "resolved"], minute: int) -> Alert:
    seller = None if kind is AlertKind.DEAD_LETTERS else subject
    return Alert(
        alert_id=f"{kind.value}:{subject}",
        kind=kind,
        status=status,
        seller_id=seller,
        subject=subject,
        message=f"{kind.value} {status}",
        at=AT + timedelta(minutes=minute),
    )


async def keys_by_partition(bootstrap: str, topic: str, partitions: int) -> dict[bytes, set[int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: dict[bytes, set[int]] = {}
        async with asyncio.timeout(30):
            while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
                for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                    for message in messages:
                        assert message.key is not None
                        found.setdefault(message.key, set()).add(tp.partition)
        return found
    finally:
        await consumer.stop()


async def solicit(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SOLICIT_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SOLICIT_SECRET_KEY=generate_key())
    command = [sys.executable, "-m", "streams.cli", "sellers", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def seller(seller_id: str, cipher: TokenCipher) -> SellerRecord:
    return SellerRecord(
        seller_id=seller_id,
        name=f"Shop {seller_id}",
        region=Region.NA,
        marketplace_ids=(US,),
        refresh_token_encrypted=cipher.encrypt(SecretStr(f"Atzr|{uuid.uuid4().hex}")),
        updated_at=AT,
    )


async def test_published_alerts_read_back_as_the_latest_event_of_each(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory
) -> None:
    topic = await kafka_topic_factory(partitions=3)
    connection = KafkaConnection(bootstrap_servers=kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not an alert", key=b"junk")
    finally:
        await producer.stop()

    async with AlertPublisher(connection, topic) as publisher:
        first = [
            alert(AlertKind.AUTHORIZATION_REVOKED, "A1ONE", "raised", 0),
            alert(AlertKind.ERROR_RATE, "A1ONE", "raised", 0),
            alert(AlertKind.DEAD_LETTERS, "worker-1", "raised", 0),
        ]
        assert await publisher.publish(first) == 3
        later = [alert(AlertKind.ERROR_RATE, "A1ONE", "resolved", 5), alert(AlertKind.NO_SENDS, "A2TWO", "raised", 6)]
        assert await publisher.publish(later) == 2
        assert publisher.pending == 0

    latest = await read_alerts(connection, topic)

    assert {alert_id: event.status for alert_id, event in latest.items()} == {
        "authorization_revoked:A1ONE": "raised",
        "error_rate:A1ONE": "resolved",
        "dead_letters:worker-1": "raised",
        "no_sends:A2TWO": "raised",
    }
    assert latest["error_rate:A1ONE"] == later[0]
    placed = await keys_by_partition(kafka_bootstrap, topic, 3)
    assert all(len(partitions) == 1 for partitions in placed.values())  # keyed by alert id: one partition each
    assert b"error_rate:A1ONE" in placed


async def test_reading_a_missing_alerts_topic_says_so(kafka_bootstrap: str) -> None:
    with pytest.raises(AlertsTopicMissing):
        await read_alerts(KafkaConnection(bootstrap_servers=kafka_bootstrap), f"t-missing-{uuid.uuid4().hex}")


async def test_sellers_list_shows_the_attention_state(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory
) -> None:
    connection = KafkaConnection(bootstrap_servers=kafka_bootstrap)
    sellers_topic = await kafka_topic_factory(partitions=1, config={"cleanup.policy": "compact"})
    alerts_topic = await kafka_topic_factory(partitions=3)
    cipher = TokenCipher(SecretStr(generate_key()))
    await publish_records(
        connection, [seller(s, cipher) for s in ("A1FINE", "A2HURT", "A3HEALED")], topic=sellers_topic
    )
    async with AlertPublisher(connection, alerts_topic) as publisher:
        await publisher.publish(
            [
                alert(AlertKind.DEADLINE_NEAR, "A2HURT", "raised", 0),
                alert(AlertKind.ACCESS_DENIED, "A2HURT", "raised", 1),
                alert(AlertKind.NO_SENDS, "A3HEALED", "raised", 0),
                alert(AlertKind.NO_SENDS, "A3HEALED", "resolved", 2),
                alert(AlertKind.DEAD_LETTERS, "worker-1", "raised", 0),
            ]
        )
    where = ("--topic", sellers_topic, "--alerts-topic", alerts_topic)

    table = await solicit(kafka_bootstrap, "list", *where)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[-1] == "ATTENTION"
    assert {row.split()[0]: row.split()[-1] for row in rows} == {
        "A1FINE": "ok",
        "A2HURT": "access_denied,deadline_near",
        "A3HEALED": "ok",
    }

    only = await solicit(kafka_bootstrap, "list", "--attention", *where)
    assert only.returncode == 0, only.stderr
    assert [row.split()[0] for row in only.stdout.splitlines()[1:]] == ["A2HURT"]

    as_json = await solicit(kafka_bootstrap, "list", "--json", *where)
    assert as_json.returncode == 0, as_json.stderr
    assert {entry["seller_id"]: entry["attention"] for entry in json.loads(as_json.stdout)} == {
        "A1FINE": [],
        "A2HURT": ["access_denied", "deadline_near"],
        "A3HEALED": [],
    }

    missing = f"t-missing-{uuid.uuid4().hex}"
    without = await solicit(kafka_bootstrap, "list", "--topic", sellers_topic, "--alerts-topic", missing)
    assert without.returncode == 0, without.stderr
    assert [row.split()[-1] for row in without.stdout.splitlines()[1:]] == ["ok", "ok", "ok"]
    assert f"topic {missing} does not exist yet" in without.stderr
