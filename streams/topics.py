"""Every Kafka topic of the system, as a contract: name, key, partitions, value model, cleanup policy.

Names are versioned (``.v1``): a change to a key or value that old readers cannot read gets a new name, and
both run side by side until the old one drains. Other systems integrate here: they may produce ORDER_CHANGE
JSON into ``order-changes`` (validated exactly like SQS input; invalid records go to ``dead-letters``), and
read ``outcomes`` and ``dead-letters``.

Partitioning decides correctness, so it is decided here once:

* ``order-changes`` and ``order-events`` are keyed by order (``<seller id>/<order id>``) and **must have the same
  partition count** as each other and as the orders table: one order lives on one partition, processed by
  one worker, in order.
* ``send-commands`` is keyed by seller: one seller's commands meet in one sender, which owns its rate limit.
* ``sellers`` is compacted and keyed by seller id: the latest record per seller, a tombstone removes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

DEFAULT_PARTITIONS = 12


@dataclass(frozen=True)
class TopicSpec:
    """One topic's contract."""

    name: str
    key: str
    value: str
    description: str
    partitions: int | None = None
    """Fixed partition count; None = the deployment's configured count (``SOLICIT_PARTITIONS``)."""
    config: dict[str, str] = field(default_factory=dict)

    def partition_count(self, default: int) -> int:
        return self.partitions if self.partitions is not None else default

    def named(self, prefix: str) -> str:
        """The topic's name in a deployment whose topics carry ``prefix`` (``SOLICIT_TOPIC_PREFIX``)."""
        return f"{prefix}{self.name}"


ORDER_CHANGES = TopicSpec(
    name="solicit.order-changes.v1",
    key="order key `<seller id>/<order id>` (UTF-8)",
    value="ORDER_CHANGE notification JSON, Amazon's schema (`statemachine.notification.Notification`)",
    description="Input: every ORDER_CHANGE notification (from the SQS bridge or any producer).",
)
ORDER_EVENTS = TopicSpec(
    name="solicit.order-events.v1",
    key="order key `<seller id>/<order id>` (UTF-8)",
    value="`TimerFired` or `SendResult` JSON (`statemachine.events`), discriminated by `kind`",
    description="Internal: timer firings and send results, back to the orders agent (co-partitioned with input).",
)
SEND_COMMANDS = TopicSpec(
    name="solicit.send-commands.v1",
    key="seller id (UTF-8)",
    value="`SendCommand` JSON (`statemachine.events`)",
    description="Internal: check-and-send commands for the sender, one seller per key.",
)
OUTCOMES = TopicSpec(
    name="solicit.outcomes.v1",
    key="order key `<seller id>/<order id>` (UTF-8)",
    value="`StateChanged` or `SendAttempt` JSON, discriminated by `type` (`streams.outcomes`)",
    description="Output: every state change and every send attempt, for audit and integrations.",
)
DEAD_LETTERS = TopicSpec(
    name="solicit.dead-letters.v1",
    key="the failing record's key, when it had one",
    value="`DeadLetter` JSON (`streams.deadletters`): raw input, reason, source metadata",
    description="Output: input that could not be used, with the reason. Never silently dropped.",
)
SELLERS = TopicSpec(
    name="solicit.sellers.v1",
    key="seller id (UTF-8)",
    value="`SellerRecord` JSON (`streams.registry`), refresh token encrypted; tombstone = removed",
    description="Registry: one record per seller, compacted; the worker reads it as a global table.",
    partitions=1,
    config={"cleanup.policy": "compact"},
)

ALL_TOPICS: tuple[TopicSpec, ...] = (ORDER_CHANGES, ORDER_EVENTS, SEND_COMMANDS, OUTCOMES, DEAD_LETTERS, SELLERS)


async def ensure_topics(
    bootstrap_servers: str,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication_factor: int = 1,
    topics: tuple[TopicSpec, ...] = ALL_TOPICS,
    prefix: str = "",
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Existing topics are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.named(prefix),
                num_partitions=spec.partition_count(partitions),
                replication_factor=replication_factor,
                topic_configs=dict(spec.config),
            )
            for spec in topics
            if spec.named(prefix) not in existing
        ]
        if not wanted:
            return []
        created: list[str] = []
        for topic in wanted:  # one by one: a concurrent creator makes only its own topic fail
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def partition_counts(bootstrap_servers: str, names: list[str]) -> dict[str, int]:
    """Partition count of each named topic that exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        await admin.start()
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
