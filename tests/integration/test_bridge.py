from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord

from connectors.clock import SystemClock
from connectors.kafka import KafkaConnection
from connectors.sqs import QueueMisconfigured, SqsMessage
from statemachine import InvalidNotification, OrderChanged, OrderState, apply, parse_notification
from streams.bridge import Bridge, BridgeConfig
from streams.deadletters import DeadLetter
from tests.support.bridge_faults import DYING, HOLDING
from tests.support.factories import T0, notification_dict
from tests.support.kafka import KafkaTopicFactory
from tests.support.sqs import SqsQueueFactory, queue_depth, send_bodies

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POSTAL_CODE = "48110"  # what notification_dict puts in Summary.DestinationPostalCode


# --- helpers ------------------------------------------------------------------------------------------


def make_bridge(queue_url: str, bootstrap: str, changes: str, dead: str, **overrides: Any) -> Bridge:
    """A bridge with short long polls. One poller by default: moto's receive is not atomic, so two concurrent
    receives now and then both get the same message (a duplicate, as SQS may also deliver), and tests that count
    exactly must not depend on that race."""
    options: dict[str, Any] = {
        "pollers": 1,
        "wait_seconds": 1,
        "visibility_timeout": 30,
        "stats_interval": 3600.0,
        **overrides,
    }
    after_produce = options.pop("after_produce", None)
    return Bridge(
        config=BridgeConfig(queue_url=queue_url, **options),
        kafka=KafkaConnection(bootstrap_servers=bootstrap),
        clock=SystemClock(),
        order_changes_topic=changes,
        dead_letters_topic=dead,
        after_produce=after_produce,
    )


@contextlib.asynccontextmanager
async def running(bridge: Bridge) -> AsyncIterator[asyncio.Task[None]]:
    """Run the bridge in the background; stop it gracefully and wait for it on exit (its errors propagate)."""
    task = asyncio.create_task(bridge.run())
    try:
        yield task
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=30)


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    limit: float = 30.0,
    task: asyncio.Task[None] | None = None,
) -> None:
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if task is not None and task.done():
            task.result()
            raise AssertionError(f"the bridge stopped before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def read_topic(bootstrap: str, topic: str, partitions: int = 1) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record the topic holds right now, by partition and offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end = await consumer.end_offsets(assigned)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in assigned if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} up to {end}"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def topic_size(bootstrap: str, topic: str, partitions: int = 1) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])).values())
    finally:
        await consumer.stop()


async def drain(client: Any, queue_url: str, limit: float = 30.0) -> list[dict[str, Any]]:
    """Receive and delete everything left in the queue, including messages still in flight (waits them out)."""
    left: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while (await queue_depth(client, queue_url)).total:
        assert time.monotonic() < deadline, "the queue did not drain"
        response = await client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = response.get("Messages", [])
        if messages:
            left.extend(messages)
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            await client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    return left


def without_postal_code(body: dict[str, Any]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(body))
    copy["Payload"]["OrderChangeNotification"]["Summary"]["DestinationPostalCode"] = None
    return copy


def orders_notifications(orders: Sequence[tuple[str, str]], statuses: Sequence[str]) -> list[dict[str, Any]]:
    """For each (seller, order): one notification per status, an hour apart (the order's life in sequence)."""
    return [
        notification_dict(seller=seller, order=order, status=status, event_time=T0 + timedelta(hours=1 + i))
        for seller, order in orders
        for i, status in enumerate(statuses)
    ]


def subprocess_env(
    sqs_environment: dict[str, str], kafka_bootstrap: str, *, pollers: int = 4, visibility: int = 60
) -> dict[str, str]:
    return {
        **os.environ,
        **sqs_environment,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SOLICIT_BRIDGE__POLLERS": str(pollers),
        "SOLICIT_BRIDGE__VISIBILITY_TIMEOUT": str(visibility),
        "PYTHONUNBUFFERED": "1",
    }


ORDERS = [
    ("A1SELLER", "111-0000001-0000001"),
    ("A1SELLER", "111-0000002-0000002"),
    ("B2SELLER", "222-0000003-0000003"),
    ("B2SELLER", "111-0000001-0000001"),  # the same order id under another seller is another order
    ("C3SELLER", "333-0000004-0000004"),
]


# --- forwarding -----------------------------------------------------------------------------------------


async def test_valid_notifications_reach_kafka_keyed_by_order_without_postal_code_then_leave_sqs(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory, sqs_queue: SqsQueueFactory, sqs_client: Any
) -> None:
    changes, dead = await kafka_topic_factory(partitions=3), await kafka_topic_factory()
    queue = await sqs_queue()
    sent = orders_notifications(ORDERS, ["Unshipped", "Shipped"])
    sent[0]["Payload"]["OrderChangeNotification"]["FutureField"] = {"kept": True}  # unknown fields pass through
    await send_bodies(sqs_client, queue, [json.dumps(n) for n in sent])

    bridge = make_bridge(queue, kafka_bootstrap, changes, dead, pollers=3)
    async with running(bridge) as task:
        await until(lambda: bridge.counters.deleted >= len(sent), what="every message deleted", task=task)

    # Three pollers: moto may hand one message to two of them (see make_bridge), so count at least once.
    counters = bridge.counters
    assert counters.received >= len(sent)
    assert counters.forwarded == counters.deleted == counters.received
    assert (counters.dead_lettered, counters.produce_failures, counters.delete_failures) == (0, 0, 0)
    assert (await queue_depth(sqs_client, queue)).total == 0
    assert await read_topic(kafka_bootstrap, dead) == []

    records = await read_topic(kafka_bootstrap, changes, partitions=3)
    assert len(records) == counters.forwarded
    by_id = {n["NotificationMetadata"]["NotificationId"]: n for n in sent}
    assert {parse_notification(r.value).notification_id for r in records} == set(by_id)
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        forwarded = parse_notification(record.value)
        original = by_id[forwarded.notification_id]
        change = original["Payload"]["OrderChangeNotification"]
        assert record.key == f"{change['SellerId']}/{change['AmazonOrderId']}".encode()
        assert forwarded == parse_notification(json.dumps(without_postal_code(original)))
        assert (
            json.loads(record.value)["Payload"]["OrderChangeNotification"]["Summary"]["DestinationPostalCode"] is None
        )
        assert POSTAL_CODE.encode() not in record.value
        partitions_of[record.key].add(record.partition)
    assert any(b'"FutureField":{"kept":true}' in r.value for r in records)
    # One order, one partition, and the one the Java/Faust default partitioner picks for the key.
    assert len(partitions_of) == len(ORDERS)
    for key, partitions in partitions_of.items():
        assert partitions == {DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2])}
    assert len(set().union(*partitions_of.values())) > 1, "the keys should spread over several partitions"


async def test_a_double_encoded_body_is_forwarded_exactly_like_the_plain_one(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory, sqs_queue: SqsQueueFactory, sqs_client: Any
) -> None:
    changes, dead = await kafka_topic_factory(), await kafka_topic_factory()
    queue = await sqs_queue()
    notification = notification_dict(notification_id="n-double-encoded")
    plain = json.dumps(notification)
    await send_bodies(sqs_client, queue, [plain, json.dumps(plain)])

    bridge = make_bridge(queue, kafka_bootstrap, changes, dead, pollers=1)
    async with running(bridge) as task:
        await until(lambda: bridge.counters.deleted >= 2, what="both messages deleted", task=task)

    first, second = await read_topic(kafka_bootstrap, changes)
    assert (first.key, first.value) == (second.key, second.value)
    assert parse_notification(first.value) == parse_notification(json.dumps(without_postal_code(notification)))
    assert bridge.counters.dead_lettered == 0
    assert (await queue_depth(sqs_client, queue)).total == 0


async def test_unusable_bodies_are_dead_lettered_with_reason_and_sqs_metadata_then_deleted(
    kafka_bootstrap: str,
    kafka_topic_factory: KafkaTopicFactory,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="streams.bridge")
    changes, dead = await kafka_topic_factory(), await kafka_topic_factory(partitions=2)
    queue = await sqs_queue()
    wrong_type = notification_dict()
    wrong_type["NotificationType"] = "ANY_OFFER_CHANGED"
    missing = notification_dict()
    del missing["NotificationMetadata"]
    missing["BuyerName"] = "Jane PII-Doe"
    cases = {
        "not JSON {Jane PII-Doe, 1 Main St}": "not JSON",
        json.dumps(wrong_type): "NotificationType",
        json.dumps(missing): "NotificationMetadata: required field is missing",
        "   ": "body is empty",
        json.dumps("just a string"): "does not hold a JSON object",
        "[]": "must be a JSON object",
    }
    before_ms = int(time.time() * 1000) - 5_000
    ids = await send_bodies(sqs_client, queue, list(cases))
    id_of = dict(zip(cases, ids, strict=True))

    bridge = make_bridge(queue, kafka_bootstrap, changes, dead)
    async with running(bridge) as task:
        await until(lambda: bridge.counters.deleted >= len(cases), what="every message deleted", task=task)

    assert (bridge.counters.dead_lettered, bridge.counters.forwarded) == (len(cases), 0)
    assert (await queue_depth(sqs_client, queue)).total == 0
    assert await read_topic(kafka_bootstrap, changes) == []
    records = await read_topic(kafka_bootstrap, dead, partitions=2)
    letters = {}
    for record in records:
        letter = DeadLetter.model_validate_json(record.value)
        letters[letter.raw] = (letter, record)
    assert sorted(letters) == sorted(cases)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "streams.bridge"]
    for body, expected_reason in cases.items():
        letter, record = letters[body]
        assert record.key is None
        assert (letter.source, letter.raw_encoding, letter.raw_bytes()) == ("sqs", "utf-8", body.encode())
        assert expected_reason in letter.reason
        assert letter.metadata["MessageId"] == id_of[body]
        assert letter.metadata["ApproximateReceiveCount"] == "1"
        assert before_ms <= int(letter.metadata["SentTimestamp"]) <= int(time.time() * 1000)
        assert any(id_of[body] in w and letter.reason in w for w in warnings), f"no warning for {id_of[body]}"
    assert "PII-Doe" not in caplog.text, "bodies must never be logged"


# --- delete only after the ack ------------------------------------------------------------------------------


async def test_a_record_kafka_does_not_acknowledge_stays_in_sqs_and_comes_back_after_the_visibility_timeout(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory, sqs_queue: SqsQueueFactory, sqs_client: Any
) -> None:
    # A real broker-side rejection: this topic refuses every record larger than 64 bytes (MESSAGE_TOO_LARGE).
    changes = await kafka_topic_factory(config={"max.message.bytes": "64"})
    dead = await kafka_topic_factory()
    queue = await sqs_queue()
    bodies = [json.dumps(notification_dict()) for _ in range(3)] + ["garbage"]
    ids = await send_bodies(sqs_client, queue, bodies)

    bridge = make_bridge(queue, kafka_bootstrap, changes, dead, pollers=1, visibility_timeout=2)
    async with running(bridge) as task:
        await until(
            lambda: bridge.counters.produce_failures >= 3 and bridge.counters.deleted >= 1,
            what="three produce failures and one delete",
            task=task,
        )

    assert (bridge.counters.forwarded, bridge.counters.dead_lettered, bridge.counters.deleted) == (0, 1, 1)
    assert await read_topic(kafka_bootstrap, changes) == []
    (letter,) = await read_topic(kafka_bootstrap, dead)
    assert DeadLetter.model_validate_json(letter.value).metadata["MessageId"] == ids[3]
    # The three unacknowledged messages were not deleted: once their visibility runs out, they are back.
    assert (await queue_depth(sqs_client, queue)).total == 3
    back = await drain(sqs_client, queue)
    assert sorted(m["MessageId"] for m in back) == sorted(ids[:3])
    assert all(int(m["Attributes"]["ApproximateReceiveCount"]) >= 2 for m in back)


async def test_a_crash_between_produce_and_delete_loses_nothing_and_the_core_drops_the_duplicates(
    kafka_bootstrap: str,
    kafka_topic_factory: KafkaTopicFactory,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    sqs_environment: dict[str, str],
) -> None:
    changes, dead = await kafka_topic_factory(partitions=3), await kafka_topic_factory()
    queue = await sqs_queue(visibility_timeout=2)
    sent = orders_notifications(ORDERS, ["Pending", "Unshipped", "Shipped"])
    await send_bodies(sqs_client, queue, [json.dumps(n) for n in sent])
    sent_ids = {n["NotificationMetadata"]["NotificationId"] for n in sent}

    # 1. The real CLI, killed (os._exit) right after Kafka acknowledged its first batch, before the delete.
    crashing = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.support.bridge_faults", "die-after-produce", "--queue-url", queue],
        *["--order-changes-topic", changes, "--dead-letters-topic", dead],
        cwd=REPO,
        env=subprocess_env(sqs_environment, kafka_bootstrap, pollers=1, visibility=2),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(crashing.communicate(), timeout=60)
    assert crashing.returncode == 1, stderr.decode()
    assert DYING in stderr.decode()
    first_batch = await read_topic(kafka_bootstrap, changes, partitions=3)
    assert 1 <= len(first_batch) <= 10
    assert (await queue_depth(sqs_client, queue)).total == len(sent), "nothing may be deleted before the crash"

    # 2. A fresh bridge forwards everything, the crashed batch again once its visibility runs out.
    bridge = make_bridge(queue, kafka_bootstrap, changes, dead, visibility_timeout=2)
    async with running(bridge) as task:
        await until(lambda: bridge.counters.deleted >= len(sent), what="every message deleted", task=task)
    assert (await queue_depth(sqs_client, queue)).total == 0

    records = await read_topic(kafka_bootstrap, changes, partitions=3)
    assert len(records) == len(sent) + len(first_batch)
    seen = Counter(parse_notification(r.value).notification_id for r in records)
    assert set(seen) == sent_ids, "every notification reached Kafka"
    duplicated = {parse_notification(r.value).notification_id for r in first_batch}
    assert {i for i, n in seen.items() if n > 1} == duplicated
    assert max(seen.values()) == 2
    values: dict[str, set[tuple[bytes | None, bytes]]] = defaultdict(set)
    for record in records:
        values[parse_notification(record.value).notification_id].add((record.key, record.value))
    assert all(len(v) == 1 for v in values.values()), "a duplicate is byte-identical to its original"

    # 3. Folded through the core, in partition order per order, the duplicates change nothing.
    now = T0 + timedelta(days=2)
    by_key: dict[bytes | None, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
    for record in records:
        by_key[record.key].append(record)
    duplicates_applied = 0
    for key_records in by_key.values():
        order_record = None
        applied: set[str] = set()
        for record in key_records:
            event = OrderChanged.from_notification(parse_notification(record.value))
            outcome = apply(order_record, event, now)
            if event.notification_id in applied:
                duplicates_applied += 1
                assert not outcome.changed
                assert outcome.record == order_record
                assert outcome.commands == ()
            order_record = outcome.record
            applied.add(event.notification_id)
        assert order_record is not None and order_record.state is OrderState.SHIPPED
    assert duplicates_applied == len(first_batch)


def sigterm_bodies(valid: int) -> tuple[list[str], list[str]]:
    """``valid`` notifications of distinct orders with ten invalid bodies mixed in; returns (bodies, invalid)."""
    notifications = [json.dumps(notification_dict(order=f"111-{i:07d}-0000001")) for i in range(valid)]
    invalid = [f"garbage {i}" for i in range(10)]
    return [b for pair in zip(notifications[:10], invalid, strict=True) for b in pair] + notifications[10:], invalid


async def check_nothing_lost(
    bootstrap: str, client: Any, queue: str, changes: str, dead: str, bodies: list[str], invalid: list[str]
) -> set[str]:
    """Every body is in Kafka (forwarded or dead-lettered) or still in SQS, and no batch was cut short: nothing
    is in both. Returns the identities left in SQS (drained)."""
    forwarded = {parse_notification(r.value).notification_id for r in await read_topic(bootstrap, changes, 3)}
    dead_lettered = {DeadLetter.model_validate_json(r.value).raw for r in await read_topic(bootstrap, dead)}
    assert dead_lettered <= set(invalid)
    left_in_sqs = {identity(m["Body"]) for m in await drain(client, queue)}
    lost = [identity(b) for b in bodies if identity(b) not in forwarded | dead_lettered | left_in_sqs]
    assert lost == [], f"{len(lost)} message(s) were deleted from SQS but never reached Kafka"
    assert (forwarded | dead_lettered) & left_in_sqs == set(), "a batch was produced but not deleted"
    return left_in_sqs


def final_counters(stderr: str) -> dict[str, int]:
    match = re.search(r"bridge stopped: (.*)$", stderr, re.MULTILINE)
    assert match, stderr
    return {name: int(value) for name, value in (pair.split("=") for pair in match.group(1).split())}


async def test_sigterm_stops_the_real_cli_with_exit_0_and_loses_nothing(
    kafka_bootstrap: str,
    kafka_topic_factory: KafkaTopicFactory,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    sqs_environment: dict[str, str],
) -> None:
    changes, dead = await kafka_topic_factory(partitions=3), await kafka_topic_factory()
    queue = await sqs_queue(visibility_timeout=2)
    bodies, invalid = sigterm_bodies(100)
    await send_bodies(sqs_client, queue, bodies)

    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "streams.cli", "bridge", "--queue-url", queue],
        *["--order-changes-topic", changes, "--dead-letters-topic", dead],
        cwd=REPO,
        env=subprocess_env(sqs_environment, kafka_bootstrap, pollers=4, visibility=5),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: _started(process, kafka_bootstrap, changes), what="the first record in Kafka", limit=60)
        process.send_signal(signal.SIGTERM)
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = stderr_bytes.decode()
    assert process.returncode == 0, stderr
    assert "SIGTERM: finishing the batches in flight" in stderr
    counters = final_counters(stderr)
    assert counters["deleted"] == counters["forwarded"] + counters["dead_lettered"] > 0
    left = await check_nothing_lost(kafka_bootstrap, sqs_client, queue, changes, dead, bodies, invalid)
    assert len(left) < len(bodies)


async def test_sigterm_while_batches_are_in_flight_finishes_their_produce_and_delete(
    kafka_bootstrap: str,
    kafka_topic_factory: KafkaTopicFactory,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    sqs_environment: dict[str, str],
) -> None:
    changes, dead = await kafka_topic_factory(partitions=3), await kafka_topic_factory()
    queue = await sqs_queue(visibility_timeout=2)
    bodies, invalid = sigterm_bodies(60)
    await send_bodies(sqs_client, queue, bodies)

    # Every acknowledged batch is held 1.5 s before its delete; SIGTERM lands while one is held.
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.support.bridge_faults", "hold-after-produce", "1.5"],
        *["--queue-url", queue, "--order-changes-topic", changes, "--dead-letters-topic", dead],
        cwd=REPO,
        env=subprocess_env(sqs_environment, kafka_bootstrap, pollers=3, visibility=5),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[str] = []
    try:
        while not any(HOLDING in line for line in seen):
            line = await asyncio.wait_for(process.stderr.readline(), timeout=60)
            assert line, f"the bridge exited before holding a batch: {''.join(seen)}"
            seen.append(line.decode())
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = "".join(seen) + rest.decode()
    assert process.returncode == 0, stderr
    counters = final_counters(stderr)
    assert counters["deleted"] == counters["forwarded"] + counters["dead_lettered"] > 0, "a held batch was not deleted"
    await check_nothing_lost(kafka_bootstrap, sqs_client, queue, changes, dead, bodies, invalid)


def identity(body: str) -> str:
    """A valid body's NotificationId, else the body itself (dead letters keep it raw)."""
    try:
        return parse_notification(body).notification_id
    except InvalidNotification:
        return body


async def _started(process: asyncio.subprocess.Process, bootstrap: str, topic: str) -> bool:
    if process.returncode is not None:
        stderr = await process.stderr.read() if process.stderr else b""
        raise AssertionError(f"the bridge exited early ({process.returncode}): {stderr.decode()}")
    return await topic_size(bootstrap, topic, partitions=3) > 0


# --- visibility -----------------------------------------------------------------------------------------------


async def test_a_slow_batch_keeps_its_messages_invisible_so_no_other_poller_receives_them(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory, sqs_queue: SqsQueueFactory, sqs_client: Any
) -> None:
    changes, dead = await kafka_topic_factory(), await kafka_topic_factory()
    queue = await sqs_queue()
    bodies = [json.dumps(notification_dict()) for _ in range(5)]
    await send_bodies(sqs_client, queue, bodies)
    holding = asyncio.Event()

    async def hold(messages: Sequence[SqsMessage]) -> None:
        holding.set()
        await asyncio.sleep(5)  # 2.5 visibility timeouts between the ack and the delete

    slow = make_bridge(queue, kafka_bootstrap, changes, dead, visibility_timeout=2, after_produce=hold)
    # Another replica polls the same queue all along; it gets the messages only if their visibility lapses.
    other = make_bridge(queue, kafka_bootstrap, changes, dead, visibility_timeout=2)
    async with running(slow) as slow_task:
        await until(holding.is_set, what="the slow batch is held", task=slow_task)
        async with running(other) as other_task:
            await until(lambda: slow.counters.deleted >= len(bodies), what="the slow batch deleted", task=slow_task)
            await asyncio.sleep(1)
            assert not other_task.done()

    assert slow.counters.received == len(bodies)
    assert other.counters.received == 0, "a message of the slow batch was delivered to another poller"
    assert slow.counters.visibility_extensions >= 2
    assert len(await read_topic(kafka_bootstrap, changes)) == len(bodies)
    assert (await queue_depth(sqs_client, queue)).total == 0


# --- failures that stop the bridge -----------------------------------------------------------------------------


async def test_a_missing_queue_stops_the_bridge_with_queue_misconfigured(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory, sqs_environment: dict[str, str]
) -> None:
    changes, dead = await kafka_topic_factory(), await kafka_topic_factory()
    missing = f"{sqs_environment['AWS_ENDPOINT_URL_SQS']}/123456789012/no-such-queue"
    bridge = make_bridge(missing, kafka_bootstrap, changes, dead)
    with pytest.raises(QueueMisconfigured, match=r"NonExistentQueue|QueueDoesNotExist"):
        await asyncio.wait_for(bridge.run(), timeout=30)


async def test_the_cli_exits_1_with_the_reason_when_the_queue_does_not_exist(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory, sqs_environment: dict[str, str]
) -> None:
    changes, dead = await kafka_topic_factory(), await kafka_topic_factory()
    missing = f"{sqs_environment['AWS_ENDPOINT_URL_SQS']}/123456789012/no-such-queue"
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "streams.cli", "bridge", "--queue-url", missing],
        *["--order-changes-topic", changes, "--dead-letters-topic", dead],
        cwd=REPO,
        env=subprocess_env(sqs_environment, kafka_bootstrap),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert "solicit bridge: error: SQS ReceiveMessage" in stderr.decode()
    assert "no-such-queue" in stderr.decode()
