"""Topics as production resources (issue 10): one function creates every topic with the replication, min ISR and
retention the settings say, and a deployment refuses to run on topics whose partitions differ from its settings."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.settings import KafkaSettings
from streams.topic_admin import ensure_topics, partition_problem, topic_config
from streams.topics import ALL_TOPICS, DEAD_LETTERS, ORDER_CHANGES, OUTCOMES, SELLERS

pytestmark = pytest.mark.integration


async def configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for response in described:
        for _code, _message, _type, name, entries in response.resources:
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found


async def test_every_topic_is_created_with_the_settings_retention_and_min_isr(kafka_bootstrap: str) -> None:
    prefix = f"t-res-{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=3)
    created = await ensure_topics(kafka)
    assert sorted(created) == sorted(spec.named(prefix) for spec in ALL_TOPICS)
    assert await ensure_topics(kafka) == []  # a second run changes nothing
    found = await configs(kafka_bootstrap, created)
    ninety_days = str(90 * 24 * 3600 * 1000)
    assert found[OUTCOMES.named(prefix)]["retention.ms"] == ninety_days
    assert found[DEAD_LETTERS.named(prefix)]["retention.ms"] == ninety_days
    assert found[SELLERS.named(prefix)]["cleanup.policy"] == "compact"
    assert found[SELLERS.named(prefix)]["retention.ms"] == "-1"
    assert {found[name]["min.insync.replicas"] for name in created} == {"1"}
    assert await partition_problem(kafka) is None


async def test_a_deployment_refuses_topics_with_other_partition_counts(kafka_bootstrap: str) -> None:
    prefix = f"t-res-{uuid.uuid4().hex[:8]}."
    await ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=2))
    problem = await partition_problem(
        KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=4)
    )
    assert problem is not None
    assert f"{ORDER_CHANGES.named(prefix)} has 2, not 4" in problem
    assert SELLERS.named(prefix) not in problem  # the registry has one partition whatever the setting


def test_the_audit_retention_and_min_isr_come_from_the_settings() -> None:
    kafka = KafkaSettings(replication_factor=3, min_insync_replicas=2, audit_retention=timedelta(days=120))
    assert topic_config(kafka, OUTCOMES) == {"min.insync.replicas": "2", "retention.ms": str(120 * 86_400_000)}
    assert topic_config(kafka, ORDER_CHANGES) == {"min.insync.replicas": "2"}
    with pytest.raises(ValueError, match="min_insync_replicas"):
        KafkaSettings(replication_factor=1, min_insync_replicas=2)
