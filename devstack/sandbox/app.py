"""The sandbox's HTTP surface (aiohttp): SP-API and LWA paths as Amazon has them, plus the ``/_sandbox/`` admin API.

Handlers only translate HTTP to :class:`~devstack.sandbox.state.SandboxState` calls and back; the rules live
there. SP-API paths, methods and the ``marketplaceIds`` query parameter are exactly those of the official model
(``devstack/spapi_models/solicitations.json``); LWA is at ``/auth/o2/token`` as on ``api.amazon.com``. Orders API v0
``getOrders`` (``GET /orders/v0/orders``, ``ordersV0.json``) lists the same orders: :mod:`.orders`.

Admin API (JSON in, JSON out; separate from the SP-API paths so a client can never reach it by mistake):

* ``POST /_sandbox/sellers``  one or a list of ``{seller_id, refresh_token, rate?, burst?}``
* ``POST /_sandbox/sellers/{seller_id}/revoke``  the seller de-authorizes the app (``invalid_grant`` from then on)
* ``POST /_sandbox/orders``  one or a list of ``{seller_id, order_id, marketplace_id, earliest_delivery,
  latest_delivery, status}`` (insert or update); ``GET /_sandbox/orders`` lists them with ``solicited``
* ``GET /_sandbox/ledger``  ``{"calls": [...], "solicitations": [...]}``
* ``GET|POST /_sandbox/faults``  ``{error_rate, ambiguous_rate, latency}`` (POST merges) and ``scripted``: a list
  of one-shot faults ``{fault, operation?, order_id?, delay?}``
* ``POST /_sandbox/reset``  back to the starting state;  ``GET /_sandbox/health``

Logs name the operation, seller, order, status and request id of each call; never a token, header or body.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from . import orders as orders_api
from .model import FaultConfig, OrderIn, ScriptedFault, SellerIn
from .notifications_http import add_notification_routes
from .protocol import Reply, RequestFacts
from .state import SandboxState

__all__ = ["STATE_KEY", "build_app"]

logger = logging.getLogger("devstack.sandbox")

STATE_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)

_GET_PATH = "/solicitations/v1/orders/{amazonOrderId}"
_CREATE_PATH = "/solicitations/v1/orders/{amazonOrderId}/solicitations/productReviewAndSellerFeedback"
_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # above the sandbox's own 413 limit, so that limit is the one that answers

_sellers_adapter: TypeAdapter[SellerIn | list[SellerIn]] = TypeAdapter(SellerIn | list[SellerIn])
_orders_adapter: TypeAdapter[OrderIn | list[OrderIn]] = TypeAdapter(OrderIn | list[OrderIn])


class _FaultUpdate(BaseModel):
    error_rate: float | None = None
    ambiguous_rate: float | None = None
    latency: float | None = None
    scripted: list[ScriptedFault] = []


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


async def _facts(request: web.Request) -> RequestFacts:
    body = await request.read()
    return RequestFacts(
        method=request.method,
        path=request.path,
        query={key: request.query.getall(key) for key in request.query},
        access_token=request.headers.get("x-amz-access-token"),
        user_agent=request.headers.get("user-agent"),
        content_type=request.headers.get("content-type"),
        body_bytes=len(body),
    )


async def _respond(state: SandboxState, reply: Reply) -> web.Response:
    call = state.calls[-1]
    logger.info(
        "%s seller=%s order=%s status=%s request_id=%s%s",
        call.operation,
        call.seller_id,
        call.order_id,
        call.status,
        call.request_id,
        f" fault={call.fault}" if call.fault else "",
    )
    if reply.delay > 0:
        await asyncio.sleep(reply.delay)
    return web.Response(
        body=json.dumps(reply.body).encode(),
        status=reply.status,
        headers={**reply.headers, "Content-Type": reply.content_type},
    )


async def _get_actions(request: web.Request) -> web.Response:
    state = _state(request)
    facts = await _facts(request)
    return await _respond(state, state.solicitation_actions(request.match_info["amazonOrderId"], facts))


async def _create(request: web.Request) -> web.Response:
    state = _state(request)
    facts = await _facts(request)
    return await _respond(state, state.create_solicitation(request.match_info["amazonOrderId"], facts))


async def _unknown_solicitations_path(request: web.Request) -> web.Response:
    # An order id containing "/" (or a wrong method) matches no operation; Amazon answers such requests with an
    # error, never with an HTML page, so the sandbox answers a model-shaped 404 rather than aiohttp's text one.
    state = _state(request)
    facts = await _facts(request)
    return await _respond(state, state.unknown_path(facts))


async def _get_orders(request: web.Request) -> web.Response:
    state = _state(request)
    facts = await _facts(request)
    return await _respond(state, orders_api.get_orders(state, facts))


async def _unknown_orders_path(request: web.Request) -> web.Response:
    state = _state(request)
    facts = await _facts(request)
    return await _respond(state, orders_api.unknown_orders_path(state, facts))


async def _lwa_token(request: web.Request) -> web.Response:
    state = _state(request)
    facts = await _facts(request)
    form: dict[str, str] = {}
    if (facts.content_type or "").startswith("application/x-www-form-urlencoded"):
        posted = await request.post()
        form = {key: value for key, value in posted.items() if isinstance(value, str)}
    return await _respond(state, state.lwa_token(form, facts))


# --- admin ---------------------------------------------------------------------------------------------


def _bad_request(message: str, errors: Any = None) -> web.Response:
    return web.json_response({"error": message, "details": errors}, status=400)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        body = json.dumps({"error": f"body is not JSON: {exc}"})
        raise web.HTTPBadRequest(text=body, content_type="application/json") from None


def _validation_errors(exc: ValidationError) -> list[Any]:
    # Without the input values: a rejected seller entry must not echo its refresh token.
    return list(exc.errors(include_url=False, include_input=False, include_context=False))


async def _add_sellers(request: web.Request) -> web.Response:
    try:
        parsed = _sellers_adapter.validate_python(await _json_body(request))
    except ValidationError as exc:
        return _bad_request("invalid seller", _validation_errors(exc))
    sellers = parsed if isinstance(parsed, list) else [parsed]
    for seller in sellers:
        _state(request).add_seller(seller)
    return web.json_response({"sellers": len(sellers)})


async def _revoke_seller(request: web.Request) -> web.Response:
    seller_id = request.match_info["seller_id"]
    if not _state(request).revoke_seller(seller_id):
        return web.json_response({"error": f"unknown seller {seller_id}"}, status=404)
    return web.json_response({"revoked": seller_id})


async def _add_orders(request: web.Request) -> web.Response:
    try:
        parsed = _orders_adapter.validate_python(await _json_body(request))
    except ValidationError as exc:
        return _bad_request("invalid order", _validation_errors(exc))
    orders = parsed if isinstance(parsed, list) else [parsed]
    return web.json_response({"orders": _state(request).add_orders(orders)})


async def _list_orders(request: web.Request) -> web.Response:
    return web.json_response({"orders": _state(request).orders()})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


async def _ledger(request: web.Request) -> web.Response:
    state = _state(request)
    body = {
        "calls": [dataclasses.asdict(call) for call in state.calls],
        "solicitations": [dataclasses.asdict(row) for row in state.solicitations],
        "destinations": [dataclasses.asdict(row) for row in state.notifications.destinations.values()],
        "subscriptions": [dataclasses.asdict(row) for row in state.notifications.subscriptions.values()],
    }
    return web.Response(text=json.dumps(body, default=_jsonable), content_type="application/json")


def _faults_view(state: SandboxState) -> dict[str, Any]:
    return {
        **state.faults.model_dump(),
        "scripted": [fault.model_dump() for fault in state.scripted_faults()],
    }


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(_faults_view(_state(request)))


async def _set_faults(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        update = _FaultUpdate.model_validate(await _json_body(request))
        changes = update.model_dump(exclude_none=True, exclude={"scripted"})
        faults = FaultConfig.model_validate({**state.faults.model_dump(), **changes})
    except ValidationError as exc:
        return _bad_request("invalid faults", _validation_errors(exc))
    state.set_faults(faults)
    state.script_faults(update.scripted)
    return web.json_response(_faults_view(state))


async def _reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return web.json_response({"reset": True})


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(state: SandboxState) -> web.Application:
    """The aiohttp application serving ``state``."""
    app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
    app[STATE_KEY] = state
    app.router.add_get(_GET_PATH, _get_actions, allow_head=False)
    app.router.add_post(_CREATE_PATH, _create)
    app.router.add_post("/auth/o2/token", _lwa_token)
    app.router.add_route("*", "/solicitations/{tail:.*}", _unknown_solicitations_path)
    add_notification_routes(app, state)
    app.router.add_get(orders_api.GET_ORDERS_PATH, _get_orders, allow_head=False)
    app.router.add_route("*", "/orders/{tail:.*}", _unknown_orders_path)
    app.router.add_post("/_sandbox/sellers", _add_sellers)
    app.router.add_post("/_sandbox/sellers/{seller_id}/revoke", _revoke_seller)
    app.router.add_post("/_sandbox/orders", _add_orders)
    app.router.add_get("/_sandbox/orders", _list_orders)
    app.router.add_get("/_sandbox/ledger", _ledger)
    app.router.add_get("/_sandbox/faults", _get_faults)
    app.router.add_post("/_sandbox/faults", _set_faults)
    app.router.add_post("/_sandbox/reset", _reset)
    app.router.add_get("/_sandbox/health", _health)
    return app
