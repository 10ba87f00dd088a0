"""The sandbox's getOrders against Amazon's official model ``devstack/spapi_models/ordersV0.json`` (schemathesis 4).

As for Solicitations (``test_sandbox_fidelity.py``), three directions: every answer the sandbox gives is one the model
documents (status, content type, headers, body schema); requests generated from the model get model-conformant
answers; and every request our :class:`~connectors.spapi.OrdersClient` makes is one the model accepts.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.clock import SystemClock
from connectors.spapi import OrdersClient, OrdersQuery
from devstack import spapi_models
from devstack.sandbox import SandboxConfig, SandboxServer, ScriptedFault
from statemachine.marketplaces import MARKETPLACES
from statemachine.types import format_datetime
from tests.integration.test_sandbox_fidelity import CHECKS, USER_AGENT, ThreadedSandbox, statuses_with_rate_limit_header
from tests.support.spapi import FAST_RETRIES, US, JumpClock, SandboxFactory, app_for, seller, seller_in, shipped_order

pytestmark = [pytest.mark.integration, pytest.mark.spapi_models]

PATH = "/orders/v0/orders"
MODEL: dict[str, Any] = json.loads(spapi_models.ORDERS_V0.read_text(encoding="utf-8"))
OPERATION: dict[str, Any] = MODEL["paths"][PATH]["get"]


@pytest.fixture(scope="module")
def schema() -> Any:
    return schemathesis.openapi.from_path(str(spapi_models.ORDERS_V0))


def assert_conforms(schema: Any, response: httpx.Response) -> None:
    query = {key: response.request.url.params.get_list(key) for key in response.request.url.params}
    case = schema[PATH]["GET"].Case(query=query)
    case.validate_response(response, checks=CHECKS)
    assert response.headers.get("x-amzn-RequestId")
    documented = statuses_with_rate_limit_header(OPERATION)
    assert ("x-amzn-RateLimit-Limit" in response.headers) is (response.status_code in documented)


async def access_token(http: httpx.AsyncClient, sandbox: SandboxServer, index: int = 1) -> str:
    config = sandbox.state.config
    form = {
        "grant_type": "refresh_token",
        "refresh_token": seller(index).refresh_token.get_secret_value(),
        "client_id": config.client_id,
        "client_secret": config.client_secret.get_secret_value(),
    }
    return str((await http.post("/auth/o2/token", data=form)).json()["access_token"])


async def test_every_answer_the_sandbox_gives_conforms(
    sandbox_factory: SandboxFactory, jump_clock: JumpClock, schema: Any
) -> None:
    sandbox = await sandbox_factory(sellers=(seller_in(1),), orders_burst=8)
    state = sandbox.state
    state.add_orders([shipped_order(f"100-0000000-{n:07d}", clock=jump_clock, days_since_delivery=n) for n in range(5)])
    state.add_orders([shipped_order("100-0000001-0000001", clock=jump_clock, fulfillment_channel="AFN")])
    state.add_orders([shipped_order("100-0000001-0000002", clock=jump_clock, status="Canceled")])
    since = format_datetime(jump_clock.now() - timedelta(days=40))
    seen: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        auth = {"x-amz-access-token": await access_token(http, sandbox)}

        async def send(params: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
            seen.append(await http.get(PATH, params={"MarketplaceIds": US, **params}, headers=headers or auth))
            return seen[-1]

        first = await send({"CreatedAfter": since, "MaxResultsPerPage": 3})  # 200 with NextToken
        await send({"CreatedAfter": since, "MaxResultsPerPage": 3, "NextToken": first.json()["payload"]["NextToken"]})
        await send({"LastUpdatedAfter": since})  # 200
        await send({})  # 400
        await send({"CreatedAfter": "last week"})  # 400
        await send({"CreatedAfter": since}, headers={"x-amz-access-token": "Atza|unknown"})  # 403
        state.script_faults([ScriptedFault(fault=f, operation="getOrders") for f in ("500", "503")])
        await send({"CreatedAfter": since})
        await send({"CreatedAfter": since})
        for _ in range(4):
            await send({"CreatedAfter": since})  # drains the burst of 8: 429
        missing = await http.post(PATH, headers=auth)  # no such operation: a model-shaped 404
    for response in seen:
        assert_conforms(schema, response)
    produced = {r.status_code for r in seen}
    # Amazon documents a 404 for getOrders without saying when; the sandbox gives it only for unknown paths.
    assert produced == {int(s) for s in OPERATION["responses"]} - {404}
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "NotFound"
    orders = [o for r in seen if r.status_code == 200 for o in r.json()["payload"]["Orders"]]
    afn = [o for o in orders if o["FulfillmentChannel"] == "AFN"]
    assert afn and all("EarliestDeliveryDate" not in o for o in afn)
    assert all("LatestDeliveryDate" not in o for o in orders if o["OrderStatus"] == "Canceled")


async def test_the_requests_our_client_makes_are_those_the_model_accepts(
    sandbox_factory: SandboxFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory(sellers=(seller_in(1),))
    state = sandbox.state
    state.add_orders([shipped_order(f"100-0000000-{n:07d}", clock=jump_clock) for n in range(7)])
    query = OrdersQuery(marketplace_ids=(US,), created_after=jump_clock.now() - timedelta(days=30), page_size=3)
    async with OrdersClient(
        app=app_for(sandbox), clock=jump_clock, spapi_endpoint=sandbox.url, lwa_endpoint=sandbox.lwa_url,
        config=FAST_RETRIES,
    ) as client:  # fmt: skip
        pages = [page async for page in client.pages(seller(), query)]
    assert [len(page.orders) for page in pages] == [3, 3, 1]
    calls = [c for c in state.calls if c.operation == "getOrders"]
    assert len(calls) == 3 and all(c.status == 200 for c in calls)
    declared = {p["name"]: p for p in OPERATION["parameters"] if p["in"] == "query"}
    for call in calls:
        assert (call.method, call.path) == ("GET", PATH)
        assert set(call.query) <= set(declared)
        for name, parameter in declared.items():
            values = call.query.get(name, [])
            if parameter.get("required"):
                assert values, name
            if parameter.get("type") == "array":
                items = [item for value in values for item in value.split(",")]  # csv, Swagger 2.0's default
                assert len(items) <= parameter.get("maxItems", len(items))
                assert name != "MarketplaceIds" or all(item in MARKETPLACES for item in items)
        assert call.body_bytes == 0 and call.content_type is None and call.has_access_token
        assert call.user_agent and USER_AGENT.fullmatch(call.user_agent)
    assert "NextToken" not in calls[0].query and all(c.query.get("NextToken") for c in calls[1:])


@pytest.fixture(scope="module")
def threaded_sandbox() -> Any:
    config = SandboxConfig(sellers=(seller_in(1),), orders_rate=1000.0, orders_burst=1000)
    with ThreadedSandbox(config) as sandbox, httpx.Client(base_url=sandbox.url) as http:
        clock = SystemClock()
        kinds: list[dict[str, Any]] = [
            {},
            {"status": "Canceled"},
            {"fulfillment_channel": "AFN"},
            {"status": "Pending"},
        ]
        orders = [shipped_order(f"100-0000000-{n:07d}", clock=clock, **kinds[n % 4]) for n in range(8)]
        http.post("/_sandbox/orders", json=[o.model_dump(mode="json") for o in orders]).raise_for_status()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": seller(1).refresh_token.get_secret_value(),
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
        }
        yield sandbox, http.post("/auth/o2/token", data=form).json()["access_token"]


def test_requests_generated_from_the_model_get_documented_answers(threaded_sandbox: Any, schema: Any) -> None:
    sandbox, token = threaded_sandbox
    operation = schema[PATH]["GET"]
    since = st.sampled_from(["2000-01-01T00:00:00Z", format_datetime(SystemClock().now() - timedelta(days=30))])

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=operation.as_strategy(), created_after=st.one_of(st.none(), since))
    def check(case: Any, created_after: str | None) -> None:
        if created_after is not None:  # meet the listing rules now and then, so 200s come too
            case.query = {"MarketplaceIds": [US], "CreatedAfter": created_after}
        response = case.call(base_url=sandbox.url, headers={"x-amz-access-token": token})
        case.validate_response(response, checks=CHECKS)
        assert response.headers.get("x-amzn-requestid")

    check()
    statuses = {c.status for c in sandbox.state.calls if c.operation == "getOrders"}
    assert {200, 400} <= statuses
