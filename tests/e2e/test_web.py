"""The web API on running workers (docs/web-api.md): two workers, demo traffic, every endpoint asked of both.

What matters: any worker answers for every order (forwarded to the owner of its partition), the statistics are the
group's (the same numbers from either worker, equal to what the outcomes topic says), tokens are required and never
echoed, and a manual action is applied by the orders agent and recorded in the order's history.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.demo.monitor import OutcomeMonitor
from devstack.demo.run import DemoRun
from devstack.demo.stack import Stack, solicit_argv
from streams.orders import partition_for
from streams.web.openapi import load_spec, path_template, response_problems
from tests.e2e.test_pipeline import run, settle, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]
__all__ = ["run"]


async def test_any_worker_answers_for_the_whole_group(run: tuple[DemoRun, OutcomeMonitor]) -> None:
    demo, monitor = run
    stack = await settled_group(demo, monitor, "a", "b")

    for worker in ("a", "b"):
        assert httpx.get(f"{stack.web_url(worker)}/healthz").json() == {"status": "ok"}
        denied = httpx.get(f"{stack.web_url(worker)}/stats")
        assert denied.status_code == 401 and denied.json()["error"] == "unauthorized"
        wrong = httpx.get(f"{stack.web_url(worker)}/stats", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "nope" not in wrong.text

    stats, states = await group_stats(stack, monitor)
    documented(stack, "GET", "/stats", "a")
    assert stats["workers"] == 2 and stats["complete"] is True
    for state in ("sent", "waiting", "eligible", "expired", "canceled", "pending", "shipped"):
        assert stats["totals"]["funnel"][state] == states.get(state, 0), (state, stats["totals"]["funnel"], states)
    assert stats["totals"]["funnel"]["received"] == sum(states.values())
    seller = next(s for s in stats["sellers"] if s["funnel"]["sent"] > 0)
    one = stack.web("GET", f"/sellers/{seller['seller_id']}/stats", "b").json()
    assert one["funnel"] == seller["funnel"] and one["name"] == seller["name"]
    assert one["coverage"]["30d"]["solicited"] == seller["funnel"]["sent"]

    # An order of each worker's partitions, asked of the other worker: forwarded to the owner.
    for key in orders_on_both_workers(stack, monitor):
        seller_id, order_id = key.split("/")
        for worker in ("a", "b"):
            order = stack.web("GET", f"/orders/{seller_id}/{order_id}", worker)
            assert order.status_code == 200, order.text
            body = order.json()
            assert body["order_key"] == key and body["state"] == monitor.view.states[key]
            assert body["history"] and body["history"][-1]["dest"] == body["state"]
            assert "refresh_token" not in order.text and "applied_notifications" not in body
    for path in (
        f"/sellers/{seller['seller_id']}/stats",
        f"/sellers/{seller['seller_id']}/orders?limit=5",
        f"/sellers/{seller['seller_id']}/forecast",
        f"/orders/{key}",
        f"/orders/{seller['seller_id']}/999-0000000-0000000",
        "/alerts",
        "/readyz",
        "/healthz",
        "/sellers/NOSUCHSELLER/stats",
    ):
        documented(stack, "GET", path, "b")
    missing = stack.web("GET", f"/orders/{seller['seller_id']}/999-0000000-0000000", "a")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown order"

    page = stack.web("GET", f"/sellers/{seller['seller_id']}/orders?state=sent&limit=2", "a").json()
    assert len(page["orders"]) == min(2, seller["funnel"]["sent"])
    assert all(o["state"] == "sent" for o in page["orders"])
    if seller["funnel"]["sent"] > 2:
        rest = stack.web("GET", f"/sellers/{seller['seller_id']}/orders?state=sent&after={page['next']}", "b").json()
        keys = [o["order_key"] for o in page["orders"] + rest["orders"]]
        assert len(keys) == len(set(keys)) == seller["funnel"]["sent"]

    forecast = stack.web("GET", f"/sellers/{seller['seller_id']}/forecast?days=14", "a").json()
    assert len(forecast["days"]) == 14 and forecast["capacity_per_day"] > 0

    metrics = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{stack.web_url('a')}/metrics").text)}
    processed = {
        s.labels["kind"]: s.value for s in metrics["solicit_events_processed"].samples if s.name.endswith("_total")
    }
    assert processed.get("order_changed", 0) > 0
    assert "solicit_spapi_request_seconds" in metrics and "solicit_consumer_lag" in metrics
    assert "open" in stack.web("GET", "/alerts", "b").json()

    # The command line, through the API of either worker.
    key = orders_on_both_workers(stack, monitor)[0]
    env = stack.config.env(SOLICIT_WEB__CLIENT_URL=stack.web_url("b"))
    shown = subprocess.run(solicit_argv("orders", "show", key), env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert key in shown.stdout and monitor.view.states[key] in shown.stdout and "history" in shown.stdout
    table = subprocess.run(solicit_argv("stats"), env=env, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "TOTAL" in table.stdout and seller["seller_id"] in table.stdout
    env["SOLICIT_WEB__CLIENT_TOKEN"] = "wrong"
    refused = subprocess.run(solicit_argv("stats"), env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr and "wrong" not in refused.stderr


async def test_a_manual_skip_is_applied_once_and_recorded(run: tuple[DemoRun, OutcomeMonitor]) -> None:
    demo, monitor = run
    stack = await settled_group(demo, monitor, "a")
    key = next(k for k, state in sorted(monitor.view.states.items()) if state in ("shipped", "waiting"))
    seller_id, order_id = key.split("/")

    answer = stack.web("POST", f"/orders/{seller_id}/{order_id}/skip", json={"note": "buyer asked us not to"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] is True and answer.json()["actor"] == "demo"
    await wait_for(lambda: monitor.view.states.get(key) == "skipped", within=30)
    order = stack.web("GET", f"/orders/{seller_id}/{order_id}").json()
    assert order["state"] == "skipped"
    assert order["history"][-1]["trigger"] == "manual_skip"
    assert "demo" in order["history"][-1]["reason"] and "buyer asked us not to" in order["history"][-1]["reason"]

    again = stack.web("POST", f"/orders/{seller_id}/{order_id}/skip", json={"note": "twice"})
    assert again.status_code == 409 and again.json()["accepted"] is False
    spec = load_spec()
    for reply in (answer, again):
        template = path_template(spec, f"/orders/{seller_id}/{order_id}/skip")
        assert response_problems(spec, "POST", template, reply.status_code, reply.json()) == []
    assert "already skipped" in again.json()["reason"]
    bad = stack.web("POST", f"/orders/{seller_id}/{order_id}/launch", json={})
    assert bad.status_code == 404


async def settled_group(demo: DemoRun, monitor: OutcomeMonitor, *workers: str) -> Stack:
    """Start ``workers`` and the bridge, feed the demo, wait until it settled and every worker is ready."""
    stack = demo.stack
    for worker in workers:
        stack.start_worker(worker)
    stack.start_bridge()
    await monitor.start()
    demo.feed()
    await settle(demo, monitor)
    await wait_ready(stack, *workers)
    return stack


def documented(stack: object, method: str, path: str, worker: str) -> None:
    """The running server's answer to ``method path`` matches docs/openapi.json."""
    answer = stack.web(method, path, worker)  # type: ignore[attr-defined]
    spec = load_spec()
    problems = response_problems(spec, method, path_template(spec, path), answer.status_code, answer.json())
    assert problems == [], f"{method} {path} -> {answer.status_code} differs from docs/openapi.json: {problems[:5]}"


async def wait_ready(stack: object, *workers: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    pending = set(workers)
    while pending and time.monotonic() < deadline:
        for worker in sorted(pending):
            if httpx.get(f"{stack.web_url(worker)}/readyz").status_code == 200:  # type: ignore[attr-defined]
                pending.discard(worker)
        await asyncio.sleep(0.5)
    assert not pending, f"workers {sorted(pending)} not ready within {within} s"


async def group_stats(
    stack: object, monitor: OutcomeMonitor, within: float = 60, workers: tuple[str, ...] = ("a", "b")
) -> tuple[dict[str, Any], Counter[str]]:
    """/stats of the first of ``workers`` at a moment it agrees with the others and with the outcomes topic, and the
    topic's counts.

    Business time runs 43,200 times faster than real time in the demo, so orders keep moving (waiting to eligible
    to sent) after the scenario settled; the counters and the outcomes topic are compared at one quiet moment, the
    topic's view read before and after the two requests.
    """
    deadline = time.monotonic() + within
    while True:
        before = Counter(monitor.view.states.values())
        a, *others = [stack.web("GET", "/stats", w).json() for w in workers]  # type: ignore[attr-defined]
        after = Counter(monitor.view.states.values())
        same = all(a["totals"] == b["totals"] and a["sellers"] == b["sellers"] for b in others)
        funnel = a["totals"]["funnel"]
        agrees = before == after and all(funnel.get(state, 0) == n for state, n in after.items())
        if (same and agrees) or time.monotonic() > deadline:
            return a, after
        await asyncio.sleep(0.3)


def orders_on_both_workers(stack: object, monitor: OutcomeMonitor) -> list[str]:
    """One order key per partition (so both workers' partitions are covered)."""
    partitions = stack.config.partitions  # type: ignore[attr-defined]
    chosen: dict[int, str] = {}
    for key in sorted(monitor.view.states):
        chosen.setdefault(partition_for(key.encode(), partitions), key)
    return list(chosen.values())
