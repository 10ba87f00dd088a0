"""The worker's HTTP API on Faust's web server (docs/web-api.md): orders, statistics, manual actions, health.

:class:`Api` holds the handlers; :func:`register_api` mounts them. Each handler is short: authenticate, then either
answer from this worker's state (:mod:`streams.web.queries`), forward to the owner of the order's partition, or ask
every worker and combine (:mod:`streams.web.peers`). Faust's own table views are switched off
(:func:`streams.app.build_app`): nothing is served that this module does not decide.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web as aioweb
from faust.web import View

from connectors.kafka import KafkaUnusable, check_connection
from statemachine import ManualAction, ManualActionKind, OrderRecord, order_key
from streams.alerting import SellerStats
from streams.orders import partition_for
from streams.stats import AlertWindows, empty_summary, merge, with_ratios
from streams.web.auth import COOKIE, Tokens, presented_token
from streams.web.peers import FORWARDED, Peers
from streams.web.queries import DEFAULT_PAGE, MAX_PAGE, list_orders, order_view, read_order

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
ACTIONS = {"skip": ManualActionKind.SKIP, "send-now": ManualActionKind.SEND_NOW, "recheck": ManualActionKind.RECHECK}
READY_CACHE_S = 10.0
RECENT_SHOWN = 25
"""Outcomes shown as "recent" (the newest across the group)."""


class ApiError(Exception):
    """An answer other than 200: status, what, why (JSON ``{"error", "detail"}``)."""

    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


@dataclass
class Api:
    """The handlers, bound to one worker (``streams.app.Worker``; typed loosely to keep this module importable
    without building one)."""

    worker: Any
    tokens: Tokens
    peers: Peers
    extras: dict[str, Any] = field(default_factory=dict)
    """Optional parts: ``metrics`` (``render() -> (bytes, content type)``), ``alerts`` (``open_alerts()``)."""
    _kafka_ok_at: float = 0.0

    # --- authentication -------------------------------------------------------------------------------------

    def actor(self, request: aioweb.Request) -> str:
        """The name of the caller's token; :class:`ApiError` 401 without a valid one."""
        who = self.tokens.who(presented_token(request.headers.get("Authorization"), request.cookies.get(COOKIE)))
        if who is None:
            raise ApiError(401, "unauthorized", "a valid bearer token is required")
        return who

    # --- health ---------------------------------------------------------------------------------------------

    async def healthz(self, request: aioweb.Request) -> dict[str, Any]:
        return {"status": "ok"}

    async def readyz(self, request: aioweb.Request) -> dict[str, Any]:
        checks = await self.readiness()
        if not all(checks.values()):
            raise ApiError(503, "not ready", ", ".join(name for name, ok in checks.items() if not ok))
        return {"ready": True, "checks": checks}

    async def readiness(self) -> dict[str, bool]:
        w, app = self.worker, self.worker.app
        active = set(w.active_partitions())
        return {
            "registry_loaded": w.ready.is_set(),
            "partitions_assigned": not app.rebalancing and bool(app.consumer.assignment()),
            "recovery_done": not app.in_recovery,
            "counters_complete": active <= w.stats.counted(),
            "kafka_reachable": await self._kafka_reachable(),
        }

    async def _kafka_reachable(self) -> bool:
        if time.monotonic() - self._kafka_ok_at < READY_CACHE_S:
            return True
        try:
            await check_connection(self.worker.settings.kafka, timeout=3.0)
        except KafkaUnusable:
            return False
        self._kafka_ok_at = time.monotonic()
        return True

    async def metrics(self, request: aioweb.Request) -> aioweb.Response:
        metrics = self.extras.get("metrics")
        if metrics is None:
            raise ApiError(404, "no metrics", "metrics are not enabled on this worker")
        body, content_type = metrics.render()
        return aioweb.Response(body=body, headers={"Content-Type": content_type})

    # --- statistics -----------------------------------------------------------------------------------------

    async def local_stats(self, request: aioweb.Request) -> dict[str, Any]:
        """This worker's share (asked by the other workers)."""
        self.actor(request)
        return self.local_share()

    def local_share(self) -> dict[str, Any]:
        w = self.worker
        now = w.clock.now()
        sellers: dict[str, Any] = {}
        alerts = w.settings.alerts
        windows = AlertWindows(closing_hours=alerts.deadline_hours, recent_days=alerts.no_sends_days)
        for seller_id, marketplaces in w.stats.snapshot(now, windows).items():
            sellers.setdefault(seller_id, {})["marketplaces"] = marketplaces
        for seller_id, recent in w.watch.activity.snapshot(now).items():
            sellers.setdefault(seller_id, {}).update(recent)
        complete = set(w.active_partitions()) <= w.stats.counted()
        recent = [change.model_dump(mode="json") for change in w.watch.recent_changes]
        return {"worker": w.settings.worker.id, "complete": complete, "sellers": sellers, "recent": recent}

    async def group_shares(self, request: aioweb.Request | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Every worker's share (this one's included), and whether all answered with complete counters."""
        headers = {"Authorization": f"Bearer {self.tokens.internal() or ''}"}
        shares, missing = await self.peers.gather_json("/internal/stats", headers)
        shares.append(self.local_share())
        return shares, not missing and all(share.get("complete") for share in shares)

    async def stats(self, request: aioweb.Request) -> dict[str, Any]:
        self.actor(request)
        return await self.group_stats()

    async def group_stats(self) -> dict[str, Any]:
        """``GET /stats``: every seller's statistics summed across the group."""
        shares, complete = await self.group_shares()
        sellers = self.combine(shares)
        totals = merge(_totals_only(s) for s in sellers.values()) or _totals_only(self.describe("", {}))
        recent = sorted((c for share in shares for c in share.get("recent", [])), key=lambda c: c["at"], reverse=True)
        return {
            "as_of": self.worker.clock.now().isoformat(),
            "workers": len(shares),
            "complete": complete,
            "totals": with_ratios(totals),
            "sellers": [sellers[seller_id] for seller_id in sorted(sellers)],
            "recent": recent[:RECENT_SHOWN],
        }

    async def seller_stats(self, request: aioweb.Request, seller_id: str) -> dict[str, Any]:
        self.actor(request)
        known = self.worker.directory.get(seller_id)
        shares, complete = await self.group_shares()
        sellers = self.combine(shares)
        if seller_id not in sellers and known is None:
            raise ApiError(404, "unknown seller", f"no seller {seller_id!r} in the registry")
        found = sellers.get(seller_id) or self.describe(seller_id, {})
        found["complete"] = complete
        return found

    def combine(self, shares: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Sum the workers' shares per seller; every seller of the registry appears (zeros if it has no orders)."""
        raw: dict[str, list[dict[str, Any]]] = {seller: [] for seller in self.worker.directory}
        for seller_id, parts in _by_seller(shares).items():
            raw.setdefault(seller_id, []).extend(parts)
        return {seller_id: self.describe(seller_id, merge(parts)) for seller_id, parts in raw.items()}

    def describe(self, seller_id: str, summed: dict[str, Any]) -> dict[str, Any]:
        """One seller's statistics as the API shows them (docs/web-api.md)."""
        marketplaces = {
            m: with_ratios({k: v for k, v in s.items() if k != "alert"})
            for m, s in sorted(summed.get("marketplaces", {}).items())
        }
        overall = with_ratios(merge(marketplaces.values())) if marketplaces else with_ratios(empty_summary())
        funnel = {**empty_summary()["funnel"], **overall.get("funnel", {})}
        funnel["dead_lettered"] = summed.get("dead_lettered", 0)
        record = self.worker.directory.get(seller_id)
        return {
            "seller_id": seller_id,
            "name": record.name if record is not None else None,
            "group": record.group if record is not None else None,
            "funnel": funnel,
            "coverage": overall.get("coverage", empty_summary()["coverage"]),
            "sends": {"1h": 0, "1d": 0, **summed.get("sends", {})},
            "throttled": {"1h": 0, "1d": 0, **summed.get("throttled", {})},
            "closing_48h_unsent": overall.get("closing_48h_unsent", 0),
            "past_window_unsent": overall.get("past_window_unsent", 0),
            "marketplaces": marketplaces,
            "attention": self.attention(seller_id),
        }

    async def seller_signals(self, owned: Callable[[str], bool]) -> list[SellerStats]:
        """The group's counters of the sellers ``owned`` here, as the alerts engine reads them."""
        shares, _complete = await self.group_shares()
        found: dict[str, SellerStats] = {}
        for seller_id in self.worker.directory:
            if owned(seller_id):
                found[seller_id] = SellerStats(seller_id, closing_unsent=0, eligible_recent=0, sent_recent=0)
        for seller_id, parts in _by_seller(shares).items():
            if seller_id in found:
                alert = merge(m.get("alert", {}) for p in parts for m in p.get("marketplaces", {}).values())
                found[seller_id] = SellerStats(
                    seller_id,
                    closing_unsent=alert.get("closing", 0),
                    eligible_recent=alert.get("stale", 0) if self.sending(seller_id) else 0,
                    sent_recent=alert.get("sent", 0),
                )
        return list(found.values())

    def sending(self, seller_id: str) -> bool:
        """Whether the seller is meant to send (not paused, not dry run): only then is "no sends" a problem."""
        record = self.worker.directory.get(seller_id)
        return record is not None and not record.policy.paused and not record.policy.dry_run

    def attention(self, seller_id: str) -> list[str]:
        alerts = self.extras.get("alerts")
        if alerts is None:
            return []
        return sorted({a.kind.value for a in alerts.open_alerts() if a.seller_id == seller_id})

    async def forecast(self, request: aioweb.Request, seller_id: str) -> dict[str, Any]:
        self.actor(request)
        days = _int_param(request, "days", 14, 1, 60)
        w = self.worker
        local = w.stats.forecast(seller_id, w.clock.now(), days)
        if FORWARDED in request.headers:
            return {"seller_id": seller_id, "days": local}
        shares, missing = await self.peers.gather_json(f"/sellers/{seller_id}/forecast?days={days}", request.headers)
        summed = merge([local, *(share.get("days", {}) for share in shares)])
        capacity = self.capacity_per_day(seller_id)
        return {
            "seller_id": seller_id,
            "capacity_per_day": capacity,
            "complete": not missing,
            "days": [{"date": day, "due": n, "over_capacity": n > capacity} for day, n in sorted(summed.items())],
        }

    def capacity_per_day(self, seller_id: str) -> int:
        """Orders the seller's quota can carry in a business day: one check and one create per order at the
        client's rate (Amazon's default 1 request/s per operation), over the real seconds a business day lasts."""
        w = self.worker
        real_day = w.clock.real_seconds(timedelta(days=1))
        return int(real_day * w.settings.spapi.rate)

    # --- orders ---------------------------------------------------------------------------------------------

    async def order(self, request: aioweb.Request, seller_id: str, order_id: str) -> Any:
        self.actor(request)
        forwarded = await self.to_owner(request, seller_id, order_id)
        if forwarded is not None:
            return forwarded
        record, partition = self.local_record(seller_id, order_id)
        return order_view(record, partition)

    def local_record(self, seller_id: str, order_id: str) -> tuple[OrderRecord, int]:
        w = self.worker
        key = order_key(seller_id, order_id)
        partition = partition_for(key.encode(), w.settings.kafka.partitions)
        if partition not in w.active_partitions():
            raise ApiError(503, "not ready", f"partition {partition} is moving between workers; try again")
        record = read_order(w.orders_table, partition, key)
        if record is None:
            raise ApiError(404, "unknown order", f"no order {key!r}")
        return record, partition

    async def to_owner(self, request: aioweb.Request, seller_id: str, order_id: str) -> aioweb.Response | None:
        """Forward to the owner of the order's partition; None when this worker is the owner (or was asked by
        another worker)."""
        if FORWARDED in request.headers:
            return None
        owner = self.peers.owner(self.worker.orders_table.name, order_key(seller_id, order_id).encode())
        if self.peers.is_self(owner):
            return None
        assert owner is not None
        body = await request.read() if request.can_read_body else None
        answer = await self.peers.call(owner, request.method, request.path_qs, request.headers, body)
        return aioweb.Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    async def orders(self, request: aioweb.Request, seller_id: str) -> dict[str, Any]:
        self.actor(request)
        w = self.worker
        limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        hours = request.query.get("closing_within")
        closing = timedelta(hours=_float(hours, "closing_within")) if hours else None
        page = list_orders(
            w.orders_table,
            w.active_partitions(),
            seller_id=seller_id,
            now=w.clock.now(),
            state=request.query.get("state") or None,
            closing_within=closing,
            after=request.query.get("after") or None,
            limit=limit,
        )
        if FORWARDED not in request.headers:
            shares, _missing = await self.peers.gather_json(request.path_qs, request.headers)
            page = sorted([*page, *(o for share in shares for o in share["orders"])], key=lambda o: o["order_key"])
        page = page[:limit]
        more = len(page) == limit
        return {"seller_id": seller_id, "orders": page, "next": page[-1]["order_key"] if more else None}

    async def act(self, request: aioweb.Request, seller_id: str, order_id: str, action: str) -> Any:
        """A manual action: previewed with the core on the current record, then published as an order event (the
        orders agent applies it and writes the outcome: the audit trail). 409 when the core refuses it."""
        actor = self.actor(request)
        if action not in ACTIONS:
            raise ApiError(404, "unknown action", f"actions are {', '.join(ACTIONS)}")
        forwarded = await self.to_owner(request, seller_id, order_id)
        if forwarded is not None:
            return forwarded
        note = await _note(request)
        record, partition = self.local_record(seller_id, order_id)
        w = self.worker
        event = ManualAction(
            seller_id=seller_id,
            order_id=order_id,
            action=ACTIONS[action],
            actor=actor,
            note=note,
            requested_at=w.clock.now(),
        )
        decision = w.processor.preview(event, partition)
        await (await w.topics.publish(w.topics.events, event.key, event.model_dump_json().encode(), partition))
        changed = decision.events[0] if decision.events else None
        refused = changed is None or changed.source == changed.dest
        log.info("%s: manual %s by %s (%s)", event.key, action, actor, "refused" if refused else "accepted")
        answer = {
            "order_key": event.key,
            "action": action,
            "actor": actor,
            "accepted": not refused,
            "state": changed.dest.value if changed is not None else record.state.value,
            "reason": changed.reason if changed is not None else "nothing to do",
        }
        if refused:
            raise ApiError(409, "refused", json.dumps(answer))
        return answer

    async def alerts(self, request: aioweb.Request) -> dict[str, Any]:
        self.actor(request)
        engine = self.extras.get("alerts")
        found = engine.open_alerts() if engine is not None else []
        return {"open": [alert.model_dump(mode="json") for alert in found]}


def _by_seller(shares: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for share in shares:
        for seller_id, part in share.get("sellers", {}).items():
            found.setdefault(seller_id, []).append(part)
    return found


def _totals_only(seller: dict[str, Any]) -> dict[str, Any]:
    keys = ("funnel", "coverage", "sends", "throttled", "closing_48h_unsent", "past_window_unsent")
    return {k: seller[k] for k in keys}


def _int_param(request: aioweb.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad parameter", f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, "bad parameter", f"{name} must be between {low} and {high}")
    return value


def _float(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "bad parameter", f"{name} must be a number") from None
    if not 0 < value <= 24 * 90:
        raise ApiError(400, "bad parameter", f"{name} must be between 0 and 2160 hours")
    return value


async def _note(request: aioweb.Request) -> str:
    if not request.can_read_body:
        return ""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad body", 'the body must be JSON: {"note": "why"}') from None
    note = body.get("note", "") if isinstance(body, dict) else None
    if not isinstance(note, str) or len(note) > 500:
        raise ApiError(400, "bad body", "note must be a string of at most 500 characters")
    return note


def as_response(view: View, result: Any) -> Any:
    """A handler's result as a response: dicts as JSON, responses as they are."""
    if isinstance(result, aioweb.StreamResponse):
        return result
    return view.json(result)


def _error(view: View, exc: ApiError) -> Any:
    detail: Any = exc.detail
    if exc.error == "refused":
        return view.json(json.loads(exc.detail), status=409)
    return view.json({"error": exc.error, "detail": detail}, status=exc.status)


def _method(handler: Handler) -> Handler:
    async def method(self: View, request: aioweb.Request, **params: str) -> Any:
        try:
            return as_response(self, await handler(request, **params))
        except ApiError as exc:
            return _error(self, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("web API error on %s %s", request.method, request.path)
            return self.json({"error": "internal error", "detail": "see the worker's log"}, status=500)

    return method


def mount(app: Any, path: str, name: str, **handlers: Handler) -> None:
    """Serve ``handlers`` (by HTTP method name) at ``path``."""
    view = type(name, (View,), {method: _method(handler) for method, handler in handlers.items()})
    app.page(path, name=name)(view)


def register_api(api: Api) -> None:
    """Mount every endpoint of docs/web-api.md on the worker's Faust app."""
    app = api.worker.app
    mount(app, "/healthz", "healthz", get=api.healthz)
    mount(app, "/readyz", "readyz", get=api.readyz)
    mount(app, "/metrics", "metrics", get=api.metrics)
    mount(app, "/stats", "stats", get=api.stats)
    mount(app, "/internal/stats", "internal_stats", get=api.local_stats)
    mount(app, "/alerts", "alerts", get=api.alerts)
    mount(app, "/sellers/{seller_id}/stats", "seller_stats", get=api.seller_stats)
    mount(app, "/sellers/{seller_id}/orders", "seller_orders", get=api.orders)
    mount(app, "/sellers/{seller_id}/forecast", "seller_forecast", get=api.forecast)
    mount(app, "/orders/{seller_id}/{order_id}", "order", get=api.order)
    mount(app, "/orders/{seller_id}/{order_id}/{action}", "order_action", post=api.act)
