"""The dashboard's pages as HTML strings: sign-in, overview of every seller, one seller, one order.

Pure functions of the API's JSON (docs/web-api.md): no Faust, no I/O, no clock, so the routes stay thin and the pages
are tested without a server. Everything that comes from data is escaped. Sorting and the group filter happen here,
on the server (``?sort=`` and ``?group=`` links), so the pages need no script and no asset beyond their inline CSS.

Every figure carries a stable attribute for tests and scripts: a seller's cell ``data-seller`` + ``data-field``, a
total ``data-total``, an order's row ``data-order``; tables and controls have a ``data-testid``.

Routes the pages link to (the web API wires them): ``/`` (overview), ``/ui/sellers/{seller}``,
``/ui/orders/{seller}/{order}``, ``POST /ui/orders/{seller}/{order}/{action}`` (a form with ``note``) and
``POST /login`` (a form with ``token``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

OVERVIEW_PATH = "/dashboard"
UI_PREFIX = "/ui"
LOGIN_PATH = "/login"
ACTIONS: tuple[tuple[str, str], ...] = (("skip", "Skip"), ("send-now", "Send now"), ("recheck", "Re-check"))
"""Manual actions on an order: path segment and button label (the API's POST /orders/{seller}/{order}/{action})."""
DEFAULT_SORT = "name"
MISSING = "—"
FUNNEL_FIELDS: tuple[str, ...] = (
    "received",
    "pending",
    "shipped",
    "waiting",
    "eligible",
    "sent",
    "skipped",
    "expired",
    "canceled",
    "failed",
    "dead_lettered",
)

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """A column of the sellers table: its ``?sort=`` key, heading, and the value it shows and sorts by."""

    key: str
    label: str
    value: Callable[[Row], Any]
    numeric: bool = True
    right: bool = True
    """Right-aligned (figures)."""


def _funnel(state: str) -> Callable[[Row], Any]:
    return lambda seller: _int(_get(seller, "funnel", state))


FUNNEL_COLUMNS: tuple[Column, ...] = tuple(
    Column(state, state.capitalize(), _funnel(state))
    for state in ("received", "eligible", "waiting", "sent", "expired", "failed")
)
COLUMNS: tuple[Column, ...] = (
    Column("name", "Seller", lambda s: str(s.get("name") or s.get("seller_id") or ""), numeric=False, right=False),
    Column("group", "Group", lambda s: str(s.get("group") or ""), numeric=False, right=False),
    *FUNNEL_COLUMNS,
    Column("coverage_7d", "Coverage 7d", lambda s: _get(s, "coverage", "7d", "ratio")),
    Column("closing_48h", "Closing 48h", lambda s: _int(s.get("closing_48h_unsent"))),
    Column("attention", "Attention", lambda s: len(s.get("attention") or ()), right=False),
)
SORT_KEYS = frozenset(column.key for column in COLUMNS)
"""Valid ``?sort=`` values, each also with a leading ``-`` for descending order."""


# ---------------------------------------------------------------------------------------------------------- helpers


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(value: Any) -> str:
    """A value for people, escaped: None as a dash, booleans as yes/no."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def _attr(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _ratio(ratio: Any) -> str:
    return MISSING if not isinstance(ratio, (int, float)) else f"{ratio * 100:.1f} %"


def _time(value: Any) -> str:
    if not value:
        return MISSING
    return f'<time datetime="{_attr(value)}">{_text(value)}</time>'


def seller_url(seller_id: str) -> str:
    """The dashboard page of one seller."""
    return f"{UI_PREFIX}/sellers/{quote(seller_id, safe='')}"


def order_url(seller_id: str, order_id: str) -> str:
    """The dashboard page of one order."""
    return f"{UI_PREFIX}/orders/{quote(seller_id, safe='')}/{quote(order_id, safe='')}"


def action_url(seller_id: str, order_id: str, action: str) -> str:
    """Where an order page's form posts a manual action."""
    return f"{order_url(seller_id, order_id)}/{quote(action, safe='')}"


def overview_url(*, group: str | None, sort: str | None) -> str:
    """The overview with a group filter and a sort order (None leaves either out)."""
    query = {key: value for key, value in (("group", group), ("sort", sort)) if value}
    return f"{OVERVIEW_PATH}?{urlencode(query)}" if query else OVERVIEW_PATH


def split_order_key(key: str) -> tuple[str, str]:
    """``<seller id>/<order id>`` as its two parts (the order id keeps any further slash)."""
    seller_id, _, order_id = key.partition("/")
    return seller_id, order_id


def _link(href: str, text: str, **attrs: str) -> str:
    extra = "".join(f' {name.rstrip("_").replace("_", "-")}="{_attr(value)}"' for name, value in attrs.items())
    return f'<a href="{_attr(href)}"{extra}>{escape(text)}</a>'


def _order_link(key: str, seller_id: str | None = None, order_id: str | None = None) -> str:
    if not (seller_id and order_id):
        seller_id, order_id = split_order_key(key)
    return _link(order_url(seller_id, order_id), key or MISSING, data_testid="order-link")


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#1d2433;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.5rem;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:1rem 1.2rem}
h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{padding:.3rem .5rem;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th a{color:inherit}
.cards{display:flex;flex-wrap:wrap;gap:.5rem}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:4px;padding:.4rem .7rem;min-width:6rem}
.card .label{display:block;font-size:.75rem;color:#5b6475}
.card .value{font-size:1.2rem;font-weight:600}
.filters a{margin-right:.6rem}
.filters a.current{font-weight:700;text-decoration:none;color:#1d2433}
.warn{background:#fff4d6;border:1px solid #e8c65a;padding:.4rem .7rem}
.error{background:#fde2e1;border:1px solid #d9534f;padding:.4rem .7rem}
.notice{background:#e2f3e5;border:1px solid #5cb85c;padding:.4rem .7rem}
.attention{color:#b02a20;font-weight:600}
form.action{display:inline-block;margin-right:1rem;background:#fff;padding:.5rem;border:1px solid #e3e6eb}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · solicit</title><style>{STYLE}</style></head><body>"
        f'<header><a href="{OVERVIEW_PATH}" data-testid="home">solicit</a><span>{escape(title)}</span></header>'
        f"<main>{body}</main></body></html>\n"
    )


def _table(testid: str, head: str, rows: Iterable[str], empty: str, foot: str = "") -> str:
    body = "".join(rows)
    if not body:
        return f'<p data-testid="{testid}-empty">{escape(empty)}</p>'
    return f'<table data-testid="{testid}"><thead>{head}</thead><tbody>{body}</tbody>{foot}</table>'


def _card(label: str, attribute: str, name: str, shown: str, value: Any = None) -> str:
    data_value = "" if value is None else f' data-value="{_attr(value)}"'
    return (
        f'<div class="card"><span class="label">{escape(label)}</span>'
        f'<span class="value" {attribute}="{_attr(name)}"{data_value}>{shown}</span></div>'
    )


# ------------------------------------------------------------------------------------------------------------ login


def render_login(error: str | None) -> str:
    """The sign-in form: posts ``token`` to ``/login`` (the API answers with an HTTP-only cookie)."""
    problem = f'<p class="error" data-testid="login-error">{escape(error)}</p>' if error else ""
    body = (
        f"<h2>Sign in</h2>{problem}"
        f'<form method="post" action="{LOGIN_PATH}" data-testid="login-form">'
        '<label>Token <input type="password" name="token" autocomplete="off" required autofocus></label> '
        '<button type="submit">Sign in</button></form>'
    )
    return _page("Sign in", body)


# --------------------------------------------------------------------------------------------------------- overview


def parse_sort(sort: str | None) -> tuple[Column, bool]:
    """The column and direction (True = descending) of a ``?sort=`` value; unknown values sort by name."""
    descending = (sort or "").startswith("-")
    key = (sort or "").removeprefix("-")
    for column in COLUMNS:
        if column.key == key:
            return column, descending
    return COLUMNS[0], False


def sort_sellers(sellers: Iterable[Row], sort: str | None) -> list[Row]:
    """Sellers in the order ``?sort=`` asks for; ties by name, sellers without a value (no coverage yet) last."""
    column, descending = parse_sort(sort)
    by_name = sorted(sellers, key=lambda s: (str(s.get("name") or "").casefold(), str(s.get("seller_id") or "")))
    known = [s for s in by_name if column.value(s) is not None]
    unknown = [s for s in by_name if column.value(s) is None]

    def key(seller: Row) -> Any:
        value = column.value(seller)
        return value if column.numeric else str(value).casefold()

    return sorted(known, key=key, reverse=descending) + unknown


def filter_sellers(sellers: Iterable[Row], group: str | None) -> list[Row]:
    """The sellers of ``group`` (all of them when None or empty)."""
    return [s for s in sellers if not group or s.get("group") == group]


def groups_of(sellers: Iterable[Row]) -> list[str]:
    """The distinct groups, sorted."""
    return sorted({str(s["group"]) for s in sellers if s.get("group")})


def _totals(stats: Row) -> str:
    totals = stats.get("totals") or {}
    cards = [_card(field, "data-total", field, str(_int(_get(totals, "funnel", field)))) for field in FUNNEL_FIELDS]
    ratio = _get(totals, "coverage", "7d", "ratio")
    cards.append(_card("coverage 7d", "data-total", "coverage_7d", _ratio(ratio), ratio))
    cards.append(_card("closing 48h", "data-total", "closing_48h", str(_int(totals.get("closing_48h_unsent")))))
    for kind in ("sends", "throttled"):
        for window in ("1h", "1d"):
            name = f"{kind}_{window}"
            cards.append(_card(f"{kind} {window}", "data-total", name, str(_int(_get(totals, kind, window)))))
    return f'<div class="cards" data-testid="totals">{"".join(cards)}</div>'


def _status(stats: Row) -> str:
    facts = (
        f'<p data-testid="status">As of {_time(stats.get("as_of"))}, '
        f'<span data-total="workers">{_int(stats.get("workers"))}</span> worker(s).</p>'
    )
    if stats.get("complete") is False:
        facts += (
            '<p class="warn" data-testid="incomplete">Partial figures: a worker could not be reached or a partition '
            "is still recovering.</p>"
        )
    return facts


def _group_filter(groups: Sequence[str], group: str | None, sort: str) -> str:
    links = [
        _link(overview_url(group=None, sort=sort), "all", data_group="", **({"class_": "current"} if not group else {}))
    ]
    for name in groups:
        current = {"class_": "current"} if name == group else {}
        links.append(_link(overview_url(group=name, sort=sort), name, data_group=name, **current))
    return f'<p class="filters" data-testid="group-filter">Group: {" ".join(links)}</p>'


def _heading(column: Column, group: str | None, sort: str) -> str:
    current, descending = parse_sort(sort)
    next_sort = f"-{column.key}" if current is column and not descending else column.key
    direction = ("descending" if descending else "ascending") if current is column else "none"
    arrow = {"ascending": " ▲", "descending": " ▼"}.get(direction, "")
    link = _link(overview_url(group=group, sort=next_sort), column.label + arrow, data_sort=column.key)
    css = ' class="n"' if column.right else ""
    return f'<th{css} aria-sort="{direction}">{link}</th>'


def _seller_row(seller: Row) -> str:
    seller_id = str(seller.get("seller_id") or "")
    sid = _attr(seller_id)
    name = _link(seller_url(seller_id), str(seller.get("name") or seller_id), data_testid="seller-link")
    cells = [f'<td data-seller="{sid}" data-field="name">{name}</td>']
    cells.append(f'<td data-seller="{sid}" data-field="group">{_text(seller.get("group"))}</td>')
    for column in FUNNEL_COLUMNS:
        cells.append(f'<td class="n" data-seller="{sid}" data-field="{column.key}">{column.value(seller)}</td>')
    ratio = _get(seller, "coverage", "7d", "ratio")
    cells.append(
        f'<td class="n" data-seller="{sid}" data-field="coverage_7d" data-value="{_attr(ratio)}">{_ratio(ratio)}</td>'
    )
    closing = _int(seller.get("closing_48h_unsent"))
    cells.append(f'<td class="n" data-seller="{sid}" data-field="closing_48h">{closing}</td>')
    kinds = ", ".join(str(kind) for kind in seller.get("attention") or ())
    cells.append(f'<td class="attention" data-seller="{sid}" data-field="attention">{escape(kinds)}</td>')
    return f'<tr data-seller="{sid}">{"".join(cells)}</tr>'


def _shown_totals(sellers: Sequence[Row]) -> str:
    cells = [f'<th colspan="2">Shown: <span data-shown-total="sellers">{len(sellers)}</span> seller(s)</th>']
    for column in FUNNEL_COLUMNS:
        total = sum(column.value(s) for s in sellers)
        cells.append(f'<td class="n" data-shown-total="{column.key}">{total}</td>')
    closing = sum(_int(s.get("closing_48h_unsent")) for s in sellers)
    cells.append(f'<td></td><td class="n" data-shown-total="closing_48h">{closing}</td><td></td>')
    return f"<tfoot><tr>{''.join(cells)}</tr></tfoot>"


def _sellers_table(stats: Row, group: str | None, sort: str) -> str:
    every = list(stats.get("sellers") or ())
    shown = sort_sellers(filter_sellers(every, group), sort)
    head = "<tr>" + "".join(_heading(column, group, sort) for column in COLUMNS) + "</tr>"
    table = _table("sellers", head, (_seller_row(s) for s in shown), "No sellers.", _shown_totals(shown))
    return _group_filter(groups_of(every), group, sort) + table


def _alert_row(alert: Row) -> str:
    seller_id = alert.get("seller_id")
    seller = _link(seller_url(str(seller_id)), str(seller_id)) if seller_id else _text(alert.get("subject"))
    return (
        f'<tr data-alert="{_attr(alert.get("alert_id"))}"><td data-field="kind">{_text(alert.get("kind"))}</td>'
        f'<td data-field="subject">{seller}</td><td data-field="message">{_text(alert.get("message"))}</td>'
        f'<td data-field="at">{_time(alert.get("at"))}</td></tr>'
    )


def _closing_row(order: Row) -> str:
    key = str(order.get("order_key") or "")
    link = _order_link(key, order.get("seller_id"), order.get("order_id"))
    return (
        f'<tr data-order="{_attr(key)}"><td data-field="order">{link}</td>'
        f'<td data-field="state">{_text(order.get("state"))}</td>'
        f'<td data-field="window_end">{_time(order.get("window_end"))}</td></tr>'
    )


def _recent_row(outcome: Row) -> str:
    key = str(outcome.get("order_key") or "")
    cells = "".join(f'<td data-field="{name}">{_text(outcome.get(name))}</td>' for name in ("source", "dest", "reason"))
    return (
        f'<tr data-order="{_attr(key)}"><td data-field="order">{_order_link(key)}</td>{cells}'
        f'<td data-field="at">{_time(outcome.get("at"))}</td></tr>'
    )


def render_overview(
    stats: Row,
    alerts: Sequence[Row],
    closing: Sequence[Row],
    recent: Sequence[Row],
    *,
    group: str | None,
    sort: str,
) -> str:
    """Every seller's funnel (``GET /stats``), the open alerts, orders close to their deadline, recent outcomes.

    ``group`` keeps the sellers of one group (None: all); ``sort`` is a column key of :data:`SORT_KEYS`, ``-`` in
    front for descending (an unknown one sorts by name). The totals on top are the whole group of workers'."""
    body = [
        _status(stats),
        _totals(stats),
        "<h2>Sellers</h2>",
        _sellers_table(stats, group, sort),
        "<h2>Open alerts</h2>",
        _table(
            "alerts",
            "<tr><th>Kind</th><th>Subject</th><th>Message</th><th>At</th></tr>",
            map(_alert_row, alerts),
            "No open alerts.",
        ),
        "<h2>Closing soon, not sent</h2>",
        _table(
            "closing",
            "<tr><th>Order</th><th>State</th><th>Window ends</th></tr>",
            map(_closing_row, closing),
            "No order closes soon.",
        ),
        "<h2>Recent outcomes</h2>",
        _table(
            "recent",
            "<tr><th>Order</th><th>From</th><th>To</th><th>Reason</th><th>At</th></tr>",
            map(_recent_row, recent),
            "No outcomes yet.",
        ),
    ]
    return _page("Overview", "".join(body))


# ------------------------------------------------------------------------------------------------------------ order


ORDER_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("order_key", ("order_key",)),
    ("seller_id", ("seller_id",)),
    ("order_id", ("order_id",)),
    ("marketplace_id", ("marketplace_id",)),
    ("fulfillment", ("fulfillment",)),
    ("state", ("state",)),
    ("amazon_status", ("amazon_status",)),
    ("window_start", ("window", "start")),
    ("window_end", ("window", "end")),
    ("window_estimated", ("window", "estimated")),
    ("next_due", ("next_due",)),
    ("lease_id", ("lease", "id")),
    ("lease_expires_at", ("lease", "expires_at")),
    ("commands_issued", ("commands_issued",)),
    ("checks", ("checks",)),
    ("failures", ("failures",)),
    ("maybe_sent", ("maybe_sent",)),
    ("last_reason", ("last_reason",)),
    ("last_request_id", ("last_request_id",)),
    ("created_at", ("created_at",)),
    ("updated_at", ("updated_at",)),
)
HISTORY_FIELDS: tuple[str, ...] = ("at", "source", "dest", "trigger", "reason", "request_id")


def _order_facts(order: Row) -> str:
    shown = {path[0] for _, path in ORDER_FIELDS} | {"history"}
    facts = [(name, _get(order, *path)) for name, path in ORDER_FIELDS]
    facts += [(k, v) for k, v in sorted(order.items()) if k not in shown and not isinstance(v, (Mapping, list))]
    rows = (
        f'<tr><th>{escape(name.replace("_", " "))}</th><td data-field="{_attr(name)}">{_text(value)}</td></tr>'
        for name, value in facts
    )
    return _table("order", "", rows, "")


def _history_row(entry: Row) -> str:
    cells = "".join(f'<td data-field="{name}">{_text(entry.get(name))}</td>' for name in HISTORY_FIELDS)
    return f'<tr data-testid="history-row">{cells}</tr>'


def _actions(seller_id: str, order_id: str, csrf: str | None) -> str:
    hidden = f'<input type="hidden" name="csrf" value="{_attr(csrf)}">' if csrf else ""
    forms = (
        f'<form class="action" method="post" action="{_attr(action_url(seller_id, order_id, action))}" '
        f'data-action="{action}">{hidden}<label>Note <input type="text" name="note" maxlength="500"></label> '
        f'<button type="submit" data-testid="action-{action}">{escape(label)}</button></form>'
        for action, label in ACTIONS
    )
    return f'<div data-testid="actions">{"".join(forms)}</div>'


def render_order(order: Row, *, notice: str | None = None, error: str | None = None, csrf: str | None = None) -> str:
    """One order (``GET /orders/{seller}/{order}``): its facts, its history, and forms for the manual actions.

    ``notice`` / ``error`` report the outcome of an action just taken; ``csrf``, when given, goes into every form as
    a hidden ``csrf`` field."""
    seller_id = str(order.get("seller_id") or "")
    order_id = str(order.get("order_id") or "")
    key = str(order.get("order_key") or f"{seller_id}/{order_id}")
    history = order.get("history") or ()
    head = "<tr>" + "".join(f"<th>{name}</th>" for name in HISTORY_FIELDS) + "</tr>"
    body = [
        f'<p class="notice" data-testid="notice">{escape(notice)}</p>' if notice else "",
        f'<p class="error" data-testid="error">{escape(error)}</p>' if error else "",
        f"<p>Seller {_link(seller_url(seller_id), seller_id, data_testid='seller-link')}</p>",
        _order_facts(order),
        "<h2>Actions</h2>",
        _actions(seller_id, order_id, csrf),
        "<h2>History</h2>",
        _table("history", head, map(_history_row, history), "No history."),
    ]
    return _page(f"Order {key}", "".join(body))


# ----------------------------------------------------------------------------------------------------------- seller


def _funnel_row(label: str, scope: Row) -> str:
    mp = _attr(label)
    cells = [f'<th data-marketplace="{mp}">{escape(label)}</th>']
    for field in FUNNEL_FIELDS:
        value = _int(_get(scope, "funnel", field))
        cells.append(f'<td class="n" data-marketplace="{mp}" data-field="{field}">{value}</td>')
    for window in ("1d", "7d", "30d"):
        ratio = _get(scope, "coverage", window, "ratio")
        cells.append(
            f'<td class="n" data-marketplace="{mp}" data-field="coverage_{window}" data-value="{_attr(ratio)}">'
            f"{_ratio(ratio)}</td>"
        )
    closing = _int(scope.get("closing_48h_unsent"))
    cells.append(f'<td class="n" data-marketplace="{mp}" data-field="closing_48h">{closing}</td>')
    return f'<tr data-marketplace="{mp}">{"".join(cells)}</tr>'


def _funnels(stats: Row) -> str:
    names = ["Marketplace", *FUNNEL_FIELDS, "coverage 1d", "coverage 7d", "coverage 30d", "closing 48h"]
    head = "<tr>" + "".join(f"<th>{escape(name.replace('_', ' '))}</th>" for name in names) + "</tr>"
    marketplaces = stats.get("marketplaces") or {}
    rows = [_funnel_row("all", stats)] + [_funnel_row(str(mp), marketplaces[mp]) for mp in sorted(marketplaces)]
    return _table("funnel", head, rows, "")


def _activity(stats: Row) -> str:
    cards = [
        _card(f"{kind} {window}", "data-total", f"{kind}_{window}", str(_int(_get(stats, kind, window))))
        for kind in ("sends", "throttled")
        for window in ("1h", "1d")
    ]
    kinds = ", ".join(str(kind) for kind in stats.get("attention") or ())
    cards.append(_card("attention", "data-total", "attention", escape(kinds) or MISSING))
    return f'<div class="cards" data-testid="activity">{"".join(cards)}</div>'


def _orders_row(seller_id: str, order: Row) -> str:
    key = str(order.get("order_key") or f"{seller_id}/{order.get('order_id')}")
    cells = [f'<td data-field="order">{_order_link(key, seller_id, order.get("order_id"))}</td>']
    cells += [f'<td data-field="{name}">{_text(order.get(name))}</td>' for name in ("marketplace_id", "state")]
    cells += [f'<td data-field="{name}">{_time(order.get(name))}</td>' for name in ("window_end", "next_due")]
    return f'<tr data-order="{_attr(key)}">{"".join(cells)}</tr>'


def _orders_page(seller_id: str, orders: Row) -> str:
    head = "<tr><th>Order</th><th>Marketplace</th><th>State</th><th>Window ends</th><th>Next check</th></tr>"
    rows = (_orders_row(seller_id, order) for order in orders.get("orders") or ())
    table = _table("orders", head, rows, "No orders.")
    cursor = orders.get("next")
    if cursor:
        href = f"{seller_url(seller_id)}?{urlencode({'after': str(cursor)})}"
        table += f"<p>{_link(href, 'Next page', data_testid='next-page')}</p>"
    return table


def render_seller(stats: Row, orders: Row) -> str:
    """One seller: its funnel in total and per marketplace (``GET /sellers/{seller}/stats``) and a page of its orders
    (``GET /sellers/{seller}/orders``), with a link to the next page."""
    seller_id = str(stats.get("seller_id") or orders.get("seller_id") or "")
    name = str(stats.get("name") or seller_id)
    body = [
        f'<p data-testid="seller">{_text(name)} (<span data-field="seller_id">{_text(seller_id)}</span>), group '
        f'<span data-field="group">{_text(stats.get("group"))}</span></p>',
        _activity(stats),
        "<h2>Funnel</h2>",
        _funnels(stats),
        "<h2>Orders</h2>",
        _orders_page(seller_id, orders),
    ]
    return _page(f"Seller {name}", "".join(body))
