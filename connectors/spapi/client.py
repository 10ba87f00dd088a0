"""``SolicitationsClient``: the two Solicitations operations for many sellers, on one ``httpx.AsyncClient``.

It owns everything between "send this order's solicitation" and Amazon's answer: the endpoint for the
marketplace, the seller's LWA access token, the seller's rate-limit bucket, retries with capped exponential
backoff and jitter inside a total deadline per call, and the mapping of every response to a result or an error
(:mod:`connectors.spapi.responses`). The caller (the sender) sees only :mod:`~connectors.spapi.results` and
:mod:`~connectors.spapi.errors`.

Retries: 429, 5xx, 408, timeouts and connection errors are retried until ``max_attempts`` or the call deadline;
then :class:`RetryLater` tells the caller when to come back. A POST that failed *ambiguously* (5xx, or a timeout
after the request was written) is retried as a POST: if Amazon took the first one, the retry answers 403 "not
available", which we report as ``NotAvailable(maybe_sent=True)`` so the order is treated as sent.
A 403 about access is retried once with a freshly exchanged token before it becomes :class:`AccessDenied`.

Time: deadlines and buckets use the injected clock's ``monotonic()`` and waits use the injected ``sleep``, so unit
tests run the whole retry logic on a fake clock; the transport is injectable (``httpx.MockTransport``).

Observing: the optional ``observer`` is told about every HTTP attempt (:class:`~connectors.spapi.observe.CallObserved`:
operation, seller, status, seconds, throttled) and ``lwa_observer`` about every failed token exchange; both only
watch (an observer that raises is logged and ignored).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import random
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Literal, TypeVar, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors.clock import Clock

from .credentials import AppCredentials, SellerCredentials
from .endpoints import DEFAULT_LWA_TOKEN_URL, base_url_for
from .errors import AccessDenied, RetryLater
from .lwa import AccessToken, LwaTokenCache
from .observe import CallObserved, CallObserver, LwaObserver, notify
from .ratelimit import RateLimiter, Sleep
from .responses import Denied, Transient, classify_actions, classify_create
from .results import ActionsResult, CreateResult, NotAvailable
from .transport import AiohttpTransport

__all__ = [
    "OPERATION_CREATE",
    "OPERATION_GET",
    "ClientConfig",
    "SolicitationsClient",
    "user_agent",
]

logger = logging.getLogger(__name__)

OPERATION_GET = "getSolicitationActionsForOrder"
OPERATION_CREATE = "createProductReviewAndSellerFeedbackSolicitation"
"""Operation ids of the official model; also the second half of every rate-limit key."""

_R = TypeVar("_R")


def user_agent() -> str:
    """``solicit/<version> (Language=Python/<x.y.z>; Platform=<os>/<arch>)``, the format Amazon asks for."""
    try:
        ours = version("solicit")
    except PackageNotFoundError:  # pragma: no cover - source tree without install
        ours = "0.0.0"
    runtime = f"Language=Python/{platform.python_version()}; Platform={platform.system()}/{platform.machine()}"
    return f"solicit/{ours} ({runtime})"


class ClientConfig(BaseModel):
    """Tuning of the client. Defaults match Amazon's default Solicitations plan (1 request/s, burst 5).

    A pydantic model so that a process's settings can carry it as is (``streams.settings``): each default lives
    here only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_deadline: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one SP-API operation may take in total (token, rate-limit waits, retries, backoff).",
    )
    request_timeout: float = Field(default=10.0, gt=0, description="Seconds one SP-API HTTP attempt may take.")
    max_attempts: int = Field(default=5, ge=1, description="HTTP attempts per SP-API operation, the first included.")
    backoff_base: float = Field(default=0.5, gt=0, description="Backoff before the second attempt, in seconds.")
    backoff_cap: float = Field(
        default=8.0,
        gt=0,
        description="Longest backoff between two attempts; attempt n+1 waits in [d/2, d], d = min(cap, base*2^(n-1)).",
    )
    rate: float = Field(
        default=1.0, gt=0, description="Requests/s per (seller, operation) until Amazon says otherwise."
    )
    burst: int = Field(default=5, ge=1, description="Burst per (seller, operation) until Amazon says otherwise.")
    burst_headroom: float | None = Field(
        default=None,
        ge=0,
        description="Tokens of Amazon's burst never used, so that latency cannot cause 429s; unset: 0 for "
        "Solicitations (its buckets refill only from Amazon's answer), 1 for getOrders and Notifications.",
    )
    throttle_slow_factor: float = Field(
        default=0.5, gt=0, le=1, description="After a 429, the bucket refills at rate x this factor ..."
    )
    throttle_slow_seconds: float = Field(default=10.0, ge=0, description="... for this many seconds.")
    token_refresh_margin: float = Field(
        default=300.0, ge=0, description="Replace an LWA access token this many seconds before it expires."
    )
    max_connections: int = Field(default=100, ge=1, description="HTTP connections of one client.")

    def usable_burst(self, burst: float, *, refill_from_answer: bool) -> float:
        """How much of Amazon's ``burst`` a client's bucket holds: ``burst_headroom`` less, by default none for a
        bucket that refills only from Amazon's answer and one token for a bucket that refills from the send."""
        headroom = self.burst_headroom
        if headroom is None:
            headroom = 0.0 if refill_from_answer else 1.0
        return max(1.0, burst - headroom)


class SolicitationsClient:
    """Async client of the Solicitations API for many sellers; use as ``async with SolicitationsClient(...)``."""

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
        observer: CallObserver | None = None,
        lwa_observer: LwaObserver | None = None,
    ) -> None:
        self._config = config or ClientConfig()
        self._observer = observer
        self._clock = clock
        self._spapi_endpoint = spapi_endpoint or None
        self._rng = rng or random.Random()
        self._sleep = sleep
        # aiohttp's pool: httpx's own cost ~6x the CPU per call with many sellers in flight (issue 12 P3).
        self._transport = transport or AiohttpTransport(max_connections=self._config.max_connections)
        self._headers = {"user-agent": user_agent(), "accept": "*/*", "accept-encoding": "gzip, deflate"}
        self._http = httpx.AsyncClient(  # the LWA exchanges; SP-API calls go straight to the transport
            transport=self._transport,
            timeout=self._config.request_timeout,
            headers={"user-agent": user_agent()},
            follow_redirects=False,
        )
        self._limiter = RateLimiter(
            rate=self._config.rate,
            burst=self._config.usable_burst(self._config.burst, refill_from_answer=True),
            monotonic=clock.monotonic,
            sleep=sleep,
            slow_factor=self._config.throttle_slow_factor,
            slow_seconds=self._config.throttle_slow_seconds,
            hold_until_answered=True,
        )
        self._tokens = LwaTokenCache(
            http=self._http,
            app=app,
            token_url=lwa_endpoint,
            monotonic=clock.monotonic,
            refresh_margin=self._config.token_refresh_margin,
            request_timeout=self._config.request_timeout,
            observer=lwa_observer,
        )

    def __repr__(self) -> str:
        return f"SolicitationsClient(spapi_endpoint={self._spapi_endpoint!r}, tokens={self._tokens!r})"

    @property
    def limiter(self) -> RateLimiter:
        """The per-(seller, operation) buckets (read by tests and metrics)."""
        return self._limiter

    async def __aenter__(self) -> SolicitationsClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop token exchanges in flight and close the connection pool."""
        await self._tokens.aclose()
        await self._http.aclose()

    async def get_solicitation_actions(
        self, seller: SellerCredentials, order_id: str, marketplace_id: str
    ) -> ActionsResult:
        """Is ``productReviewAndSellerFeedback`` offered for this order now? (``getSolicitationActionsForOrder``)."""
        path = f"/solicitations/v1/orders/{quote(order_id, safe='')}"
        return await self._call(seller, OPERATION_GET, "GET", path, order_id, marketplace_id, classify_actions)

    async def create_product_review_and_seller_feedback(
        self, seller: SellerCredentials, order_id: str, marketplace_id: str
    ) -> CreateResult:
        """Ask the buyer for a review and seller feedback (``createProductReviewAndSellerFeedbackSolicitation``)."""
        path = f"/solicitations/v1/orders/{quote(order_id, safe='')}/solicitations/productReviewAndSellerFeedback"
        return await self._call(seller, OPERATION_CREATE, "POST", path, order_id, marketplace_id, classify_create)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._config.backoff_cap, self._config.backoff_base * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    async def _call(
        self,
        seller: SellerCredentials,
        operation: str,
        method: Literal["GET", "POST"],
        path: str,
        order_id: str,
        marketplace_id: str,
        classify: Callable[[httpx.Response], _R | Transient | Denied],
    ) -> _R:
        url = base_url_for(marketplace_id, self._spapi_endpoint) + path
        key = (seller.seller_id, operation)
        deadline = self._clock.monotonic() + self._config.call_deadline
        maybe_sent = False
        refreshed_after_denial = False
        last: Transient | None = None
        attempt = 0
        while True:
            attempt += 1
            token: AccessToken | None = None
            outcome: _R | Transient | Denied
            try:
                token = await self._tokens.access_token(seller, max_wait=max(0.0, deadline - self._clock.monotonic()))
            except RetryLater as exc:
                outcome = Transient(status=exc.status, request_id=None, reason=exc.message)
            else:
                outcome = await self._attempt(key, method, url, marketplace_id, token, deadline, maybe_sent, classify)
            if isinstance(outcome, Transient):
                last = outcome
                maybe_sent = maybe_sent or (method == "POST" and outcome.maybe_sent)
                delay = self._backoff(attempt)
                if attempt >= self._config.max_attempts or self._clock.monotonic() + delay >= deadline:
                    raise self._give_up(operation, seller, order_id, last, delay, maybe_sent)
                logger.info(
                    "spapi retry seller=%s op=%s order=%s attempt=%d reason=%r request_id=%s in %.2fs",
                    seller.seller_id,
                    operation,
                    order_id,
                    attempt,
                    outcome.reason,
                    outcome.request_id,
                    delay,
                )
                await self._sleep(delay)
                continue
            if isinstance(outcome, Denied):
                if not refreshed_after_denial and token is not None:
                    # Amazon may have dropped the token before its announced expiry: one retry with a fresh one.
                    refreshed_after_denial = True
                    self._tokens.invalidate(seller, token)
                    continue
                raise _access_denied(seller, operation, order_id, outcome)
            if isinstance(outcome, NotAvailable) and maybe_sent:
                outcome = cast(_R, replace(outcome, maybe_sent=True))
            logger.debug("spapi done seller=%s op=%s order=%s %s", seller.seller_id, operation, order_id, outcome)
            return outcome

    async def _attempt(
        self,
        key: tuple[str, str],
        method: Literal["GET", "POST"],
        url: str,
        marketplace_id: str,
        token: AccessToken,
        deadline: float,
        maybe_sent: bool,
        classify: Callable[[httpx.Response], _R | Transient | Denied],
    ) -> _R | Transient | Denied:
        """One rate-limited HTTP attempt; transport failures come back as :class:`Transient`."""
        waited = await self._limiter.acquire(key, max_wait=deadline - self._clock.monotonic())
        if waited is None:
            # Waiting longer than the deadline cannot succeed in this call: hand the wait to the caller.
            wait = self._limiter.delay(key)
            raise RetryLater(
                f"rate limit of seller {key[0]} for {key[1]} needs {wait:.1f}s, more than the call deadline allows",
                retry_after=wait,
                maybe_sent=maybe_sent,
            )
        try:
            return await self._send(key, method, url, marketplace_id, token, deadline, classify)
        finally:
            self._limiter.answered(key)

    async def _send(
        self,
        key: tuple[str, str],
        method: Literal["GET", "POST"],
        url: str,
        marketplace_id: str,
        token: AccessToken,
        deadline: float,
        classify: Callable[[httpx.Response], _R | Transient | Denied],
    ) -> _R | Transient | Denied:
        """The HTTP request of one attempt, its token already taken."""
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            return Transient(status=None, request_id=None, reason="deadline reached while waiting for the rate limit")
        sent_at = self._clock.monotonic()
        try:
            response = await self._exchange(
                method, url, marketplace_id, token, min(self._config.request_timeout, remaining)
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Amazon: safe to retry, never ambiguous.
            self._observed(key, None, sent_at)
            return Transient(status=None, request_id=None, reason=f"not sent: {type(exc).__name__}")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            # The request may have been written and processed: ambiguous for a POST.
            self._observed(key, None, sent_at)
            return Transient(status=None, request_id=None, reason=f"no answer: {type(exc).__name__}", maybe_sent=True)
        self._observed(key, response.status_code, sent_at)
        self._limiter.observe_limit(key, response.headers.get("x-amzn-RateLimit-Limit"))
        outcome = classify(response)
        if isinstance(outcome, Transient) and outcome.throttled:
            self._limiter.throttled(key)
        return outcome

    async def _exchange(
        self, method: str, url: str, marketplace_id: str, token: AccessToken, seconds: float
    ) -> httpx.Response:
        """One HTTP exchange straight through the transport, the body read: httpx's client pipeline (auth, redirects,
        cookies, none of which SP-API calls use) cost as much CPU as the exchange itself (issue 12 P3)."""
        request = httpx.Request(
            method,
            url,
            params={"marketplaceIds": marketplace_id},
            headers={**self._headers, "x-amz-access-token": token.value.get_secret_value()},
            extensions={"timeout": httpx.Timeout(seconds).as_dict()},
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _observed(self, key: tuple[str, str], status: int | None, sent_at: float) -> None:
        """Tell the observer about one HTTP attempt of ``key`` = (seller, operation)."""
        if self._observer is None:
            return
        seconds = max(0.0, self._clock.monotonic() - sent_at)
        seller_id, operation = key
        notify(self._observer, CallObserved(operation, seller_id, status, seconds, throttled=status == 429))

    def _give_up(
        self,
        operation: str,
        seller: SellerCredentials,
        order_id: str,
        last: Transient | None,
        retry_after: float,
        maybe_sent: bool,
    ) -> RetryLater:
        reason = last.reason if last else "deadline reached"
        request_id = last.request_id if last else None
        logger.warning(
            "spapi giving up seller=%s op=%s order=%s reason=%r request_id=%s maybe_sent=%s",
            seller.seller_id,
            operation,
            order_id,
            reason,
            request_id,
            maybe_sent,
        )
        return RetryLater(
            f"{operation} for order {order_id} of seller {seller.seller_id} did not succeed in time ({reason})",
            retry_after=retry_after,
            request_id=request_id,
            status=last.status if last else None,
            maybe_sent=maybe_sent,
        )


def _access_denied(seller: SellerCredentials, operation: str, order_id: str, denied: Denied) -> AccessDenied:
    error = denied.error
    text = f"{error.code}: {error.message}" if error else f"HTTP {denied.status}"
    if error and error.details:
        text += f" ({error.details})"
    return AccessDenied(
        f"{operation} for order {order_id}: access denied for seller {seller.seller_id}: {text}",
        seller_id=seller.seller_id,
        request_id=denied.request_id,
        code=error.code if error else None,
        details=error.details if error else None,
    )
