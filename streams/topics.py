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


@dataclass(frozen=True)
class TopicSpec:
    """One topic's contract."""

    name: str
    key: str
    value: str
    description: str
    partitions: int | None = None
    """Fixed partition count; None = the deployment's configured count (``SOLICIT_KAFKA__PARTITIONS``)."""
    config: dict[str, str] = field(default_factory=dict)
    audit: bool = False
    """An audit trail: kept ``SOLICIT_KAFKA__AUDIT_RETENTION`` (default 90 days, longer than Amazon's window)."""

    def partition_count(self, default: int) -> int:
        return self.partitions if self.partitions is not None else default

    def named(self, prefix: str) -> str:
        """The topic's name in a deployment whose topics carry ``prefix`` (``SOLICIT_KAFKA__TOPIC_PREFIX``)."""
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
    value="`DueFiring` (`streams.dueindex`: a `TimerFired` with its index entry) or `SendResult` JSON, by `kind`",
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
    audit=True,
)
DEAD_LETTERS = TopicSpec(
    name="solicit.dead-letters.v1",
    key="the failing record's key, when it had one",
    value="`DeadLetter` JSON (`streams.deadletters`): raw input, reason, source metadata",
    description="Output: input that could not be used, with the reason. Never silently dropped.",
    audit=True,
)
SELLERS = TopicSpec(
    name="solicit.sellers.v1",
    key="seller id (UTF-8)",
    value="`SellerRecord` JSON (`streams.registry`), refresh token encrypted; tombstone = removed",
    description="Registry: one record per seller, compacted; every worker keeps a live view of the whole topic.",
    partitions=1,
    config={"cleanup.policy": "compact", "retention.ms": "-1"},
)

ALERTS = TopicSpec(
    name="solicit.alerts.v1",
    key="alert id `<kind>:<subject>` (UTF-8)",
    value="`Alert` JSON (`streams.alerts`): raised or resolved, with the reason",
    description="Output: conditions that need a person (revoked authorization, error rates, deadlines), each raised "
    "once and resolved once.",
    audit=True,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ORDER_CHANGES,
    ORDER_EVENTS,
    SEND_COMMANDS,
    OUTCOMES,
    DEAD_LETTERS,
    SELLERS,
    ALERTS,
)
