"""Fidelity to the official model ``devstack/spapi_models/solicitations.json`` (Swagger 2.0, read by schemathesis 4).

Three directions: every answer the sandbox gives is one the model documents (status, content type, headers,
body schema); requests generated from the model get model-conformant answers; and every request our client
makes is one the model accepts (method, path template, query parameters, no body).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from connectors.clock import SystemClock
from connectors.spapi import NotAvailable, user_agent
from devstack.sandbox import SandboxConfig, SandboxServer, ScriptedFault
from statemachine.marketplaces import MARKETPLACES
from tests.support.spapi import (
    US,
    ClientFactory,
    JumpClock,
    SandboxFactory,
    seller,
    seller_in,
)
from tests.support.spapi import shipped_order as order

pytestmark = [pytest.mark.integration, pytest.mark.spapi_models]

GET = ("GET", "/solicitations/v1/orders/{amazonOrderId}")
POST = ("POST", "/solicitations/v1/orders/{amazonOrderId}/solicitations/productReviewAndSellerFeedback")
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]
USER_AGENT = re.compile(r"[^/\s]+/[^\s]+ \(Language=Python/[\d.]+; Platform=[^)]+\)")


@pytest.fixture
def model(solicitations_model_path: Path) -> dict[str, Any]:
    return dict(json.loads(solicitations_model_path.read_text(encoding="utf-8")))


@pytest.fixture
def schema(solicitations_model_path: Path) -> Any:
    return schemathesis.openapi.from_path(str(solicitations_model_path))


def operation_of(model: dict[str, Any], method: str, template: str) -> dict[str, Any]:
    return dict(model["paths"][template][method.lower()])


def statuses_with_rate_limit_header(operation: dict[str, Any]) -> set[int]:
    """Statuses whose response documents x-amzn-RateLimit-Limit without calling it deprecated."""
    found = set()
    for status, response in operation["responses"].items():
        header = response.get("headers", {}).get("x-amzn-RateLimit-Limit")
        if header and "deprecated" not in header.get("description", ""):
            found.add(int(status))
    return found


def assert_conforms(schema: Any, model: dict[str, Any], method: str, template: str, response: httpx.Response) -> None:
    request = response.request
    order_id = request.url.path.split("/")[4]
    query = {key: request.url.params.get_list(key) for key in request.url.params}
    case = schema[template][method].Case(path_parameters={"amazonOrderId": order_id}, query=query)
    case.validate_response(response, checks=CHECKS)
    assert response.headers.get("x-amzn-RequestId")
    documented = statuses_with_rate_limit_header(operation_of(model, method, template))
    assert ("x-amzn-RateLimit-Limit" in response.headers) is (response.status_code in documented)


async def test_every_documented_status_the_sandbox_gives_conforms(
    sandbox_factory: SandboxFactory, jump_clock: JumpClock, schema: Any, model: dict[str, Any]
) -> None:
    sandbox = await sandbox_factory(max_body_bytes=100, sellers=(seller_in(1, burst=12),))
    state = sandbox.state
    ok, early, gone = "100-0000000-0000001", "100-0000000-0000002", "100-0000000-0000003"
    state.add_orders([order(ok, clock=jump_clock), order(gone, clock=jump_clock)])
    state.add_orders([order(early, clock=jump_clock, days_since_delivery=0)])
    seen: list[tuple[str, str, httpx.Response]] = []
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": seller(1).refresh_token.get_secret_value(),
            "client_id": state.config.client_id,
            "client_secret": state.config.client_secret.get_secret_value(),
        }
        auth = {"x-amz-access-token": (await http.post("/auth/o2/token", data=form)).json()["access_token"]}

        async def send(kind: tuple[str, str], order_id: str, **kwargs: Any) -> None:
            method, template = kind
            kwargs.setdefault("params", {"marketplaceIds": US})
            kwargs["headers"] = {**auth, **kwargs.get("headers", {})}
            path = template.replace("{amazonOrderId}", order_id)
            seen.append((method, template, await http.request(method, path, **kwargs)))

        await send(GET, ok)  # 200 offered
        await send(GET, early)  # 200 empty actions
        await send(GET, ok, params={})  # 400
        await send(GET, ok, headers={"x-amz-access-token": "Atza|unknown"})  # 403 access
        await send(GET, "999-9999999-9999999")  # 404
        await send(GET, gone, content=b'{"pad": "' + b"x" * 200 + b'"}', headers={"content-type": "application/json"})
        await send(GET, gone, content=b"text", headers={"content-type": "text/plain"})  # 415
        await send(POST, ok)  # 201
        await send(POST, ok)  # 403 not available
        await send(POST, early)  # 403 outside the window
        await send(POST, gone, params={"marketplaceIds": f"{US},{US}"})  # 400
        await send(POST, "999-9999999-9999999")  # 404
        await send(POST, gone, json={"pad": "x" * 200})  # 413
        await send(POST, gone, content=b"text", headers={"content-type": "text/plain"})  # 415
        state.script_faults([ScriptedFault(fault=f) for f in ("500", "503", "500", "503")])
        await send(GET, gone)
        await send(GET, gone)
        await send(POST, gone)
        await send(POST, gone)
        for _ in range(8):
            await send(GET, gone)  # drains the burst: 429
            await send(POST, gone)
    for method, template, response in seen:
        assert_conforms(schema, model, method, template, response)
    for kind in (GET, POST):
        documented = {int(s) for s in operation_of(model, *kind)["responses"]}
        produced = {r.status_code for m, t, r in seen if (m, t) == kind}
        assert produced == documented, kind
    bodies = {r.json()["errors"][0]["message"] for _, _, r in seen if r.status_code == 403}
    assert any("not available" in b for b in bodies) and any("5-30 day range" in b for b in bodies)


async def test_the_requests_our_client_makes_are_those_the_model_accepts(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock, model: dict[str, Any]
) -> None:
    sandbox = await sandbox_factory()
    state = sandbox.state
    state.add_orders([order("100-0000000-0000001", clock=jump_clock)])
    ambiguous = ScriptedFault(fault="ambiguous", operation="createProductReviewAndSellerFeedbackSolicitation")
    state.script_faults([ambiguous])
    client = await client_factory(sandbox)
    await client.get_solicitation_actions(seller(), "100-0000000-0000001", US)
    result = await client.create_product_review_and_seller_feedback(seller(), "100-0000000-0000001", US)
    assert isinstance(result, NotAvailable) and result.maybe_sent
    templates = {
        (method.upper(), re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")): (path, spec)
        for path, item in model["paths"].items()
        for method, spec in item.items()
    }
    spapi_calls = [c for c in state.calls if c.operation != "lwaToken"]
    assert len(spapi_calls) == 3
    for call in spapi_calls:
        matches = [spec for (m, rx), (_, spec) in templates.items() if m == call.method and rx.match(call.path)]
        assert len(matches) == 1, call.path
        spec = matches[0]
        assert spec["operationId"] == call.operation
        declared = {p["name"]: p for p in spec["parameters"] if p["in"] == "query"}
        assert set(call.query) <= set(declared)
        for name, parameter in declared.items():
            values = call.query.get(name, [])
            if parameter.get("required"):
                assert values, name
            if parameter.get("type") == "array":
                items = [item for value in values for item in value.split(",")]  # csv, Swagger 2.0's default
                assert len(items) <= parameter.get("maxItems", len(items))
                assert all(item in MARKETPLACES for item in items)
        if not any(p["in"] == "body" for p in spec["parameters"]):
            assert call.body_bytes == 0
            assert call.content_type is None
        assert call.has_access_token
        assert call.user_agent and USER_AGENT.fullmatch(call.user_agent) and len(call.user_agent) <= 500
    (lwa,) = [c for c in state.calls if c.operation == "lwaToken"]
    assert lwa.method == "POST" and (lwa.content_type or "").startswith("application/x-www-form-urlencoded")


def test_user_agent_has_the_documented_shape() -> None:
    assert USER_AGENT.fullmatch(user_agent())


class ThreadedSandbox:
    """A sandbox on its own event loop in a thread, for synchronous (hypothesis) tests."""

    def __init__(self, config: SandboxConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = SandboxServer(config, clock=SystemClock())

    def __enter__(self) -> SandboxServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def threaded_sandbox() -> Iterator[tuple[SandboxServer, str]]:
    config = SandboxConfig(sellers=(seller_in(1, rate=1000.0, burst=1000),))
    with ThreadedSandbox(config) as sandbox, httpx.Client(base_url=sandbox.url) as http:
        clock = SystemClock()
        # Eligible, too early, too late and canceled orders, so generated requests meet every rule.
        kinds: list[dict[str, Any]] = [
            {},
            {"days_since_delivery": 0},
            {"days_since_delivery": 60},
            {"status": "Canceled"},
        ]
        orders = [order(f"100-0000000-{n:07d}", clock=clock, **kinds[n % 4]) for n in range(8)]
        http.post("/_sandbox/orders", json=[o.model_dump(mode="json") for o in orders]).raise_for_status()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": seller(1).refresh_token.get_secret_value(),
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
        }
        token = http.post("/auth/o2/token", data=form).json()["access_token"]
        yield sandbox, token


@pytest.mark.parametrize("kind", [GET, POST], ids=["get", "post"])
def test_requests_generated_from_the_model_get_documented_answers(
    threaded_sandbox: tuple[SandboxServer, str], schema: Any, kind: tuple[str, str]
) -> None:
    sandbox, token = threaded_sandbox
    operation = schema[kind[1]][kind[0]]
    known = st.sampled_from([f"100-0000000-{n:07d}" for n in range(8)])

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=operation.as_strategy(), known_order=st.one_of(st.none(), known))
    def check(case: Any, known_order: str | None) -> None:
        if known_order is not None:
            case.path_parameters = {"amazonOrderId": known_order}
        response = case.call(base_url=sandbox.url, headers={"x-amz-access-token": token})
        case.validate_response(response, checks=CHECKS)
        assert response.headers.get("x-amzn-requestid")  # schemathesis lower-cases header names

    check()
    statuses = {c.status for c in sandbox.state.calls if c.method == kind[0]}
    assert statuses & {200, 201, 403, 404, 400}
