"""The orders agent's per-record work, against in-memory stand-ins for the Faust table and topics."""

from __future__ import annotations

import asyncio
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from connectors.clock import ManualClock
from statemachine import OrderRecord, OrderState, SellerPolicy, SendCommand, SendResult, SendResultKind, Timing
from statemachine.events import StateChanged, TimerFired
from streams.deadletters import DeadLetter
from streams.dueindex import DueEntry, DueFiring, DueScanner, index_key
from streams.orders import Handled, OrdersProcessor, encode_record, partition_for
from streams.topics import ORDER_CHANGES, ORDER_EVENTS
from tests.support.factories import EDD, LDD, ORDER, SELLER, notification_dict

KEY = f"{SELLER}/{ORDER}"
START = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
PARTITIONS = 12
HOME = partition_for(KEY.encode(), PARTITIONS)


def delivered() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[str, OrderRecord] = {}
        self.index: set[bytes] = set()
        self.index_removed: list[bytes] = []

    def get(self, key: str, partition: int) -> OrderRecord | None:
        return self.records.get(key)

    def put(self, record: OrderRecord, partition: int, value: bytes | None = None) -> asyncio.Future[None]:
        assert partition == partition_for(record.key.encode(), PARTITIONS)  # a record lives on its key's partition
        assert value == encode_record(record)  # serialised once, when decided (its size checked), and written as is
        self.records[record.key] = record
        return delivered()

    def delete(self, key: str, partition: int) -> asyncio.Future[None]:
        self.records.pop(key, None)
        return delivered()

    def index_add(self, partition: int, key: bytes) -> None:
        self.index.add(key)

    def index_remove(self, partition: int, key: bytes) -> None:
        self.index.discard(key)
        self.index_removed.append(key)


class MemoryEmitter:
    def __init__(self) -> None:
        self.commands: list[SendCommand] = []
        self.outcomes: list[StateChanged] = []
        self.dead: list[DeadLetter] = []
        self.rerouted: list[tuple[str, int, bytes, bytes]] = []

    async def command(self, command: SendCommand) -> asyncio.Future[None]:
        self.commands.append(command)
        return delivered()

    async def outcome(self, event: StateChanged) -> asyncio.Future[None]:
        self.outcomes.append(event)
        return delivered()

    async def dead_letter(self, letter: DeadLetter) -> asyncio.Future[None]:
        self.dead.append(letter)
        return delivered()

    async def reroute(self, topic: str, partition: int, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.rerouted.append((topic, partition, key, value))
        return delivered()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def emitter() -> MemoryEmitter:
    return MemoryEmitter()


@pytest.fixture
def scanner() -> DueScanner:
    return DueScanner()


@pytest.fixture
def processor(store: MemoryStore, emitter: MemoryEmitter, clock: ManualClock, scanner: DueScanner) -> OrdersProcessor:
    policies = {SELLER: SellerPolicy(delay_days=6)}
    return OrdersProcessor(
        store=store,
        emitter=emitter,
        policies=policies.get,
        clock=clock,
        timing=Timing(),
        partitions=PARTITIONS,
        scanner=scanner,
    )


async def feed(
    processor: OrdersProcessor,
    value: bytes,
    *,
    key: bytes | None = KEY.encode(),
    topic: str = "",
    partition: int | None = None,
) -> Handled:
    """Handle one record as the agent does, its outputs confirmed at once."""
    handled = await processor.handle(
        topic=topic or ORDER_CHANGES.name,
        partition=HOME if partition is None else partition,
        offset=7,
        key=key,
        value=value,
    )
    if handled.write is not None:
        processor.outputs_confirmed(handled.write)
    return handled


def shipped_body(**kwargs: object) -> bytes:
    return json.dumps(notification_dict(status="Shipped", event_time=START - timedelta(hours=1), **kwargs)).encode()


async def test_a_shipped_notification_is_stored_indexed_and_announced(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter
) -> None:
    await feed(processor, shipped_body())
    record = store.records[KEY]
    assert record.state is OrderState.SHIPPED
    assert record.due_at == EDD + timedelta(days=6)  # the seller's own delay, from the registry
    assert store.index == {index_key(record.due_at, KEY)}
    assert [(e.source, e.dest) for e in emitter.outcomes] == [(OrderState.NEW, OrderState.SHIPPED)]
    assert emitter.commands == []
    assert "48110" not in record.model_dump_json()  # no buyer data in the table


async def test_an_unknown_seller_gets_the_default_policy(processor: OrdersProcessor, store: MemoryStore) -> None:
    other = f"AOTHERSELLER/{ORDER}".encode()
    await feed(processor, shipped_body(seller="AOTHERSELLER"), key=other, partition=partition_for(other, PARTITIONS))
    assert store.records[f"AOTHERSELLER/{ORDER}"].due_at == EDD + timedelta(days=5)


async def test_a_duplicate_notification_changes_nothing(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter
) -> None:
    body = shipped_body(notification_id="same-id")
    await feed(processor, body)
    before = store.records[KEY]
    await feed(processor, body)
    assert store.records[KEY] is before
    assert len(emitter.outcomes) == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"", "body is empty"),
        (json.dumps(notification_dict(status="Shipped") | {"NotificationType": "X"}).encode(), "NotificationType"),
    ],
)
async def test_bad_input_goes_to_the_dead_letter_topic_with_reason_and_position(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter, value: bytes, reason: str
) -> None:
    await feed(processor, value)
    (letter,) = emitter.dead
    assert reason in letter.reason
    assert letter.source == ORDER_CHANGES.name
    assert letter.metadata == {"topic": ORDER_CHANGES.name, "partition": str(HOME), "offset": "7"}
    assert letter.raw_bytes() == value
    assert store.records == {}


async def test_an_unreadable_internal_event_is_dead_lettered(
    processor: OrdersProcessor, emitter: MemoryEmitter
) -> None:
    await feed(processor, b'{"kind": "timer_fired"}', topic=ORDER_EVENTS.name)
    (letter,) = emitter.dead
    assert letter.reason.startswith("not an order event:")
    assert "seller_id: required field is missing" in letter.reason


async def test_a_notification_under_the_wrong_key_is_republished_under_the_order_key(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter
) -> None:
    body = shipped_body()
    await feed(processor, body, key=None)
    assert emitter.rerouted == [(ORDER_CHANGES.name, HOME, KEY.encode(), body)]
    assert store.records == {}


async def test_an_internal_event_under_the_wrong_key_is_dead_lettered(
    processor: OrdersProcessor, emitter: MemoryEmitter
) -> None:
    fired = TimerFired(seller_id=SELLER, order_id=ORDER).model_dump_json().encode()
    await feed(processor, fired, key=b"other/key", topic=ORDER_EVENTS.name)
    assert "is not the order key" in emitter.dead[0].reason


async def test_a_due_timer_issues_a_command_and_moves_the_index_to_the_lease(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter, clock: ManualClock, scanner: DueScanner
) -> None:
    await feed(processor, shipped_body())
    record = store.records[KEY]
    assert record.due_at is not None
    fired_key = index_key(record.due_at, KEY)
    scanner.cursor(HOME).inflight[fired_key] = 0.0
    clock.advance(record.due_at - clock.now())
    fired = DueFiring.of(DueEntry.parse(fired_key))
    await feed(processor, fired.model_dump_json().encode(), topic=ORDER_EVENTS.name)

    (command,) = emitter.commands
    after = store.records[KEY]
    assert after.state is OrderState.ELIGIBLE
    assert command.lease_id == after.lease_id == 1
    assert after.lease_expires_at is not None
    assert store.index == {index_key(after.lease_expires_at, KEY)}
    assert fired_key not in scanner.cursor(HOME).inflight


async def test_a_leftover_index_entry_is_removed_when_it_fires(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter
) -> None:
    await feed(processor, shipped_body())
    stray = index_key(START - timedelta(days=1), KEY)
    store.index.add(stray)
    fired = DueFiring.of(DueEntry.parse(stray))
    await feed(processor, fired.model_dump_json().encode(), topic=ORDER_EVENTS.name)
    assert stray not in store.index
    assert emitter.commands == []  # the order itself is not due yet
    assert store.records[KEY].state is OrderState.SHIPPED


async def test_a_send_result_finishes_the_order_and_schedules_its_purge(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter, clock: ManualClock
) -> None:
    await feed(processor, shipped_body())
    due = store.records[KEY].due_at
    assert due is not None
    clock.advance(due - clock.now())
    await feed(
        processor, TimerFired(seller_id=SELLER, order_id=ORDER).model_dump_json().encode(), topic=ORDER_EVENTS.name
    )
    sent = SendResult(seller_id=SELLER, order_id=ORDER, lease_id=1, result=SendResultKind.SENT, request_id="r-1")
    await feed(processor, sent.model_dump_json().encode(), topic=ORDER_EVENTS.name)
    record = store.records[KEY]
    assert record.state is OrderState.SENT
    assert record.last_request_id == "r-1"
    assert record.next_due == clock.now() + timedelta(days=90)
    assert store.index == {index_key(record.next_due, KEY)}

    clock.advance(timedelta(days=90))
    await feed(
        processor, TimerFired(seller_id=SELLER, order_id=ORDER).model_dump_json().encode(), topic=ORDER_EVENTS.name
    )
    assert store.records == {}
    assert store.index == set()


async def test_dates_from_the_notification_reach_the_record(processor: OrdersProcessor, store: MemoryStore) -> None:
    await feed(processor, shipped_body())
    record = store.records[KEY]
    assert (record.earliest_delivery, record.latest_delivery) == (EDD, LDD)


# --- issue 9: partitions, deterministic failures, outputs before state ----------------------------------------------


@pytest.mark.parametrize("topic", [ORDER_CHANGES.name, ORDER_EVENTS.name])
async def test_a_record_on_another_partition_than_its_keys_is_rerouted_to_the_right_one(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter, topic: str
) -> None:
    # Issue 9.1: a librdkafka producer (CRC32) put it on another partition; the record must live on murmur2's.
    body = (
        shipped_body()
        if topic == ORDER_CHANGES.name
        else TimerFired(seller_id=SELLER, order_id=ORDER).model_dump_json().encode()
    )
    crc32_partition = zlib.crc32(KEY.encode()) % PARTITIONS
    wrong = crc32_partition if crc32_partition != HOME else (HOME + 1) % PARTITIONS
    await feed(processor, body, topic=topic, partition=wrong)
    assert emitter.rerouted == [(topic, HOME, KEY.encode(), body)]
    assert store.records == {}
    assert emitter.outcomes == [] and emitter.dead == []


async def test_a_failure_of_the_core_for_one_record_is_dead_lettered_not_logged_and_dropped(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 9.6: the agent used to log any exception and acknowledge the input.
    def broken(*args: object, **kwargs: object) -> None:
        raise OverflowError("date value out of range")

    monkeypatch.setattr("streams.orders.apply", broken)
    await feed(processor, shipped_body())
    (letter,) = emitter.dead
    assert letter.reason == "cannot be applied: OverflowError: date value out of range"
    assert store.records == {}


async def test_a_far_future_delivery_date_is_dead_lettered_with_its_reason(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter
) -> None:
    # Issue 9.5: year 9999 parsed, then apply raised OverflowError and the record was acknowledged silently.
    body = notification_dict(
        status="Shipped", edd=datetime(9999, 12, 30, tzinfo=UTC), ldd=datetime(9999, 12, 31, tzinfo=UTC)
    )
    await feed(processor, json.dumps(body).encode())
    (letter,) = emitter.dead
    assert "outside the plausible range" in letter.reason
    assert store.records == {}


async def test_the_record_is_written_only_after_its_outputs_are_confirmed(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter
) -> None:
    # Issue 9.7: written first, a crash before the outputs were delivered left a replay with nothing to send.
    handled = await processor.handle(
        topic=ORDER_CHANGES.name, partition=HOME, offset=1, key=KEY.encode(), value=shipped_body()
    )
    assert handled.write is not None and handled.outputs
    assert store.records == {}  # not yet: its outputs are in flight
    assert processor.writes.get(KEY, HOME) is not None  # but the next event sees it
    (written,) = processor.outputs_confirmed(handled.write)
    assert written[0] is handled.write
    assert store.records[KEY].state is OrderState.SHIPPED


async def test_a_crash_between_outputs_and_write_repeats_the_outputs_on_replay(
    store: MemoryStore, emitter: MemoryEmitter, clock: ManualClock
) -> None:
    def fresh() -> OrdersProcessor:
        return OrdersProcessor(
            store=store, emitter=emitter, policies={}.get, clock=clock, timing=Timing(), partitions=PARTITIONS
        )

    body = shipped_body()
    crashed = await fresh().handle(topic=ORDER_CHANGES.name, partition=HOME, offset=1, key=KEY.encode(), value=body)
    assert crashed.write is not None  # ...and the worker dies before the outputs are confirmed
    replay = await fresh().handle(topic=ORDER_CHANGES.name, partition=HOME, offset=1, key=KEY.encode(), value=body)
    assert len(emitter.outcomes) == 2  # the state change is announced again, not lost
    assert replay.write is not None


async def test_writes_happen_in_input_order_whatever_order_outputs_confirm_in(
    processor: OrdersProcessor, store: MemoryStore, clock: ManualClock
) -> None:
    first = await processor.handle(
        topic=ORDER_CHANGES.name, partition=HOME, offset=1, key=KEY.encode(), value=shipped_body()
    )
    record = processor.writes.get(KEY, HOME)
    assert record is not None and record.due_at is not None
    clock.advance(record.due_at - clock.now())
    fired = TimerFired(seller_id=SELLER, order_id=ORDER).model_dump_json().encode()
    second = await processor.handle(topic=ORDER_EVENTS.name, partition=HOME, offset=2, key=KEY.encode(), value=fired)
    assert first.write is not None and second.write is not None
    assert processor.outputs_confirmed(second.write) == []  # waits for the first
    assert store.records == {}
    assert [w for w, _ in processor.outputs_confirmed(first.write)] == [first.write, second.write]
    assert store.records[KEY].state is OrderState.ELIGIBLE


async def test_an_oversized_record_is_refused_into_dead_letters(
    processor: OrdersProcessor, store: MemoryStore, emitter: MemoryEmitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streams.orders.MAX_RECORD_BYTES", 100)
    await feed(processor, shipped_body())
    (letter,) = emitter.dead
    assert "RecordTooLarge" in letter.reason
    assert store.records == {}
