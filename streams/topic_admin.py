"""Topics as resources on the cluster: create the missing ones, check the existing ones.

Every command that may create a topic goes through :func:`ensure_topics`, so partitions, replication and topic
configs come from one place: the contracts in :mod:`streams.topics` and the deployment's :class:`KafkaSettings`.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.kafka import NewTopicSpec, create_missing_topics, partition_counts
from streams.settings import KafkaSettings
from streams.topics import ALL_TOPICS, TopicSpec


def topic_config(kafka: KafkaSettings, spec: TopicSpec) -> dict[str, str]:
    """The configs a topic is created with: its contract's, ``min.insync.replicas``, and retention for audit topics."""
    config = {**spec.config, "min.insync.replicas": str(kafka.min_insync_replicas)}
    if spec.audit:
        config["retention.ms"] = str(int(kafka.audit_retention.total_seconds() * 1000))
    return config


async def ensure_topics(kafka: KafkaSettings, topics: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; return those created. The one place topics are made: partitions,
    replication factor, ``min.insync.replicas`` and retention come from ``kafka`` and the contracts.

    Existing topics are left alone (:func:`partition_problem` checks them). ``topics`` may carry other names (tests,
    tools): each spec is used as is, with the deployment's prefix added only to the standard topics.
    """
    wanted = [
        NewTopicSpec(
            name=spec.named(kafka.topic_prefix) if spec in ALL_TOPICS else spec.name,
            partitions=spec.partition_count(kafka.partitions),
            replication_factor=kafka.replication_factor,
            config=topic_config(kafka, spec),
        )
        for spec in topics
    ]
    return await create_missing_topics(kafka, wanted)


async def partition_problem(kafka: KafkaSettings, topics: Iterable[TopicSpec] = ALL_TOPICS) -> str | None:
    """What is wrong when an existing topic's partition count differs from what the settings say it must be.

    ``order-changes``, ``order-events`` and the orders table must agree (one order, one partition); the others are
    checked too, so a deployment never runs on topics made for another configuration."""
    expected = {spec.named(kafka.topic_prefix): spec.partition_count(kafka.partitions) for spec in topics}
    counts = await partition_counts(kafka, expected)
    wrong = {name: count for name, count in counts.items() if count != expected[name]}
    if not wrong:
        return None
    listed = ", ".join(f"{name} has {count}, not {expected[name]}" for name, count in sorted(wrong.items()))
    return (
        f"topic partitions do not match the settings (SOLICIT_KAFKA__PARTITIONS={kafka.partitions}): {listed}. "
        "Set SOLICIT_KAFKA__PARTITIONS to the existing count (partitions cannot shrink), or recreate the topics."
    )
