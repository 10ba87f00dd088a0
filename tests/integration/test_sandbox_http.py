"""The sandbox over HTTP with a plain httpx client: wire details, the admin API, faults, no token leaks."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest

from devstack.sandbox import MESSAGES, SandboxServer
from tests.support.spapi import US, JumpClock, SandboxFactory, seller, shipped_order

pytestmark = pytest.mark.integration

ORDER = "111-0000001-0000001"
GET_PATH = f"/solicitations/v1/orders/{ORDER}"
POST_PATH = f"/solicitations/v1/orders/{ORDER}/solicitations/productReviewAndSellerFeedback"


async def token(http: httpx.AsyncClient, sandbox: SandboxServer, index: int = 1) -> str:
    config = sandbox.state.config
    response = await http.post(
        "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": seller(index).refresh_token.get_secret_value(),
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    return str(body["access_token"])


def order_json(clock: JumpClock, order_id: str = ORDER, **overrides: Any) -> dict[str, Any]:
    return shipped_order(order_id, clock=clock, **overrides).model_dump(mode="json")


async def test_full_flow_over_http_with_admin_api(sandbox_factory: SandboxFactory, jump_clock: JumpClock) -> None:
    sandbox = await sandbox_factory()
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        loaded = await http.post("/_sandbox/orders", json=[order_json(jump_clock)])
        assert loaded.json() == {"orders": 1}
        headers = {"x-amz-access-token": await token(http, sandbox)}
        get = await http.get(GET_PATH, params={"marketplaceIds": US}, headers=headers)
        post = await http.post(POST_PATH, params={"marketplaceIds": US}, headers=headers)
        again = await http.post(POST_PATH, params={"marketplaceIds": US}, headers=headers)
        ledger = (await http.get("/_sandbox/ledger")).json()
        orders = (await http.get("/_sandbox/orders")).json()["orders"]
    assert get.status_code == 200
    assert get.headers["content-type"] == "application/hal+json"
    assert get.json()["_links"]["actions"][0]["name"] == "productReviewAndSellerFeedback"
    assert (post.status_code, post.json()) == (201, {})
    assert again.status_code == 403
    assert again.json()["errors"][0] == {"code": "Unauthorized", "message": MESSAGES["not_available"], "details": ""}
    assert [c["status"] for c in ledger["calls"]] == [200, 200, 201, 403]
    assert [s["order_id"] for s in ledger["solicitations"]] == [ORDER]
    assert ledger["solicitations"][0]["request_id"] == post.headers["x-amzn-RequestId"]
    assert orders[0]["solicited"] is True


async def test_form_encoded_marketplace_instead_of_query_is_invalid_input(
    sandbox_factory: SandboxFactory, jump_clock: JumpClock
) -> None:
    # The client mistake of models#772: marketplaceIds in a form body instead of the query string.
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        headers = {"x-amz-access-token": await token(http, sandbox)}
        response = await http.post(POST_PATH, data={"marketplaceIds": US}, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "Missing or invalid request parameters: [marketplaceIds]"
    assert sandbox.state.solicitations == []


async def test_body_size_and_type_limits(sandbox_factory: SandboxFactory, jump_clock: JumpClock) -> None:
    sandbox = await sandbox_factory(max_body_bytes=1024)
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        headers = {"x-amz-access-token": await token(http, sandbox)}
        large = await http.post(POST_PATH, params={"marketplaceIds": US}, headers=headers, json={"x": "y" * 2000})
        text = await http.post(
            POST_PATH, params={"marketplaceIds": US}, headers={**headers, "content-type": "text/plain"}, content=b"hi"
        )
    assert (large.status_code, text.status_code) == (413, 415)
    assert large.headers["x-amzn-RequestId"]
    assert "x-amzn-RateLimit-Limit" not in large.headers


async def test_burst_then_429_quota_exceeded(sandbox_factory: SandboxFactory, jump_clock: JumpClock) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        headers = {"x-amz-access-token": await token(http, sandbox)}
        responses = [await http.get(GET_PATH, params={"marketplaceIds": US}, headers=headers) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    throttled = responses[-1]
    assert throttled.json() == {"errors": [{"code": "QuotaExceeded", "message": MESSAGES["quota"], "details": ""}]}
    assert "x-amzn-RateLimit-Limit" not in throttled.headers
    assert responses[0].headers["x-amzn-RateLimit-Limit"] == "1.0"


async def test_admin_api_faults_and_latency(sandbox_factory: SandboxFactory, jump_clock: JumpClock) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        headers = {"x-amz-access-token": await token(http, sandbox)}
        scripted = {"fault": "ambiguous", "operation": "createProductReviewAndSellerFeedbackSolicitation"}
        set_faults = await http.post("/_sandbox/faults", json={"latency": 0.3, "scripted": [scripted]})
        assert set_faults.json()["latency"] == 0.3
        assert set_faults.json()["scripted"][0]["fault"] == "ambiguous"
        started = time.perf_counter()
        post = await http.post(POST_PATH, params={"marketplaceIds": US}, headers=headers)
        elapsed = time.perf_counter() - started
        faults = (await http.get("/_sandbox/faults")).json()
        before_reset = (await http.get("/_sandbox/ledger")).json()
        reset = await http.post("/_sandbox/reset")
        after_reset = (await http.get("/_sandbox/ledger")).json()
    assert post.status_code == 500
    assert post.json()["errors"][0]["code"] == "InternalFailure"
    assert elapsed >= 0.3
    assert faults["scripted"] == []
    assert [s["order_id"] for s in before_reset["solicitations"]] == [ORDER]  # the effect happened
    assert before_reset["calls"][-1]["fault"] == "ambiguous"
    assert reset.json() == {"reset": True}
    assert after_reset == {"calls": [], "solicitations": [], "destinations": [], "subscriptions": []}


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/_sandbox/orders", [{"seller_id": "S", "order_id": "1", "marketplace_id": US}]),
        (
            "/_sandbox/orders",
            {"seller_id": "S", "order_id": "1", "marketplace_id": US, "earliest_delivery": "2026-01-01"},
        ),
        ("/_sandbox/sellers", {"seller_id": "S", "refresh_token": "Atzr|LEAKY", "rate": -1}),
        ("/_sandbox/faults", {"error_rate": 2}),
        ("/_sandbox/faults", {"scripted": [{"fault": "418"}]}),
    ],
    ids=["order-missing-dates", "naive-datetime", "bad-rate", "rate-over-1", "unknown-fault"],
)
async def test_admin_api_rejects_invalid_input_without_echoing_it(
    sandbox_factory: SandboxFactory, path: str, payload: Any
) -> None:
    sandbox = await sandbox_factory()
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        response = await http.post(path, json=payload)
        not_json = await http.post(path, content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "LEAKY" not in response.text
    assert not_json.status_code == 400


async def test_revoke_unknown_seller_is_404(sandbox_factory: SandboxFactory) -> None:
    sandbox = await sandbox_factory()
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        assert (await http.post("/_sandbox/sellers/NOPE/revoke")).status_code == 404
        assert (await http.post("/_sandbox/sellers/SELLER1/revoke")).json() == {"revoked": "SELLER1"}
        assert (await http.get("/_sandbox/health")).json() == {"ok": True}


async def test_sandbox_never_leaks_tokens_in_responses_ledger_or_logs(
    sandbox_factory: SandboxFactory, jump_clock: JumpClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    secrets = [seller(1).refresh_token.get_secret_value(), sandbox.state.config.client_secret.get_secret_value()]
    texts: list[str] = []
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        access = await token(http, sandbox)
        secrets.append(access)
        for headers in ({"x-amz-access-token": access}, {"x-amz-access-token": "Atza|FORGED"}, {}):
            for method, path in (("GET", GET_PATH), ("POST", POST_PATH)):
                response = await http.request(method, path, params={"marketplaceIds": US}, headers=headers)
                texts.append(response.text + repr(response.headers))
        bad_client = await http.post(
            "/auth/o2/token",
            data={"grant_type": "refresh_token", "refresh_token": secrets[0], "client_id": "x", "client_secret": "y"},
        )
        texts.append(bad_client.text)
        texts.append((await http.get("/_sandbox/ledger")).text)
    secrets.append("Atza|FORGED")
    texts.append(caplog.text)
    assert caplog.records
    for text in texts:
        for secret in secrets:
            assert secret not in text
