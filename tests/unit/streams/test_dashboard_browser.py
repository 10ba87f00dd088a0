"""The dashboard's pages in a real headless Chromium: the figures a browser shows equal the statistics, the sort headers
and the group filter work by clicking, and an order link leads to the order's page, whose forms post.

The pages come from the renderers, served by a tiny local HTTP server in a thread over a realistic statistics
fixture (120 sellers in 6 groups); the end-to-end version runs against a real worker. ``make screenshot`` saves the
overview to ``$SOLICIT_SCREENSHOT``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from streams.web.dashboard import render_order, render_overview, render_seller
from tests.browser import save_screenshot

SELLERS = 120
GROUPS = ("agency-1", "agency-2", "agency-3", "agency-4", "agency-5", "direct")
STATES = ("pending", "shipped", "waiting", "eligible", "sent", "skipped", "expired", "canceled", "failed")
ATTENTION = ("deadline_near", "error_rate", "no_sends", "authorization_revoked")
SELLER_FIELDS = ("received", "eligible", "waiting", "sent", "expired", "failed")
TIMEOUT = 15

# ------------------------------------------------------------------------------------------------------ the fixture


SCALE = {"pending": 40, "shipped": 80, "waiting": 120, "eligible": 15, "sent": 1500}
SCALE.update(skipped=10, expired=60, canceled=90, failed=20)
"""Up to how many orders of a seller are in each state (most are sent)."""


def coverage(rng: random.Random) -> dict[str, Any]:
    eligible = rng.choice([0, *(rng.randint(1, 400) for _ in range(5))])
    solicited = rng.randint(eligible * 7 // 10, eligible)
    return {"eligible": eligible, "solicited": solicited, "ratio": round(solicited / eligible, 4) if eligible else None}


def seller_stats(rng: random.Random, index: int) -> dict[str, Any]:
    funnel = {state: rng.randint(0, SCALE[state]) for state in STATES}
    funnel["dead_lettered"] = rng.randint(0, 3)
    funnel["received"] = sum(funnel[state] for state in STATES)
    name = "O'Brien & <Sons>" if index == 7 else f"{rng.choice(['Acme', 'Bolt', 'Crane', 'Delta'])} {index:03}"
    return {
        "seller_id": f"A{index:03}{rng.randrange(16**8):08X}",
        "name": name,
        "group": GROUPS[index % len(GROUPS)],
        "funnel": funnel,
        "coverage": {window: coverage(rng) for window in ("1d", "7d", "30d")},
        "sends": {"1h": rng.randint(0, 50), "1d": rng.randint(0, 900)},
        "throttled": {"1h": rng.randint(0, 2), "1d": rng.randint(0, 9)},
        "closing_48h_unsent": rng.randint(0, 40),
        "attention": sorted(rng.sample(ATTENTION, rng.choice([0, 0, 0, 1, 2]))),
    }


def totals_of(sellers: list[dict[str, Any]]) -> dict[str, Any]:
    def total(*path: str) -> int:
        values: list[Any] = list(sellers)
        for key in path:
            values = [value[key] for value in values]
        return sum(values)

    funnel = {state: total("funnel", state) for state in sellers[0]["funnel"]}
    eligible, solicited = total("coverage", "7d", "eligible"), total("coverage", "7d", "solicited")
    return {
        "funnel": funnel,
        "coverage": {"7d": {"eligible": eligible, "solicited": solicited, "ratio": round(solicited / eligible, 4)}},
        "sends": {"1h": total("sends", "1h"), "1d": total("sends", "1d")},
        "throttled": {"1h": total("throttled", "1h"), "1d": total("throttled", "1d")},
        "closing_48h_unsent": total("closing_48h_unsent"),
    }


def order_of(seller_id: str, number: int) -> dict[str, Any]:
    order_id = f"114-{number:07}-4471902"
    steps = [("new", "pending", "hold"), ("pending", "shipped", "ship"), ("shipped", "eligible", "due")]
    steps.append(("eligible", "waiting", "not_yet"))
    history = [
        {
            "at": f"2025-03-0{day + 1}T09:00:00+00:00",
            "source": s,
            "dest": d,
            "trigger": t,
            "reason": f"step {day}",
            "request_id": f"req-{day}" if t == "not_yet" else "—",
        }
        for day, (s, d, t) in enumerate(steps)
    ]
    return {
        "order_key": f"{seller_id}/{order_id}",
        "seller_id": seller_id,
        "order_id": order_id,
        "marketplace_id": "ATVPDKIKX0DER",
        "fulfillment": "AFN",
        "state": "waiting",
        "amazon_status": "Shipped",
        "window": {"start": "2025-03-03T00:00:00+00:00", "end": "2025-04-02T00:00:00+00:00", "estimated": False},
        "next_due": "2025-03-05T09:00:00+00:00",
        "lease": {"id": 1, "expires_at": None},
        "commands_issued": 1,
        "checks": 1,
        "failures": 0,
        "maybe_sent": False,
        "last_reason": "not offered yet",
        "last_request_id": "req-8",
        "created_at": "2025-03-01T09:00:00+00:00",
        "updated_at": "2025-03-04T09:00:00+00:00",
        "history": history,
    }


@dataclass
class Site:
    """What the tiny server serves and what it was sent."""

    stats: dict[str, Any]
    orders: dict[tuple[str, str], dict[str, Any]]
    alerts: list[dict[str, Any]]
    posts: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    url: str = ""

    @classmethod
    def build(cls, seed: int = 20250301) -> Site:
        rng = random.Random(seed)
        sellers = [seller_stats(rng, index) for index in range(SELLERS)]
        stats = {"as_of": "2025-03-05T09:30:00+00:00", "workers": 3, "complete": True}
        stats.update(totals=totals_of(sellers), sellers=sellers)
        orders = {}
        for number, entry in enumerate(sellers[::24]):
            order = order_of(entry["seller_id"], number)
            orders[(order["seller_id"], order["order_id"])] = order
        alerts = [
            {"alert_id": f"{kind}:{s['seller_id']}", "kind": kind, "seller_id": s["seller_id"], "message": kind}
            | {"subject": s["seller_id"], "at": "2025-03-05T08:00:00+00:00"}
            for s in sellers
            for kind in s["attention"]
        ]
        return cls(stats=stats, orders=orders, alerts=alerts)

    def closing(self) -> list[dict[str, Any]]:
        fields = ("order_key", "seller_id", "order_id", "state")
        return [{k: o[k] for k in fields} | {"window_end": o["window"]["end"]} for o in self.orders.values()]

    def recent(self) -> list[dict[str, Any]]:
        return [{"order_key": o["order_key"]} | o["history"][-1] for o in self.orders.values()]


# ------------------------------------------------------------------------------------------------------- the server


def page_for(site: Site, path: str, query: dict[str, list[str]]) -> str | None:
    parts = [unquote(part) for part in path.strip("/").split("/")]
    if path in ("/", "/dashboard"):
        group, sort = query.get("group", [None])[0], query.get("sort", ["name"])[0]
        return render_overview(site.stats, site.alerts, site.closing(), site.recent(), group=group, sort=sort)
    if parts[:2] == ["ui", "orders"] and len(parts) == 4 and (parts[2], parts[3]) in site.orders:
        return render_order(site.orders[(parts[2], parts[3])])
    if parts[:2] == ["ui", "sellers"] and len(parts) == 3:
        stats = next((s for s in site.stats["sellers"] if s["seller_id"] == parts[2]), None)
        return None if stats is None else render_seller(stats, {"seller_id": parts[2], "orders": [], "next": None})
    return None


def handler_for(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            self.answer(page_for(site, url.path, parse_qs(url.query)))

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            site.posts.append((self.path, form))
            *_, seller_id, order_id, action = (unquote(part) for part in self.path.split("/"))
            self.answer(render_order(site.orders[(seller_id, order_id)], notice=f"{action} done"))

        def answer(self, page: str | None) -> None:
            body = (page or "not found").encode()
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site.build()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------------------------------------------ the browser

READ_SELLERS = """return Array.from(document.querySelectorAll('td[data-seller][data-field]'))
    .map(td => [td.dataset.seller, td.dataset.field, td.textContent, td.dataset.value ?? null]);"""
READ_ORDER = "return Array.from(document.querySelectorAll('tr[data-seller]')).map(tr => tr.dataset.seller);"
READ_TOTALS = """return Object.fromEntries(Array.from(document.querySelectorAll('[data-total]'))
    .map(e => [e.dataset.total, e.textContent]));"""


def follow(browser: webdriver.Chrome, selector: str) -> None:
    """Click the link ``selector`` and wait for the next page."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, selector).click()
    WebDriverWait(browser, TIMEOUT).until(expected_conditions.staleness_of(old))
    WebDriverWait(browser, TIMEOUT).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete"
    )


def shown(browser: webdriver.Chrome) -> list[str]:
    return list(browser.execute_script(READ_ORDER))


def expected_cells(seller: dict[str, Any]) -> dict[str, str]:
    ratio = seller["coverage"]["7d"]["ratio"]
    cells = {name: str(seller["funnel"][name]) for name in SELLER_FIELDS}
    cells.update(name=seller["name"], group=seller["group"], closing_48h=str(seller["closing_48h_unsent"]))
    cells.update(attention=", ".join(seller["attention"]), coverage_7d="—" if ratio is None else f"{ratio * 100:.1f} %")
    return cells


@pytest.mark.screenshot
def test_the_overview_shows_every_figure_of_the_statistics(
    browser: webdriver.Chrome, site: Site, screenshot_path: Path | None
) -> None:
    browser.get(site.url + "/dashboard")
    read: dict[str, dict[str, str]] = {}
    values: dict[str, str | None] = {}
    for seller_id, name, text, value in browser.execute_script(READ_SELLERS):
        read.setdefault(seller_id, {})[name] = text
        if name == "coverage_7d":
            values[seller_id] = value
    sellers = site.stats["sellers"]
    assert read == {s["seller_id"]: expected_cells(s) for s in sellers}
    ratios = {s["seller_id"]: s["coverage"]["7d"]["ratio"] for s in sellers}
    assert values == {seller_id: "" if ratio is None else str(ratio) for seller_id, ratio in ratios.items()}
    totals = browser.execute_script(READ_TOTALS)
    funnel = site.stats["totals"]["funnel"]
    assert {name: totals[name] for name in funnel} == {name: str(n) for name, n in funnel.items()}
    assert totals["closing_48h"] == str(site.stats["totals"]["closing_48h_unsent"])
    assert totals["sends_1d"] == str(site.stats["totals"]["sends"]["1d"]) and totals["workers"] == "3"
    assert browser.find_element(By.CSS_SELECTOR, '[data-seller] a[data-testid="seller-link"]').is_displayed()
    if screenshot_path is not None:
        save_screenshot(browser, screenshot_path)


def by_name(seller: dict[str, Any]) -> tuple[str, str]:
    return seller["name"].casefold(), seller["seller_id"]


def test_clicking_a_heading_sorts_by_it_and_clicking_again_reverses(browser: webdriver.Chrome, site: Site) -> None:
    sellers = sorted(site.stats["sellers"], key=by_name)
    browser.get(site.url + "/dashboard")
    assert shown(browser) == [s["seller_id"] for s in sellers]

    follow(browser, 'a[data-sort="sent"]')
    assert browser.current_url.endswith("/dashboard?sort=sent")
    assert shown(browser) == [s["seller_id"] for s in sorted(sellers, key=lambda s: s["funnel"]["sent"])]

    follow(browser, 'a[data-sort="sent"]')
    assert browser.current_url.endswith("/dashboard?sort=-sent")
    expected = [s["seller_id"] for s in sorted(sellers, key=lambda s: -s["funnel"]["sent"])]
    assert shown(browser) == expected

    follow(browser, 'a[data-sort="coverage_7d"]')
    ratio_of = {s["seller_id"]: s["coverage"]["7d"]["ratio"] for s in sellers}
    ratios = [ratio_of[seller_id] for seller_id in shown(browser)]
    known = [r for r in ratios if r is not None]
    assert known == sorted(known) and ratios == known + [None] * (len(ratios) - len(known))


def test_the_group_filter_keeps_one_group_and_the_sort(browser: webdriver.Chrome, site: Site) -> None:
    browser.get(site.url + "/dashboard?sort=-received")
    follow(browser, 'a[data-group="agency-3"]')
    members = [s for s in site.stats["sellers"] if s["group"] == "agency-3"]
    expected = sorted(sorted(members, key=by_name), key=lambda s: -s["funnel"]["received"])
    assert shown(browser) == [s["seller_id"] for s in expected]
    shown_sent = browser.find_element(By.CSS_SELECTOR, '[data-shown-total="sent"]').text
    assert shown_sent == str(sum(s["funnel"]["sent"] for s in members))

    follow(browser, 'a[data-group=""]')
    assert len(shown(browser)) == SELLERS


def test_an_order_link_leads_to_its_page_whose_forms_post(browser: webdriver.Chrome, site: Site) -> None:
    order = next(iter(site.orders.values()))
    browser.get(site.url + "/dashboard")
    follow(browser, f'table[data-testid="closing"] tr[data-order="{order["order_key"]}"] a[data-testid="order-link"]')
    assert urlsplit(browser.current_url).path == f"/ui/orders/{order['seller_id']}/{order['order_id']}"
    assert browser.find_element(By.CSS_SELECTOR, 'td[data-field="state"]').text == "waiting"
    rows = browser.find_elements(By.CSS_SELECTOR, 'tr[data-testid="history-row"]')
    read = [{c.get_attribute("data-field"): c.text for c in row.find_elements(By.TAG_NAME, "td")} for row in rows]
    assert read == order["history"]

    browser.find_element(By.CSS_SELECTOR, 'form[data-action="skip"] input[name="note"]').send_keys("buyer asked")
    follow(browser, 'button[data-testid="action-skip"]')
    assert site.posts == [(f"/ui/orders/{order['seller_id']}/{order['order_id']}/skip", {"note": ["buyer asked"]})]
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="notice"]').text == "skip done"


def test_a_seller_link_leads_to_its_funnel(browser: webdriver.Chrome, site: Site) -> None:
    seller = site.stats["sellers"][7]
    browser.get(site.url + "/dashboard")
    follow(browser, f'td[data-seller="{seller["seller_id"]}"] a[data-testid="seller-link"]')
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="seller"]').text.startswith("O'Brien & <Sons>")
    received = browser.find_element(By.CSS_SELECTOR, 'td[data-marketplace="all"][data-field="received"]').text
    assert received == str(seller["funnel"]["received"])
