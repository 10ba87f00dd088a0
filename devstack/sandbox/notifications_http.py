"""The Notifications paths of the sandbox's HTTP surface: translation only, the rules are in :mod:`.notifications`.

Paths and methods exactly as in ``devstack/spapi_models/notifications.json``; any other request under
``/notifications/`` gets a model-shaped 404 (never aiohttp's text page). Logs name the operation, seller (none for
grantless calls), status and request id: never a token, header or body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from .protocol import Reply, RequestFacts
from .state import SandboxState

__all__ = ["add_notification_routes"]

logger = logging.getLogger("devstack.sandbox")

_DESTINATIONS = "/notifications/v1/destinations"
_DESTINATION = "/notifications/v1/destinations/{destinationId}"
_SUBSCRIPTION = "/notifications/v1/subscriptions/{notificationType}"
_SUBSCRIPTION_BY_ID = "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}"

Rule = Callable[[RequestFacts, Mapping[str, str], bytes], Reply]


def _facts(request: web.Request, body: bytes) -> RequestFacts:
    return RequestFacts(
        method=request.method,
        path=request.path,
        query={key: request.query.getall(key) for key in request.query},
        access_token=request.headers.get("x-amz-access-token"),
        user_agent=request.headers.get("user-agent"),
        content_type=request.headers.get("content-type"),
        body_bytes=len(body),
    )


def _handler(state: SandboxState, rule: Rule) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        reply = rule(_facts(request, body), request.match_info, body)
        call = state.calls[-1]
        logger.info(
            "%s seller=%s status=%s request_id=%s%s",
            call.operation,
            call.seller_id,
            call.status,
            call.request_id,
            f" fault={call.fault}" if call.fault else "",
        )
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        headers = {**reply.headers, "Content-Type": reply.content_type}
        return web.Response(body=json.dumps(reply.body).encode(), status=reply.status, headers=headers)

    return handle


def add_notification_routes(app: web.Application, state: SandboxState) -> None:
    """Register the six Notifications operations the sandbox serves, and the 404 for every other path."""
    rules = state.notifications
    routes: list[tuple[str, str, Rule]] = [
        ("GET", _DESTINATIONS, lambda facts, _match, _body: rules.get_destinations(facts)),
        ("POST", _DESTINATIONS, lambda facts, _match, body: rules.create_destination(facts, body)),
        ("DELETE", _DESTINATION, lambda facts, match, _body: rules.delete_destination(match["destinationId"], facts)),
        ("GET", _SUBSCRIPTION, lambda facts, match, _body: rules.get_subscription(match["notificationType"], facts)),
        (
            "POST",
            _SUBSCRIPTION,
            lambda facts, match, body: rules.create_subscription(match["notificationType"], facts, body),
        ),
        (
            "DELETE",
            _SUBSCRIPTION_BY_ID,
            lambda facts, match, _body: rules.delete_subscription(
                match["notificationType"], match["subscriptionId"], facts
            ),
        ),
    ]
    for method, path, rule in routes:
        app.router.add_route(method, path, _handler(state, rule))
    app.router.add_route(
        "*", "/notifications/{tail:.*}", _handler(state, lambda facts, _m, _b: rules.unknown_path(facts))
    )
