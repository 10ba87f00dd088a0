"""Fidelity to the official model ``devstack/spapi_models/notifications.json`` for the operations the sandbox serves.

As for Solicitations (``test_sandbox_fidelity.py``), three directions: every answer the sandbox gives is one the model
documents (status, content type, headers, body schema); requests generated from the model get documented answers; and
every request our client makes is one the model accepts (method, path template, query, body schema, token kind).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.spapi import NotificationsClient, SellerCredentials
from devstack import spapi_models
from devstack.sandbox import SandboxConfig, SandboxServer, ScriptedFault
from statemachine.marketplaces import Region
from streams.onboarding import Onboarding, Target
from tests.integration.test_sandbox_fidelity import CHECKS, ThreadedSandbox, statuses_with_rate_limit_header
from tests.support.spapi import JumpClock, SandboxFactory, app_for, seller, seller_in

pytestmark = [pytest.mark.integration, pytest.mark.spapi_models]

ARN = "arn:aws:sqs:us-east-1:123456789012:order-change"
DESTINATIONS = "/notifications/v1/destinations"
DESTINATION = "/notifications/v1/destinations/{destinationId}"
SUBSCRIPTION = "/notifications/v1/subscriptions/{notificationType}"
SUBSCRIPTION_BY_ID = "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}"
OPERATIONS = {
    "getDestinations": ("GET", DESTINATIONS),
    "createDestination": ("POST", DESTINATIONS),
    "deleteDestination": ("DELETE", DESTINATION),
    "getSubscription": ("GET", SUBSCRIPTION),
    "createSubscription": ("POST", SUBSCRIPTION),
    "deleteSubscriptionById": ("DELETE", SUBSCRIPTION_BY_ID),
}
GRANTLESS = {"getDestinations", "createDestination", "deleteDestination", "deleteSubscriptionById"}


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return dict(json.loads(spapi_models.NOTIFICATIONS.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def schema() -> Any:
    return schemathesis.openapi.from_path(str(spapi_models.NOTIFICATIONS))


def operation_of(model: dict[str, Any], name: str) -> dict[str, Any]:
    method, template = OPERATIONS[name]
    return dict(model["paths"][template][method.lower()])


def tokens(http: httpx.Client, config: SandboxConfig) -> dict[str, str]:
    """A grantless token and a seller token, as the two kinds of operation need."""
    client = {"client_id": config.client_id, "client_secret": config.client_secret.get_secret_value()}
    refresh = seller(1).refresh_token.get_secret_value()
    app_form = {**client, "grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications"}
    seller_form = {**client, "grant_type": "refresh_token", "refresh_token": refresh}
    return {
        "grantless": http.post("/auth/o2/token", data=app_form).json()["access_token"],
        "seller": http.post("/auth/o2/token", data=seller_form).json()["access_token"],
    }


def token_for(name: str, kinds: dict[str, str]) -> dict[str, str]:
    return {"x-amz-access-token": kinds["grantless" if name in GRANTLESS else "seller"]}


class Exchange:
    """Calls the sandbox and keeps (operation, response) pairs for the conformance checks."""

    def __init__(self, http: httpx.Client, kinds: dict[str, str]) -> None:
        self.http, self.kinds = http, kinds
        self.seen: list[tuple[str, dict[str, str], httpx.Response]] = []

    def send(self, name: str, path: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        method, template = OPERATIONS[name]
        url = template.format(**(path or {}))
        kwargs["headers"] = {**token_for(name, self.kinds), **kwargs.get("headers", {})}
        response = self.http.request(method, url, **kwargs)
        self.seen.append((name, path or {}, response))
        return response


def drive_every_rule(exchange: Exchange, sandbox: SandboxServer) -> None:
    """A sequence that meets every rule of the six operations at least once."""
    send = exchange.send
    destination = {"name": "solicit", "resourceSpecification": {"sqs": {"arn": ARN}}}
    send("getDestinations")
    destination_id = send("createDestination", json=destination).json()["payload"]["destinationId"]
    send("createDestination", json=destination)  # 409
    send("createDestination", json={"name": "x"})  # 400
    send("createDestination", content=b"x" * 300, headers={"content-type": "application/json"})  # 413
    send("createDestination", content=b"text", headers={"content-type": "text/plain"})  # 415
    kind = {"notificationType": "ORDER_CHANGE"}
    send("getSubscription", kind, params={"payloadVersion": "1.0"})  # 404
    send("getSubscription", {"notificationType": "NOPE"})  # 400
    subscription = {"payloadVersion": "1.0", "destinationId": destination_id}
    created = send("createSubscription", kind, json=subscription)
    send("createSubscription", kind, json=subscription)  # 409
    send("createSubscription", kind, json={"payloadVersion": "1.0", "destinationId": "unknown"})  # 400
    send("getSubscription", kind)  # 200
    send("deleteDestination", {"destinationId": destination_id})  # 403: in use
    by_id = {**kind, "subscriptionId": created.json()["payload"]["subscriptionId"]}
    send("deleteSubscriptionById", by_id)  # 200
    send("deleteSubscriptionById", by_id)  # 404
    send("deleteSubscriptionById", {"notificationType": "NOPE", "subscriptionId": "x"})  # 400
    send("deleteDestination", {"destinationId": destination_id})  # 200
    send("deleteDestination", {"destinationId": destination_id})  # 404
    send("getDestinations", headers={"x-amz-access-token": exchange.kinds["seller"]})  # 403: wrong kind
    faults = [ScriptedFault(fault=f, operation=name) for name in OPERATIONS for f in ("429", "500", "503")]
    sandbox.state.script_faults(faults)
    for name in OPERATIONS:
        path = {"destinationId": "d", "notificationType": "ORDER_CHANGE", "subscriptionId": "s"}
        for _ in range(3):
            send(name, path, json=destination if name == "createDestination" else None)


async def test_every_answer_the_sandbox_gives_is_documented(
    sandbox_factory: SandboxFactory, schema: Any, model: dict[str, Any]
) -> None:
    sandbox = await sandbox_factory(max_body_bytes=200, sellers=(seller_in(1, burst=50),), burst=50)
    with httpx.Client(base_url=sandbox.url) as http:
        # A sync client in an async test: the sandbox runs on this loop, so the calls go through a thread.
        exchange = await asyncio.to_thread(lambda: Exchange(http, tokens(http, sandbox.state.config)))
        await asyncio.to_thread(drive_every_rule, exchange, sandbox)
    for name, path, response in exchange.seen:
        method, template = OPERATIONS[name]
        request = response.request
        query = {key: request.url.params.get_list(key) for key in request.url.params}
        body = json.loads(request.content) if request.content.startswith(b"{") else None
        case = schema[template][method].Case(
            path_parameters=path, query=query, body=body, media_type="application/json"
        )
        case.validate_response(response, checks=CHECKS)
        assert response.headers.get("x-amzn-RequestId")
        documented = statuses_with_rate_limit_header(operation_of(model, name))
        assert ("x-amzn-RateLimit-Limit" in response.headers) is (response.status_code in documented), (name, response)
    produced = {name: {r.status_code for n, _, r in exchange.seen if n == name} for name in OPERATIONS}
    for name, statuses in produced.items():
        assert statuses <= {int(s) for s in operation_of(model, name)["responses"]}, name
    assert produced == {
        "getDestinations": {200, 403, 429, 500, 503},
        "createDestination": {200, 400, 409, 413, 415, 429, 500, 503},
        "deleteDestination": {200, 403, 404, 429, 500, 503},
        "getSubscription": {200, 400, 404, 429, 500, 503},
        "createSubscription": {200, 400, 409, 429, 500, 503},
        "deleteSubscriptionById": {200, 400, 404, 429, 500, 503},
    }


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards to the network and keeps every request with its body."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_requests_our_client_makes_are_those_the_model_accepts(
    sandbox_factory: SandboxFactory, jump_clock: JumpClock, model: dict[str, Any]
) -> None:
    sandbox = await sandbox_factory()
    recorder = RecordingTransport()
    targets = [Target(SellerCredentials(f"SELLER{n}", seller(n).refresh_token), Region.NA, "default") for n in (1, 2)]
    client = NotificationsClient(
        app=app_for(sandbox),
        clock=jump_clock,
        spapi_endpoint=sandbox.url,
        lwa_endpoint=sandbox.lwa_url,
        transport=recorder,
    )
    async with client:
        run = Onboarding({"default": client}, lambda _result: None)
        await run.subscribe(targets, sqs_arn=ARN, destination_name="solicit-order-change")
        await Onboarding({"default": client}, lambda _result: None).unsubscribe(targets, destination_arn=ARN)
    calls = [request for request in recorder.requests if not request.url.path.startswith("/auth/")]
    assert {operation_for(model, request)[0] for request in calls} == set(OPERATIONS)
    definitions = {"definitions": model["definitions"]}
    for request in calls:
        name, spec = operation_for(model, request)
        declared = {p["name"]: p for p in spec.get("parameters", []) if p["in"] == "query"}
        assert set(request.url.params) <= set(declared), name
        (body_spec,) = [p for p in spec.get("parameters", []) if p["in"] == "body"] or [None]
        if body_spec is None:
            assert request.content == b"", name
        else:
            assert request.headers["content-type"] == "application/json"
            jsonschema.validate(json.loads(request.content), {**body_spec["schema"], **definitions})
        assert request.headers["x-amz-access-token"]
    grantless = {row.seller_id is None for row in sandbox.state.calls if row.operation in GRANTLESS}
    assert grantless == {True}
    (lwa,) = {c.content_type for c in sandbox.state.calls if c.operation == "lwaToken"}
    assert (lwa or "").startswith("application/x-www-form-urlencoded")


def operation_for(model: dict[str, Any], request: httpx.Request) -> tuple[str, dict[str, Any]]:
    """The one model operation matching the request's method and path."""
    found = [
        (spec["operationId"], spec)
        for path, item in model["paths"].items()
        for method, spec in item.items()
        if isinstance(spec, dict)
        and method.upper() == request.method
        and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", path), request.url.path)
        and "testNotification" not in path
    ]
    assert len(found) == 1, request.url
    return found[0]


@pytest.fixture(scope="module")
def threaded_sandbox() -> Iterator[tuple[SandboxServer, dict[str, str], str]]:
    config = SandboxConfig(sellers=(seller_in(1, rate=1000.0, burst=1000),), rate=1000.0, burst=1000)
    with ThreadedSandbox(config) as sandbox, httpx.Client(base_url=sandbox.url) as http:
        kinds = tokens(http, config)
        request = {"name": "known", "resourceSpecification": {"sqs": {"arn": ARN}}}
        created = http.post(DESTINATIONS, json=request, headers={"x-amz-access-token": kinds["grantless"]})
        yield sandbox, kinds, created.json()["payload"]["destinationId"]


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_requests_generated_from_the_model_get_documented_answers(
    threaded_sandbox: tuple[SandboxServer, dict[str, str], str], schema: Any, name: str
) -> None:
    sandbox, kinds, destination_id = threaded_sandbox
    method, template = OPERATIONS[name]
    operation = schema[template][method]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=operation.as_strategy(), known=st.booleans())
    def check(case: Any, known: bool) -> None:
        if known and "notificationType" in (case.path_parameters or {}):
            case.path_parameters = {**case.path_parameters, "notificationType": "ORDER_CHANGE"}
        if known and name == "createSubscription" and isinstance(case.body, dict):
            case.body = {**case.body, "destinationId": destination_id, "payloadVersion": "1.0"}
        response = case.call(base_url=sandbox.url, headers=token_for(name, kinds))
        case.validate_response(response, checks=CHECKS)
        assert response.headers.get("x-amzn-requestid")

    check()
    statuses = {c.status for c in sandbox.state.calls if c.operation == name}
    assert statuses & {200, 400, 404, 409}, statuses
