"""``OrdersClient``: a seller's orders from the Orders API v0 ``getOrders``, every page, inside its rate limit.

**Why v0 ``getOrders`` and not 2026-01-01 ``searchOrders``** (both models are vendored in ``devstack/spapi_models``;
``docs/amazon-facts.md`` §9):

* *Quota.* The default plans are ``getOrders`` 0.0167 requests/s (a page a minute), burst 20, and ``searchOrders``
  0.0056 requests/s (a page every three minutes), burst 20. With 100 orders a page, v0 lists a busy seller three
  times as fast once the burst is spent.
* *Facts.* A v0 ``Order`` carries ``EarliestDeliveryDate`` and ``LatestDeliveryDate`` itself (seller-fulfilled
  orders, exactly as ORDER_CHANGE does) and ``OrderStatus`` in ORDER_CHANGE's own vocabulary, so an order becomes an
  ORDER_CHANGE ``Summary`` field by field. ``searchOrders`` has the delivery window only under
  ``fulfillment.deliverByWindow`` when the ``FULFILLMENT`` dataset is asked for, and another status vocabulary
  (``fulfillmentStatus``: ``CANCELLED``, ``SHIPPED``, ...) that would need a mapping of its own.
* Both filter by creation or last update and page with a token; neither returns delivery dates for FBA orders.

Buyer data is never kept: an ``Order``'s address and buyer fields (restricted data, absent without a restricted-data
token, which we never ask for) are dropped when the page is read (:class:`AmazonOrder` ignores unknown fields).

**Rate limits.** ``getOrders`` has its own bucket per seller on Amazon's side, so listing never takes a token from
the seller's Solicitations buckets. The client mirrors it with a :class:`~connectors.spapi.ratelimit.RateLimiter`
of its own (key ``(seller id, "getOrders")``, Amazon's default plan minus the one token of headroom the Solicitations
client keeps too, adopting ``x-amzn-RateLimit-Limit``). A page waits for its token as long as the plan requires (a
minute once the burst is spent): listing is background work, so unlike a send it has no deadline for that wait.
429, 5xx, timeouts and connection errors are retried with backoff; a 403 once with a fresh access token.

Paging: the same query again with ``NextToken`` (URL-encoded by httpx; Amazon's tokens hold ``+``, ``/`` and ``=``)
until a page comes without one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from connectors.clock import Clock
from statemachine.types import IsoDateTime, OrderIdStr, format_datetime

from .client import ClientConfig, user_agent
from .credentials import AppCredentials, SellerCredentials
from .endpoints import DEFAULT_LWA_TOKEN_URL, base_url_for
from .errors import AccessDenied, RetryLater
from .lwa import AccessToken, LwaTokenCache
from .ratelimit import RateLimiter, Sleep
from .responses import Denied, Transient, _classify_failure, parse_errors, request_id_of

__all__ = [
    "GET_ORDERS_BURST",
    "GET_ORDERS_PATH",
    "GET_ORDERS_RATE",
    "MAX_MARKETPLACES",
    "MAX_PAGE_SIZE",
    "OPERATION_GET_ORDERS",
    "AmazonOrder",
    "OrdersClient",
    "OrdersPage",
    "OrdersQuery",
    "classify_orders",
]

logger = logging.getLogger(__name__)

OPERATION_GET_ORDERS = "getOrders"
GET_ORDERS_PATH = "/orders/v0/orders"
GET_ORDERS_RATE = 0.0167
"""Amazon's default plan for ``getOrders`` (ordersV0.json): requests per second, per seller ..."""
GET_ORDERS_BURST = 20
"""... and the bucket's size."""
MAX_MARKETPLACES = 50
"""``MarketplaceIds`` takes at most 50 values."""
MAX_PAGE_SIZE = 100
"""``MaxResultsPerPage``: 1 to 100, Amazon's default 100."""


class AmazonOrder(BaseModel):
    """What we read of one Orders v0 ``Order``: ids, status, dates. Everything else (buyer data) is dropped."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    AmazonOrderId: OrderIdStr
    PurchaseDate: IsoDateTime
    LastUpdateDate: IsoDateTime
    OrderStatus: str
    MarketplaceId: str | None = None
    FulfillmentChannel: str | None = None
    OrderType: str | None = None
    NumberOfItemsShipped: int | None = None
    NumberOfItemsUnshipped: int | None = None
    EarliestShipDate: IsoDateTime | None = None
    LatestShipDate: IsoDateTime | None = None
    EarliestDeliveryDate: IsoDateTime | None = None
    LatestDeliveryDate: IsoDateTime | None = None


@dataclass(frozen=True, slots=True)
class OrdersQuery:
    """One listing: the seller's marketplaces (one region), and ``created_after`` or ``last_updated_after``."""

    marketplace_ids: tuple[str, ...]
    created_after: datetime | None = None
    last_updated_after: datetime | None = None
    page_size: int = MAX_PAGE_SIZE

    def __post_init__(self) -> None:
        if not 1 <= len(self.marketplace_ids) <= MAX_MARKETPLACES:
            raise ValueError(f"a listing names 1 to {MAX_MARKETPLACES} marketplaces, not {len(self.marketplace_ids)}")
        if (self.created_after is None) == (self.last_updated_after is None):
            raise ValueError("a listing needs exactly one of created_after and last_updated_after")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
        if len({base_url_for(m) for m in self.marketplace_ids}) != 1:
            raise ValueError("the marketplaces of one listing must share one region (one endpoint)")

    def params(self, next_token: str | None = None) -> dict[str, str]:
        """The query string: the same on every page, plus ``NextToken`` after the first."""
        params = {"MarketplaceIds": ",".join(self.marketplace_ids), "MaxResultsPerPage": str(self.page_size)}
        if self.created_after is not None:
            params["CreatedAfter"] = format_datetime(self.created_after)
        if self.last_updated_after is not None:
            params["LastUpdatedAfter"] = format_datetime(self.last_updated_after)
        if next_token:
            params["NextToken"] = next_token
        return params


@dataclass(frozen=True, slots=True)
class OrdersPage:
    """One page of ``getOrders``."""

    orders: tuple[AmazonOrder, ...]
    next_token: str | None
    request_id: str | None
    unreadable: int = 0
    """Entries of ``Orders`` that are not a readable order (skipped, logged without their content)."""


def classify_orders(response: httpx.Response) -> OrdersPage | Transient | Denied:
    """Map a ``getOrders`` response; raises :class:`~connectors.spapi.RejectedRequest` for 400/404/413/415."""
    status = response.status_code
    rid = request_id_of(response)
    if 200 <= status < 300:
        try:
            body = response.json()
        except ValueError:
            return Transient(status=status, request_id=rid, reason=f"{status} with a body that is not JSON")
        payload = body.get("payload") if isinstance(body, dict) else None
        entries = payload.get("Orders") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or not isinstance(entries, list):
            return Transient(status=status, request_id=rid, reason=f"{status} without payload.Orders")
        orders: list[AmazonOrder] = []
        for entry in entries:
            try:
                orders.append(AmazonOrder.model_validate(entry))
            except ValidationError as exc:
                problems = exc.error_count()
                logger.warning("getOrders request_id=%s: skipped an unreadable order (%d problem(s))", rid, problems)
        token = payload.get("NextToken")
        next_token = token if isinstance(token, str) and token else None
        return OrdersPage(tuple(orders), next_token, rid, unreadable=len(entries) - len(orders))
    if status in (401, 403):
        errors = parse_errors(response.content)
        return Denied(status=status, request_id=rid, error=errors[0] if errors else None)
    return _classify_failure(response)


class OrdersClient:
    """Async ``getOrders`` client for many sellers of one LWA application; ``async with OrdersClient(...)``."""

    def __init__(
        self,
        *,
        app: AppCredentials,
        clock: Clock,
        spapi_endpoint: str | None = None,
        lwa_endpoint: str = DEFAULT_LWA_TOKEN_URL,
        config: ClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        rate: float = GET_ORDERS_RATE,
        burst: int = GET_ORDERS_BURST,
    ) -> None:
        self._config = config or ClientConfig()
        self._clock = clock
        self._spapi_endpoint = spapi_endpoint or None
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self._config.request_timeout,
            headers={"user-agent": user_agent()},
            follow_redirects=False,
        )
        self._limiter = RateLimiter(
            rate=rate,
            burst=self._config.usable_burst(burst, refill_from_answer=False),
            monotonic=clock.monotonic,
            sleep=sleep,
            slow_factor=self._config.throttle_slow_factor,
            slow_seconds=self._config.throttle_slow_seconds,
        )
        self._tokens = LwaTokenCache(
            http=self._http,
            app=app,
            token_url=lwa_endpoint,
            monotonic=clock.monotonic,
            refresh_margin=self._config.token_refresh_margin,
            request_timeout=self._config.request_timeout,
        )

    @property
    def limiter(self) -> RateLimiter:
        """The per-(seller, ``getOrders``) buckets (read by tests and metrics)."""
        return self._limiter

    async def __aenter__(self) -> OrdersClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop token exchanges in flight and close the connection pool."""
        await self._tokens.aclose()
        await self._http.aclose()

    async def pages(self, seller: SellerCredentials, query: OrdersQuery) -> AsyncIterator[OrdersPage]:
        """Every page of the listing, in order, following ``NextToken`` until a page has none."""
        next_token: str | None = None
        while True:
            page = await self.get_orders(seller, query, next_token)
            yield page
            if page.next_token is None:
                return
            if page.next_token == next_token:
                logger.warning("getOrders for seller %s returned its own NextToken again; stopping", seller.seller_id)
                return
            next_token = page.next_token

    async def get_orders(
        self, seller: SellerCredentials, query: OrdersQuery, next_token: str | None = None
    ) -> OrdersPage:
        """One page; retries 429/5xx/timeouts, then :class:`RetryLater`; :class:`AccessDenied` after a fresh token."""
        url = base_url_for(query.marketplace_ids[0], self._spapi_endpoint) + GET_ORDERS_PATH
        params = query.params(next_token)
        key = (seller.seller_id, OPERATION_GET_ORDERS)
        denied_before = False
        attempt = 0
        while True:
            attempt += 1
            outcome, token = await self._attempt(seller, key, url, params)
            if isinstance(outcome, OrdersPage):
                more = outcome.next_token is not None
                logger.debug("getOrders seller=%s orders=%d more=%s", seller.seller_id, len(outcome.orders), more)
                return outcome
            if isinstance(outcome, Denied):
                if denied_before or token is None:
                    raise _access_denied(seller, outcome)
                denied_before = True  # Amazon may have dropped the token before its announced expiry
                self._tokens.invalidate(seller, token)
                continue
            if attempt >= self._config.max_attempts:
                raise RetryLater(
                    f"getOrders for seller {seller.seller_id} did not succeed ({outcome.reason})",
                    retry_after=self._backoff(attempt),
                    request_id=outcome.request_id,
                    status=outcome.status,
                )
            delay = self._backoff(attempt)
            logger.info(
                "getOrders retry seller=%s attempt=%d reason=%r request_id=%s in %.2fs",
                seller.seller_id,
                attempt,
                outcome.reason,
                outcome.request_id,
                delay,
            )
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._config.backoff_cap, self._config.backoff_base * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    async def _attempt(
        self, seller: SellerCredentials, key: tuple[str, str], url: str, params: dict[str, str]
    ) -> tuple[OrdersPage | Transient | Denied, AccessToken | None]:
        """Wait for the bucket, then one HTTP attempt with a current access token; failures come back as values."""
        await self._limiter.acquire(key, max_wait=math.inf)
        try:
            token = await self._tokens.access_token(seller, max_wait=self._config.call_deadline)
        except RetryLater as exc:
            return Transient(status=exc.status, request_id=None, reason=exc.message), None
        try:
            response = await self._http.get(
                url, params=params, headers={"x-amz-access-token": token.value.get_secret_value()}
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return Transient(status=None, request_id=None, reason=f"no answer: {type(exc).__name__}"), token
        self._limiter.observe_limit(key, response.headers.get("x-amzn-RateLimit-Limit"))
        outcome = classify_orders(response)
        if isinstance(outcome, Transient) and outcome.throttled:
            self._limiter.throttled(key)
        return outcome, token


def _access_denied(seller: SellerCredentials, denied: Denied) -> AccessDenied:
    error = denied.error
    text = f"{error.code}: {error.message}" if error else f"HTTP {denied.status}"
    return AccessDenied(
        f"getOrders: access denied for seller {seller.seller_id}: {text}",
        seller_id=seller.seller_id,
        request_id=denied.request_id,
        code=error.code if error else None,
        details=error.details if error else None,
    )
