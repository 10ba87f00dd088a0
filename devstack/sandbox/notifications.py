"""The sandbox's Notifications rules: grantless LWA tokens, destinations and ORDER_CHANGE subscriptions.

Served operations (paths, methods and statuses of ``devstack/spapi_models/notifications.json``):
``getDestinations``, ``createDestination``, ``deleteDestination``, ``getSubscription``, ``createSubscription``,
``deleteSubscriptionById``. Facts from ``docs/amazon-facts.md`` §8; where Amazon is silent the choice is marked
*sandbox choice*. The rules share :class:`~.state.SandboxState`'s bookkeeping: its call ledger, buckets, seller
tokens, faults and clock; one sandbox serves one application, so destinations and subscriptions are that app's.

* LWA ``grant_type=client_credentials`` with a grantless ``scope`` gives a grantless token (``invalid_scope``
  otherwise). Grantless operations need such a token with scope ``sellingpartnerapi::notifications``; the two
  subscription operations that are not grantless need a seller's token. The wrong kind of token, like a missing,
  unknown or expired one, is 403 "Access to requested resource is denied." (*sandbox choice* of details).
* Then, as for Solicitations: the bucket of (seller, operation), or (``app:<client id>``, operation) for grantless
  calls, empty -> 429; injected 500/503; a body over ``max_body_bytes`` -> 413, a body that is not JSON -> 415.
* ``createDestination``: the ARN has a destination already -> 409 ``Conflict`` (Amazon's texts, docs#1800);
  ``deleteDestination`` of one that subscriptions use -> 403 "The requested action is forbidden." / "Destination has
  subscriptions" (docs#1800); unknown id -> 404.
* ``createSubscription``: unknown destination -> 400 (docs#1988's text); the seller has one for the type and
  version already -> 409 ``StateConflict`` (docs#3448); ``getSubscription`` without one -> 404;
  ``deleteSubscriptionById`` of an unknown id -> 404. Only ``ORDER_CHANGE`` 1.0 is known (*sandbox choice*), other
  types -> 400 (models#467's text).
* Scripted ``ambiguous`` faults on the two creates take effect, then answer 500, as for solicitations.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .notification_bodies import (
    Invalid,
    parse_destination_request,
    parse_subscription_request,
    unknown_type,
)
from .protocol import LWA_JSON, MESSAGES, Reply, RequestFacts
from .throttle import ServerBucket

if TYPE_CHECKING:
    from .state import SandboxState, _CallContext

__all__ = ["GRANTLESS_SCOPES", "SCOPE_NOTIFICATIONS", "LedgerDestination", "LedgerSubscription", "NotificationsRules"]

JSON = "application/json"
"""The model's only ``produces`` value, also on errors."""
SCOPE_NOTIFICATIONS = "sellingpartnerapi::notifications"
GRANTLESS_SCOPES = frozenset({SCOPE_NOTIFICATIONS, "sellingpartnerapi::migration"})

_TEXTS = {
    "invalid": "Request has missing or invalid parameters and cannot be parsed.",
    "destination_conflict": "The requested resource conflict with a resource in the server.",
    "state_conflict": "The resource specified conflicts with the current state.",
    "forbidden": "The requested action is forbidden.",
    "not_grantless": "This operation is grantless: use an LWA client_credentials token (scope {scope}).",
    "not_seller": "This operation needs a selling partner's access token, not a grantless one.",
}
"""Amazon's texts (docs#1800, docs#3448, models#4135) and the sandbox's own details for the wrong kind of token."""


@dataclass(frozen=True, slots=True)
class LedgerDestination:
    """A destination that exists now."""

    destination_id: str
    name: str
    arn: str
    request_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LedgerSubscription:
    """A subscription that exists now."""

    subscription_id: str
    seller_id: str
    notification_type: str
    payload_version: str
    destination_id: str
    processing_directive: dict[str, Any] | None
    request_id: str
    at: datetime

    def payload(self) -> dict[str, Any]:
        """The model's ``Subscription``."""
        body: dict[str, Any] = {
            "subscriptionId": self.subscription_id,
            "payloadVersion": self.payload_version,
            "destinationId": self.destination_id,
        }
        if self.processing_directive is not None:
            body["processingDirective"] = self.processing_directive
        return body


@dataclass(frozen=True, slots=True)
class _GrantlessGrant:
    scope: str
    expires_at: float


def _destination_payload(row: LedgerDestination) -> dict[str, Any]:
    return {"destinationId": row.destination_id, "name": row.name, "resource": {"sqs": {"arn": row.arn}}}


class NotificationsRules:
    """Destinations, subscriptions and grantless tokens of one sandbox (``state.notifications``)."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self.destinations: dict[str, LedgerDestination] = {}
        self.subscriptions: dict[str, LedgerSubscription] = {}
        self._grantless: dict[str, _GrantlessGrant] = {}

    def reset(self) -> None:
        """No destinations, subscriptions or grantless tokens."""
        self.destinations.clear()
        self.subscriptions.clear()
        self._grantless.clear()

    # --- LWA ---------------------------------------------------------------------------------------------------

    def grantless_token(self, ctx: _CallContext, form: Mapping[str, str]) -> Reply:
        """``grant_type=client_credentials`` (client id and secret already checked by the caller)."""
        state = self._state
        scope = form.get("scope", "")
        if scope not in GRANTLESS_SCOPES:
            error = {"error_description": "The request has an invalid parameter : scope", "error": "invalid_scope"}
            return state._finish(ctx, 400, error, LWA_JSON, error_code="invalid_scope", rate_header=False)
        access_token = "Atza|sandbox-grantless-" + uuid.uuid4().hex + uuid.uuid4().hex
        lifetime = state.config.token_lifetime
        self._grantless[access_token] = _GrantlessGrant(scope, state.clock.monotonic() + lifetime)
        body: dict[str, Any] = {
            "access_token": access_token,
            "scope": scope,
            "token_type": "bearer",
            "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
        }
        return state._finish(ctx, 200, body, LWA_JSON, error_code=None, rate_header=False)

    # --- operations --------------------------------------------------------------------------------------------

    def get_destinations(self, facts: RequestFacts) -> Reply:
        """``GET /notifications/v1/destinations`` (grantless)."""
        ctx = self._state._context("getDestinations", facts, order_id=None)
        early = self._admit(ctx, grantless=True)
        if early is not None:
            return early
        payload = [_destination_payload(row) for row in self.destinations.values()]
        return self._ok(ctx, {"payload": payload})

    def create_destination(self, facts: RequestFacts, body: bytes) -> Reply:
        """``POST /notifications/v1/destinations`` (grantless)."""
        ctx = self._state._context("createDestination", facts, order_id=None)
        early = self._admit(ctx, grantless=True)
        if early is not None:
            return early
        request = parse_destination_request(body)
        if isinstance(request, Invalid):
            return self._error(ctx, 400, "InvalidInput", _TEXTS["invalid"], request.details)
        if any(row.arn == request.arn for row in self.destinations.values()):
            details = f"A destination with arn {request.arn} already exists for the application {self._app}"
            return self._error(ctx, 409, "Conflict", _TEXTS["destination_conflict"], details)
        row = LedgerDestination(uuid.uuid4().hex, request.name, request.arn, ctx.request_id, self._state.clock.now())
        self.destinations[row.destination_id] = row
        return self._created(ctx, {"payload": _destination_payload(row)})

    def delete_destination(self, destination_id: str, facts: RequestFacts) -> Reply:
        """``DELETE /notifications/v1/destinations/{destinationId}`` (grantless)."""
        ctx = self._state._context("deleteDestination", facts, order_id=None)
        early = self._admit(ctx, grantless=True)
        if early is not None:
            return early
        if destination_id not in self.destinations:
            return self._error(ctx, 404, "NotFound", MESSAGES["not_found"])
        if any(row.destination_id == destination_id for row in self.subscriptions.values()):
            return self._error(ctx, 403, "Unauthorized", _TEXTS["forbidden"], "Destination has subscriptions")
        del self.destinations[destination_id]
        return self._ok(ctx, {})

    def get_subscription(self, notification_type: str, facts: RequestFacts) -> Reply:
        """``GET /notifications/v1/subscriptions/{notificationType}`` (seller token)."""
        ctx = self._state._context("getSubscription", facts, order_id=None)
        early = self._admit(ctx, grantless=False)
        if early is not None:
            return early
        versions = facts.query.get("payloadVersion", [])
        invalid = unknown_type(notification_type)
        if invalid is None and len(versions) > 1:
            invalid = Invalid("payloadVersion may be given once.")
        if invalid is not None:
            return self._error(ctx, 400, "InvalidInput", _TEXTS["invalid"], invalid.details)
        found = self._subscription_of(str(ctx.seller_id), notification_type, versions[0] if versions else None)
        if found is None:
            return self._error(ctx, 404, "NotFound", MESSAGES["not_found"])
        return self._ok(ctx, {"payload": found.payload()})

    def create_subscription(self, notification_type: str, facts: RequestFacts, body: bytes) -> Reply:
        """``POST /notifications/v1/subscriptions/{notificationType}`` (seller token)."""
        ctx = self._state._context("createSubscription", facts, order_id=None)
        early = self._admit(ctx, grantless=False)
        if early is not None:
            return early
        request = unknown_type(notification_type) or parse_subscription_request(notification_type, body)
        if not isinstance(request, Invalid) and request.destination_id not in self.destinations:
            request = Invalid(f"No destination with id '{request.destination_id}' for applicationId '{self._app}'")
        if isinstance(request, Invalid):
            return self._error(ctx, 400, "InvalidInput", _TEXTS["invalid"], request.details)
        seller_id = str(ctx.seller_id)
        if self._subscription_of(seller_id, notification_type, request.payload_version) is not None:
            details = f"Subscription already exist for notification type {notification_type}"
            return self._error(ctx, 409, "StateConflict", _TEXTS["state_conflict"], details)
        row = LedgerSubscription(
            subscription_id=str(uuid.uuid4()),
            seller_id=seller_id,
            notification_type=notification_type,
            payload_version=request.payload_version,
            destination_id=request.destination_id,
            processing_directive=request.processing_directive,
            request_id=ctx.request_id,
            at=self._state.clock.now(),
        )
        self.subscriptions[row.subscription_id] = row
        return self._created(ctx, {"payload": row.payload()})

    def delete_subscription(self, notification_type: str, subscription_id: str, facts: RequestFacts) -> Reply:
        """``DELETE /notifications/v1/subscriptions/{notificationType}/{subscriptionId}`` (grantless)."""
        ctx = self._state._context("deleteSubscriptionById", facts, order_id=None)
        early = self._admit(ctx, grantless=True)
        if early is not None:
            return early
        invalid = unknown_type(notification_type)
        if invalid is not None:
            return self._error(ctx, 400, "InvalidInput", _TEXTS["invalid"], invalid.details)
        row = self.subscriptions.get(subscription_id)
        if row is None or row.notification_type != notification_type:
            return self._error(ctx, 404, "NotFound", MESSAGES["not_found"])
        del self.subscriptions[subscription_id]
        return self._ok(ctx, {})

    def unknown_path(self, facts: RequestFacts) -> Reply:
        """A request under ``/notifications/`` that matches no operation the sandbox serves."""
        ctx = self._state._context("unknownOperation", facts, order_id=None)
        return self._error(ctx, 404, "NotFound", MESSAGES["not_found"])

    # --- checks and answers ------------------------------------------------------------------------------------

    @property
    def _app(self) -> str:
        return self._state.config.client_id

    def _subscription_of(
        self, seller_id: str, notification_type: str, version: str | None
    ) -> LedgerSubscription | None:
        """The seller's subscription to the type (and version; without one, the latest version's)."""
        rows = [
            row
            for row in self.subscriptions.values()
            if row.seller_id == seller_id and row.notification_type == notification_type
        ]
        if version is not None:
            rows = [row for row in rows if row.payload_version == version]
        return max(rows, key=lambda row: row.payload_version, default=None)

    def _caller(self, ctx: _CallContext, grantless: bool) -> Reply | tuple[str, float, int]:
        """Who calls: ``(bucket owner, rate, burst)``, or the 403 for a missing or wrong token."""
        state, token = self._state, ctx.facts.access_token
        if not token:
            return self._denied(ctx, MESSAGES["token_missing"])
        grant = self._grantless.get(token)
        seller_grant = state._grants.get(token)
        if grantless:
            if grant is not None and grant.expires_at > ctx.arrived and grant.scope == SCOPE_NOTIFICATIONS:
                return f"app:{self._app}", state.config.rate, state.config.burst
            if seller_grant is not None and seller_grant.expires_at > ctx.arrived:
                return self._denied(ctx, _TEXTS["not_grantless"].format(scope=SCOPE_NOTIFICATIONS))
            return self._denied(ctx, MESSAGES["token_invalid"])
        if seller_grant is None or seller_grant.expires_at <= ctx.arrived:
            return self._denied(ctx, _TEXTS["not_seller"] if grant is not None else MESSAGES["token_invalid"])
        seller = state._sellers[seller_grant.seller_id]
        ctx.seller_id = seller.seller_id
        if seller.access_denied:
            return self._denied(ctx, "")
        return seller.seller_id, seller.rate, seller.burst

    def _admit(self, ctx: _CallContext, *, grantless: bool) -> Reply | None:
        """Token, rate limit, before-effect faults, body size and type; ``None`` when the call may proceed."""
        state = self._state
        caller = self._caller(ctx, grantless)
        if isinstance(caller, Reply):
            return caller
        owner, rate, burst = caller
        ctx.rate = rate
        scripted = state._match_scripted(ctx)
        if scripted is not None and scripted.fault == "429":
            state._scripted.remove(scripted)
            ctx.fault = "429"
            return self._error(ctx, 429, "QuotaExceeded", MESSAGES["quota"])
        bucket = state._buckets.setdefault((owner, ctx.operation), ServerBucket.full(rate, burst, ctx.arrived))
        if not bucket.try_take(ctx.arrived):
            return self._error(ctx, 429, "QuotaExceeded", MESSAGES["quota"])
        if scripted is not None:
            state._scripted.remove(scripted)
            ctx.pending = scripted
        kind = scripted.fault if scripted else None
        if kind in ("500", "503") or (kind is None and state._draw(state.faults.error_rate)):
            status = int(kind) if kind else state._rng.choice((500, 503))
            ctx.fault = str(status)
            if status == 500:
                return self._error(ctx, 500, "InternalFailure", MESSAGES["internal"])
            return self._error(ctx, 503, "ServiceUnavailable", MESSAGES["unavailable"])
        facts = ctx.facts
        if facts.body_bytes > state.config.max_body_bytes:
            return self._error(ctx, 413, "RequestTooLarge", MESSAGES["too_large"])
        if facts.body_bytes > 0 and "json" not in (facts.content_type or ""):
            return self._error(ctx, 415, "UnsupportedMediaType", MESSAGES["unsupported"])
        return None

    def _denied(self, ctx: _CallContext, details: str) -> Reply:
        return self._error(ctx, 403, "Unauthorized", MESSAGES["access_denied"], details)

    def _error(self, ctx: _CallContext, status: int, code: str, message: str, details: str = "") -> Reply:
        body = {"errors": [{"code": code, "message": message, "details": details}]}
        return self._state._finish(ctx, status, body, JSON, error_code=code)

    def _ok(self, ctx: _CallContext, body: dict[str, Any]) -> Reply:
        return self._state._finish(ctx, 200, body, JSON, error_code=None)

    def _created(self, ctx: _CallContext, body: dict[str, Any]) -> Reply:
        """200 for a create that took effect, or 500 after the effect for an ``ambiguous`` fault."""
        state = self._state
        pending = ctx.pending.fault if ctx.pending else None
        if pending == "ambiguous" or (pending is None and state._draw(state.faults.ambiguous_rate)):
            ctx.fault = "ambiguous"
            return self._error(ctx, 500, "InternalFailure", MESSAGES["internal"])
        return self._ok(ctx, body)
