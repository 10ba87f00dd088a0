"""The orders agent's per-record work, against in-memory stand-ins for the Faust table and topics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connectors.clock import ManualClock
from statemachine import OrderRecord, OrderState, SellerPolicy, SendCommand, SendResult, SendResultKind, Timing
from statemachine.events import StateChanged, TimerFired
from streams.deadletters import DeadLetter
from streams.dueindex import DueEntry, DueFiring, DueScanner, index_key
from streams.orders import OrdersProcessor
from streams.topics import ORDER_CHANGES, ORDER_EVENTS
from tests.support.factories import EDD, LDD, ORDER, SELLER, notification_dict

KEY = f"{SELLER}/{ORDER}"
START = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[str, OrderRecord] = {}
        self.index: set[bytes] = set()
        self.index_removed: list[bytes] = []

    def get(self, key: str) -> OrderRecord | None:
        return self.records.get(key)

    def put(self, record: OrderRecord) -> None:
        self.records[record.key] = record

    def delete(self, key: str) -> None:
        self.records.pop(key, None)

    def index_add(self, key: bytes) -> None:
        self.index.add(key)

    def index_remove(self, key: bytes) -> None:
        self.index.discard(key)
        self.index_removed.append(key)


class MemoryEmitter:
    def __init__(self) -> None:
        self.commands: list[SendCommand] = []
        self.outcomes: list[StateChanged] = []
        self.dead: list[DeadLetter] = []
        self.rerouted: list[tuple[bytes, bytes]] = []

    async def command(self, command: SendCommand) -> None:
        self.commands.append(command)

    async def outcome(self, event: StateChanged) -> None:
        self.outcomes.append(event)

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)

    async def reroute(self, key: bytes, value: bytes) -> None:
        self.rerouted.append((key, value))


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
        store=store, emitter=emitter, policies=policies.get, clock=clock, timing=Timing(), scanner=scanner
    )


async def feed(processor: OrdersProcessor, value: bytes, *, key: bytes | None = KEY.encode(), topic: str = "") -> None:
    await processor.handle(topic=topic or ORDER_CHANGES.name, partition=3, offset=7, key=key, value=value)


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
    await feed(processor, shipped_body(seller="AOTHERSELLER"), key=f"AOTHERSELLER/{ORDER}".encode())
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
    assert letter.metadata == {"topic": ORDER_CHANGES.name, "partition": "3", "offset": "7"}
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
    assert emitter.rerouted == [(KEY.encode(), body)]
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
    scanner.cursor(3).inflight[fired_key] = 0.0
    clock.advance(record.due_at - clock.now())
    fired = DueFiring.of(DueEntry.parse(fired_key))
    await feed(processor, fired.model_dump_json().encode(), topic=ORDER_EVENTS.name)

    (command,) = emitter.commands
    after = store.records[KEY]
    assert after.state is OrderState.ELIGIBLE
    assert command.lease_id == after.lease_id == 1
    assert after.lease_expires_at is not None
    assert store.index == {index_key(after.lease_expires_at, KEY)}
    assert fired_key not in scanner.cursor(3).inflight


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
