from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from botocore.exceptions import ClientError

from connectors.clock import SystemClock
from connectors.kafka import KafkaConnection
from connectors.sqs import QueueMisconfigured, SqsMessage, SqsQueue, SqsRetryLater
from statemachine import parse_notification
from streams.bridge import (
    BACKOFF_CAP_S,
    Bridge,
    BridgeConfig,
    BridgeCounters,
    _Backoff,
    forwarded_value,
    route,
    settle,
)
from streams.cli import main
from streams.deadletters import DeadLetter
from tests.support.factories import notification_dict

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def message(body: str, *, message_id: str = "m-1", attributes: dict[str, str] | None = None) -> SqsMessage:
    raw = {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1772700000123"}
        if attributes is None
        else attributes,
    }
    return SqsMessage.from_response(raw)


def route_to_topics(msg: SqsMessage) -> Any:
    return route(msg, order_changes_topic="changes", dead_letters_topic="dead", now=NOW)


# --- SqsMessage -----------------------------------------------------------------------------------------


def test_a_received_message_keeps_its_receive_count_and_sent_time() -> None:
    msg = message("{}")
    assert (msg.message_id, msg.receipt_handle, msg.body) == ("m-1", "rh-m-1", "{}")
    assert (msg.receive_count, msg.sent_timestamp) == (2, 1772700000123)
    assert msg.metadata() == {"MessageId": "m-1", "ApproximateReceiveCount": "2", "SentTimestamp": "1772700000123"}


@pytest.mark.parametrize("attributes", [{}, {"ApproximateReceiveCount": "many", "SentTimestamp": "yesterday"}])
def test_missing_or_garbled_attributes_mean_first_receive_and_unknown_sent_time(attributes: dict[str, str]) -> None:
    msg = message("{}", attributes=attributes)
    assert (msg.receive_count, msg.sent_timestamp) == (1, None)
    assert msg.metadata() == {"MessageId": "m-1", "ApproximateReceiveCount": "1"}


# --- routing ----------------------------------------------------------------------------------------------


def test_a_valid_notification_goes_to_order_changes_keyed_by_seller_and_order() -> None:
    body = notification_dict(seller="A1SELLER", order="111-2222222-3333333")
    outbound = route_to_topics(message(json.dumps(body)))
    assert (outbound.topic, outbound.key, outbound.rejection) == ("changes", b"A1SELLER/111-2222222-3333333", None)
    assert json.loads(outbound.value)["Payload"]["OrderChangeNotification"]["Summary"]["DestinationPostalCode"] is None


def test_the_forwarded_value_is_the_canonical_notification_minus_the_postal_code_and_keeps_unknown_fields() -> None:
    body = notification_dict()
    body["Payload"]["OrderChangeNotification"]["Summary"]["FutureField"] = [1, 2]
    notification = parse_notification(json.dumps(body))
    body["Payload"]["OrderChangeNotification"]["Summary"]["DestinationPostalCode"] = None
    assert forwarded_value(notification) == parse_notification(json.dumps(body)).to_json()
    assert b'"FutureField":[1,2]' in forwarded_value(notification)
    assert notification.change.Summary.DestinationPostalCode == "48110", "the parsed notification is not mutated"


def test_plain_and_double_encoded_bodies_become_the_same_record() -> None:
    plain = json.dumps(notification_dict())
    first, second = route_to_topics(message(plain)), route_to_topics(message(json.dumps(plain)))
    assert (first.topic, first.key, first.value) == (second.topic, second.key, second.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "body is empty"),
        ("{not json", "not JSON"),
        (json.dumps({**notification_dict(), "NotificationType": "FEED_PROCESSING_FINISHED"}), "NotificationType"),
        (json.dumps(json.dumps(json.dumps(notification_dict()))), "more than twice"),
    ],
)
def test_an_unusable_body_becomes_a_dead_letter_with_reason_raw_body_and_sqs_metadata(body: str, reason: str) -> None:
    outbound = route_to_topics(message(body, message_id="m-bad"))
    assert (outbound.topic, outbound.key) == ("dead", None)
    assert outbound.rejection is not None and reason in outbound.rejection
    letter = DeadLetter.model_validate_json(outbound.value)
    assert (letter.source, letter.raw, letter.reason, letter.at) == ("sqs", body, outbound.rejection, NOW)
    assert letter.metadata == {"MessageId": "m-bad", "ApproximateReceiveCount": "2", "SentTimestamp": "1772700000123"}


# --- batch bookkeeping ------------------------------------------------------------------------------------


def test_settle_deletes_only_what_kafka_acknowledged() -> None:
    outbounds = [route_to_topics(message(json.dumps(notification_dict()), message_id=f"m-{i}")) for i in range(3)]
    failure = KafkaTimeoutError()
    settled = settle(outbounds, [object(), failure, object()])
    assert [o.message.message_id for o in settled.acked] == ["m-0", "m-2"]
    assert [(o.message.message_id, e) for o, e in settled.failed] == [("m-1", failure)]


def test_settle_refuses_results_that_do_not_match_the_batch() -> None:
    with pytest.raises(ValueError, match="2 records but 1 produce results"):
        settle([route_to_topics(message("x")), route_to_topics(message("y"))], [object()])


def test_counters_summarise_in_one_log_friendly_line() -> None:
    counters = BridgeCounters(received=3, forwarded=2, dead_lettered=1, deleted=3)
    assert counters.summary().startswith("received=3 forwarded=2 dead_lettered=1 deleted=3 produce_failures=0")


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = _Backoff()
    delays = [backoff.next() for _ in range(8)]
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert max(delays) == delays[-1] == BACKOFF_CAP_S
    backoff.reset()
    assert backoff.next() == 1.0


@pytest.mark.parametrize(
    ("option", "value"),
    [("pollers", 0), ("max_messages", 11), ("max_messages", 0), ("wait_seconds", 21), ("visibility_timeout", 0)],
)
def test_the_bridge_refuses_parameters_sqs_cannot_honour(option: str, value: int) -> None:
    with pytest.raises(ValueError, match=option):
        BridgeConfig(queue_url="q", **{option: value})


def test_the_bridge_needs_a_queue() -> None:
    with pytest.raises(ValueError, match="QUEUE_URL"):
        Bridge(config=BridgeConfig(), kafka=KafkaConnection(), clock=SystemClock())


# --- the SQS seam's error mapping and batching (a fake client: no network) ------------------------------------


class FakeClient:
    def __init__(self, *, error: str | None = None, failed_ids: tuple[str, ...] = ()) -> None:
        self.error = error
        self.failed_ids = failed_ids
        self.calls: list[dict[str, Any]] = []

    async def receive_message(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "nope"}}, "ReceiveMessage")
        return {"Messages": [{"MessageId": "m-1", "ReceiptHandle": "rh", "Body": "{}"}]}

    async def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        entries = params["Entries"]
        refused = [e for e in entries if e["ReceiptHandle"] in self.failed_ids]
        return {
            "Successful": [{"Id": e["Id"]} for e in entries if e not in refused],
            "Failed": [
                {"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "Message": "stale", "SenderFault": True}
                for e in refused
            ],
        }


async def test_receive_asks_for_the_receive_count_and_sent_time() -> None:
    client = FakeClient()
    (received,) = await SqsQueue(client, "q").receive(max_messages=7, wait_seconds=3, visibility_timeout=9)
    assert received.message_id == "m-1"
    assert client.calls == [
        {
            "QueueUrl": "q",
            "MaxNumberOfMessages": 7,
            "WaitTimeSeconds": 3,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "VisibilityTimeout": 9,
        }
    ]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("AWS.SimpleQueueService.NonExistentQueue", QueueMisconfigured),
        ("AccessDenied", QueueMisconfigured),
        ("InvalidClientTokenId", QueueMisconfigured),
        ("ThrottlingException", SqsRetryLater),
        ("InternalError", SqsRetryLater),
    ],
)
async def test_sqs_errors_are_named_for_what_the_caller_does_next(code: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=code):
        await SqsQueue(FakeClient(error=code), "q").receive()


async def test_delete_batch_sends_batches_of_ten_and_reports_refused_entries() -> None:
    messages = [message("{}", message_id=f"m-{i}") for i in range(23)]
    client = FakeClient(failed_ids=("rh-m-4", "rh-m-17"))
    failures = await SqsQueue(client, "q").delete_batch(messages)
    assert [len(call["Entries"]) for call in client.calls] == [10, 10, 3]
    assert [(f.message.message_id, f.code, f.sender_fault) for f in failures] == [
        ("m-4", "ReceiptHandleIsInvalid", True),
        ("m-17", "ReceiptHandleIsInvalid", True),
    ]


# --- CLI ------------------------------------------------------------------------------------------------------


def test_the_cli_refuses_to_start_without_a_queue_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bridge"]) == 2
    assert "SOLICIT_BRIDGE__QUEUE_URL: not set (or pass --queue-url)" in capsys.readouterr().err


def test_the_cli_refuses_zero_pollers(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SOLICIT_BRIDGE__POLLERS", "0")
    assert main(["bridge", "--queue-url", "http://q"]) == 2
    err = capsys.readouterr().err
    assert "SOLICIT_BRIDGE__POLLERS: Input should be greater than or equal to 1" in err
    assert len(err.strip().splitlines()) == 1
