"""Bad input, through SQS and straight into ``order-changes``: nothing crashes, nothing vanishes, good input flows on.

One run of the real processes (``solicit bridge`` and ``solicit worker`` through the demo's Stack, a real broker,
moto SQS, the sandbox) receives, interleaved with valid orders, every kind of bad record in :data:`CASES`: once as an
SQS message body and once produced directly to ``order-changes`` by "another system" (where the kind can travel that
way: SQS carries only Unicode text of at most 256 KiB, never an empty body, a key, a partition or a tombstone).
The table-driven tests then check, from ``dead-letters``, ``outcomes`` and the sandbox's ledger:

* every bad record lands in ``dead-letters`` with a reason, and each dead letter is bounded (< 1 MB);
* a valid notification of an unregistered seller is processed, not dead-lettered, and never solicited;
* a record under a key that disagrees with its body, or on a partition its key does not hash to (murmur2, the
  partitioner of the bridge and Faust), is re-routed and processed: the order ends where it must, solicited once;
* the valid orders sent around the bad records are each solicited exactly once;
* the bridge and the worker are alive at the end and logged no traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import botocore.session
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devstack.demo.run import DEMO_TIMING_ENV, _import_sellers
from devstack.demo.scenario import category
from devstack.demo.stack import Stack, StackConfig
from devstack.local_kafka import find_free_ports
from streams.topic_admin import ensure_topics
from streams.topics import DEAD_LETTERS, ORDER_CHANGES, OUTCOMES
from tests.chaos.kafka_io import DirectProducer, OutputFollower, murmur2_partition
from tests.chaos.plan import notification, truth

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PARTITIONS = 4
SPEED = 8640.0
"""Business time: a day every 10 s; the valid orders' windows stay open for weeks of it."""
SELLER = "ABADINPUTSELLER1"
STRANGER = "ABADINPUTSTRANGER"
"""Known to Amazon (the sandbox), missing from our registry."""
US, DE = "ATVPDKIKX0DER", "A1PA6795UKMFR9"
MAX_DEAD_LETTER_BYTES = 1_000_000
ORDER_CHANGES_MAX_BYTES = 3 * 1024 * 1024
"""``max.message.bytes`` of this run's ``order-changes``, so a record over 1 MiB reaches the worker."""
VALID_ORDERS = 12
SETTLE_LIMIT = 90.0
DAY = timedelta(days=1)

Channel = Literal["sqs", "kafka"]
Expect = Literal["dead", "processed", "rerouted"]


# --- what is sent ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaRecord:
    """A record produced straight to ``order-changes``; ``partition`` None means where murmur2 puts the key."""

    key: bytes | None
    value: bytes | None
    partition: int | None = None


@dataclass(frozen=True)
class Context:
    """What a case needs to build its records: business time now, and the seller and order of this record."""

    now: datetime
    order_id: str
    seller_id: str = SELLER

    @property
    def key(self) -> str:
        return f"{self.seller_id}/{self.order_id}"

    def valid(self, *, status: str = "Shipped", edd: datetime | None = None) -> dict[str, Any]:
        """A valid notification of this order (Shipped, window open now, unless told otherwise)."""
        edd = edd or self.now - 6 * DAY
        return notification(self.now - DAY, self.seller_id, self.order_id, US, status, edd=edd, ldd=edd + 20 * DAY)

    def truth(self) -> dict[str, Any]:
        """The order as Amazon knows it: shipped, window open now (so a wrong send would show in the ledger)."""
        return truth(self.seller_id, self.order_id, US, self.now - 6 * DAY, self.now + 14 * DAY)


Body = Callable[[Context], str]
Record = Callable[[Context], KafkaRecord]


@dataclass(frozen=True)
class Case:
    """One kind of bad input: how it travels each way, and what must become of it.

    ``expected_state`` (a category of ``devstack.demo.scenario.category``) is where the order of a processed or
    re-routed record must end; ``sandbox`` says whether Amazon knows the order (so a wrong send would show).
    """

    name: str
    expect: Expect
    sqs: Body | None = None
    kafka: Record | None = None
    expected_state: str | None = None
    sandbox: bool = False

    def channels(self) -> list[Channel]:
        channels: list[Channel] = []
        if self.sqs is not None:
            channels.append("sqs")
        if self.kafka is not None:
            channels.append("kafka")
        return channels


def _json(value: Any) -> str:
    return json.dumps(value)


def _on_key(body: Body) -> Record:
    """The Kafka variant of an SQS body: the same bytes under the order's key."""
    return lambda ctx: KafkaRecord(ctx.key.encode(), body(ctx).encode())


def _changed(mutate: Callable[[dict[str, Any]], None]) -> Body:
    """A valid notification with one thing wrong."""

    def build(ctx: Context) -> str:
        value = ctx.valid()
        mutate(value)
        return _json(value)

    return build


def _set(path: str, new: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted path (``Payload.OrderChangeNotification.Summary.MarketplaceId``) of a notification."""

    def mutate(value: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = value
        for part in parents:
            node = node[part][0] if isinstance(node[part], list) else node[part]
        node[last] = new

    return mutate


def _delete(*paths: str) -> Callable[[dict[str, Any]], None]:
    def mutate(value: dict[str, Any]) -> None:
        for path in paths:
            *parents, last = path.split(".")
            node = value
            for part in parents:
                node = node[part]
            del node[last]

    return mutate


def _far_future(value: dict[str, Any]) -> None:
    far = "9999-12-31T23:59:59Z"
    summary = value["Payload"]["OrderChangeNotification"]["Summary"]
    summary["EarliestDeliveryDate"] = summary["LatestDeliveryDate"] = far
    value["EventTime"] = value["NotificationMetadata"]["PublishTime"] = far


def _inverted(value: dict[str, Any]) -> None:
    summary = value["Payload"]["OrderChangeNotification"]["Summary"]
    earliest = datetime.fromisoformat(summary["EarliestDeliveryDate"])
    summary["LatestDeliveryDate"] = (earliest - 10 * DAY).isoformat().replace("+00:00", "Z")


def _invalid_utf8(ctx: Context) -> KafkaRecord:
    body = ctx.valid()
    body["Payload"]["OrderChangeNotification"]["Summary"]["OrderItems"][0]["SellerSKU"] = "SKU-@@"
    return KafkaRecord(ctx.key.encode(), _json(body).encode().replace(b"@@", b"\xff\xfe"))


def _oversized(ctx: Context) -> KafkaRecord:
    """A valid notification padded with an unknown field to 1.5 MiB: more than any SQS message can hold."""
    body = ctx.valid()
    body["Padding"] = "x" * (3 * 1024 * 1024 // 2)
    return KafkaRecord(ctx.key.encode(), _json(body).encode())


def _misplaced(ctx: Context) -> KafkaRecord:
    """Right key, wrong partition: not the one murmur2 gives the key (another partitioner, or a hand-picked one)."""
    key = ctx.key.encode()
    return KafkaRecord(key, _json(ctx.valid()).encode(), (murmur2_partition(key, PARTITIONS) + 1) % PARTITIONS)


def _misplaced_then_canceled(ctx: Context) -> KafkaRecord:
    """A Shipped (window opening in a day) on the wrong partition; its Canceled follows through SQS."""
    key = ctx.key.encode()
    value = _json(ctx.valid(edd=ctx.now - 4 * DAY)).encode()
    return KafkaRecord(key, value, (murmur2_partition(key, PARTITIONS) + 2) % PARTITIONS)


def _wrong_key(ctx: Context) -> KafkaRecord:
    return KafkaRecord(b"ASOMEONEELSE/999-9999999-9999999", _json(ctx.valid()).encode())


CASES: tuple[Case, ...] = (
    Case("not-json", "dead", sqs=lambda ctx: "this is not JSON {", kafka=_on_key(lambda ctx: "this is not JSON {")),
    Case("invalid-utf8", "dead", kafka=_invalid_utf8),
    Case("json-array", "dead", sqs=lambda ctx: "[1, 2, 3]", kafka=_on_key(lambda ctx: "[1, 2, 3]")),
    Case(
        "wrong-types",
        "dead",
        sqs=_changed(_set("Payload.OrderChangeNotification.Summary.OrderItems.Quantity", "1")),
        kafka=_on_key(_changed(_set("Payload.OrderChangeNotification.SellerId", 42))),
    ),
    Case(
        "missing-fields",
        "dead",
        sqs=_changed(_delete("Payload.OrderChangeNotification.AmazonOrderId")),
        kafka=_on_key(_changed(_delete("NotificationMetadata"))),
    ),
    Case(
        "unknown-notification-type",
        "dead",
        sqs=_changed(_set("NotificationType", "ANY_OFFER_CHANGED")),
        kafka=_on_key(_changed(_set("NotificationType", "ANY_OFFER_CHANGED"))),
    ),
    Case(
        "order-id-path-traversal",
        "dead",
        sqs=_changed(_set("Payload.OrderChangeNotification.AmazonOrderId", "../../_sandbox/reset")),
        kafka=_on_key(_changed(_set("Payload.OrderChangeNotification.AmazonOrderId", "../../_sandbox/reset"))),
    ),
    Case(
        "control-characters",
        "dead",
        sqs=_changed(_set("Payload.OrderChangeNotification.SellerId", "A1\u0000B")),
        kafka=_on_key(_changed(_set("Payload.OrderChangeNotification.SellerId", "A1\u0000B"))),
    ),
    Case(
        "overlong-id",
        "dead",
        sqs=_changed(_set("Payload.OrderChangeNotification.SellerId", "A" * 10_000)),
        kafka=_on_key(_changed(_set("Payload.OrderChangeNotification.AmazonOrderId", "1" * 10_000))),
    ),
    Case(
        "deep-nesting",
        "dead",
        sqs=lambda ctx: "[" * 100_000 + "]" * 100_000,
        kafka=_on_key(lambda ctx: "[" * 100_000 + "]" * 100_000),
    ),
    Case("far-future-dates", "dead", sqs=_changed(_far_future), kafka=_on_key(_changed(_far_future))),
    Case("inverted-dates", "dead", sqs=_changed(_inverted), kafka=_on_key(_changed(_inverted))),
    Case(  # a valid notification: processed, recorded as skipped with the reason, never solicited (no call)
        "marketplace-of-another-region",
        "processed",
        sqs=_changed(_set("Payload.OrderChangeNotification.Summary.MarketplaceId", DE)),
        kafka=_on_key(_changed(_set("Payload.OrderChangeNotification.Summary.MarketplaceId", DE))),
        expected_state="skipped",
        sandbox=True,
    ),
    Case(
        "big-body",  # SQS: 250 KB of text (SQS's limit is 256 KiB); Kafka: 900 KB of bytes that are not UTF-8
        "dead",
        sqs=lambda ctx: "x" * 250_000,
        kafka=lambda ctx: KafkaRecord(ctx.key.encode(), b"\xff" * 900_000),
    ),
    Case("oversized-over-1-mib", "dead", kafka=_oversized),
    Case("empty", "dead", sqs=lambda ctx: "   ", kafka=lambda ctx: KafkaRecord(ctx.key.encode(), b"")),
    Case("tombstone", "dead", kafka=lambda ctx: KafkaRecord(ctx.key.encode(), None)),
    Case(
        "unknown-seller",
        "processed",
        sqs=lambda ctx: _json(ctx.valid()),
        kafka=_on_key(lambda ctx: _json(ctx.valid())),
        expected_state="waiting",
        sandbox=True,
    ),
    Case("key-disagrees-with-body", "rerouted", kafka=_wrong_key, expected_state="sent", sandbox=True),
    Case("wrong-partition", "rerouted", kafka=_misplaced, expected_state="sent", sandbox=True),
    Case(
        "wrong-partition-then-canceled",
        "rerouted",
        kafka=_misplaced_then_canceled,
        expected_state="canceled",
        sandbox=True,
    ),
)
CASE_CHANNELS = [(case, channel) for case in CASES for channel in case.channels()]


def _ids(cases: list[tuple[Case, Channel]]) -> list[str]:
    return [f"{case.name}-{channel}" for case, channel in cases]


# --- one run of the stack -------------------------------------------------------------------------------------


@dataclass
class Sent:
    """Where one record went, so its dead letter (or its order) can be found again."""

    case: str
    channel: Channel
    order_key: str
    order_id: str
    message_id: str | None = None
    position: tuple[int, int] | None = None
    """(partition, offset) of a record produced straight to ``order-changes``."""


@dataclass
class Run:
    """Everything the run left behind, for the table-driven checks."""

    sent: dict[tuple[str, Channel], Sent]
    valid: list[str]
    """Order keys of the valid orders sent around the bad records."""
    states: dict[str, str]
    history: dict[str, list[str]]
    dead_letters: list[dict[str, Any]]
    dead_letter_sizes: list[int]
    ledger: dict[str, Any]
    changes_topic: str
    alive: dict[str, bool]
    logs: dict[str, str] = field(default_factory=dict)
    settled: bool = False

    def letters_for(self, sent: Sent) -> list[dict[str, Any]]:
        return letters_for(sent, self.dead_letters, self.changes_topic)

    def solicited(self) -> Counter[str]:
        return Counter(f"{row['seller_id']}/{row['order_id']}" for row in self.ledger["solicitations"])

    def calls_for(self, order_id: str) -> list[dict[str, Any]]:
        return [call for call in self.ledger["calls"] if call.get("order_id") == order_id]

    def story(self, sent: Sent) -> str:
        """What became of one record, for a failure message: its dead letters, its order's states and calls."""
        letters = [
            {"source": letter.get("source"), "reason": str(letter.get("reason"))[:160], "key": letter.get("key")}
            for letter in self.letters_for(sent)
        ]
        calls = [f"{call['operation'][:6]}:{call['status']}" for call in self.calls_for(sent.order_id)]
        return (
            f"{sent.case} via {sent.channel} ({sent.order_key}, SQS id {sent.message_id}, Kafka {sent.position}):\n"
            f"  dead letters: {letters}\n"
            f"  outcomes: {self.history.get(sent.order_key, [])[-5:]}\n"
            f"  SP-API calls: {calls[-6:]}; solicitations: {self.solicited()[sent.order_key]}"
        )

    def tails(self) -> str:
        return "\n".join(f"--- {name}\n" + "\n".join(text.splitlines()[-15:]) for name, text in self.logs.items())


def letters_for(sent: Sent, dead_letters: list[dict[str, Any]], changes_topic: str) -> list[dict[str, Any]]:
    """The dead letters of one sent record: by SQS MessageId, by Kafka position, or by the order's key."""
    found = []
    for letter in dead_letters:
        meta = letter.get("metadata") or {}
        by_message = sent.message_id is not None and meta.get("MessageId") == sent.message_id
        by_position = (
            sent.position is not None
            and meta.get("topic", letter.get("source")) == changes_topic
            and (meta.get("partition"), meta.get("offset")) == tuple(str(n) for n in sent.position)
        )
        by_key = letter.get("key") == sent.order_key
        if by_message or by_position or by_key:
            found.append(letter)
    return found


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, moto_sqs: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Start the stack, send every case around valid orders, wait until it settled, stop the stack."""
    return asyncio.run(_run(kafka_bootstrap, moto_sqs, tmp_path_factory.mktemp("bad-input")))


async def _run(bootstrap: str, sqs_endpoint: str, run_dir: Path) -> Run:
    sqs = botocore.session.get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=sqs_endpoint, aws_access_key_id="x", aws_secret_access_key="x"
    )
    queue_url = sqs.create_queue(QueueName=f"bad-input-{int(time.time() * 1000)}")["QueueUrl"]
    (sandbox_port,) = find_free_ports(1)
    config = StackConfig(
        run_dir=run_dir,
        kafka_bootstrap=bootstrap,
        sqs_endpoint=sqs_endpoint,
        queue_url=queue_url,
        sandbox_port=sandbox_port,
        partitions=PARTITIONS,
        sim_speed=SPEED,
        extra_env={**DEMO_TIMING_ENV, "SOLICIT_BRIDGE__WAIT_SECONDS": "1", "SOLICIT_TIMING__LEASE_TIMEOUT": "P2D"},
    )
    stack = Stack(config)
    changes = ORDER_CHANGES.named(config.topic_prefix)
    follower = OutputFollower(
        bootstrap,
        outcomes=OUTCOMES.named(config.topic_prefix),
        dead_letters=DEAD_LETTERS.named(config.topic_prefix),
        partitions=PARTITIONS,
    )
    producer = DirectProducer(bootstrap, max_request_size=ORDER_CHANGES_MAX_BYTES)
    try:
        await _prepare(stack, changes)
        await follower.start()
        await producer.start()
        feed = _Feed(config.clock().now(), sqs, queue_url, producer, changes)
        stack.sandbox("POST", "orders", feed.truths())
        await feed.send_all()
        settled = await _settle(feed, follower) and await follower.caught_up()
        return Run(
            sent=feed.sent,
            valid=feed.valid,
            states=dict(follower.log.states),
            history=dict(follower.log.history),
            dead_letters=list(follower.log.dead_letters),
            dead_letter_sizes=list(follower.log.dead_letter_sizes),
            ledger=stack.sandbox("GET", "ledger"),
            changes_topic=changes,
            alive={child.name: child.alive() for child in stack.children},
            logs={child.name: child.log_path.read_text(errors="replace") for child in stack.children},
            settled=settled,
        )
    finally:
        await producer.stop()
        await follower.stop()
        stack.close()


async def _prepare(stack: Stack, changes: str) -> None:
    """Topics (``order-changes`` takes records up to 3 MiB), the sandbox, the registry, a worker and the bridge."""
    config = stack.config
    await ensure_topics(config.kafka())
    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    await admin.start()
    try:
        limit = {"max.message.bytes": str(ORDER_CHANGES_MAX_BYTES)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, changes, configs=limit)])
    finally:
        await admin.close()
    stack.start_sandbox()
    tokens = [{"seller_id": sid, "refresh_token": f"Atzr|bad-input-{sid}"} for sid in (SELLER, STRANGER)]
    stack.sandbox("POST", "sellers", tokens)
    seller = {
        "seller_id": SELLER,
        "name": "Bad Input Seller",
        "region": "NA",
        "marketplace_ids": [US],
        "refresh_token": f"Atzr|bad-input-{SELLER}",
    }
    await _import_sellers(config, {"sellers": [seller]})
    stack.start_worker("w")
    stack.start_bridge()


class _Feed:
    """Sends a valid order before each bad record (alternating SQS and Kafka), remembering where each went."""

    def __init__(self, now: datetime, sqs: Any, queue_url: str, producer: DirectProducer, topic: str) -> None:
        self.now = now
        self.sqs = sqs
        self.queue_url = queue_url
        self.producer = producer
        self.topic = topic
        self.sent: dict[tuple[str, Channel], Sent] = {}
        self.valid: list[str] = []
        self._orders = iter(f"901-{n:07d}-{n * 7 % 10**7:07d}" for n in range(1, 10**6))
        self._contexts = {
            (c.name, ch): Context(now, next(self._orders), STRANGER if c.name == "unknown-seller" else SELLER)
            for c, ch in CASE_CHANNELS
        }
        self._valid_contexts = [Context(now, next(self._orders)) for _ in range(VALID_ORDERS)]

    def truths(self) -> list[dict[str, Any]]:
        """Amazon's view: the valid orders and every case order a wrong send could reach."""
        known = [*self._valid_contexts]
        known += [self._contexts[(case.name, ch)] for case, ch in CASE_CHANNELS if case.sandbox]
        return [ctx.truth() for ctx in known]

    async def send_all(self) -> None:
        valid = iter(self._valid_contexts)
        for index, (case, channel) in enumerate(CASE_CHANNELS):
            good = next(valid, None)
            if good is not None:
                await self._send_valid(good, "sqs" if index % 2 == 0 else "kafka")
            await self._send_case(case, channel, self._contexts[(case.name, channel)])

    async def _send_valid(self, ctx: Context, channel: Channel) -> None:
        body = _json(ctx.valid())
        if channel == "sqs":
            await asyncio.to_thread(self._sqs_send, body)
        else:
            key = ctx.key.encode()
            await self.producer.send(self.topic, key, body.encode(), murmur2_partition(key, PARTITIONS))
        self.valid.append(ctx.key)

    async def _send_case(self, case: Case, channel: Channel, ctx: Context) -> None:
        sent = Sent(case.name, channel, ctx.key, ctx.order_id)
        if channel == "sqs":
            assert case.sqs is not None
            sent.message_id = await asyncio.to_thread(self._sqs_send, case.sqs(ctx))
        else:
            assert case.kafka is not None
            record = case.kafka(ctx)
            partition = record.partition
            if partition is None:
                partition = murmur2_partition(record.key, PARTITIONS) if record.key else 0
            sent.position = await self.producer.send(self.topic, record.key, record.value, partition)
        self.sent[(case.name, channel)] = sent
        if case.name == "wrong-partition-then-canceled":
            canceled = _json(ctx.valid(status="Canceled", edd=self.now - 4 * DAY))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(self._sqs_send, canceled)

    def _sqs_send(self, body: str) -> str:
        return str(self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"])


def reached(state: str | None, expected: str) -> bool:
    """Has an order with latest state ``state`` (None: never on ``outcomes``) reached the category ``expected``?"""
    return state is not None and category(state) == expected


async def _settle(feed: _Feed, follower: OutputFollower) -> bool:
    """Wait until the valid and the re-routed orders reached their states and every bad record has a dead letter
    (or ``SETTLE_LIMIT`` passed); then a few quiet seconds for stragglers."""
    deadline = time.monotonic() + SETTLE_LIMIT
    cases = {case.name: case for case in CASES}

    def done() -> bool:
        states = follower.log.states
        if not all(reached(states.get(key), "sent") for key in feed.valid):
            return False
        for (name, _channel), sent in feed.sent.items():
            case = cases[name]
            if case.expected_state and not reached(states.get(sent.order_key), case.expected_state):
                return False
        dead = [s for (name, _), s in feed.sent.items() if cases[name].expect == "dead"]
        return all(letters_for(s, follower.log.dead_letters, feed.topic) for s in dead)

    while time.monotonic() < deadline:
        if done():
            await asyncio.sleep(3.0)
            return True
        await asyncio.sleep(0.5)
    return False


# --- the checks -------------------------------------------------------------------------------------------------


DEAD = [(case, channel) for case, channel in CASE_CHANNELS if case.expect == "dead"]
REROUTED = [(case, channel) for case, channel in CASE_CHANNELS if case.expect == "rerouted"]
PROCESSED = [(case, channel) for case, channel in CASE_CHANNELS if case.expect == "processed"]


def test_the_table_covers_at_least_fifteen_kinds_of_bad_input() -> None:
    assert len(CASES) >= 15
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "channel"), DEAD, ids=_ids(DEAD))
def test_bad_record_lands_in_dead_letters_with_a_reason(run: Run, case: Case, channel: Channel) -> None:
    sent = run.sent[(case.name, channel)]
    letters = run.letters_for(sent)
    assert letters, f"no dead letter\n{run.story(sent)}"
    assert all(str(letter.get("reason", "")).strip() for letter in letters), run.story(sent)
    assert run.calls_for(sent.order_id) == [], f"bad input reached Amazon\n{run.story(sent)}"


@pytest.mark.parametrize(("case", "channel"), PROCESSED, ids=_ids(PROCESSED))
def test_valid_record_of_an_unknown_seller_is_processed_not_dead_lettered(
    run: Run, case: Case, channel: Channel
) -> None:
    sent = run.sent[(case.name, channel)]
    assert case.expected_state is not None
    assert reached(run.states.get(sent.order_key), case.expected_state), run.story(sent)
    assert run.letters_for(sent) == [], run.story(sent)
    assert run.calls_for(sent.order_id) == [], run.story(sent)  # no token for this seller: Amazon is never asked


@pytest.mark.parametrize(("case", "channel"), REROUTED, ids=_ids(REROUTED))
def test_misrouted_record_is_rerouted_and_processed(run: Run, case: Case, channel: Channel) -> None:
    sent = run.sent[(case.name, channel)]
    assert case.expected_state is not None
    assert run.letters_for(sent) == [], f"a re-routable record was dead-lettered\n{run.story(sent)}"
    assert reached(run.states.get(sent.order_key), case.expected_state), run.story(sent)
    expected_sends = 1 if case.expected_state == "sent" else 0
    assert run.solicited()[sent.order_key] == expected_sends, run.story(sent)
    if case.expected_state == "canceled":
        assert run.calls_for(sent.order_id) == [], f"Amazon was asked about a canceled order\n{run.story(sent)}"


def test_valid_orders_around_the_bad_records_are_solicited_exactly_once(run: Run) -> None:
    solicited = run.solicited()
    wrong = {key: (run.states.get(key), solicited[key]) for key in run.valid if solicited[key] != 1}
    assert wrong == {}, f"(state, solicitations) of valid orders:\n{wrong}\n{run.tails()}"
    assert all(run.states.get(key) == "sent" for key in run.valid)


def test_no_process_crashed_and_no_traceback_was_logged(run: Run) -> None:
    assert all(run.alive.values()), f"{run.alive}\n{run.tails()}"
    assert {name: errors for name, text in run.logs.items() if (errors := exceptions(text))} == {}


def exceptions(log: str) -> Counter[str]:
    """The exception line ending each Python traceback of a log (``ValueError: ...``), counted."""
    found: Counter[str] = Counter()
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("Traceback"):
            continue
        rest = lines[index + 1 :]
        end = next((n for n, text in enumerate(rest) if text and not text.startswith((" ", "Traceback"))), None)
        found[rest[end][:200] if end is not None else "(truncated traceback)"] += 1
    return found


def test_every_dead_letter_is_bounded(run: Run) -> None:
    assert run.dead_letter_sizes, "no dead letter at all"
    assert max(run.dead_letter_sizes) < MAX_DEAD_LETTER_BYTES, sorted(run.dead_letter_sizes)[-3:]


def test_the_run_settled(run: Run) -> None:
    """Every valid and re-routed order reached its state and every bad record its dead letter within the limit
    (and the harness read the output topics to their end)."""
    assert run.settled, run.tails()
