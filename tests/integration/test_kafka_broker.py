from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack.local_kafka import JarCache, LocalBroker, find_free_ports
from tests.support.kafka import KafkaTopicFactory

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def test_produce_and_consume_round_trip(kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory) -> None:
    topic = await kafka_topic_factory(partitions=2)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        assert await producer.partitions_for(topic) == {0, 1}
        sent = await producer.send_and_wait(topic, b"please review", key=b"order-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"group-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            record = await consumer.getone()
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, sent.partition))
    finally:
        await consumer.stop()

    assert (record.key, record.value) == (b"order-1", b"please review")
    assert (record.partition, record.offset) == (sent.partition, sent.offset)
    assert committed == sent.offset + 1


def _cli_env(jar_cache: JarCache, **overrides: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SOLICIT_") and name != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env["SOLICIT_LAB__KAFKA_HOME"] = str(jar_cache.home)
    env.update(overrides)
    return env


def _solicit_kafka(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "kafka", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_up_status_up_again_down_and_restart(tmp_path: Path, kafka_jar_cache: JarCache) -> None:
    (port,) = find_free_ports(1)
    data = tmp_path / "kafka"
    where = ("--data-dir", str(data))
    env = _cli_env(kafka_jar_cache)
    try:
        up = _solicit_kafka("up", "--port", str(port), *where, env=env)
        assert up.returncode == 0, up.stderr
        assert f"ready at 127.0.0.1:{port}" in up.stdout
        marker_mtime = kafka_jar_cache.marker.stat().st_mtime_ns
        cluster_id = (data / "cluster.id").read_text()
        pid = int((data / "broker.pid").read_text())

        status = _solicit_kafka("status", *where, env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"pid {pid}, 127.0.0.1:{port}, answers metadata requests" in status.stdout

        again = _solicit_kafka("up", "--port", str(port), *where, env=env)
        assert again.returncode == 0, again.stderr
        assert f"already running at 127.0.0.1:{port} (pid {pid}" in again.stdout

        down = _solicit_kafka("down", *where, env=env)
        assert down.returncode == 0, down.stderr
        assert "Kafka stopped" in down.stdout
        assert LocalBroker(data_dir=data, port=port).running_pid() is None
        stopped = _solicit_kafka("status", *where, env=env)
        assert stopped.returncode == 3
        assert "stopped" in stopped.stdout

        # A second start reuses the formatted storage (same cluster id) and the cached jars.
        restart = _solicit_kafka("up", "--port", str(port), *where, env=env)
        assert restart.returncode == 0, restart.stderr
        assert "Downloaded" not in restart.stdout
        assert (data / "cluster.id").read_text() == cluster_id
        assert kafka_jar_cache.marker.stat().st_mtime_ns == marker_mtime
    finally:
        _solicit_kafka("down", *where, env=env)
    assert LocalBroker(data_dir=data, port=port).running_pid() is None


def test_cli_up_names_the_port_that_is_taken(tmp_path: Path, kafka_jar_cache: JarCache) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = _solicit_kafka("up", "--port", str(port), "--data-dir", str(tmp_path), env=_cli_env(kafka_jar_cache))

    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1" in result.stderr
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "broker.pid").exists()


def test_cli_up_without_java_says_how_to_get_it(tmp_path: Path, kafka_jar_cache: JarCache) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = _cli_env(kafka_jar_cache, PATH=str(empty_bin))
    env.pop("JAVA_HOME", None)
    (port,) = find_free_ports(1)

    result = _solicit_kafka("up", "--port", str(port), "--data-dir", str(tmp_path / "kafka"), env=env)

    assert result.returncode == 1
    assert "Java was not found" in result.stderr
    assert "JAVA_HOME" in result.stderr
    assert "Traceback" not in result.stderr
