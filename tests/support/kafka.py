"""Kafka for tests: one broker per session (``kafka_bootstrap``) and fresh topics per test (``kafka_topic_factory``).

Where the broker comes from (first match wins):

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: that cluster (a CI service, or your ``solicit kafka up`` broker). Nothing is
   started or stopped.
2. ``SOLICIT_TEST_KAFKA=testcontainers``, the ``testcontainers`` package is installed and a Docker engine answers: a
   Kafka container. This path is optional and lightly tested, since our machines have no Docker. When it is
   unavailable, 3 is used.
3. Otherwise a :class:`devstack.local_kafka.LocalBroker` from the cached Maven jars, on free ports in a temp dir,
   stopped at session end. This is the same tooling as ``solicit kafka up``.

A broker that cannot start fails every test that needs it, with the reason and the broker log tail. Integration
tests never skip. Session fixtures read the environment once, before the per-test environment cleaner in
``tests/conftest.py`` runs, so ``SOLICIT_LAB__KAFKA_HOME`` and ``SOLICIT_TEST_KAFKA`` are honoured.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Protocol

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from devstack.local_kafka import JarCache, LocalBroker, LocalKafkaError, StartReport, find_free_ports
from devstack.settings import DevSettings

TESTCONTAINERS_IMAGE = "confluentinc/cp-kafka:7.9.0"
"""Confluent Platform 7.9 ships Kafka 3.9, the version the local broker runs."""

_ORIGIN = pytest.StashKey[str]()


class KafkaTopicFactory(Protocol):
    """Creates a uniquely named topic on the session broker and returns its name (deleted after the test)."""

    async def __call__(self, partitions: int = 1, *, config: Mapping[str, str] | None = None) -> str: ...


@pytest.fixture(scope="session")
def kafka_jar_cache() -> JarCache:
    """The Kafka jar cache of this session: ``SOLICIT_LAB__KAFKA_HOME``, else ``~/.cache/solicit/kafka-<version>``."""
    return JarCache.at(DevSettings().lab.kafka_home)


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kafka_jar_cache: JarCache
) -> Iterator[str]:
    """``host:port`` of a running Kafka broker, shared by the whole session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        request.config.stash[_ORIGIN] = f"external cluster {external} (KAFKA_BOOTSTRAP_SERVERS)"
        yield external
        return
    if os.environ.get("SOLICIT_TEST_KAFKA") == "testcontainers":
        container = _docker_kafka()
        if container is not None:
            with container as bootstrap:
                request.config.stash[_ORIGIN] = f"testcontainers {TESTCONTAINERS_IMAGE} at {bootstrap}"
                yield bootstrap
            return
    yield from _local_broker(request, tmp_path_factory, kafka_jar_cache)


def _local_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, jar_cache: JarCache
) -> Iterator[str]:
    port, controller_port = find_free_ports(2)
    broker = LocalBroker(
        data_dir=tmp_path_factory.mktemp("kafka"),
        port=port,
        controller_port=controller_port,
        kafka_home=jar_cache.home,
    )
    report = _start_or_fail(broker)
    download = f"jars downloaded in {report.jars.seconds:.1f} s, " if report.jars and report.jars.downloaded else ""
    request.config.stash[_ORIGIN] = (
        f"local broker {report.bootstrap} ({download}format {report.format_seconds:.1f} s, "
        f"start {report.ready_seconds:.1f} s; data {broker.data_dir})"
    )
    try:
        yield report.bootstrap
    finally:
        broker.stop()


def _start_or_fail(broker: LocalBroker) -> StartReport:
    try:
        return broker.start()
    except (LocalKafkaError, OSError) as exc:  # OSError: e.g. an unwritable SOLICIT_LAB__KAFKA_HOME
        reason = str(exc)
    # Outside the except block, so the report shows the message once, without the chained original.
    pytest.fail(f"The test Kafka broker could not start.\n{reason}", pytrace=False)


def _docker_kafka() -> contextlib.AbstractContextManager[str] | None:
    """A Kafka container context when testcontainers and a Docker engine are both available, else None."""
    try:
        containers = importlib.import_module("testcontainers.kafka")
        importlib.import_module("docker").from_env().ping()
    except Exception:  # ImportError, or docker.errors.DockerException when no engine answers
        return None
    return _run_container(containers.KafkaContainer)


@contextlib.contextmanager
def _run_container(container_class: Any) -> Iterator[str]:
    with container_class(image=TESTCONTAINERS_IMAGE).with_kraft() as container:
        yield str(container.get_bootstrap_server())


@pytest.fixture
async def kafka_topic_factory(kafka_bootstrap: str, request: pytest.FixtureRequest) -> AsyncIterator[KafkaTopicFactory]:
    """``await kafka_topic_factory(partitions=3)`` creates a topic named after the test and returns its name.

    Topics are created explicitly through CreateTopics (replication factor 1), and the factory returns once
    every partition has a leader, so producers and consumers can use the topic at once. They are deleted when
    the test ends.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="solicit-tests")
    await admin.start()
    created: list[str] = []
    stem = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:80] or "test"

    async def create(partitions: int = 1, *, config: Mapping[str, str] | None = None) -> str:
        name = f"t-{stem}-{uuid.uuid4().hex[:8]}"
        response = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=dict(config or {}))])
        for topic, code, *_ in response.topic_errors:
            if code != 0:
                raise for_code(code)(f"creating topic {topic}")
        created.append(name)
        await _wait_for_leaders(admin, name, partitions)
        return name

    try:
        yield create
    finally:
        if created:
            with contextlib.suppress(KafkaError):
                await admin.delete_topics(created)
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        (described,) = await admin.describe_topics([topic])
        leaders = [p["leader"] for p in described["partitions"]]
        if described["error_code"] == 0 and len(leaders) == partitions and min(leaders) >= 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic}: no leader for every partition after {limit_s:g} s: {described}")
        await asyncio.sleep(0.05)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line saying which Kafka the session used and how long the local broker took to start."""
    origin = config.stash.get(_ORIGIN, None)
    if origin is not None:
        terminalreporter.write_line(f"kafka: {origin}")
