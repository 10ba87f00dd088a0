"""The orders agent's work for one Kafka record: decode, apply the core, store, index, emit.

This is the only writer of order state. It is written against two small seams so it can be tested without
Faust: an :class:`OrderStore` (the orders table and the due-time index, both of the record's partition) and an
:class:`Emitter` (the topics it produces to). The Faust agent in ``streams/agents.py`` is a thin loop around
:meth:`OrdersProcessor.handle`.

Never crashes on input, and never "logs and acknowledges":

* an undecodable record, or one whose facts no real order has, goes to the dead-letter topic with the reason;
* a record under the wrong key, or on a partition other than ``murmur2(key) % partitions`` (a producer with
  another partitioner: librdkafka clients use CRC32), is re-published with the right key to the right partition,
  so every event of an order meets its record on one partition;
* a failure of the pure part (``apply``) for one record is deterministic: that record goes to dead letters;
* a failure writing the store or the topics propagates: the agent retries, then stops the worker so Kafka
  redelivers (``streams.agents``).

:meth:`OrdersProcessor.handle` sends an input's outputs and *stages* its record write (:class:`StagedWrites`): the
record is written once the outputs are confirmed, and the input is acknowledged once that write is confirmed. An
offset is never committed past a lost output, and a crash in between repeats outputs rather than losing them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, cast

from pydantic import Field, TypeAdapter, ValidationError

from connectors.clock import Clock
from statemachine import (
    Decision,
    Event,
    InvalidNotification,
    ManualAction,
    OrderChanged,
    OrderRecord,
    Policy,
    SellerPolicy,
    SendCommand,
    SendResult,
    SendStarted,
    StateChanged,
    Timing,
    apply,
    parse_notification,
)
from statemachine.parse import describe_validation_error
from streams import rocks
from streams.deadletters import DeadLetter
from streams.dueindex import RECORD_V2, DueFiring, DueScanner, LocalDueIndex, due_ms, index_key, index_key_ms
from streams.stats import PartitionStats
from streams.topics import ORDER_CHANGES, ORDER_EVENTS

log = logging.getLogger(__name__)

ORDER_EVENT: TypeAdapter[DueFiring | SendStarted | SendResult | ManualAction] = TypeAdapter(
    Annotated[DueFiring | SendStarted | SendResult | ManualAction, Field(discriminator="kind")]
)
"""Values of ``order-events``: timer firings (with their index entry), sends about to start, send results, manual
actions (skip, send now, re-check: from the web API or ``solicit orders``)."""


Delivery = Awaitable[Any]
"""A write in flight: resolves when Kafka acknowledged it, raises when it failed."""

MAX_RECORD_BYTES = 256 * 1024
"""A stored record larger than this is refused (dead letter): a changelog message over the broker's limit would
poison the partition. Real records are a few kilobytes (bounded history and notification ids)."""


class OrderStore(Protocol):
    """The orders table (with its changelog) and the due-time index, partition by partition."""

    def get(self, key: str, partition: int) -> OrderRecord | None: ...

    def put(self, record: OrderRecord, partition: int, value: bytes | None = None) -> Delivery:
        """Write ``record`` (``value``: its :func:`encode_record` bytes, when the caller has them already)."""
        ...

    def delete(self, key: str, partition: int) -> Delivery: ...

    def index_add(self, partition: int, key: bytes) -> None: ...

    def index_remove(self, partition: int, key: bytes) -> None: ...


class Emitter(Protocol):
    """Where the agent's output goes; each method returns the delivery of what it sent."""

    async def command(self, command: SendCommand) -> Delivery: ...

    async def outcome(self, event: StateChanged) -> Delivery: ...

    async def dead_letter(self, letter: DeadLetter) -> Delivery: ...

    async def reroute(self, topic: str, partition: int, key: bytes, value: bytes) -> Delivery:
        """Publish an input record again, under the right key, to the right partition."""
        ...


HEADER_BYTES = 9
"""The stored value's prefix before its JSON: :data:`~streams.dueindex.RECORD_V2` and ``be64(next_due)``."""


def encode_record(record: OrderRecord) -> bytes:
    """The stored value: ``0x02 ‖ be64(next_due in ms, 0 = none) ‖ JSON``; the prefix lets the due index be rebuilt
    from the table without parsing a single record (:func:`streams.dueindex.rebuild`)."""
    due = due_ms(record.next_due) if record.next_due is not None else 0
    return RECORD_V2 + struct.pack(">Q", due) + record.model_dump_json().encode()


def decode_record(raw: bytes) -> OrderRecord:
    """A stored value (this format, or the plain JSON earlier versions wrote)."""
    return OrderRecord.model_validate_json(record_json(raw))


def record_json(raw: bytes) -> bytes:
    """The JSON part of a stored value (readers that need a few fields parse only that)."""
    return raw[HEADER_BYTES:] if raw[:1] == RECORD_V2 else raw


class TableStore:
    """The Faust ``orders`` table and the worker's :class:`~streams.dueindex.LocalDueIndex` as an :class:`OrderStore`.

    A write goes to the changelog first; the partition's local RocksDB store gets it only once the broker confirmed
    it, together with that changelog offset, in one atomic batch (:func:`streams.rocks.apply_confirmed`). The send is
    returned as the delivery. Faust's own ``table[key] = value`` writes the local store first: a worker killed
    between that write and the changelog's confirmation kept a record the changelog never got, and its next process
    (same data dir) found the replayed input already applied and acknowledged it, so the record was lost for good
    once the partition moved (seen in the chaos suite: an order never checked). Until confirmed, a decided record is
    read from :class:`StagedWrites`.
    """

    def __init__(self, orders: Any, index: LocalDueIndex) -> None:
        self.orders = orders
        self.index = index

    def get(self, key: str, partition: int) -> OrderRecord | None:
        raw = rocks.get(self.orders, partition, key.encode())
        if raw is None:
            return None
        try:
            return decode_record(raw)
        except ValidationError as exc:
            log.error("stored record of %s is unreadable (%s); starting it over", key, exc.error_count())
            return None

    def put(self, record: OrderRecord, partition: int, value: bytes | None = None) -> Delivery:
        key, value = record.key.encode(), value if value is not None else encode_record(record)
        return self._write(partition, key, value)

    def delete(self, key: str, partition: int) -> Delivery:
        return self._write(partition, key.encode(), None)

    def _write(self, partition: int, key: bytes, value: bytes | None) -> Delivery:
        self.index.unseal(partition)  # the partition's checkpoint describes the records before this write
        landed = functools.partial(rocks.apply_confirmed, self.orders, partition, key, value)
        return cast(
            Delivery,
            self.orders.changelog_topic.send_soon(
                key=key,
                value=value,
                partition=partition,
                key_serializer="raw",
                value_serializer="raw",
                callback=lambda sent: landed(sent.result().offset),  # called once the broker has it, never on errors
                eager_partitioning=True,
            ),
        )

    def index_add(self, partition: int, key: bytes) -> None:
        self.index.add(partition, key)

    def index_remove(self, partition: int, key: bytes) -> None:
        self.index.remove(partition, key)


PolicyLookup = Callable[[str], SellerPolicy | None]
"""Seller id -> its policy, or None for a seller the registry does not know."""


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java, Faust, aiokafka) gives ``key``: murmur2, positive, mod n."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_WORDS = struct.Struct("<I")
_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (unsigned; the same numbers as ``aiokafka.partitioner.murmur2``) four bytes at a time: 1.8x as
    fast as aiokafka's byte loop, and a restart hashes every stored key (issue 12 P4)."""
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * _M) & 0xFFFFFFFF)
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h = ((h ^ data[whole]) * _M) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


@dataclass(eq=False)
class PendingWrite:
    """A record decided by the core whose outputs are in flight: written to the table only once they are confirmed."""

    key: str
    partition: int
    record: OrderRecord | None
    """None: delete the record."""
    value: bytes | None = None
    """The record as stored (:func:`encode_record`), serialised once when it was decided (its size was checked)."""
    ready: bool = False
    ack: Callable[[], object] = lambda: None
    """Acknowledges the input that caused the write (set by the agent)."""


@dataclass
class Handled:
    """What one input record caused: outputs sent (in flight), and the record write that must follow them."""

    outputs: list[Delivery] = field(default_factory=list)
    write: PendingWrite | None = None


class StagedWrites:
    """Outputs first, then state: the record of an event is written only after its outputs are confirmed.

    If the worker dies in between, the input is delivered again and decided again from the old record: its outputs
    are sent again (a command under the same lease, which the sender dedupes; an outcome line twice), never lost.
    Had the record been written first, the replay would find it changed already and send nothing (issue 9.7). Until
    written, a decided record is read from here, and writes happen in the order of the inputs.
    """

    def __init__(self, store: OrderStore) -> None:
        self.store = store
        self._queue: deque[PendingWrite] = deque()
        self._latest: dict[str, PendingWrite] = {}

    def get(self, key: str, partition: int) -> OrderRecord | None:
        pending = self._latest.get(key)
        return pending.record if pending is not None else self.store.get(key, partition)

    def stage(self, key: str, partition: int, record: OrderRecord | None, value: bytes | None = None) -> PendingWrite:
        pending = PendingWrite(key, partition, record, value)
        self._queue.append(pending)
        self._latest[key] = pending
        return pending

    def outputs_confirmed(self, pending: PendingWrite) -> list[tuple[PendingWrite, Delivery]]:
        """Write every staged record whose turn has come; each with the delivery of its changelog write."""
        pending.ready = True
        written: list[tuple[PendingWrite, Delivery]] = []
        while self._queue and self._queue[0].ready:
            head = self._queue.popleft()
            if head.record is None:
                delivery = asyncio.ensure_future(self.store.delete(head.key, head.partition))
            else:
                delivery = asyncio.ensure_future(self.store.put(head.record, head.partition, head.value))
            # Read from here until the store has it (it writes a record once the changelog confirmed it).
            delivery.add_done_callback(functools.partial(self._landed, head))
            written.append((head, delivery))
        return written

    def _landed(self, head: PendingWrite, _delivery: object) -> None:
        if self._latest.get(head.key) is head:
            del self._latest[head.key]

    def staged(self, partition: int) -> list[OrderRecord]:
        """Records of ``partition`` decided and not yet written (the due index must know them too)."""
        return [p.record for p in self._latest.values() if p.partition == partition and p.record is not None]


class OrdersProcessor:
    """Applies one record at a time. Holds no order state itself, only the writes waiting for their outputs."""

    def __init__(
        self,
        *,
        store: OrderStore,
        emitter: Emitter,
        policies: PolicyLookup,
        clock: Clock,
        timing: Timing,
        partitions: int,
        scanner: DueScanner | None = None,
        changes_topic: str = ORDER_CHANGES.name,
        events_topic: str = ORDER_EVENTS.name,
        stats: PartitionStats | None = None,
        observe: Callable[[str, str | None], None] = lambda kind, seller_id: None,
    ) -> None:
        self.changes_topic = changes_topic
        self.events_topic = events_topic
        self.partitions = partitions
        self.store = store
        self.writes = StagedWrites(store)
        self.emitter = emitter
        self.policies = policies
        self.clock = clock
        self.timing = timing
        self.scanner = scanner
        self.stats = stats
        self.observe = observe
        """Told each input's kind (``order_changed``, ..., ``rerouted``, ``dead_lettered``) and seller, if known."""

    async def handle(
        self, *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Handled:
        """Process one record of ``order-changes`` or ``order-events``."""
        source = {"topic": topic, "partition": str(partition), "offset": str(offset)}
        raw = value if value is not None else b""
        try:
            event = self._decode(topic, raw)
        except InvalidNotification as exc:
            return Handled([await self._reject(topic, exc.reason, raw, key, source)])
        self.observe(event.kind, event.seller_id)
        expected_key = event.key.encode()
        if key != expected_key and not (topic == self.changes_topic and isinstance(event, OrderChanged)):
            reason = f"record key {key!r} is not the order key {event.key!r}"
            return Handled([await self._reject(topic, reason, raw, key, source)])
        home = partition_for(expected_key, self.partitions)
        if key != expected_key or partition != home:
            log.warning(
                "re-routing %s record at %s/%s to %s[%d]",
                topic,
                partition,
                offset,
                event.key,
                home,
                extra={"seller_id": event.seller_id, "order_key": event.key},
            )
            self.observe("rerouted", event.seller_id)
            return Handled([await self.emitter.reroute(topic, home, expected_key, raw)])
        return await self._apply(event, partition, topic, raw, source)

    def outputs_confirmed(self, pending: PendingWrite) -> list[tuple[PendingWrite, Delivery]]:
        """The outputs of ``pending``'s input were confirmed: write what may be written now (:class:`StagedWrites`)."""
        return self.writes.outputs_confirmed(pending)

    def _decode(self, topic: str, raw: bytes) -> Event:
        if topic == self.changes_topic:
            return OrderChanged.from_notification(parse_notification(raw))
        try:
            return ORDER_EVENT.validate_json(raw)
        except ValidationError as exc:
            raise InvalidNotification(f"not an order event: {describe_validation_error(exc)}") from None

    async def _reject(self, topic: str, reason: str, raw: bytes, key: bytes | None, source: dict[str, str]) -> Delivery:
        where = (topic, source["partition"], source["offset"])
        log.warning("dead-lettering %s record at %s/%s: %s", *where, reason, extra={"reason": reason})
        self.observe("dead_lettered", _seller_of(key))
        return await self.emitter.dead_letter(
            DeadLetter.build(
                source=topic,
                reason=reason,
                raw=raw,
                at=self.clock.now(),
                key=key.decode("utf-8", "replace") if key is not None else None,
                metadata=source,
            )
        )

    def preview(self, event: Event, partition: int) -> Decision:
        """What the core would decide for ``event`` now, without doing any of it (the API's manual actions)."""
        return self._decide(event, partition)[1]

    def _decide(self, event: Event, partition: int) -> tuple[OrderRecord | None, Decision, bytes | None]:
        """The pure part: the current record, what the core decides, and the new record as it will be stored (None:
        nothing to write). Raises only for a bug or unreadable data."""
        before = self.writes.get(event.key, partition)
        policy = Policy(seller=self.policies(event.seller_id) or SellerPolicy(), timing=self.timing)
        decision = apply(before, event, self.clock.now(), policy)
        value = None
        if decision.record is not None and not decision.delete and decision.changed:
            value = encode_record(decision.record)
            size = len(value) - HEADER_BYTES
            if size > MAX_RECORD_BYTES:
                raise RecordTooLarge(f"the order record would be {size} bytes, more than {MAX_RECORD_BYTES}")
        return before, decision, value

    async def _apply(self, event: Event, partition: int, topic: str, raw: bytes, source: dict[str, str]) -> Handled:
        try:
            before, decision, value = self._decide(event, partition)
        except Exception as exc:  # deterministic for this record: the same input fails the same way every time
            log.exception("the core could not apply %s record at %s", topic, source)
            reason = f"cannot be applied: {type(exc).__name__}: {exc}"
            return Handled([await self._reject(topic, reason, raw, None, source)])
        handled = Handled(write=self._stage(event, partition, before, decision, value))
        for command in decision.commands:
            handled.outputs.append(await self.emitter.command(command))
        for changed in decision.events:
            handled.outputs.append(await self.emitter.outcome(changed))
            fields = {
                "seller_id": changed.seller_id,
                "order_key": changed.order_key,
                "state": changed.dest.value,
                "reason": changed.reason,
            }
            log.info(
                "%s: %s -> %s (%s)",
                changed.order_key,
                changed.source.value,
                changed.dest.value,
                changed.reason,
                extra=fields,
            )
        return handled

    def _stage(
        self, event: Event, partition: int, before: OrderRecord | None, decision: Decision, value: bytes | None = None
    ) -> PendingWrite | None:
        """Stage the record write; move its due-index entry now (the index is derived, and rebuilt after a crash)."""
        order_key = event.key
        after = None if decision.delete else decision.record
        pending = None
        if decision.delete or (decision.changed and after is not None):
            pending = self.writes.stage(order_key, partition, after, value)
        if pending is not None and self.stats is not None:
            self.stats.move(partition, before, after)
        old_index, new_index = _index_of(before), _index_of(after)
        if new_index != old_index:
            if old_index is not None:
                self.store.index_remove(partition, old_index)
            if new_index is not None:
                self.store.index_add(partition, new_index)
                if self.scanner is not None:
                    self.scanner.scheduled(partition, new_index)
        if isinstance(event, DueFiring) and event.index_due_ms is not None:
            fired = index_key_ms(event.index_due_ms, order_key)
            if fired not in (old_index, new_index):  # a leftover entry: drop it so it never fires again
                self.store.index_remove(partition, fired)
            if self.scanner is not None:
                self.scanner.done(partition, fired)
        return pending


class RecordTooLarge(ValueError):
    """The record an event would produce is too large to store."""


def _seller_of(key: bytes | None) -> str | None:
    """The seller id of a record key ``<seller>/<order>``, if it is one."""
    if not key:
        return None
    seller, slash, _order = key.decode("utf-8", "replace").partition("/")
    return seller if slash and seller else None


def _index_of(record: OrderRecord | None) -> bytes | None:
    if record is None or record.next_due is None:
        return None
    return index_key(record.next_due, record.key)
