"""Topics as resources on the cluster: create the missing ones, check the co-partitioned ones.

Every command that may create a topic goes through :func:`ensure_topics`, so partitions, replication and topic
configs come from one place: the contracts in :mod:`streams.topics` and the deployment's :class:`KafkaSettings`.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.kafka import NewTopicSpec, create_missing_topics, partition_counts
from streams.settings import KafkaSettings
from streams.topics import ALL_TOPICS, ORDER_CHANGES, ORDER_EVENTS, SEND_COMMANDS, TopicSpec


async def ensure_topics(kafka: KafkaSettings, topics: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet (partitions and replication from ``kafka``); return those created.

    Existing topics are left alone. ``topics`` may carry other names (tests, tools): each spec is used as is, with
    the deployment's prefix added only to the standard topics (``ALL_TOPICS``).
    """
    wanted = [
        NewTopicSpec(
            name=spec.named(kafka.topic_prefix) if spec in ALL_TOPICS else spec.name,
            partitions=spec.partition_count(kafka.partitions),
            replication_factor=kafka.replication_factor,
            config=dict(spec.config),
        )
        for spec in topics
    ]
    return await create_missing_topics(kafka, wanted)


async def co_partitioning_problem(kafka: KafkaSettings) -> str | None:
    """A description of what is wrong when the co-partitioned topics disagree with ``kafka.partitions``."""
    names = [spec.named(kafka.topic_prefix) for spec in (ORDER_CHANGES, ORDER_EVENTS, SEND_COMMANDS)]
    counts = await partition_counts(kafka, names)
    wrong = {name: count for name, count in counts.items() if count != kafka.partitions}
    if not wrong:
        return None
    listed = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
    return (
        f"topic partitions do not match SOLICIT_KAFKA__PARTITIONS={kafka.partitions}: {listed}. "
        "Set SOLICIT_KAFKA__PARTITIONS to the existing count (partitions cannot shrink), or recreate the topics."
    )
