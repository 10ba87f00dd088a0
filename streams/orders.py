"""The orders agent's work for one Kafka record: decode, apply the core, store, index, emit.

This is the only writer of order state. It is written against two small seams so it can be tested without
Faust: an :class:`OrderStore` (the orders table and the due-time index, both of the record's partition) and an
:class:`Emitter` (the topics it produces to). The Faust agent in ``streams/agents.py`` is a thin loop around
:meth:`OrdersProcessor.handle`.

Never crashes on input: an undecodable record goes to the dead-letter topic with the reason; a record keyed
for the wrong partition (another producer's mistake) is re-published with the right key so that all events of
an order meet on one partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from pydantic import Field, TypeAdapter, ValidationError

from connectors.clock import Clock
from statemachine import (
    Event,
    InvalidNotification,
    OrderChanged,
    OrderRecord,
    Policy,
    SellerPolicy,
    SendCommand,
    SendResult,
    StateChanged,
    Timing,
    apply,
    parse_notification,
)
from statemachine.parse import describe_validation_error
from streams.deadletters import DeadLetter
from streams.dueindex import DueFiring, DueScanner, index_key, index_key_ms
from streams.topics import ORDER_CHANGES

log = logging.getLogger(__name__)

ORDER_EVENT: TypeAdapter[DueFiring | SendResult] = TypeAdapter(
    Annotated[DueFiring | SendResult, Field(discriminator="kind")]
)
"""Values of ``order-events``: timer firings (with their index entry) and send results."""


class OrderStore(Protocol):
    """The orders table and the due-time index of the partition being processed."""

    def get(self, key: str) -> OrderRecord | None: ...

    def put(self, record: OrderRecord) -> None: ...

    def delete(self, key: str) -> None: ...

    def index_add(self, key: bytes) -> None: ...

    def index_remove(self, key: bytes) -> None: ...


class Emitter(Protocol):
    """Where the agent's output goes."""

    async def command(self, command: SendCommand) -> None: ...

    async def outcome(self, event: StateChanged) -> None: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...

    async def reroute(self, key: bytes, value: bytes) -> None:
        """Publish an input record again, under the right key."""
        ...


class TableStore:
    """The orders table and the due index as an :class:`OrderStore` (Faust tables, used inside stream iteration)."""

    def __init__(self, orders: Any, due: Any) -> None:
        self.orders = orders
        self.due = due

    def get(self, key: str) -> OrderRecord | None:
        raw = self.orders.get(key.encode())
        if raw is None:
            return None
        try:
            return OrderRecord.model_validate_json(raw)
        except ValidationError as exc:
            log.error("stored record of %s is unreadable (%s); starting it over", key, exc.error_count())
            return None

    def put(self, record: OrderRecord) -> None:
        self.orders[record.key.encode()] = record.model_dump_json().encode()

    def delete(self, key: str) -> None:
        del self.orders[key.encode()]

    def index_add(self, key: bytes) -> None:
        self.due[key] = b""

    def index_remove(self, key: bytes) -> None:
        del self.due[key]


PolicyLookup = Callable[[str], SellerPolicy | None]
"""Seller id -> its policy, or None for a seller the registry does not know."""


class OrdersProcessor:
    """Applies one record at a time. Holds no order state itself."""

    def __init__(
        self,
        *,
        store: OrderStore,
        emitter: Emitter,
        policies: PolicyLookup,
        clock: Clock,
        timing: Timing,
        scanner: DueScanner | None = None,
        changes_topic: str = ORDER_CHANGES.name,
    ) -> None:
        self.changes_topic = changes_topic
        self.store = store
        self.emitter = emitter
        self.policies = policies
        self.clock = clock
        self.timing = timing
        self.scanner = scanner

    async def handle(self, *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """Process one record of ``order-changes`` or ``order-events``."""
        source = {"topic": topic, "partition": str(partition), "offset": str(offset)}
        raw = value if value is not None else b""
        try:
            event = self._decode(topic, raw)
        except InvalidNotification as exc:
            await self._reject(topic, exc.reason, raw, key, source)
            return
        expected = event.key.encode()
        if key != expected:
            if topic == self.changes_topic and isinstance(event, OrderChanged):
                log.warning("re-keying %s record at %s/%s to %s", topic, partition, offset, event.key)
                await self.emitter.reroute(expected, raw)
                return
            await self._reject(topic, f"record key {key!r} is not the order key {event.key!r}", raw, key, source)
            return
        await self._apply(event, partition)

    def _decode(self, topic: str, raw: bytes) -> Event:
        if topic == self.changes_topic:
            return OrderChanged.from_notification(parse_notification(raw))
        try:
            return ORDER_EVENT.validate_json(raw)
        except ValidationError as exc:
            raise InvalidNotification(f"not an order event: {describe_validation_error(exc)}") from None

    async def _reject(self, topic: str, reason: str, raw: bytes, key: bytes | None, source: dict[str, str]) -> None:
        log.warning("dead-lettering %s record at %s/%s: %s", topic, source["partition"], source["offset"], reason)
        await self.emitter.dead_letter(
            DeadLetter.build(
                source=topic,
                reason=reason,
                raw=raw,
                at=self.clock.now(),
                key=key.decode("utf-8", "replace") if key is not None else None,
                metadata=source,
            )
        )

    async def _apply(self, event: Event, partition: int) -> None:
        order_key = event.key
        before = self.store.get(order_key)
        policy = Policy(seller=self.policies(event.seller_id) or SellerPolicy(), timing=self.timing)
        decision = apply(before, event, self.clock.now(), policy)

        after = None if decision.delete else decision.record
        old_index = _index_of(before)
        new_index = _index_of(after)
        if decision.delete:
            self.store.delete(order_key)
        elif decision.changed and after is not None:
            self.store.put(after)
        if new_index != old_index:
            if old_index is not None:
                self.store.index_remove(old_index)
            if new_index is not None:
                self.store.index_add(new_index)
                if self.scanner is not None:
                    self.scanner.scheduled(partition, new_index)
        if isinstance(event, DueFiring) and event.index_due_ms is not None:
            fired = index_key_ms(event.index_due_ms, order_key)
            if fired not in (old_index, new_index):  # a leftover entry: drop it so it never fires again
                self.store.index_remove(fired)
            if self.scanner is not None:
                self.scanner.done(partition, fired)

        for command in decision.commands:
            await self.emitter.command(command)
        for changed in decision.events:
            await self.emitter.outcome(changed)
            log.info("%s: %s -> %s (%s)", changed.order_key, changed.source.value, changed.dest.value, changed.reason)


def _index_of(record: OrderRecord | None) -> bytes | None:
    if record is None or record.next_due is None:
        return None
    return index_key(record.next_due, record.key)
