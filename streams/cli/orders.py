"""``solicit orders show|skip|send-now|recheck SELLER/ORDER`` and ``solicit stats [SELLER]``: the web API from the
command line (any worker answers; ``SOLICIT_WEB__CLIENT_URL``, token ``SOLICIT_WEB__CLIENT_TOKEN`` or the first of
``SOLICIT_WEB__TOKENS``).

Output is for people (``--json`` for the API's own answer). Exit codes: 0 done; 1 the API refused (unknown order,
an action the order's state does not allow) or could not be reached; 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from streams.cli.shell import EXIT_OK, CommandError, ConfigurationError, load_settings
from streams.settings import Settings

ACTIONS = ("skip", "send-now", "recheck")


def register(subparsers: Any) -> None:
    """Add ``orders`` and ``stats`` to the ``solicit`` parser."""
    orders = subparsers.add_parser("orders", help="show an order, or skip / send now / re-check it (web API)")
    actions = orders.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="an order's state, window, next check and history with reasons")
    show.add_argument("key", metavar="SELLER/ORDER")
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    show.set_defaults(run=lambda args: _run(args, show_order))
    for action in ACTIONS:
        act = actions.add_parser(action, help=f"{action} the order (recorded with your token's name and the note)")
        act.add_argument("key", metavar="SELLER/ORDER")
        act.add_argument("--note", default="", help="why (recorded in the order's history)")
        act.add_argument("--json", action="store_true", help="print the API's JSON")
        act.set_defaults(run=lambda args: _run(args, act_on_order))
    stats = subparsers.add_parser("stats", help="the funnel of every seller, or of one (web API)")
    stats.add_argument("seller_id", nargs="?", metavar="SELLER")
    stats.add_argument("--json", action="store_true", help="print the API's JSON")
    stats.set_defaults(run=lambda args: _run(args, show_stats))


def _run(args: argparse.Namespace, command: Any) -> int:
    settings = load_settings()
    token = settings.web.token_for_client()
    if not token:
        raise ConfigurationError(["SOLICIT_WEB__CLIENT_TOKEN (or SOLICIT_WEB__TOKENS): no token to present"])
    with httpx.Client(
        base_url=settings.web.client_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        return int(command(args, client, settings))


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CommandError(f"the web API at {client.base_url} cannot be reached: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = {"error": f"HTTP {response.status_code}", "detail": response.text[:200]}
    return response.status_code, body


def _split(key: str) -> tuple[str, str]:
    seller_id, slash, order_id = key.partition("/")
    if not slash or not seller_id or not order_id:
        raise CommandError(f"{key!r} is not SELLER/ORDER", code=2)
    return seller_id, order_id


def _fail(status: int, body: Any) -> CommandError:
    detail = body.get("detail") or body.get("reason") or "" if isinstance(body, dict) else ""
    return CommandError(f"{body.get('error', f'HTTP {status}')}: {detail}".rstrip(": "))


def show_order(args: argparse.Namespace, client: httpx.Client, settings: Settings) -> int:
    seller_id, order_id = _split(args.key)
    status, order = _call(client, "GET", f"/orders/{seller_id}/{order_id}")
    if status != 200:
        raise _fail(status, order)
    print(json.dumps(order, indent=2) if args.json else format_order(order))
    return EXIT_OK


def format_order(order: dict[str, Any]) -> str:
    window = order.get("window", {})
    estimated = " (estimated)" if window.get("estimated") else ""
    lines = [
        f"{order['order_key']}  {order['state']}  ({order.get('marketplace_id')}, {order.get('fulfillment')})",
        f"  window      {window.get('start')} .. {window.get('end')}{estimated}",
        f"  next check  {order.get('next_due') or '-'}",
        f"  lease       {order.get('lease', {}).get('id')} until {order.get('lease', {}).get('expires_at') or '-'}",
        f"  last        {order.get('last_reason') or '-'} (request {order.get('last_request_id') or '-'})",
        "  history",
    ]
    for entry in order.get("history", []):
        request = f" (request {entry['request_id']})" if entry.get("request_id") else ""
        lines.append(
            f"    {entry['at']}  {entry['source']} -> {entry['dest']}  [{entry['trigger']}] {entry['reason']}{request}"
        )
    return "\n".join(lines)


def act_on_order(args: argparse.Namespace, client: httpx.Client, settings: Settings) -> int:
    seller_id, order_id = _split(args.key)
    status, body = _call(client, "POST", f"/orders/{seller_id}/{order_id}/{args.action}", json={"note": args.note})
    if args.json:
        print(json.dumps(body, indent=2))
    if status == 200:
        if not args.json:
            print(f"{body['order_key']}: {args.action} accepted ({body['state']}: {body['reason']})")
        return EXIT_OK
    if status == 409:
        raise CommandError(f"{body.get('order_key', args.key)}: {args.action} refused: {body.get('reason')}")
    raise _fail(status, body)


def show_stats(args: argparse.Namespace, client: httpx.Client, settings: Settings) -> int:
    path = f"/sellers/{args.seller_id}/stats" if args.seller_id else "/stats"
    status, body = _call(client, "GET", path)
    if status != 200:
        raise _fail(status, body)
    if args.json:
        print(json.dumps(body, indent=2))
    elif args.seller_id:
        print(format_table([body]))
    else:
        print(format_table(body["sellers"], body["totals"]))
        if not body.get("complete", True):
            print("(partial: a worker did not answer or a partition is still recovering)")
    return EXIT_OK


COLUMNS = ("received", "shipped", "waiting", "eligible", "sent", "skipped", "expired", "canceled", "failed")


def format_table(sellers: list[dict[str, Any]], totals: dict[str, Any] | None = None) -> str:
    head = f"{'SELLER':<16} {'NAME':<20} " + " ".join(f"{c.upper():>8}" for c in COLUMNS) + "  COVER7D  CLOSING48H"
    rows = [head]
    for seller in sellers:
        rows.append(_row(seller.get("seller_id", ""), seller.get("name") or "", seller))
    if totals is not None:
        rows.append(_row("TOTAL", "", totals))
    return "\n".join(rows)


def _row(seller_id: str, name: str, data: dict[str, Any]) -> str:
    funnel = data["funnel"]
    ratio = data["coverage"]["7d"]["ratio"]
    cover = "-" if ratio is None else f"{ratio * 100:.1f}%"
    numbers = " ".join(f"{funnel.get(c, 0):>8}" for c in COLUMNS)
    return f"{seller_id:<16} {name[:20]:<20} {numbers}  {cover:>7}  {data['closing_48h_unsent']:>10}"
