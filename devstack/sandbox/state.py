"""The sandbox's rules: LWA token exchange and the two Solicitations operations, as Amazon behaves.

No HTTP here (the aiohttp layer in :mod:`.app` only translates), so every rule is a method that takes the
request's facts and returns a :class:`~.protocol.Reply`. Handlers never ``await`` between reading and changing
state, so each call is atomic on the event loop.

Rules (facts from ``docs/amazon-facts.md`` §1-§5 and §7; where Amazon is silent the choice is marked
*sandbox choice*):

* LWA: ``grant_type=refresh_token`` with the app's client id/secret and a known, unrevoked refresh token gives an
  access token valid ``token_lifetime`` real seconds; wrong client -> 401 ``invalid_client``; unknown or revoked
  refresh token -> 400 ``invalid_grant``.
* SP-API, in this order: missing/unknown/expired access token, or a seller registered with ``access_denied``
  (the app lacks the role) -> 403 "Access to requested resource is denied.";
  the (seller, operation) bucket is empty -> 429 ``QuotaExceeded``; injected 500/503 before any effect;
  ``marketplaceIds`` absent, repeated, or not a known marketplace -> 400 ``InvalidInput``; body over
  ``max_body_bytes`` -> 413, a non-JSON body -> 415 (*sandbox choice*: codes ``RequestTooLarge`` /
  ``UnsupportedMediaType``); order unknown or another seller's -> 404 ``NotFound`` (*sandbox choice*); order of
  another marketplace -> 400 ``InvalidInput`` with the marketplaceIds message (*sandbox choice*).
* Eligible iff status ``Shipped``, not yet solicited, and EDD + 5 d <= now <= LDD + 30 d (business time, so a
  simulated clock can fast-forward weeks). GET lists the action only then (else 200 with empty actions). POST:
  solicited / canceled / not shipped -> 403 "not available"; outside the window -> 403 "5-30 day range";
  eligible -> 201, recorded in the ledger, and the order is never eligible again.
* Headers: ``x-amzn-RequestId`` always; ``x-amzn-RateLimit-Limit`` only on 200/201/400/404 (the statuses for which
  the model does not mark it deprecated and that are not 403). Content type ``application/hal+json``, the model's
  only ``produces`` value, also on errors.
"""

from __future__ import annotations

import hmac
import random
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors.clock import Clock
from statemachine.marketplaces import marketplace

from .model import (
    FaultConfig,
    LedgerCall,
    LedgerSolicitation,
    OrderIn,
    SandboxConfig,
    ScriptedFault,
    SellerIn,
)
from .notifications import NotificationsRules
from .protocol import (
    ACTION_NAME,
    HAL_JSON,
    LWA_JSON,
    MESSAGES,
    OPERATION_CREATE,
    OPERATION_GET,
    OPERATION_LWA,
    RATE_LIMIT_HEADER_STATUSES,
    Reply,
    RequestFacts,
    error_body,
)
from .throttle import ServerBucket

__all__ = ["SandboxState", "window_open"]

_WINDOW_START = timedelta(days=5)
_WINDOW_END = timedelta(days=30)


@dataclass(slots=True)
class _Seller:
    seller_id: str
    refresh_token: str
    rate: float
    burst: int
    access_denied: bool = False
    revoked: bool = False


@dataclass(slots=True)
class _Order:
    spec: OrderIn
    solicited: bool = False


@dataclass(frozen=True, slots=True)
class _AccessGrant:
    seller_id: str
    expires_at: float


@dataclass(slots=True)
class _CallContext:
    operation: str
    request_id: str
    facts: RequestFacts
    order_id: str | None
    arrived: float
    seller_id: str | None = None
    fault: str | None = None
    pending: ScriptedFault | None = None
    rate: float | None = None


def window_open(order: OrderIn, now: datetime) -> bool:
    """Is ``now`` inside [EarliestDeliveryDate + 5 d, LatestDeliveryDate + 30 d]?"""
    return bool(order.earliest_delivery + _WINDOW_START <= now <= order.latest_delivery + _WINDOW_END)


class SandboxState:
    """Sellers, access tokens, orders, buckets, faults and the ledger of one sandbox."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.calls: list[LedgerCall] = []
        self.solicitations: list[LedgerSolicitation] = []
        self.faults = config.faults
        self._sellers: dict[str, _Seller] = {}
        self._orders: dict[str, _Order] = {}
        self._grants: dict[str, _AccessGrant] = {}
        self._buckets: dict[tuple[str, str], ServerBucket] = {}
        self._scripted: deque[ScriptedFault] = deque()
        self._rng = random.Random(config.seed)
        self.notifications = NotificationsRules(self)
        self.reset()

    # --- admin -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the state the sandbox started in: configured sellers only, no orders, empty ledger."""
        self.calls.clear()
        self.solicitations.clear()
        self._sellers.clear()
        self._orders.clear()
        self._grants.clear()
        self._buckets.clear()
        self._scripted.clear()
        self.faults = self.config.faults
        self._rng = random.Random(self.config.seed)
        self.notifications.reset()
        for seller in self.config.sellers:
            self.add_seller(seller)

    def add_seller(self, seller: SellerIn) -> None:
        """Register (or replace) a seller's refresh token and rate plan."""
        self._sellers[seller.seller_id] = _Seller(
            seller_id=seller.seller_id,
            refresh_token=seller.refresh_token.get_secret_value(),
            rate=seller.rate or self.config.rate,
            burst=seller.burst or self.config.burst,
            access_denied=seller.access_denied,
        )
        for key in [k for k in self._buckets if k[0] == seller.seller_id]:
            del self._buckets[key]

    def revoke_seller(self, seller_id: str) -> bool:
        """The seller withdrew the app's authorization: refresh token and access tokens stop working."""
        seller = self._sellers.get(seller_id)
        if seller is None:
            return False
        seller.revoked = True
        for token in [t for t, grant in self._grants.items() if grant.seller_id == seller_id]:
            del self._grants[token]
        return True

    def add_orders(self, orders: list[OrderIn]) -> int:
        """Insert or update orders; an update keeps whether the order was already solicited."""
        for spec in orders:
            existing = self._orders.get(spec.order_id)
            self._orders[spec.order_id] = _Order(spec=spec, solicited=existing.solicited if existing else False)
        return len(orders)

    def orders(self) -> list[dict[str, Any]]:
        """Every order with its solicited flag (admin view)."""
        return [{**o.spec.model_dump(mode="json"), "solicited": o.solicited} for o in self._orders.values()]

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the random fault rates and latency."""
        self.faults = faults

    def script_faults(self, faults: list[ScriptedFault]) -> None:
        """Queue one-shot faults; each applies to the next matching SP-API call."""
        self._scripted.extend(faults)

    def scripted_faults(self) -> list[ScriptedFault]:
        """One-shot faults not yet used."""
        return list(self._scripted)

    # --- LWA -------------------------------------------------------------------------------------------
    def lwa_token(self, form: Mapping[str, str], facts: RequestFacts) -> Reply:
        """``POST /auth/o2/token`` with a form body."""
        ctx = self._context(OPERATION_LWA, facts, order_id=None)
        grant_type = form.get("grant_type")
        client_ok = hmac.compare_digest(form.get("client_id", ""), self.config.client_id) and hmac.compare_digest(
            form.get("client_secret", ""), self.config.client_secret.get_secret_value()
        )
        if not (facts.content_type or "").startswith("application/x-www-form-urlencoded"):
            return self._lwa_error(ctx, 400, "invalid_request", "The request is missing a required parameter.")
        if not grant_type or "client_id" not in form:
            return self._lwa_error(ctx, 400, "invalid_request", "The request is missing a required parameter.")
        if not client_ok:
            return self._lwa_error(ctx, 401, "invalid_client", "Client authentication failed")
        if grant_type == "client_credentials":
            return self.notifications.grantless_token(ctx, form)
        if grant_type != "refresh_token":
            return self._lwa_error(ctx, 400, "unsupported_grant_type", "The grant type is not supported.")
        refresh_token = form.get("refresh_token", "")
        seller = next((s for s in self._sellers.values() if hmac.compare_digest(s.refresh_token, refresh_token)), None)
        if seller is None or seller.revoked:
            ctx.seller_id = seller.seller_id if seller else None
            return self._lwa_error(
                ctx, 400, "invalid_grant", "The request has an invalid grant parameter : refresh_token"
            )
        ctx.seller_id = seller.seller_id
        access_token = "Atza|sandbox-" + uuid.uuid4().hex + uuid.uuid4().hex
        lifetime = self.config.token_lifetime
        self._grants[access_token] = _AccessGrant(seller.seller_id, self.clock.monotonic() + lifetime)
        body = {
            "access_token": access_token,
            # LWA echoes the caller's own refresh token in this response; the sandbox does too.
            "refresh_token": refresh_token,
            "token_type": "bearer",
            "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
        }
        return self._finish(ctx, 200, body, LWA_JSON, error_code=None, rate_header=False)

    def _lwa_error(self, ctx: _CallContext, status: int, error: str, description: str) -> Reply:
        body = {"error_description": description, "error": error}
        return self._finish(ctx, status, body, LWA_JSON, error_code=error, rate_header=False)

    # --- SP-API ----------------------------------------------------------------------------------------
    def solicitation_actions(self, order_id: str, facts: RequestFacts) -> Reply:
        """``GET /solicitations/v1/orders/{amazonOrderId}``."""
        ctx = self._context(OPERATION_GET, facts, order_id)
        early = self._common_checks(ctx)
        if isinstance(early, Reply):
            return early
        order, marketplace_id = early
        now = self.clock.now()
        self_href = f"/solicitations/v1/orders/{order_id}?marketplaceIds={marketplace_id}"
        action_href = f"/solicitations/v1/orders/{order_id}/solicitations/{ACTION_NAME}?marketplaceIds={marketplace_id}"
        schema_href = f"/solicitations/v1/orders/{order_id}/solicitations/{ACTION_NAME}/schema"
        if self._eligible(order, now):
            body: dict[str, Any] = {
                "_links": {"actions": [{"href": action_href, "name": ACTION_NAME}], "self": {"href": self_href}},
                "_embedded": {
                    "actions": [
                        {
                            "_links": {
                                "self": {"href": action_href},
                                "schema": {"href": schema_href, "name": ACTION_NAME},
                            }
                        }
                    ]
                },
            }
        else:
            body = {"_links": {"actions": [], "self": {"href": self_href}}, "_embedded": {"actions": []}}
        return self._finish(ctx, 200, body, HAL_JSON, error_code=None)

    def create_solicitation(self, order_id: str, facts: RequestFacts) -> Reply:
        """``POST /solicitations/v1/orders/{amazonOrderId}/solicitations/productReviewAndSellerFeedback``."""
        ctx = self._context(OPERATION_CREATE, facts, order_id)
        early = self._common_checks(ctx)
        if isinstance(early, Reply):
            return early
        order, marketplace_id = early
        now = self.clock.now()
        if order.solicited or order.spec.status != "Shipped":
            return self._fail(ctx, 403, "Unauthorized", "not_available")
        if not window_open(order.spec, now):
            return self._fail(ctx, 403, "Unauthorized", "outside_window")
        order.solicited = True
        assert ctx.seller_id is not None
        self.solicitations.append(
            LedgerSolicitation(
                seller_id=ctx.seller_id,
                order_id=order_id,
                marketplace_id=marketplace_id,
                request_id=ctx.request_id,
                at=now,
                monotonic=ctx.arrived,
            )
        )
        pending = ctx.pending.fault if ctx.pending else None
        if pending == "ambiguous" or (pending is None and self._draw(self.faults.ambiguous_rate)):
            ctx.fault = "ambiguous"
            return self._fail(ctx, 500, "InternalFailure", "internal")
        return self._finish(ctx, 201, {}, HAL_JSON, error_code=None)

    def unknown_path(self, facts: RequestFacts) -> Reply:
        """A request under ``/solicitations/`` that matches no operation of the model."""
        ctx = self._context("unknownOperation", facts, order_id=None)
        return self._fail(ctx, 404, "NotFound", "not_found")

    def _eligible(self, order: _Order, now: datetime) -> bool:
        return order.spec.status == "Shipped" and not order.solicited and window_open(order.spec, now)

    def _common_checks(self, ctx: _CallContext) -> Reply | tuple[_Order, str]:
        """Authentication, throttling, before-effect faults, parameters, body and order ownership."""
        facts = ctx.facts
        if not facts.access_token:
            return self._fail(ctx, 403, "Unauthorized", "access_denied", details=MESSAGES["token_missing"])
        grant = self._grants.get(facts.access_token)
        if grant is None or grant.expires_at <= ctx.arrived:
            return self._fail(ctx, 403, "Unauthorized", "access_denied", details=MESSAGES["token_invalid"])
        seller = self._sellers[grant.seller_id]
        ctx.seller_id = seller.seller_id
        if seller.access_denied:
            return self._fail(ctx, 403, "Unauthorized", "access_denied")
        ctx.rate = seller.rate
        # A scripted fault is used by the next matching call that gets past authentication (and, unless it is
        # itself a 429, past the rate limit); a call throttled for real leaves it queued.
        scripted = self._match_scripted(ctx)
        if scripted is not None and scripted.fault == "429":
            self._scripted.remove(scripted)
            ctx.fault = "429"
            return self._fail(ctx, 429, "QuotaExceeded", "quota")
        bucket = self._buckets.get((seller.seller_id, ctx.operation))
        if bucket is None:
            bucket = ServerBucket.full(seller.rate, seller.burst, ctx.arrived)
            self._buckets[(seller.seller_id, ctx.operation)] = bucket
        if not bucket.try_take(ctx.arrived):
            return self._fail(ctx, 429, "QuotaExceeded", "quota")
        if scripted is not None:
            self._scripted.remove(scripted)
            ctx.pending = scripted
        kind = scripted.fault if scripted else None
        if kind in ("500", "503") or (kind is None and self._draw(self.faults.error_rate)):
            status = int(kind) if kind else self._rng.choice((500, 503))
            ctx.fault = str(status)
            if status == 500:
                return self._fail(ctx, 500, "InternalFailure", "internal")
            return self._fail(ctx, 503, "ServiceUnavailable", "unavailable")
        values = facts.query.get("marketplaceIds", [])
        if len(values) != 1 or "," in values[0] or marketplace(values[0]) is None:
            return self._fail(ctx, 400, "InvalidInput", "invalid_marketplace")
        if facts.body_bytes > self.config.max_body_bytes:
            return self._fail(ctx, 413, "RequestTooLarge", "too_large")
        if facts.body_bytes > 0 and "json" not in (facts.content_type or ""):
            return self._fail(ctx, 415, "UnsupportedMediaType", "unsupported")
        order = self._orders.get(ctx.order_id or "")
        if order is None or order.spec.seller_id != seller.seller_id:
            return self._fail(ctx, 404, "NotFound", "not_found")
        if order.spec.marketplace_id != values[0]:
            return self._fail(ctx, 400, "InvalidInput", "invalid_marketplace")
        return order, values[0]

    def _match_scripted(self, ctx: _CallContext) -> ScriptedFault | None:
        for fault in self._scripted:
            if fault.operation in (None, ctx.operation) and fault.order_id in (None, ctx.order_id):
                return fault
        return None

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    # --- bookkeeping -----------------------------------------------------------------------------------
    def _context(self, operation: str, facts: RequestFacts, order_id: str | None) -> _CallContext:
        return _CallContext(
            operation=operation,
            request_id=str(uuid.uuid4()),
            facts=facts,
            order_id=order_id,
            arrived=self.clock.monotonic(),
        )

    def _fail(self, ctx: _CallContext, status: int, code: str, message_key: str, details: str = "") -> Reply:
        return self._finish(ctx, status, error_body(code, message_key, details), HAL_JSON, error_code=code)

    def _finish(
        self,
        ctx: _CallContext,
        status: int,
        body: dict[str, Any],
        content_type: str,
        *,
        error_code: str | None,
        rate_header: bool = True,
    ) -> Reply:
        delay = 0.0
        if ctx.pending is not None and ctx.pending.fault == "slow":
            ctx.fault = "slow"
            delay = ctx.pending.delay
        if ctx.operation != OPERATION_LWA:
            delay += self.faults.latency
        headers = {"x-amzn-RequestId": ctx.request_id}
        if rate_header and ctx.rate is not None and status in RATE_LIMIT_HEADER_STATUSES:
            headers["x-amzn-RateLimit-Limit"] = repr(float(ctx.rate))
        facts = ctx.facts
        self.calls.append(
            LedgerCall(
                seq=len(self.calls) + 1,
                request_id=ctx.request_id,
                operation=ctx.operation,
                method=facts.method,
                path=facts.path,
                query={k: list(v) for k, v in facts.query.items()},
                seller_id=ctx.seller_id,
                order_id=ctx.order_id,
                status=status,
                error_code=error_code,
                fault=ctx.fault,
                monotonic=ctx.arrived,
                at=self.clock.now(),
                body_bytes=facts.body_bytes,
                content_type=facts.content_type,
                user_agent=facts.user_agent,
                has_access_token=bool(facts.access_token),
            )
        )
        return Reply(status=status, body=body, headers=headers, content_type=content_type, delay=delay)
