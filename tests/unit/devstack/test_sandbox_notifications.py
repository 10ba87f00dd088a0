"""The sandbox's Notifications rules, called directly (no HTTP) on a manual clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.clock import ManualClock
from devstack.sandbox import MESSAGES, SandboxConfig, SandboxState, ScriptedFault, SellerIn
from devstack.sandbox.protocol import Reply, RequestFacts

ARN = "arn:aws:sqs:us-east-1:123456789012:order-change"
FORM = "application/x-www-form-urlencoded"
DIRECTIVE = {"eventFilter": {"eventFilterType": "ORDER_CHANGE", "orderChangeTypes": ["OrderStatusChange"]}}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, tzinfo=UTC))


@pytest.fixture
def state(clock: ManualClock) -> SandboxState:
    sellers = (SellerIn(seller_id="S1", refresh_token=SecretStr("Atzr|one")),)
    return SandboxState(SandboxConfig(sellers=sellers, burst=3), clock)


def facts(token: str | None, body: Any = None, **overrides: Any) -> RequestFacts:
    raw = b"" if body is None else json.dumps(body).encode()
    values: dict[str, Any] = {
        "method": "POST" if raw else "GET",
        "path": "/notifications/v1/x",
        "query": {},
        "access_token": token,
        "user_agent": "test",
        "content_type": "application/json" if raw else None,
        "body_bytes": len(raw),
    }
    values.update(overrides)
    return RequestFacts(**values)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def lwa(state: SandboxState, **form: str) -> Reply:
    fields = {"client_id": state.config.client_id, "client_secret": state.config.client_secret.get_secret_value()}
    return state.lwa_token({**fields, **form}, facts(None, content_type=FORM))


def grantless(state: SandboxState) -> str:
    reply = lwa(state, grant_type="client_credentials", scope="sellingpartnerapi::notifications")
    assert reply.status == 200, reply.body
    assert reply.body["scope"] == "sellingpartnerapi::notifications" and reply.body["token_type"] == "bearer"
    return str(reply.body["access_token"])


def seller_token(state: SandboxState) -> str:
    return str(lwa(state, grant_type="refresh_token", refresh_token="Atzr|one").body["access_token"])


def error(reply: Reply) -> tuple[int, str, str, str]:
    (first,) = reply.body["errors"]
    return reply.status, first["code"], first["message"], first["details"]


def create_destination(state: SandboxState, token: str, arn: str = ARN) -> Reply:
    request = {"name": "solicit", "resourceSpecification": {"sqs": {"arn": arn}}}
    return state.notifications.create_destination(facts(token, request), body(request))


def create_subscription(state: SandboxState, token: str, **fields: Any) -> Reply:
    request = {"payloadVersion": "1.0", **fields}
    return state.notifications.create_subscription("ORDER_CHANGE", facts(token, request), body(request))


def test_grantless_tokens_need_a_grantless_scope(state: SandboxState) -> None:
    assert grantless(state).startswith("Atza|")
    refused = lwa(state, grant_type="client_credentials", scope="sellingpartnerapi::orders")
    assert (refused.status, refused.body["error"]) == (400, "invalid_scope")
    wrong_client = lwa(state, grant_type="client_credentials", scope="x", client_secret="nope")
    assert (wrong_client.status, wrong_client.body["error"]) == (401, "invalid_client")


def test_each_operation_needs_its_kind_of_token(state: SandboxState, clock: ManualClock) -> None:
    rules, app_token, seller = state.notifications, grantless(state), seller_token(state)
    denied = rules.get_destinations(facts(seller))
    assert error(denied)[:3] == (403, "Unauthorized", MESSAGES["access_denied"])
    assert "grantless" in error(denied)[3]
    assert "selling partner" in error(rules.get_subscription("ORDER_CHANGE", facts(app_token)))[3]
    assert error(rules.get_destinations(facts(None)))[3] == MESSAGES["token_missing"]
    assert rules.get_destinations(facts(app_token)).status == 200
    assert rules.get_subscription("ORDER_CHANGE", facts(seller)).status == 404
    clock.advance(3601)
    assert error(rules.get_destinations(facts(app_token)))[3] == MESSAGES["token_invalid"]
    assert "x-amzn-RateLimit-Limit" not in denied.headers


def test_destinations_are_unique_per_arn(state: SandboxState) -> None:
    token = grantless(state)
    created = create_destination(state, token)
    assert created.status == 200 and created.content_type == "application/json"
    payload = created.body["payload"]
    assert payload["resource"] == {"sqs": {"arn": ARN}} and payload["name"] == "solicit"
    conflict = create_destination(state, token)
    assert error(conflict)[:3] == (409, "Conflict", "The requested resource conflict with a resource in the server.")
    assert f"A destination with arn {ARN} already exists for the application" in error(conflict)[3]
    listed = state.notifications.get_destinations(facts(token)).body["payload"]
    assert listed == [payload]
    assert created.headers["x-amzn-RateLimit-Limit"] == "1.0" and "x-amzn-RateLimit-Limit" not in conflict.headers


@pytest.mark.parametrize(
    "request_body",
    [
        {"name": "n", "resourceSpecification": {"sqs": {"arn": "arn:aws:sns:us-east-1:1:topic"}}},
        {"name": "n", "resourceSpecification": {"eventBridge": {"accountId": "1", "region": "us-east-1"}}},
        {"name": "x" * 257, "resourceSpecification": {"sqs": {"arn": ARN}}},
        {"resourceSpecification": {"sqs": {"arn": ARN}}},
        {"name": "n"},
        ["not", "an", "object"],
    ],
)
def test_invalid_destination_requests_are_400(state: SandboxState, request_body: Any) -> None:
    reply = state.notifications.create_destination(facts(grantless(state), request_body), body(request_body))
    assert error(reply)[:2] == (400, "InvalidInput")
    assert state.notifications.destinations == {}


def test_one_subscription_per_seller_type_and_version(state: SandboxState) -> None:
    destination_id = create_destination(state, grantless(state)).body["payload"]["destinationId"]
    token = seller_token(state)
    created = create_subscription(state, token, destinationId=destination_id, processingDirective=DIRECTIVE)
    assert created.status == 200
    assert created.body["payload"]["processingDirective"] == DIRECTIVE
    again = create_subscription(state, token, destinationId=destination_id)
    assert error(again) == (
        409,
        "StateConflict",
        "The resource specified conflicts with the current state.",
        "Subscription already exist for notification type ORDER_CHANGE",
    )
    found = state.notifications.get_subscription("ORDER_CHANGE", facts(token, query={"payloadVersion": ["1.0"]}))
    assert found.body == created.body
    (row,) = state.notifications.subscriptions.values()
    assert (row.seller_id, row.destination_id) == ("S1", destination_id)


@pytest.mark.parametrize(
    ("fields", "details"),
    [
        ({"destinationId": "nope"}, "No destination with id 'nope' for applicationId"),
        ({"destinationId": "{id}", "payloadVersion": "2.0"}, "payloadVersion must be one of 1.0"),
        ({"payloadVersion": "1.0"}, "destinationId is required"),
        (
            {
                "destinationId": "{id}",
                "processingDirective": {
                    "eventFilter": {"eventFilterType": "ORDER_CHANGE", "marketplaceIds": ["ATVPDKIKX0DER"]}
                },
            },
            "failed to validate for notification type ORDER_CHANGE",
        ),
        (
            {"destinationId": "{id}", "processingDirective": {**DIRECTIVE, "filterExpression": "x"}},
            "mutually exclusive",
        ),
        (
            {"destinationId": "{id}", "processingDirective": {"eventFilter": {"eventFilterType": "ANY_OFFER_CHANGED"}}},
            "failed to validate",
        ),
    ],
)
def test_invalid_subscription_requests_are_400(state: SandboxState, fields: dict[str, Any], details: str) -> None:
    destination_id = create_destination(state, grantless(state)).body["payload"]["destinationId"]
    if fields.get("destinationId") == "{id}":
        fields = {**fields, "destinationId": destination_id}
    reply = create_subscription(state, seller_token(state), **fields)
    assert error(reply)[:2] == (400, "InvalidInput")
    assert details in error(reply)[3]


def test_unknown_notification_types_are_400(state: SandboxState) -> None:
    reply = state.notifications.get_subscription("ORDER_STATUS_CHANGE", facts(seller_token(state)))
    assert error(reply)[3] == 'Invalid value "ORDER_STATUS_CHANGE" for path parameter notificationType'


def test_a_destination_in_use_cannot_be_deleted(state: SandboxState) -> None:
    rules, token = state.notifications, grantless(state)
    destination_id = create_destination(state, token).body["payload"]["destinationId"]
    subscription_id = create_subscription(state, seller_token(state), destinationId=destination_id).body["payload"][
        "subscriptionId"
    ]
    in_use = rules.delete_destination(destination_id, facts(token))
    assert error(in_use) == (403, "Unauthorized", "The requested action is forbidden.", "Destination has subscriptions")
    assert rules.delete_subscription("ORDER_CHANGE", subscription_id, facts(token)).body == {}
    assert rules.delete_subscription("ORDER_CHANGE", subscription_id, facts(token)).status == 404
    assert rules.delete_destination(destination_id, facts(token)).status == 200
    assert rules.delete_destination(destination_id, facts(token)).status == 404


def test_grantless_calls_share_the_apps_bucket_sellers_have_their_own(state: SandboxState) -> None:
    rules, token, seller = state.notifications, grantless(state), seller_token(state)
    statuses = [rules.get_destinations(facts(token)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert rules.get_subscription("ORDER_CHANGE", facts(seller)).status == 404  # its own bucket
    assert ("app:" + state.config.client_id, "getDestinations") in state._buckets


def test_an_ambiguous_create_takes_effect_then_answers_500(state: SandboxState) -> None:
    token = grantless(state)
    state.script_faults([ScriptedFault(fault="ambiguous", operation="createDestination")])
    assert error(create_destination(state, token))[:2] == (500, "InternalFailure")
    assert error(create_destination(state, token))[0] == 409
    assert len(state.notifications.destinations) == 1


def test_faults_size_and_media_type(state: SandboxState) -> None:
    rules, token = state.notifications, grantless(state)
    state.script_faults([ScriptedFault(fault="503", operation="getDestinations")])
    assert error(rules.get_destinations(facts(token)))[0] == 503
    big = facts(token, body_bytes=state.config.max_body_bytes + 1, content_type="application/json")
    assert error(rules.create_destination(big, b""))[0] == 413
    text = facts(token, body_bytes=4, content_type="text/plain")
    assert error(rules.create_destination(text, b"text"))[0] == 415


def test_reset_forgets_destinations_subscriptions_and_grantless_tokens(state: SandboxState) -> None:
    token = grantless(state)
    create_destination(state, token)
    state.reset()
    assert state.notifications.destinations == {}
    assert error(state.notifications.get_destinations(facts(token)))[3] == MESSAGES["token_invalid"]
