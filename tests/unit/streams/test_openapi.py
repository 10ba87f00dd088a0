"""docs/openapi.json is the document the models generate, it lists exactly the routes the worker mounts, and the bodies
the real handlers answer match it (and a wrong body does not).

The handlers run for real, through the views :func:`register_api` mounts, on a fake worker: a fake Faust app records
the views, counters and activity are the real classes fed with a few records.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from statemachine import DEFAULT_POLICY, OrderRecord, OrderState, apply
from statemachine.events import StateChanged
from streams.alerts import Alert, AlertKind
from streams.orders import encode_record, record_json
from streams.stats import PartitionStats, RecentActivity
from streams.web import api as api_module
from streams.web.api import Api, register_api
from streams.web.auth import Tokens
from streams.web.openapi import (
    PUBLIC,
    SPEC_PATH,
    UndocumentedResponse,
    load_spec,
    openapi,
    path_template,
    render,
    response_problems,
)
from streams.web.pages import register_dashboard
from streams.web.peers import FORWARDED
from streams.web.queries import order_summary, order_view

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
SELLER, UNREGISTERED, US = "S1", "S2", "ATVPDKIKX0DER"
PARTITIONS = 4
TOKEN = "tok-123"
SPEC = openapi()


def record(n: int, state: OrderState, seller: str = SELLER, **changes: Any) -> OrderRecord:
    fields: dict[str, Any] = {
        "seller_id": seller,
        "order_id": f"111-0000000-{n:07d}",
        "marketplace_id": US,
        "fulfillment": "MFN",
        "state": state,
        "amazon_status": "Shipped",
        "last_event_time": NOW - timedelta(days=10),
        "window_start": NOW - timedelta(days=2),
        "window_end": NOW + timedelta(hours=30),
        "created_at": NOW - timedelta(days=10),
        "updated_at": NOW - timedelta(days=1),
    }
    return OrderRecord(**(fields | changes))


SHIPPED = record(1, OrderState.SHIPPED, next_due=NOW + timedelta(days=1), lease_id=2)
SKIPPED = record(2, OrderState.SKIPPED)
RECORDS = [SHIPPED, SKIPPED, record(3, OrderState.SENT), record(4, OrderState.WAITING, seller=UNREGISTERED)]


@dataclass
class FakeApp:
    """Records what ``mount`` serves: path -> the view class (and its HTTP methods)."""

    views: dict[str, type] = field(default_factory=dict)
    rebalancing: bool = False
    in_recovery: bool = False
    consumer: Any = field(default_factory=lambda: SimpleNamespace(assignment=lambda: {0}))

    def page(self, path: str, name: str) -> Any:
        def mount(view: type) -> type:
            self.views[path] = view
            return view

        return mount

    def routes(self) -> set[tuple[str, str]]:
        methods = ("get", "post", "put", "patch", "delete")
        return {(path, m) for path, view in self.views.items() for m in methods if m in vars(view)}


class FakeView:
    """What a mounted handler answers: (status, JSON body)."""

    def json(self, body: Any, status: int = 200) -> tuple[int, Any]:
        return status, body


async def _published(*_args: Any) -> Any:
    return asyncio.sleep(0)


def fake_worker(app: FakeApp) -> SimpleNamespace:
    stats = PartitionStats()
    for partition in range(PARTITIONS):
        stats.rebuild(partition, [])
    for r in RECORDS:
        stats.move(0, None, r)
    activity = RecentActivity()
    for kind in ("sent", "throttled", "dead_lettered"):
        activity.record(SELLER, kind, NOW - timedelta(minutes=5))
    changed = StateChanged(
        order_key=SHIPPED.key,
        seller_id=SELLER,
        order_id=SHIPPED.order_id,
        source=OrderState.PENDING,
        dest=OrderState.SHIPPED,
        trigger="ship",
        reason="shipped",
        at=NOW,
    )
    ready = asyncio.Event()
    ready.set()
    return SimpleNamespace(
        app=app,
        ready=ready,
        clock=SimpleNamespace(now=lambda: NOW, real_seconds=lambda span: span.total_seconds()),
        settings=SimpleNamespace(
            alerts=SimpleNamespace(deadline_hours=48, no_sends_days=3),
            worker=SimpleNamespace(id="w1"),
            spapi=SimpleNamespace(rate=1.0),
            kafka=SimpleNamespace(partitions=PARTITIONS),
        ),
        stats=stats,
        watch=SimpleNamespace(activity=activity, recent_changes=deque([changed])),
        active_partitions=lambda: list(range(PARTITIONS)),
        directory={SELLER: SimpleNamespace(name="Acme", group="agency-1")},
        orders_table=SimpleNamespace(name="orders"),
        processor=SimpleNamespace(
            preview=lambda event, _partition: apply(stored(event.key), event, NOW, DEFAULT_POLICY)
        ),
        topics=SimpleNamespace(events="order-events", publish=_published),
    )


def stored(key: str) -> OrderRecord | None:
    return next((r for r in RECORDS if r.key == key), None)


def preview(event: Any, _partition: int) -> Any:
    """The real core's decision on the stored record (the orders processor's ``preview``)."""
    return apply(stored(event.key), event, NOW, DEFAULT_POLICY)


async def _no_peers(*_args: Any) -> tuple[list[Any], list[str]]:
    return [], []


def build() -> tuple[Api, FakeApp]:
    app = FakeApp()
    alert = Alert(
        alert_id=f"no_sends:{SELLER}",
        kind=AlertKind.NO_SENDS,
        status="raised",
        seller_id=SELLER,
        subject=SELLER,
        message="nothing sent for 3 days",
        at=NOW,
        details={"eligible": 4},
    )
    api = Api(
        worker=fake_worker(app),
        tokens=Tokens({"demo": SecretStr(TOKEN)}),
        peers=SimpleNamespace(gather_json=_no_peers),  # type: ignore[arg-type]
        extras={"alerts": SimpleNamespace(open_alerts=lambda: [alert])},
    )
    api._kafka_ok_at = time.monotonic()
    register_api(api)
    register_dashboard(api)
    return api, app


def request(token: str | None = TOKEN, **query: str) -> SimpleNamespace:
    headers = {FORWARDED: "1"} | ({"Authorization": f"Bearer {token}"} if token else {})
    return SimpleNamespace(headers=headers, cookies={}, query=query, can_read_body=False, method="GET", path="/")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> FakeApp:
    """The mounted views, orders read from :data:`RECORDS` (the RocksDB reads are not what is tested here)."""
    monkeypatch.setattr(api_module, "read_order", lambda _table, _partition, key: stored(key))

    def list_orders(_table: Any, _partitions: Any, *, seller_id: str, limit: int, **_filters: Any) -> list[Any]:
        mine = [r for r in RECORDS if r.seller_id == seller_id]
        return [order_summary(record_dict(r)) for r in mine][:limit]

    monkeypatch.setattr(api_module, "list_orders", list_orders)
    return build()[1]


def record_dict(r: OrderRecord) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(record_json(encode_record(r)))
    return loaded


async def answer(app: FakeApp, method: str, path: str, req: Any, **params: str) -> tuple[int, Any]:
    status, body = await getattr(app.views[path], method)(FakeView(), req, **params)
    assert response_problems(SPEC, method, path, status, body) == [], body
    return status, body


# --- the document ----------------------------------------------------------------------------------------------


def test_the_committed_document_is_the_one_the_models_generate() -> None:
    assert SPEC_PATH.read_text(encoding="utf-8") == render(), "run `python -m streams.web.openapi docs/openapi.json`"


def test_every_mounted_route_is_documented_and_every_documented_one_is_mounted() -> None:
    _api, app = build()
    documented = {(path, method) for path, ops in load_spec()["paths"].items() for method in ops}
    assert app.routes() == documented


def test_every_endpoint_but_the_public_ones_needs_a_bearer_token() -> None:
    assert {"/healthz", "/readyz", "/metrics", "/login"} == PUBLIC
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            schemes = {name for alternative in op["security"] for name in alternative}
            assert ("bearerAuth" in schemes) == (path not in PUBLIC), (method, path)
            if path not in PUBLIC:
                assert {"401", "303"} & set(op["responses"]), (method, path)


def test_the_internal_statistics_are_marked_internal() -> None:
    internal = SPEC["paths"]["/internal/stats"]["get"]
    assert internal["x-internal"] is True and internal["tags"] == ["internal"]


def test_a_concrete_path_finds_its_template() -> None:
    assert path_template(SPEC, "/orders/S1/111-1/skip") == "/orders/{seller_id}/{order_id}/{action}"
    assert path_template(SPEC, "/sellers/S1/orders?limit=2") == "/sellers/{seller_id}/orders"
    assert path_template(SPEC, "/ui/orders/S1/111-1") == "/ui/orders/{seller_id}/{order_id}"
    with pytest.raises(UndocumentedResponse):
        path_template(SPEC, "/nothing/here")


# --- bodies the real handlers answer -----------------------------------------------------------------------------


async def test_health_and_readiness_answer_as_documented(served: FakeApp) -> None:
    assert await answer(served, "get", "/healthz", request(None)) == (200, {"status": "ok"})
    status, body = await answer(served, "get", "/readyz", request(None))
    assert status == 200 and all(body["checks"].values())
    served.in_recovery = True
    status, body = await answer(served, "get", "/readyz", request(None))
    assert status == 503 and body["detail"] == "recovery_done"


async def test_statistics_answer_as_documented(served: FakeApp) -> None:
    status, group = await answer(served, "get", "/stats", request())
    assert status == 200 and [s["seller_id"] for s in group["sellers"]] == [SELLER, UNREGISTERED]
    assert group["totals"]["funnel"]["received"] == len(RECORDS)
    status, one = await answer(served, "get", "/sellers/{seller_id}/stats", request(), seller_id=SELLER)
    assert status == 200 and one["complete"] is True and one["attention"] == ["no_sends"]
    assert one["funnel"]["dead_lettered"] == 1 and one["sends"] == {"1h": 1, "1d": 1}
    status, share = await answer(served, "get", "/internal/stats", request())
    assert status == 200 and share["sellers"][SELLER]["marketplaces"][US]["alert"]["closing"] == 1
    status, _ = await answer(served, "get", "/sellers/{seller_id}/stats", request(), seller_id="NOBODY")
    assert status == 404


async def test_forecast_and_alerts_answer_as_documented(served: FakeApp) -> None:
    req = request(days="3")
    req.headers.pop(FORWARDED)
    status, forecast = await answer(served, "get", "/sellers/{seller_id}/forecast", req, seller_id=SELLER)
    assert status == 200 and len(forecast["days"]) == 3 and forecast["capacity_per_day"] == 86_400
    status, _ = await answer(served, "get", "/sellers/{seller_id}/forecast", request(days="99"), seller_id=SELLER)
    assert status == 400
    status, alerts = await answer(served, "get", "/alerts", request())
    assert status == 200 and alerts["open"][0]["kind"] == "no_sends"
    assert await answer(served, "get", "/alerts", request(None)) == (
        401,
        {"error": "unauthorized", "detail": "a valid bearer token is required"},
    )


async def test_orders_answer_as_documented(served: FakeApp) -> None:
    path = "/sellers/{seller_id}/orders"
    status, page = await answer(served, "get", path, request(limit="2"), seller_id=SELLER)
    assert status == 200 and len(page["orders"]) == 2 and page["next"] == page["orders"][-1]["order_key"]
    status, _ = await answer(served, "get", path, request(limit="none"), seller_id=SELLER)
    assert status == 400
    order = "/orders/{seller_id}/{order_id}"
    status, view = await answer(served, "get", order, request(), seller_id=SELLER, order_id=SHIPPED.order_id)
    assert status == 200 and view["window"]["estimated"] is False and view["lease"]["id"] == 2
    assert "applied_notifications" not in view
    status, _ = await answer(served, "get", order, request(), seller_id=SELLER, order_id="999-0000000-0000000")
    assert status == 404


async def test_manual_actions_answer_as_documented(served: FakeApp) -> None:
    path = "/orders/{seller_id}/{order_id}/{action}"
    status, done = await answer(
        served, "post", path, request(), seller_id=SELLER, order_id=SHIPPED.order_id, action="skip"
    )
    assert status == 200 and done["accepted"] is True and done["state"] == "skipped" and done["actor"] == "demo"
    status, refused = await answer(
        served, "post", path, request(), seller_id=SELLER, order_id=SKIPPED.order_id, action="skip"
    )
    assert status == 409 and refused["accepted"] is False
    status, _ = await answer(served, "post", path, request(), seller_id=SELLER, order_id=SKIPPED.order_id, action="x")
    assert status == 404


def test_the_order_view_has_exactly_the_documented_fields() -> None:
    documented = set(SPEC["components"]["schemas"]["OrderView"]["properties"])
    assert set(order_view(SHIPPED, 0)) == documented


# --- wrong bodies ------------------------------------------------------------------------------------------------


def test_a_wrong_body_is_reported_and_an_undocumented_answer_raises() -> None:
    view = order_view(SHIPPED, 0)
    path = "/orders/{seller_id}/{order_id}"
    assert response_problems(SPEC, "GET", path, 200, view) == []
    missing = {k: v for k, v in view.items() if k != "state"}
    assert response_problems(SPEC, "GET", path, 200, missing) == ["(body): 'state' is a required property"]
    wrong = copy.deepcopy(view)
    wrong["window"]["estimated"] = "no"
    assert response_problems(SPEC, "GET", path, 200, wrong) == ["window/estimated: 'no' is not of type 'boolean'"]
    assert response_problems(SPEC, "get", path, 404, {"error": "unknown order", "detail": "no order"}) == []
    problems = response_problems(SPEC, "get", path, 404, {"error": "unknown order", "token": "x"})
    assert len(problems) == 2  # detail missing, token not documented
    with pytest.raises(UndocumentedResponse):
        response_problems(SPEC, "get", path, 418, {})
    with pytest.raises(UndocumentedResponse):
        response_problems(SPEC, "get", "/dashboard", 200, "<html>")


async def test_statistics_with_a_missing_count_or_a_text_ratio_are_reported(served: FakeApp) -> None:
    _status, group = await answer(served, "get", "/stats", request())
    del group["sellers"][0]["funnel"]["sent"]
    group["totals"]["coverage"]["7d"]["ratio"] = "50%"
    assert response_problems(SPEC, "get", "/stats", 200, group) == [
        "sellers/0/funnel: 'sent' is a required property",
        "totals/coverage/7d/ratio: '50%' is not valid under any of the given schemas",
    ]
