"""Orders API v0 ``getOrders`` in the sandbox: a seller's orders, from the same state the Solicitations rules use.

So an order the sandbox knows can be listed (backfill, reconciliation) and then solicited. Faithful to
``devstack/spapi_models/ordersV0.json`` (a schemathesis test checks it, ``tests/integration/test_sandbox_orders.py``):

* ``GET /orders/v0/orders``; query ``MarketplaceIds`` (required, comma separated, at most 50), exactly one of
  ``CreatedAfter`` and ``LastUpdatedAfter``, optionally ``CreatedBefore`` (only with ``CreatedAfter``) or
  ``LastUpdatedBefore`` (only with ``LastUpdatedAfter``), which must not be before the "after" date and must be at
  least two minutes before now; ``MaxResultsPerPage`` 1 to 100 (default 100); ``NextToken``; ``OrderStatuses`` and
  ``FulfillmentChannels`` filter. Other filters of the model are accepted and not applied (*sandbox choice*).
* 200 ``{"payload": {"Orders": [...], "NextToken"?, "CreatedBefore" | "LastUpdatedBefore"}}``; 400 ``InvalidInput``
  (a missing or malformed parameter, the reason in ``details``); 403 access denied; 429 ``QuotaExceeded`` from the
  seller's own ``getOrders`` bucket (``SandboxConfig.orders_rate``/``orders_burst``, Amazon's default 0.0167/s and
  20), apart from its Solicitations buckets; injected 500/503. ``x-amzn-RateLimit-Limit`` with 200, 400 and 404.
* An order as getOrders shows it: ``AmazonOrderId``, ``PurchaseDate``, ``LastUpdateDate``, ``OrderStatus``,
  ``FulfillmentChannel``, ``MarketplaceId``, ``OrderType``, item counts; ``EarliestDeliveryDate`` for seller-fulfilled
  (MFN) orders only, and ``LatestDeliveryDate`` only for those not ``Pending``, ``PendingAvailability`` or
  ``Canceled`` (the model's words). No buyer data.

*Sandbox choices* where Amazon says nothing: orders come sorted by the date filtered on, then id; ``NextToken`` is
opaque (base64 of the query it continues, its upper date bound and the offset); with it, ``MarketplaceIds`` is still
required (the model) and every other criterion comes from the token ("NextToken, when provided, overrides other
criteria", Amazon's Orders v0 use case guide); the upper bound (default: now minus two minutes) is fixed on the first
page, so orders added while a client pages do not shift the pages. Default dates of an order that gives none:
purchased five days before its earliest delivery, last updated at purchase while ``Pending``, else two days before
its earliest delivery.

Handlers never ``await``, like :mod:`.state`, so each call is atomic on the event loop; this module uses the state's
bookkeeping (call context, ledger, buckets, grants, scripted faults) as a part of the same package.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from statemachine.marketplaces import marketplace
from statemachine.types import format_datetime

from .model import OrderIn
from .protocol import MESSAGES, Reply, RequestFacts
from .state import SandboxState, _CallContext, _Order
from .throttle import ServerBucket

__all__ = ["GET_ORDERS_PATH", "OPERATION_GET_ORDERS", "get_orders", "order_view", "unknown_orders_path"]

OPERATION_GET_ORDERS = "getOrders"
GET_ORDERS_PATH = "/orders/v0/orders"
JSON = "application/json"
"""The Orders model's only ``produces`` value (errors included)."""
MAX_MARKETPLACES = 50
MAX_PAGE_SIZE = 100
BEFORE_LAG = timedelta(minutes=2)
"""``CreatedBefore``/``LastUpdatedBefore`` must be at least this long before now (and default to it)."""
_NOT_SHIPPED = frozenset({"Pending", "PendingAvailability"})
_NO_LATEST_DELIVERY = frozenset({"Pending", "PendingAvailability", "Canceled"})


class _Invalid(Exception):
    """The request breaks a rule of the model: 400 ``InvalidInput`` with this text as ``details``."""


@dataclass(frozen=True, slots=True)
class _Listing:
    """What one page lists: the filters (the same on every page), the upper bound and where the page starts."""

    marketplaces: tuple[str, ...]
    field: str
    """``PurchaseDate`` (CreatedAfter) or ``LastUpdateDate`` (LastUpdatedAfter)."""
    after: datetime
    before: datetime
    statuses: tuple[str, ...]
    channels: tuple[str, ...]
    page_size: int
    offset: int = 0

    def filters(self) -> dict[str, Any]:
        return {
            "m": sorted(self.marketplaces),
            "f": self.field,
            "a": format_datetime(self.after),
            "s": sorted(self.statuses),
            "c": sorted(self.channels),
            "n": self.page_size,
        }

    def token(self, offset: int) -> str:
        state = {**self.filters(), "b": format_datetime(self.before), "o": offset}
        return base64.b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def order_view(spec: OrderIn) -> dict[str, Any]:
    """The order as ``getOrders`` shows it (see the module docstring for the dates an order does not give)."""
    purchased = spec.purchase_date or spec.earliest_delivery - timedelta(days=5)
    updated = spec.last_updated
    if updated is None:
        updated = (
            purchased if spec.status in _NOT_SHIPPED else max(purchased, spec.earliest_delivery - timedelta(days=2))
        )
    shipped = spec.status == "Shipped"
    view: dict[str, Any] = {
        "AmazonOrderId": spec.order_id,
        "PurchaseDate": format_datetime(purchased),
        "LastUpdateDate": format_datetime(updated),
        "OrderStatus": spec.status,
        "FulfillmentChannel": spec.fulfillment_channel,
        "MarketplaceId": spec.marketplace_id,
        "OrderType": "StandardOrder",
        "NumberOfItemsShipped": 1 if shipped else 0,
        "NumberOfItemsUnshipped": 0 if shipped else 1,
    }
    if spec.fulfillment_channel == "MFN":
        view["EarliestDeliveryDate"] = format_datetime(spec.earliest_delivery)
        if spec.status not in _NO_LATEST_DELIVERY:
            view["LatestDeliveryDate"] = format_datetime(spec.latest_delivery)
    return view


def get_orders(state: SandboxState, facts: RequestFacts) -> Reply:
    """``GET /orders/v0/orders``."""
    ctx = state._context(OPERATION_GET_ORDERS, facts, order_id=None)
    refused = _admit(state, ctx)
    if refused is not None:
        return refused
    now = state.clock.now()
    try:
        listing = _parse(facts.query, now)
    except _Invalid as exc:
        return _fail(state, ctx, 400, "InvalidInput", "Invalid Input", str(exc))
    assert ctx.seller_id is not None
    views = [order_view(order.spec) for order in _orders_of(state, ctx.seller_id)]
    found = sorted((v for v in views if _matches(v, listing)), key=lambda v: (v[listing.field], v["AmazonOrderId"]))
    end = listing.offset + listing.page_size
    bound = "CreatedBefore" if listing.field == "PurchaseDate" else "LastUpdatedBefore"
    payload: dict[str, Any] = {"Orders": found[listing.offset : end], bound: format_datetime(listing.before)}
    if end < len(found):
        payload["NextToken"] = listing.token(end)
    return state._finish(ctx, 200, {"payload": payload}, JSON, error_code=None)


def unknown_orders_path(state: SandboxState, facts: RequestFacts) -> Reply:
    """A request under ``/orders/`` that matches no operation the sandbox serves: 404, model-shaped."""
    ctx = state._context("unknownOperation", facts, order_id=None)
    return _fail(state, ctx, 404, "NotFound", MESSAGES["not_found"])


def _orders_of(state: SandboxState, seller_id: str) -> list[_Order]:
    return [order for order in state._orders.values() if order.spec.seller_id == seller_id]


def _matches(view: Mapping[str, Any], listing: _Listing) -> bool:
    at = datetime.fromisoformat(view[listing.field])
    return (
        view["MarketplaceId"] in listing.marketplaces
        and listing.after <= at <= listing.before
        and (not listing.statuses or view["OrderStatus"] in listing.statuses)
        and (not listing.channels or view["FulfillmentChannel"] in listing.channels)
    )


def _fail(state: SandboxState, ctx: _CallContext, status: int, code: str, message: str, details: str = "") -> Reply:
    body = {"errors": [{"code": code, "message": message, "details": details}]}
    return state._finish(ctx, status, body, JSON, error_code=code)


def _admit(state: SandboxState, ctx: _CallContext) -> Reply | None:
    """Authentication, the seller's getOrders bucket and before-effect faults, in the Solicitations rules' order."""
    facts = ctx.facts
    grant = state._grants.get(facts.access_token or "")
    if grant is None or grant.expires_at <= ctx.arrived:
        details = MESSAGES["token_invalid"] if facts.access_token else MESSAGES["token_missing"]
        return _fail(state, ctx, 403, "Unauthorized", MESSAGES["access_denied"], details)
    seller = state._sellers[grant.seller_id]
    ctx.seller_id = seller.seller_id
    if seller.access_denied:
        return _fail(state, ctx, 403, "Unauthorized", MESSAGES["access_denied"])
    ctx.rate = state.config.orders_rate
    scripted = state._match_scripted(ctx)
    if scripted is not None and scripted.fault == "429":
        state._scripted.remove(scripted)
        ctx.fault = "429"
        return _fail(state, ctx, 429, "QuotaExceeded", MESSAGES["quota"])
    key = (seller.seller_id, OPERATION_GET_ORDERS)
    bucket = state._buckets.get(key)
    if bucket is None:
        bucket = state._buckets[key] = ServerBucket.full(
            state.config.orders_rate, state.config.orders_burst, ctx.arrived
        )
    if not bucket.try_take(ctx.arrived):
        return _fail(state, ctx, 429, "QuotaExceeded", MESSAGES["quota"])
    if scripted is not None:
        state._scripted.remove(scripted)
        ctx.pending = scripted
    kind = scripted.fault if scripted else None
    if kind in ("500", "503") or (kind is None and state._draw(state.faults.error_rate)):
        status = int(kind) if kind else state._rng.choice((500, 503))
        ctx.fault = str(status)
        if status == 500:
            return _fail(state, ctx, 500, "InternalFailure", MESSAGES["internal"])
        return _fail(state, ctx, 503, "ServiceUnavailable", MESSAGES["unavailable"])
    return None


def _parse(query: Mapping[str, list[str]], now: datetime) -> _Listing:
    """The listing a request asks for; :class:`_Invalid` names the first rule it breaks."""
    marketplaces = _marketplaces(query)
    token = _one(query, "NextToken")
    if token is not None:  # "NextToken, when provided, overrides other criteria" (Orders v0 use case guide)
        return _continued(token)
    created, updated = _date(query, "CreatedAfter"), _date(query, "LastUpdatedAfter")
    if (created is None) == (updated is None):
        raise _Invalid("exactly one of CreatedAfter and LastUpdatedAfter is required")
    if created is not None and (_one(query, "LastUpdatedAfter") or _one(query, "LastUpdatedBefore")):
        raise _Invalid("LastUpdatedAfter and LastUpdatedBefore cannot be set when CreatedAfter is set")
    if updated is not None and _one(query, "CreatedBefore"):
        raise _Invalid("CreatedBefore cannot be set when LastUpdatedAfter is set")
    after = created or updated
    assert after is not None
    bound_name = "CreatedBefore" if created is not None else "LastUpdatedBefore"
    before = _date(query, bound_name) or now - BEFORE_LAG
    if before < after:
        raise _Invalid(
            f"{bound_name} must be equal to or after the {'CreatedAfter' if created else 'LastUpdatedAfter'}"
        )
    if before > now - BEFORE_LAG:
        raise _Invalid(f"{bound_name} must be at least two minutes before the current time")
    return _Listing(
        marketplaces=marketplaces,
        field="PurchaseDate" if created is not None else "LastUpdateDate",
        after=after,
        before=before,
        statuses=_list(query, "OrderStatuses"),
        channels=_list(query, "FulfillmentChannels"),
        page_size=_page_size(query),
    )


def _continued(token: str) -> _Listing:
    try:
        state = json.loads(base64.b64decode(token.encode(), validate=True))
        listing = _Listing(
            marketplaces=tuple(state["m"]),
            field=state["f"],
            after=datetime.fromisoformat(state["a"]),
            before=datetime.fromisoformat(state["b"]),
            statuses=tuple(state["s"]),
            channels=tuple(state["c"]),
            page_size=int(state["n"]),
            offset=int(state["o"]),
        )
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _Invalid("NextToken is not a token this operation issued") from None
    return listing


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name, [])
    if len(values) > 1:
        raise _Invalid(f"{name} is given {len(values)} times")
    return values[0] if values else None


def _list(query: Mapping[str, list[str]], name: str) -> tuple[str, ...]:
    return tuple(item for value in query.get(name, []) for item in value.split(",") if item)


def _marketplaces(query: Mapping[str, list[str]]) -> tuple[str, ...]:
    ids = _list(query, "MarketplaceIds")
    if not ids:
        raise _Invalid("MarketplaceIds is required")
    if len(ids) > MAX_MARKETPLACES or len(set(ids)) != len(ids):
        raise _Invalid(f"MarketplaceIds takes 1 to {MAX_MARKETPLACES} different values")
    unknown = [m for m in ids if marketplace(m) is None]
    if unknown:
        raise _Invalid(f"unknown MarketplaceIds {unknown[:3]}")
    return ids


def _date(query: Mapping[str, list[str]], name: str) -> datetime | None:
    text = _one(query, name)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid(f"Invalid Date-Time field(s) [{name}]") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _page_size(query: Mapping[str, list[str]]) -> int:
    text = _one(query, "MaxResultsPerPage")
    if text is None:
        return MAX_PAGE_SIZE
    try:
        size = int(text)
    except ValueError:
        raise _Invalid("MaxResultsPerPage must be an integer") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise _Invalid(f"MaxResultsPerPage must be 1 to {MAX_PAGE_SIZE}")
    return size
