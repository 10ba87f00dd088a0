"""The ``alerts`` topic in Kafka: publish alert events, and read back the latest event of every alert.

Events are keyed by ``alert_id`` (``<kind>:<subject>``), so the raise and the resolve of one alert land on one
partition, in order: the last event of an id read in topic order is its state. Reading goes through
:mod:`connectors.kafka` (no consumer group; from the beginning to the end offsets taken at the start).

:class:`AlertPublisher` keeps the events it could not deliver and sends them first the next time, so an event the
engine decided is never lost to a transient Kafka error (the engine decides each only once).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from types import TracebackType

from aiokafka import AIOKafkaProducer, ConsumerRecord

from connectors.kafka import KafkaConnection, TopicMissing, idempotent_producer, read_to_end
from streams.alerting import latest_alerts
from streams.alerts import Alert

__all__ = ["DEFAULT_READ_TIMEOUT_S", "MAX_BACKLOG", "AlertPublisher", "AlertsTopicMissing", "read_alerts"]

log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT_S = 60.0
"""How long reading the alerts topic to its end may take before ``TimeoutError``."""
MAX_BACKLOG = 10_000
"""At most this many undelivered events are kept for the next attempt (the oldest are dropped beyond)."""

_CLIENT_ID = "solicit-alerts"


class AlertsTopicMissing(Exception):
    """The alerts topic does not exist: no worker has created it yet, so no alert was ever raised there."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist")
        self.topic = topic


async def read_alerts(
    connection: KafkaConnection, topic: str, *, within: float = DEFAULT_READ_TIMEOUT_S
) -> dict[str, Alert]:
    """The latest event of every alert on ``topic`` now (read once from the beginning to its end).

    Raises :class:`AlertsTopicMissing` when the topic does not exist, ``TimeoutError`` when its end is not reached
    within ``within`` seconds. Records that are not alerts are skipped.
    """
    values: list[bytes] = []

    def keep(record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is not None:
            values.append(record.value)

    try:
        await read_to_end(connection, topic, keep, within=within, client_id=_CLIENT_ID)
    except TopicMissing:
        raise AlertsTopicMissing(topic) from None
    return latest_alerts(values)


class AlertPublisher:
    """Sends alert events to the alerts topic, keyed by ``alert_id``, and waits for the broker's acknowledgement.

    Usable as ``async with AlertPublisher(connection, topic) as publisher: await publisher.publish(events)``.
    """

    def __init__(self, connection: KafkaConnection, topic: str, *, client_id: str = _CLIENT_ID) -> None:
        self._connection = connection
        self._topic = topic
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._backlog: deque[Alert] = deque(maxlen=MAX_BACKLOG)

    @property
    def pending(self) -> int:
        """Events not delivered yet (kept for the next :meth:`publish`)."""
        return len(self._backlog)

    async def start(self) -> None:
        await self._started()

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = idempotent_producer(self._connection, client_id=self._client_id)
            await producer.start()
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        """Stop the producer. Safe to call twice, or without start()."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        if self._backlog:
            log.warning("alerts: %d event(s) were not delivered to %s", len(self._backlog), self._topic)

    async def publish(self, alerts: Sequence[Alert]) -> int:
        """Deliver the undelivered events of earlier calls, then ``alerts``, in order; return how many were delivered.

        On a Kafka error the events not acknowledged stay queued for the next call, and the error is raised.
        """
        self._backlog.extend(alerts)
        if not self._backlog:
            return 0
        producer = await self._started()
        delivered = 0
        while self._backlog:  # one at a time: in order, and what was acknowledged is never sent twice
            alert = self._backlog[0]
            await producer.send_and_wait(self._topic, alert.model_dump_json().encode(), key=alert.alert_id.encode())
            self._backlog.popleft()
            delivered += 1
        return delivered

    async def __aenter__(self) -> AlertPublisher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
