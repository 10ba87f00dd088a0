"""The dashboard's HTML: every figure under its attribute, escaping, the group filter, sorting and the links."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from streams.web.dashboard import (
    render_login,
    render_order,
    render_overview,
    render_seller,
    sort_sellers,
)

VOID = frozenset({"input", "meta", "br", "img", "link", "hr"})


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.text = ""


class Collector(HTMLParser):
    """Every element with its attributes and its text (the page as a browser's DOM would hold it, flattened)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data


def parse(page: str) -> list[Element]:
    collector = Collector()
    collector.feed(page)
    collector.close()
    return collector.elements


def find(page: str, **attrs: str) -> list[Element]:
    wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
    return [e for e in parse(page) if all(e.attrs.get(k) == v for k, v in wanted.items())]


def one(page: str, **attrs: str) -> Element:
    found = find(page, **attrs)
    assert len(found) == 1, (attrs, len(found))
    return found[0]


def seller(seller_id: str, name: str, group: str | None, **funnel: int) -> dict[str, Any]:
    full = {state: 0 for state in ("received", "pending", "shipped", "waiting", "eligible", "sent")}
    full.update({"skipped": 0, "expired": 0, "canceled": 0, "failed": 0, "dead_lettered": 0})
    full.update(funnel)
    sent = full["sent"]
    return {
        "seller_id": seller_id,
        "name": name,
        "group": group,
        "funnel": full,
        "coverage": {"7d": {"eligible": sent + 1, "solicited": sent, "ratio": round(sent / (sent + 1), 4)}},
        "sends": {"1h": 1, "1d": sent},
        "throttled": {"1h": 0, "1d": 0},
        "closing_48h_unsent": full["waiting"],
        "attention": [],
    }


@pytest.fixture
def stats() -> dict[str, Any]:
    sellers = [
        seller("A1", "Acme", "agency-1", received=120, eligible=2, waiting=20, sent=70, expired=5, failed=2),
        seller("B2", "bolt", "agency-2", received=40, eligible=1, waiting=3, sent=30, expired=0, failed=1),
        seller("C3", "Crane", "agency-1", received=80, eligible=0, waiting=9, sent=70, expired=1, failed=0),
        seller("D4", "Dune", None, received=5, eligible=0, waiting=0, sent=0, expired=0, failed=0),
    ]
    sellers[0]["attention"] = ["deadline_near", "error_rate"]
    sellers[3]["coverage"] = {"7d": {"eligible": 0, "solicited": 0, "ratio": None}}
    totals = {
        "funnel": {"received": 245, "eligible": 3, "waiting": 32, "sent": 170, "expired": 6, "failed": 3},
        "coverage": {"7d": {"eligible": 174, "solicited": 170, "ratio": 0.977}},
        "sends": {"1h": 4, "1d": 170},
        "throttled": {"1h": 0, "1d": 1},
        "closing_48h_unsent": 32,
    }
    return {"as_of": "2025-01-02T03:04:05+00:00", "workers": 2, "complete": True, "totals": totals, "sellers": sellers}


def overview(stats: dict[str, Any], *, group: str | None = None, sort: str = "name", **lists: Any) -> str:
    return render_overview(
        stats, lists.get("alerts", []), lists.get("closing", []), lists.get("recent", []), group=group, sort=sort
    )


def table_rows(page: str, **attrs: str) -> list[list[str]]:
    """The cell texts of each ``tr`` matching ``attrs``."""
    wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
    rows: list[list[str]] = []
    current: list[str] | None = None
    for element in parse(page):
        if element.tag == "tr":
            current = [] if all(element.attrs.get(k) == v for k, v in wanted.items()) else None
            if current is not None:
                rows.append(current)
        elif element.tag == "td" and current is not None:
            current.append(element.text)
    return rows


def shown_sellers(page: str) -> list[str]:
    return [e.attrs["data-seller"] for e in parse(page) if e.tag == "tr" and "data-seller" in e.attrs]


# ---------------------------------------------------------------------------------------------------- figures


def test_every_seller_figure_is_under_its_attribute(stats: dict[str, Any]) -> None:
    page = overview(stats)
    for entry in stats["sellers"]:
        sid = entry["seller_id"]
        for field in ("received", "eligible", "waiting", "sent", "expired", "failed"):
            assert one(page, data_seller=sid, data_field=field).text == str(entry["funnel"][field])
        assert one(page, data_seller=sid, data_field="closing_48h").text == str(entry["closing_48h_unsent"])
        assert one(page, data_seller=sid, data_field="name").text == entry["name"]
    coverage = one(page, data_seller="A1", data_field="coverage_7d")
    assert (coverage.attrs["data-value"], coverage.text) == ("0.9859", "98.6 %")
    assert one(page, data_seller="D4", data_field="coverage_7d").text == "—"
    assert one(page, data_seller="A1", data_field="attention").text == "deadline_near, error_rate"


def test_totals_come_from_the_stats_totals(stats: dict[str, Any]) -> None:
    page = overview(stats, group="agency-2")
    expected = {"received": "245", "sent": "170", "failed": "3", "closing_48h": "32", "sends_1d": "170"}
    assert {name: one(page, data_total=name).text for name in expected} == expected
    assert one(page, data_total="throttled_1d").text == "1"
    assert one(page, data_total="coverage_7d").attrs["data-value"] == "0.977"
    assert one(page, data_total="workers").text == "2"
    assert find(page, data_testid="incomplete") == []


def test_partial_figures_are_flagged(stats: dict[str, Any]) -> None:
    stats["complete"] = False
    assert one(overview(stats), data_testid="incomplete")


def test_a_seller_missing_figures_shows_zeros(stats: dict[str, Any]) -> None:
    stats["sellers"] = [{"seller_id": "E5"}]
    page = overview(stats)
    assert one(page, data_seller="E5", data_field="sent").text == "0"
    assert one(page, data_seller="E5", data_field="name").text == "E5"


# --------------------------------------------------------------------------------------------------- escaping


def test_everything_from_data_is_escaped(stats: dict[str, Any]) -> None:
    stats["sellers"][0].update(name="<script>alert(1)</script>", group='"><img src=x>', seller_id='A"1')
    alert = {"alert_id": "x", "kind": "<b>", "seller_id": None, "subject": "<i>w</i>", "message": "a & <u>b</u>"}
    recent = [{"order_key": "S/<o>", "source": "<s>", "dest": "sent", "reason": "<em>r</em>", "at": "<t>"}]
    page = overview(stats, alerts=[alert], recent=recent)
    for raw in ("<script>alert", "<img src=x>", "<b>", "<i>w", "<u>", "<s>", "<em>", "<o>", "<t>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert one(page, data_seller='A"1', data_field="group").text == '"><img src=x>'
    assert one(page, data_order="S/<o>").attrs["data-order"] == "S/<o>"


def test_order_page_escapes_history_and_ids() -> None:
    order = order_json()
    order["history"][0]["reason"] = "<script>x</script>"
    order["last_reason"] = "<b>bold</b>"
    page = render_order(order, notice="<i>done</i>")
    assert "<script>x" not in page and "<b>bold" not in page and "<i>done" not in page
    assert one(page, data_testid="notice").text == "<i>done</i>"


def test_login_form_posts_the_token_and_escapes_the_error() -> None:
    page = render_login("bad <token>")
    form = one(page, data_testid="login-form")
    assert (form.attrs["method"], form.attrs["action"]) == ("post", "/login")
    assert one(page, name="token").attrs["type"] == "password"
    assert "bad <token>" not in page and one(page, data_testid="login-error").text == "bad <token>"
    assert find(render_login(None), data_testid="login-error") == []


# ------------------------------------------------------------------------------------------ filter and sorting


def test_group_filter_keeps_the_group_and_links_every_group(stats: dict[str, Any]) -> None:
    page = overview(stats, group="agency-1", sort="-sent")
    assert sorted(shown_sellers(page)) == ["A1", "C3"]
    assert one(page, data_shown_total="sent").text == "140"
    links = {e.attrs["data-group"]: e.attrs["href"] for e in parse(page) if "data-group" in e.attrs}
    assert links == {
        "": "/dashboard?sort=-sent",
        "agency-1": "/dashboard?group=agency-1&sort=-sent",
        "agency-2": "/dashboard?group=agency-2&sort=-sent",
    }
    assert shown_sellers(overview(stats)) == ["A1", "B2", "C3", "D4"]


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("name", ["A1", "B2", "C3", "D4"]),
        ("-name", ["D4", "C3", "B2", "A1"]),
        ("sent", ["D4", "B2", "A1", "C3"]),
        ("-sent", ["A1", "C3", "B2", "D4"]),
        ("coverage_7d", ["B2", "A1", "C3", "D4"]),
        ("-coverage_7d", ["A1", "C3", "B2", "D4"]),
        ("-attention", ["A1", "B2", "C3", "D4"]),
        ("group", ["D4", "A1", "C3", "B2"]),
        ("nonsense", ["A1", "B2", "C3", "D4"]),
    ],
)
def test_sorting(stats: dict[str, Any], sort: str, order: list[str]) -> None:
    assert shown_sellers(overview(stats, sort=sort)) == order
    assert [s["seller_id"] for s in sort_sellers(stats["sellers"], sort)] == order


def test_sort_headers_toggle_direction_and_keep_the_group(stats: dict[str, Any]) -> None:
    page = overview(stats, group="agency-1", sort="sent")
    heads = {e.attrs["data-sort"]: e.attrs["href"] for e in parse(page) if "data-sort" in e.attrs}
    assert heads["sent"] == "/dashboard?group=agency-1&sort=-sent"
    assert heads["failed"] == "/dashboard?group=agency-1&sort=failed"
    assert [e.attrs["aria-sort"] for e in parse(page) if e.attrs.get("aria-sort") not in (None, "none")] == [
        "ascending"
    ]


def test_renders_many_sellers(stats: dict[str, Any]) -> None:
    template = stats["sellers"][0]
    stats["sellers"] = [dict(template, seller_id=f"S{i:03}", name=f"Seller {i:03}") for i in range(150)]
    page = overview(stats, sort="-name")
    assert shown_sellers(page)[:2] == ["S149", "S148"] and len(shown_sellers(page)) == 150


# --------------------------------------------------------------------------------------------------------- links


def test_closing_and_recent_orders_link_to_their_pages(stats: dict[str, Any]) -> None:
    closing = [{"order_key": "A1/111-2", "seller_id": "A1", "order_id": "111-2", "state": "waiting", "window_end": "t"}]
    recent = [{"order_key": "B 2/9/9", "source": "eligible", "dest": "sent", "reason": "created", "at": "t"}]
    alert = {"alert_id": "deadline_near:A1", "kind": "deadline_near", "seller_id": "A1", "message": "m", "at": "t"}
    page = overview(stats, closing=closing, recent=recent, alerts=[alert])
    links = [e.attrs["href"] for e in parse(page) if e.attrs.get("data-testid") == "order-link"]
    assert links == ["/ui/orders/A1/111-2", "/ui/orders/B%202/9%2F9"]
    assert one(one_row(page, "closing"), data_field="state").text == "waiting"
    assert one(page, data_alert="deadline_near:A1").text.startswith("deadline_near")
    assert "/ui/sellers/A1" in [e.attrs.get("href") for e in parse(page)]


def one_row(page: str, testid: str) -> str:
    start = page.index(f'data-testid="{testid}"')
    return page[start : page.index("</table>", start)]


def test_empty_lists_say_so(stats: dict[str, Any]) -> None:
    page = overview(stats)
    for testid in ("alerts", "closing", "recent"):
        assert one(page, data_testid=f"{testid}-empty")


# --------------------------------------------------------------------------------------------------------- order


def order_json() -> dict[str, Any]:
    return {
        "order_key": "A1/111-2",
        "seller_id": "A1",
        "order_id": "111-2",
        "marketplace_id": "ATVPDKIKX0DER",
        "fulfillment": "AFN",
        "state": "waiting",
        "amazon_status": "Shipped",
        "window": {"start": "2025-01-05T00:00:00+00:00", "end": "2025-02-03T00:00:00+00:00", "estimated": False},
        "next_due": "2025-01-06T10:00:00+00:00",
        "lease": {"id": 3, "expires_at": None},
        "commands_issued": 3,
        "checks": 2,
        "failures": 0,
        "maybe_sent": False,
        "last_reason": "not offered yet",
        "last_request_id": "req-1",
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-05T10:00:00+00:00",
        "partition": 4,
        "history": [
            {"at": "2025-01-01T00:00:00+00:00", "source": "new", "dest": "pending", "trigger": "hold", "reason": "r0"},
            {
                "at": "2025-01-02T00:00:00+00:00",
                "source": "pending",
                "dest": "shipped",
                "trigger": "ship",
                "reason": "r1",
            },
        ],
    }


def test_order_page_shows_facts_history_and_actions() -> None:
    page = render_order(order_json(), csrf="c-1")
    assert one(page, data_field="state").text == "waiting"
    assert one(page, data_field="window_end").text == "2025-02-03T00:00:00+00:00"
    assert one(page, data_field="lease_id").text == "3"
    assert one(page, data_field="maybe_sent").text == "no"
    assert one(page, data_field="partition").text == "4"
    assert table_rows(page, data_testid="history-row") == [
        ["2025-01-01T00:00:00+00:00", "new", "pending", "hold", "r0", "—"],
        ["2025-01-02T00:00:00+00:00", "pending", "shipped", "ship", "r1", "—"],
    ]
    forms = {e.attrs["data-action"]: e.attrs["action"] for e in parse(page) if e.tag == "form"}
    assert forms == {
        "skip": "/ui/orders/A1/111-2/skip",
        "send-now": "/ui/orders/A1/111-2/send-now",
        "recheck": "/ui/orders/A1/111-2/recheck",
    }
    assert len(find(page, name="note")) == 3 and len(find(page, name="csrf", value="c-1")) == 3
    assert one(page, data_testid="seller-link").attrs["href"] == "/ui/sellers/A1"


def test_order_page_without_history() -> None:
    order = order_json()
    order["history"] = []
    assert one(render_order(order), data_testid="history-empty")


# -------------------------------------------------------------------------------------------------------- seller


def test_seller_page_shows_funnels_per_marketplace_and_an_orders_page(stats: dict[str, Any]) -> None:
    acme = dict(stats["sellers"][0])
    acme["marketplaces"] = {
        "A1PA6795UKMFR9": {"funnel": {"received": 20, "sent": 10}, "coverage": {}, "closing_48h_unsent": 0},
        "ATVPDKIKX0DER": {"funnel": {"received": 100, "sent": 60}, "coverage": {}, "closing_48h_unsent": 20},
    }
    orders = {
        "seller_id": "A1",
        "orders": [{"order_key": "A1/111-2", "order_id": "111-2", "marketplace_id": "ATVPDKIKX0DER", "state": "sent"}],
        "next": "cur sor",
    }
    page = render_seller(acme, orders)
    assert one(page, data_marketplace="all", data_field="received").text == "120"
    assert one(page, data_marketplace="ATVPDKIKX0DER", data_field="sent").text == "60"
    assert one(page, data_marketplace="A1PA6795UKMFR9", data_field="received").text == "20"
    assert one(page, data_marketplace="ATVPDKIKX0DER", data_field="closing_48h").text == "20"
    assert one(page, data_total="sends_1d").text == "70"
    assert one(one_row(page, "orders"), data_testid="order-link").attrs["href"] == "/ui/orders/A1/111-2"
    assert one(page, data_testid="next-page").attrs["href"] == "/ui/sellers/A1?after=cur+sor"
    assert find(render_seller(acme, {"seller_id": "A1", "orders": [], "next": None}), data_testid="next-page") == []
