"""``NotificationsClient`` against a scripted Amazon (``httpx.MockTransport``), and its facts against the model."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.clock import ManualClock
from connectors.spapi import (
    AccessDenied,
    AppCredentialsRejected,
    ClientConfig,
    NotificationsClient,
    RejectedRequest,
    RetryLater,
)
from connectors.spapi.notification_responses import Conflict, Destination, Removed, Subscription
from connectors.spapi.notifications import (
    GRANTLESS_OPERATIONS,
    NOTIFICATIONS_BURST,
    NOTIFICATIONS_RATE,
    ORDER_CHANGE,
    ORDER_CHANGE_PAYLOAD_VERSION,
)
from devstack import spapi_models
from statemachine.marketplaces import Region
from tests.support.spapi_fakes import LWA_URL, FakeAmazon, FakeSleep, app, body_of, seller, spapi_error

ARN = "arn:aws:sqs:us-east-1:123456789012:order-change"
EU = "https://sellingpartnerapi-eu.amazon.com"
USAGE_PLAN = re.compile(r"\| Rate \(requests per second\) \| Burst \|\n\| -+ \| -+ \|\n\| ([\d.]+) \| (\d+) \|")
DIRECTIVE = {"eventFilter": {"eventFilterType": "ORDER_CHANGE", "orderChangeTypes": ["OrderStatusChange"]}}


def make(amazon: FakeAmazon, *, endpoint: str | None = None) -> tuple[NotificationsClient, FakeSleep]:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    sleep = FakeSleep(clock)
    client = NotificationsClient(
        app=app(),
        clock=clock,
        spapi_endpoint=endpoint,
        lwa_endpoint=LWA_URL,
        config=ClientConfig(backoff_base=0.5, backoff_cap=4.0, max_attempts=3),
        transport=httpx.MockTransport(amazon.handler),
        sleep=sleep,
    )
    return client, sleep


def ok(body: dict[str, Any], request_id: str = "rid") -> httpx.Response:
    return httpx.Response(200, json=body, headers={"x-amzn-RequestId": request_id})


def destination(destination_id: str = "d-1", arn: str = ARN) -> dict[str, Any]:
    return {"destinationId": destination_id, "name": "solicit", "resource": {"sqs": {"arn": arn}}}


def subscription(destination_id: str = "d-1") -> dict[str, Any]:
    return {"subscriptionId": "s-1", "payloadVersion": "1.0", "destinationId": destination_id}


async def test_grantless_calls_take_a_client_credentials_token_and_the_regional_host() -> None:
    event_bridge = {"destinationId": "d-eb", "name": "eb", "resource": {"eventBridge": {"name": "x"}}}
    amazon = FakeAmazon(ok({"payload": [destination(), event_bridge, {"name": "no id"}]}))
    client, _ = make(amazon)
    async with client:
        found = await client.get_destinations(Region.EU)
    assert found == [Destination("d-1", "solicit", ARN), Destination("d-eb", "eb", None)]
    (request,) = amazon.spapi_requests
    assert (request.method, str(request.url)) == ("GET", f"{EU}/notifications/v1/destinations")
    assert request.headers["x-amz-access-token"] == "Atza|ACCESS-SECRET-1"
    assert request.content == b""
    assert amazon.form()["grant_type"] == "client_credentials"
    assert amazon.form()["scope"] == "sellingpartnerapi::notifications"


async def test_create_destination_sends_the_model_body_and_reads_409_as_conflict() -> None:
    details = f"A destination with arn {ARN} already exists for the application amzn1.sp.solution.x"
    amazon = FakeAmazon(
        ok({"payload": destination("d-new")}),
        spapi_error(409, "Conflict", "The requested resource conflict with a resource in the server.", details, "r9"),
    )
    client, _ = make(amazon, endpoint="http://sandbox.test:8000/")
    async with client:
        created = await client.create_destination(Region.NA, name="solicit-order-change", sqs_arn=ARN)
        again = await client.create_destination(Region.NA, name="solicit-order-change", sqs_arn=ARN)
    assert created == Destination("d-new", "solicit", ARN)
    assert isinstance(again, Conflict) and again.code == "Conflict" and again.details == details
    assert again.request_id == "r9"
    request = amazon.spapi_requests[0]
    assert str(request.url) == "http://sandbox.test:8000/notifications/v1/destinations"
    assert request.headers["content-type"] == "application/json"
    assert body_of(request) == {"name": "solicit-order-change", "resourceSpecification": {"sqs": {"arn": ARN}}}
    assert len(amazon.lwa_requests) == 1


async def test_subscription_calls_take_the_sellers_token() -> None:
    amazon = FakeAmazon(
        spapi_error(404, "NotFound", "The resource specified does not exist."),
        ok({"payload": {**subscription(), "processingDirective": DIRECTIVE}}, "r-create"),
        ok({"payload": subscription()}),
    )
    client, _ = make(amazon)
    async with client:
        assert await client.get_subscription(seller(), Region.EU, ORDER_CHANGE, "1.0") is None
        created = await client.create_subscription(
            seller(),
            Region.EU,
            ORDER_CHANGE,
            payload_version="1.0",
            destination_id="d-1",
            processing_directive=DIRECTIVE,
        )
        found = await client.get_subscription(seller(), Region.EU, ORDER_CHANGE, "1.0")
    assert created == Subscription("s-1", "1.0", "d-1") and created.request_id == "r-create"
    assert found == created
    get, post, _ = amazon.spapi_requests
    assert str(get.url) == f"{EU}/notifications/v1/subscriptions/ORDER_CHANGE?payloadVersion=1.0"
    assert (post.method, str(post.url)) == ("POST", f"{EU}/notifications/v1/subscriptions/ORDER_CHANGE")
    assert body_of(post) == {"payloadVersion": "1.0", "destinationId": "d-1", "processingDirective": DIRECTIVE}
    assert len(amazon.lwa_requests) == 1 and amazon.form()["grant_type"] == "refresh_token"


async def test_a_second_subscription_is_a_conflict() -> None:
    message = "The resource specified conflicts with the current state."
    amazon = FakeAmazon(spapi_error(409, "StateConflict", message, "Subscription already exist for notification type"))
    client, _ = make(amazon)
    async with client:
        outcome = await client.create_subscription(
            seller(), Region.NA, ORDER_CHANGE, payload_version="1.0", destination_id="d-1"
        )
    assert isinstance(outcome, Conflict) and outcome.code == "StateConflict"
    assert "processingDirective" not in body_of(amazon.spapi_requests[0])


async def test_deletes_are_grantless_and_report_whether_something_was_there() -> None:
    not_found = spapi_error(404, "NotFound", "The resource specified does not exist.")
    in_use = spapi_error(403, "Unauthorized", "The requested action is forbidden.", "Destination has subscriptions")
    amazon = FakeAmazon(ok({}), not_found, in_use, httpx.Response(200))
    client, _ = make(amazon)
    async with client:
        assert await client.delete_subscription_by_id(Region.FE, ORDER_CHANGE, "s 1") == Removed(True, "rid")
        assert await client.delete_subscription_by_id(Region.FE, ORDER_CHANGE, "s-2") == Removed(False, "rid")
        conflict = await client.delete_destination(Region.FE, "d-1")
        assert await client.delete_destination(Region.FE, "d-1") == Removed(True, None)
    assert isinstance(conflict, Conflict) and conflict.details == "Destination has subscriptions"
    first = amazon.spapi_requests[0]
    assert (first.method, str(first.url)) == (
        "DELETE",
        "https://sellingpartnerapi-fe.amazon.com/notifications/v1/subscriptions/ORDER_CHANGE/s%201",
    )
    assert amazon.spapi_requests[2].url.path == "/notifications/v1/destinations/d-1"
    assert {amazon.form(i)["grant_type"] for i in range(len(amazon.lwa_requests))} == {"client_credentials"}


async def test_429_is_retried_and_slows_only_that_bucket() -> None:
    quota = spapi_error(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
    amazon = FakeAmazon(quota, ok({"payload": []}), quota, ok({"payload": subscription()}))
    client, sleep = make(amazon)
    async with client:
        assert await client.get_destinations(Region.NA) == []
        assert await client.get_subscription(seller(), Region.NA, ORDER_CHANGE, "1.0") is not None
        app_bucket = client.limiter.bucket((f"app:{app().client_id}", "getDestinations"))
        seller_bucket = client.limiter.bucket(("SELLER1", "getSubscription"))
        untouched = client.limiter.bucket(("SELLER1", "createSubscription"))
    assert len(sleep.calls) >= 2
    assert app_bucket.slow_factor < 1 and seller_bucket.slow_factor < 1 and untouched.slow_factor == 1
    assert untouched.burst == NOTIFICATIONS_BURST - 1 and untouched.rate == NOTIFICATIONS_RATE


async def test_persistent_failure_is_retry_later_with_the_last_request_id() -> None:
    amazon = FakeAmazon(*[spapi_error(503, "ServiceUnavailable", "busy", request_id=f"r{n}") for n in range(3)])
    client, _ = make(amazon)
    async with client:
        with pytest.raises(RetryLater) as caught:
            await client.create_destination(Region.NA, name="n", sqs_arn=ARN)
    assert caught.value.request_id == "r2"
    assert len(amazon.spapi_requests) == 3


async def test_a_denied_grantless_call_is_retried_with_a_fresh_token_then_the_apps_problem() -> None:
    denied = spapi_error(403, "Unauthorized", "Access to requested resource is denied.")
    amazon = FakeAmazon(denied, denied)
    client, _ = make(amazon)
    async with client:
        with pytest.raises(AppCredentialsRejected, match="getDestinations \\(grantless\\) denied"):
            await client.get_destinations(Region.NA)
    assert len(amazon.lwa_requests) == 2
    tokens = [request.headers["x-amz-access-token"] for request in amazon.spapi_requests]
    assert tokens == ["Atza|ACCESS-SECRET-1", "Atza|ACCESS-SECRET-2"]


async def test_a_denied_seller_call_is_access_denied_for_that_seller() -> None:
    denied = spapi_error(403, "Unauthorized", "Access to requested resource is denied.", "The access token ...")
    amazon = FakeAmazon(denied, denied)
    client, _ = make(amazon)
    async with client:
        with pytest.raises(AccessDenied) as caught:
            await client.get_subscription(seller(), Region.NA, ORDER_CHANGE, "1.0")
    assert caught.value.seller_id == "SELLER1"


async def test_bad_requests_are_rejected_with_amazons_details_and_never_retried() -> None:
    details = "Invalid value for path parameter notificationType"
    amazon = FakeAmazon(spapi_error(400, "InvalidInput", "Request has missing or invalid parameters.", details))
    client, _ = make(amazon)
    async with client:
        with pytest.raises(RejectedRequest, match=re.escape(details)) as caught:
            await client.create_subscription(
                seller(), Region.NA, "ORDER_CHANGE", payload_version="9", destination_id="d"
            )
    assert caught.value.status == 400 and len(amazon.spapi_requests) == 1


async def test_an_unreadable_success_is_retried() -> None:
    amazon = FakeAmazon(httpx.Response(200, text="<html>"), ok({"payload": "nope"}), ok({"payload": [destination()]}))
    client, _ = make(amazon)
    async with client:
        assert await client.get_destinations(Region.NA) == [Destination("d-1", "solicit", ARN)]
    assert len(amazon.spapi_requests) == 3


# --- the constants are the model's -----------------------------------------------------------------------------------


def model_operations() -> dict[str, dict[str, Any]]:
    model = json.loads(spapi_models.NOTIFICATIONS.read_text(encoding="utf-8"))
    return {
        operation["operationId"]: operation
        for item in model["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def test_every_operations_usage_plan_is_the_clients() -> None:
    plans = {}
    for name, operation in model_operations().items():
        table = USAGE_PLAN.search(operation["description"])
        assert table, name
        plans[name] = (float(table.group(1)), int(table.group(2)))
    assert set(plans.values()) == {(NOTIFICATIONS_RATE, NOTIFICATIONS_BURST)}


def test_the_grantless_operations_are_those_the_model_calls_grantless() -> None:
    grantless = {
        name for name, op in model_operations().items() if f"`{name}` operation is grantless" in op["description"]
    }
    assert grantless == GRANTLESS_OPERATIONS
    assert {"getSubscription", "createSubscription"}.isdisjoint(grantless)


def test_the_order_change_payload_version_is_the_models() -> None:
    schema = json.loads(spapi_models.ORDER_CHANGE_SCHEMA.read_text(encoding="utf-8"))
    assert schema["properties"]["PayloadVersion"]["examples"] == [ORDER_CHANGE_PAYLOAD_VERSION]
    create = model_operations()["createSubscription"]["responses"]["200"]["examples"]
    assert {example["payload"]["payloadVersion"] for example in create.values()} == {ORDER_CHANGE_PAYLOAD_VERSION}
