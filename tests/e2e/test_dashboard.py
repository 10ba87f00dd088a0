"""The dashboard in a real browser (Debian's Chromium through Selenium) against running workers with demo traffic.

Checked in the browser: signing in with the run's token; every seller's funnel and the totals shown equal what
``GET /stats`` answers; the demo's seller with a revoked authorization shows its alert (raised once); a link to an
order leads to its page, whose history equals ``GET /orders/...``; the skip form on that page is applied by the
orders agent and shows up in the history. ``make screenshot`` saves the overview to ``docs/img/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from devstack.demo.monitor import OutcomeMonitor
from devstack.demo.run import DemoRun
from tests.browser import save_screenshot
from tests.e2e.test_pipeline import run, wait_for
from tests.e2e.test_web import group_stats, settled_group
from tests.unit.streams.test_dashboard_browser import READ_SELLERS, READ_TOTALS, follow

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]
__all__ = ["run"]

FUNNEL_FIELDS = ("received", "eligible", "waiting", "sent", "expired", "failed")


@pytest.mark.screenshot
async def test_the_dashboard_shows_what_the_api_says(
    run: tuple[DemoRun, OutcomeMonitor], browser: webdriver.Chrome, screenshot_path: Path | None
) -> None:
    demo, monitor = run
    demo.stack.config.extra_env["SOLICIT_ALERTS__EVALUATE_INTERVAL"] = "2"
    stack = await settled_group(demo, monitor, "a", "b")
    # The demo's seller with a revoked authorization: its alert is raised once, by the worker that owns it.
    await wait_for(lambda: bool(open_alerts(stack, "authorization_revoked")), within=60)
    (revoked,) = open_alerts(stack, "authorization_revoked")
    await group_stats(stack, monitor)

    browser.get(f"{stack.web_url('b')}/dashboard")
    assert browser.current_url.endswith("/login"), "the dashboard must ask for a token first"
    browser.find_element(By.NAME, "token").send_keys("not the token")
    follow(browser, "form[data-testid=login-form] button")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=login-error]")
    browser.find_element(By.NAME, "token").send_keys(stack.config.web_token)
    follow(browser, "form[data-testid=login-form] button")
    assert browser.current_url.endswith("/dashboard")

    stats, totals, cells = await dashboard_at_a_quiet_moment(browser, stack)
    for state in FUNNEL_FIELDS:
        assert totals[state] == str(stats["totals"]["funnel"][state]), state
    sellers = stats["sellers"]
    assert set(cells) == {seller["seller_id"] for seller in sellers}
    for seller in sellers:
        for name in FUNNEL_FIELDS:
            assert cells[seller["seller_id"]][name] == str(seller["funnel"][name]), (seller["seller_id"], name)
    assert "authorization_revoked" in cells[revoked["seller_id"]]["attention"].split(", ")
    shown = [row.get_attribute("data-alert") for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-alert]")]
    expected = [alert["alert_id"] for alert in stack.web("GET", "/alerts").json()["open"]]
    assert revoked["alert_id"] in shown and sorted(shown) == sorted(expected)  # each open alert once
    if screenshot_path is not None:
        save_screenshot(browser, screenshot_path, full_page=True)

    # A recent outcome's order: its page shows the history the API answers.
    link = browser.find_element(By.CSS_SELECTOR, "a[data-testid=order-link]")
    key = link.find_element(By.XPATH, "ancestor::tr").get_attribute("data-order")
    follow(browser, "a[data-testid=order-link]")
    seller_id, order_id = str(key).split("/")
    order = stack.web("GET", f"/orders/{seller_id}/{order_id}").json()
    rows = history_rows(browser)
    assert [row["dest"] for row in rows] == [entry["dest"] for entry in order["history"]]
    assert [row["trigger"] for row in rows] == [entry["trigger"] for entry in order["history"]]
    assert browser.find_element(By.CSS_SELECTOR, 'td[data-field="state"]').text == order["state"]

    # The skip form on an order that can still be skipped: applied by the agent, visible in the history.
    open_key = next(k for k, state in sorted(monitor.view.states.items()) if state in ("shipped", "waiting"))
    browser.get(f"{stack.web_url('a')}/ui/orders/{open_key}")
    form = browser.find_element(By.CSS_SELECTOR, "form[data-action=skip]")
    form.find_element(By.NAME, "note").send_keys("checked in the browser")
    follow(browser, "form[data-action=skip] button")
    await wait_for(lambda: monitor.view.states.get(open_key) == "skipped", within=30)
    await asyncio.sleep(0.5)
    browser.get(f"{stack.web_url('b')}/ui/orders/{open_key}")
    last = history_rows(browser)[-1]
    assert last["trigger"] == "manual_skip" and "checked in the browser" in last["reason"]


async def dashboard_at_a_quiet_moment(
    browser: webdriver.Chrome, stack: object, within: float = 60
) -> tuple[dict[str, Any], dict[str, str], dict[str, dict[str, str]]]:
    """``GET /stats``, the dashboard's totals and its cells by seller, read while no order changed state.

    Business time runs fast in the demo, so orders keep moving after the scenario settled: the page is compared
    with the statistics only when the funnels asked for just before and just after loading it are the same.
    """
    deadline = time.monotonic() + within
    while True:
        before = stack.web("GET", "/stats", "b").json()  # type: ignore[attr-defined]
        browser.get(f"{stack.web_url('b')}/dashboard")  # type: ignore[attr-defined]
        totals = browser.execute_script(READ_TOTALS)
        cells = cells_by_seller(browser.execute_script(READ_SELLERS))
        after = stack.web("GET", "/stats", "b").json()  # type: ignore[attr-defined]
        if funnels(before) == funnels(after) or time.monotonic() > deadline:
            return before, totals, cells
        await asyncio.sleep(0.3)


def funnels(stats: dict[str, Any]) -> list[Any]:
    return [stats["totals"]["funnel"], *((s["seller_id"], s["funnel"]) for s in stats["sellers"])]


def open_alerts(stack: object, kind: str) -> list[dict[str, Any]]:
    found = stack.web("GET", "/alerts").json()["open"]  # type: ignore[attr-defined]
    return [alert for alert in found if alert["kind"] == kind]


def cells_by_seller(cells: list[list[Any]]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for seller_id, name, text, _value in cells:
        found.setdefault(seller_id, {})[name] = text
    return found


def history_rows(browser: webdriver.Chrome) -> list[dict[str, str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-testid=history-row]")
    return [
        {td.get_attribute("data-field") or "": td.text for td in row.find_elements(By.TAG_NAME, "td")} for row in rows
    ]
