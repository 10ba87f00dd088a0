"""ORDER_CHANGE parsing: the official example, schema-generated payloads, and a table of malformed bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine import InvalidNotification, Notification, OrderChanged, parse_notification
from statemachine.notification import FulfillmentType, OrderStatus
from tests.support.factories import notification_dict
from tests.support.schema_strategies import (
    EXAMPLE_PATH,
    date_paths,
    from_schema,
    load_schema,
    replace_at,
)

HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.spapi_models
def test_the_official_example_parses() -> None:
    body = EXAMPLE_PATH.read_text()
    notification = parse_notification(body)
    change = notification.change
    assert change.SellerId == "A3TH9S8BH6GOGM"
    assert change.AmazonOrderId == "903-8868176-2219830"
    assert change.Summary.OrderStatus is OrderStatus.UNSHIPPED
    assert change.Summary.FulfillmentType is FulfillmentType.MFN
    assert notification.notification_id == "d0e9e693-c3ad-4373-979f-ed4ec98dd746"
    assert notification.EventTime.isoformat() == "2020-01-11T00:09:53.109000+00:00"
    # The schema's own example, embedded in the schema, is the same document.
    assert json.loads(body) == load_schema()["examples"][0]


@pytest.mark.spapi_models
def test_the_official_example_round_trips_field_for_field() -> None:
    original = json.loads(EXAMPLE_PATH.read_text())
    notification = parse_notification(EXAMPLE_PATH.read_text())
    dumped = json.loads(notification.to_json())
    assert dumped == original  # same keys, same values: dates are written back as Amazon writes them


def test_a_double_encoded_body_parses_to_the_same_notification() -> None:
    body = json.dumps(notification_dict())
    assert parse_notification(json.dumps(body)) == parse_notification(body)
    assert parse_notification(json.dumps(body).encode()) == parse_notification(body.encode())


def test_unknown_fields_are_kept_and_unknown_enum_values_tolerated() -> None:
    doc = notification_dict(status="SomeFutureStatus", fulfillment="XFN")
    doc["Payload"]["OrderChangeNotification"]["Summary"]["BrandNewField"] = {"a": [1, 2]}
    doc["TopLevelExtra"] = True
    notification = parse_notification(json.dumps(doc))
    assert notification.change.Summary.OrderStatus == "SomeFutureStatus"
    assert notification.change.Summary.FulfillmentType == "XFN"
    dumped = json.loads(notification.to_json())
    assert dumped["TopLevelExtra"] is True
    assert dumped["Payload"]["OrderChangeNotification"]["Summary"]["BrandNewField"] == {"a": [1, 2]}


def test_a_timestamp_without_offset_is_utc_and_offsets_are_normalised() -> None:
    doc = notification_dict()
    doc["EventTime"] = "2026-01-02T03:04:05"
    doc["NotificationMetadata"]["PublishTime"] = "2026-01-02T08:34:05+05:30"
    notification = parse_notification(json.dumps(doc))
    assert notification.EventTime == notification.NotificationMetadata.PublishTime
    assert notification.EventTime.utcoffset() is not None


def test_the_core_event_drops_buyer_data() -> None:
    notification = parse_notification(json.dumps(notification_dict()))
    event = OrderChanged.from_notification(notification)
    dumped = event.model_dump_json()
    assert "48110" not in dumped
    assert "SKU1" not in dumped
    assert event.status == "Shipped"
    assert event.key == "A3TH9S8BH6GOGM/903-8868176-2219830"


def _without(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


def _with(doc: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


SUMMARY = ("Payload", "OrderChangeNotification", "Summary")
CHANGE = ("Payload", "OrderChangeNotification")

MALFORMED: list[tuple[str, bytes | str, str]] = [
    ("empty", b"", "body is empty"),
    ("whitespace", "  \n ", "body is empty"),
    ("not json", b"hello", "body is not JSON"),
    ("truncated json", json.dumps(notification_dict())[:50], "body is not JSON"),
    ("json array", b"[1, 2]", "must be a JSON object, got an array"),
    ("json number", b"42", "must be a JSON object, got a number"),
    ("json null", b"null", "must be a JSON object, got null"),
    ("json true", b"true", "must be a JSON object, got a boolean"),
    ("json string of text", b'"hello"', "does not hold a JSON object"),
    ("double-encoded empty", b'""', "double-encoded empty string"),
    ("broken double-encoding", b'"{\\"a\\": 1', "body is not JSON: Unterminated string"),
    ("double-encoded array", json.dumps("[1, 2]"), "does not hold a JSON object"),
    ("triple-encoded", json.dumps(json.dumps(json.dumps(notification_dict()))), "more than twice"),
    ("invalid utf-8", b'{"NotificationType": "\xff\xfe"}', "not valid UTF-8: byte 0xff at offset 22"),
    ("huge", b'{"x": "' + b"a" * (1024 * 1024) + b'"}', "more than the 1048576 allowed"),
    ("huge text", '{"x": "' + "é" * (600 * 1024) + '"}', "more than the 1048576 bytes allowed"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "recursion limit"),
    (
        "wrong notification type",
        json.dumps(_with(notification_dict(), "ANY_OFFER_CHANGED", "NotificationType")),
        "NotificationType: Input should be 'ORDER_CHANGE', got 'ANY_OFFER_CHANGED'",
    ),
    (
        "missing seller",
        json.dumps(_without(notification_dict(), *CHANGE, "SellerId")),
        "Payload.OrderChangeNotification.SellerId: required field is missing",
    ),
    (
        "missing metadata",
        json.dumps(_without(notification_dict(), "NotificationMetadata")),
        "NotificationMetadata: required field is missing",
    ),
    (
        "missing order status",
        json.dumps(_without(notification_dict(), *SUMMARY, "OrderStatus")),
        "Summary.OrderStatus: required field is missing",
    ),
    (
        "missing nullable-but-required postal code",
        json.dumps(_without(notification_dict(), *SUMMARY, "DestinationPostalCode")),
        "Summary.DestinationPostalCode: required field is missing",
    ),
    (
        "quantity as string",
        json.dumps(
            _with(
                notification_dict(),
                [{"OrderItemId": "a", "SellerSKU": "b", "SupplySourceId": None, "Quantity": "1"}],
                *SUMMARY,
                "OrderItems",
            )
        ),
        "Summary.OrderItems[0].Quantity: Input should be a valid integer (got '1')",
    ),
    (
        "seller id as number",
        json.dumps(_with(notification_dict(), 12345, *CHANGE, "SellerId")),
        "SellerId: Input should be a valid string (got 12345)",
    ),
    (
        "order id with a slash",
        json.dumps(_with(notification_dict(), "903/8868176", *CHANGE, "AmazonOrderId")),
        "AmazonOrderId: String should match pattern",
    ),
    (
        "event time not a date",
        json.dumps(_with(notification_dict(), "yesterday", "EventTime")),
        "EventTime: is not an ISO-8601 date-time: 'yesterday'",
    ),
    (
        "delivery date as number",
        json.dumps(_with(notification_dict(), 1700000000, *SUMMARY, "EarliestDeliveryDate")),
        "EarliestDeliveryDate: must be an ISO-8601 date-time string, not int",
    ),
    (
        "items not a list",
        json.dumps(_with(notification_dict(), {"a": 1}, *SUMMARY, "OrderItems")),
        "Summary.OrderItems: Input should be a valid array",
    ),
    (
        "payload not an object",
        json.dumps(_with(notification_dict(), "x", "Payload")),
        "Payload: Input should be an object",
    ),
]


@pytest.mark.parametrize(("body", "reason"), [(b, r) for _, b, r in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_bodies_give_the_typed_error_with_a_useful_reason(body: bytes | str, reason: str) -> None:
    with pytest.raises(InvalidNotification) as caught:
        parse_notification(body)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_many_problems_are_summarised() -> None:
    doc = notification_dict()
    for key in ("NotificationVersion", "PayloadVersion", "EventTime", "Payload"):
        del doc[key]
    with pytest.raises(InvalidNotification) as caught:
        parse_notification(json.dumps(doc))
    assert caught.value.reason.endswith("and 1 more problem(s)")


def test_a_date_that_leaves_the_calendar_once_in_utc_gives_the_typed_error() -> None:
    doc = notification_dict()
    doc["EventTime"] = "9999-12-31T23:00:00-05:00"
    with pytest.raises(InvalidNotification, match="EventTime: is out of range once converted to UTC"):
        parse_notification(json.dumps(doc))


def test_a_non_text_body_is_refused() -> None:
    with pytest.raises(InvalidNotification, match="must be text or bytes, not int"):
        parse_notification(42)  # type: ignore[arg-type]


@pytest.mark.spapi_models
@HYPOTHESIS
@given(data=st.data())
def test_every_schema_valid_payload_parses_and_round_trips(data: st.DataObject) -> None:
    payload = data.draw(from_schema(load_schema()))
    body = json.dumps(payload)
    notification = parse_notification(body)
    assert isinstance(notification, Notification)
    again = parse_notification(notification.to_json())
    assert again == notification
    assert again.to_json() == notification.to_json()
    assert set(json.loads(notification.to_json())) == set(payload)  # unknown top-level fields kept
    # ... and the same payload double-encoded, as bytes.
    assert parse_notification(json.dumps(body).encode()) == notification


@pytest.mark.spapi_models
@HYPOTHESIS
@given(data=st.data())
def test_a_schema_valid_payload_with_a_date_that_is_no_date_gives_the_typed_error(data: st.DataObject) -> None:
    payload = data.draw(from_schema(load_schema()))
    paths = date_paths(payload)
    path = data.draw(st.sampled_from(paths))
    junk = data.draw(
        st.sampled_from(["", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30", "1700000000", "12:00", "T", "null"])
        | st.text(alphabet="abcxyz -:/", max_size=12)
    )
    broken = replace_at(payload, path, junk)
    with pytest.raises(InvalidNotification) as caught:
        parse_notification(json.dumps(broken))
    assert str(path[-1]) in caught.value.reason


@pytest.mark.spapi_models
@HYPOTHESIS
@given(data=st.data())
def test_schema_valid_payloads_with_arbitrary_strings_never_raise_anything_else(data: st.DataObject) -> None:
    payload = data.draw(from_schema(load_schema(), free_strings=True))
    try:
        parse_notification(json.dumps(payload))
    except InvalidNotification as exc:
        reason = exc.reason
    else:
        reason = "parsed"
    assert reason
