"""``NotificationsClient``: the Notifications API operations that onboard a seller (destinations, subscriptions).

What it shares with :class:`~connectors.spapi.client.SolicitationsClient`: the LWA cache (:mod:`.lwa`), token
buckets (:mod:`.ratelimit`), the tuning (:class:`~connectors.spapi.client.ClientConfig`: deadline, attempts, backoff)
and the errors (:mod:`.errors`). What differs (``docs/amazon-facts.md`` §8):

* **Grantless operations** act for the application: ``getDestinations``, ``createDestination``,
  ``deleteDestination``, ``deleteSubscriptionById`` (and ``getDestination``, ``getSubscriptionById``) take a token
  from ``grant_type=client_credentials`` with the scope ``sellingpartnerapi::notifications``. ``getSubscription`` and
  ``createSubscription`` are **not** grantless: they take the seller's token, like Solicitations.
* **Endpoints by region**, not by marketplace: a destination belongs to the app in one region, a subscription to a
  (seller, app) pair in the seller's region. ``spapi_endpoint`` overrides every region (sandbox, tests).
* **Rate limits** from the model: every Notifications operation's default plan is 1 request/s, burst 5 (the
  ``Usage Plan`` tables of ``notifications.json``; a unit test reads them). Buckets are keyed by (seller id,
  operation), or by (``app:<client id>``, operation) for grantless calls.

Results are values (:mod:`.notification_responses`): a destination, a subscription, a :class:`Conflict` (exists or in
use), a removal. Failures raise the package's errors: :class:`RetryLater` after the retries and the deadline,
:class:`AccessDenied` (a seller's call denied twice, the second time with a fresh token),
:class:`AppCredentialsRejected` (a grantless call denied twice: the app itself may not do this),
:class:`RejectedRequest` (400 and other 4xx).
Creates are retried on 5xx like any call: a create that took effect before failing answers 409 on the retry, which
the caller reads as "exists" and looks up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from connectors.clock import Clock
from statemachine.marketplaces import Region

from .client import ClientConfig, user_agent
from .credentials import AppCredentials, SellerCredentials
from .endpoints import DEFAULT_LWA_TOKEN_URL, REGION_BASE_URLS
from .errors import AccessDenied, AppCredentialsRejected, RejectedRequest, RetryLater
from .lwa import SCOPE_NOTIFICATIONS, AccessToken, LwaTokenCache
from .notification_responses import (
    Conflict,
    Destination,
    Missing,
    Removed,
    Subscription,
    classify_destination,
    classify_destinations,
    classify_removal,
    classify_subscription,
)
from .ratelimit import RateLimiter, Sleep
from .responses import Denied, Transient

__all__ = [
    "GRANTLESS_OPERATIONS",
    "NOTIFICATIONS_BURST",
    "NOTIFICATIONS_RATE",
    "ORDER_CHANGE",
    "ORDER_CHANGE_PAYLOAD_VERSION",
    "NotificationsClient",
]

logger = logging.getLogger(__name__)

ORDER_CHANGE = "ORDER_CHANGE"
ORDER_CHANGE_PAYLOAD_VERSION = "1.0"
"""The payload version of ORDER_CHANGE (the schema's ``PayloadVersion`` and the model's subscription examples)."""

NOTIFICATIONS_RATE = 1.0
NOTIFICATIONS_BURST = 5
"""Default usage plan of every Notifications operation (requests/s, burst), from the model's descriptions."""

GRANTLESS_OPERATIONS = frozenset(
    {
        "getDestinations",
        "createDestination",
        "getDestination",
        "deleteDestination",
        "getSubscriptionById",
        "deleteSubscriptionById",
    }
)
"""Operations the model calls grantless; every other Notifications operation needs the seller's token."""

_R = TypeVar("_R")
_Method = Literal["GET", "POST", "DELETE"]


@dataclass(frozen=True, slots=True)
class _Request:
    operation: str
    method: _Method
    url: str
    seller: SellerCredentials | None
    """The seller whose token the call takes; ``None`` for a grantless operation."""
    json: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None


class NotificationsClient:
    """Async client of the Notifications API for one application; use as ``async with NotificationsClient(...)``."""

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
    ) -> None:
        self._config = config or ClientConfig()
        self._clock = clock
        self._spapi_endpoint = (spapi_endpoint or "").rstrip("/") or None
        self._app_key = f"app:{app.client_id}"
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self._config.request_timeout,
            headers={"user-agent": user_agent()},
            follow_redirects=False,
        )
        self._limiter = RateLimiter(
            rate=NOTIFICATIONS_RATE,
            burst=self._config.usable_burst(NOTIFICATIONS_BURST, refill_from_answer=False),
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

    def __repr__(self) -> str:
        return f"NotificationsClient(spapi_endpoint={self._spapi_endpoint!r}, tokens={self._tokens!r})"

    @property
    def limiter(self) -> RateLimiter:
        """The per-(seller or app, operation) buckets (read by tests)."""
        return self._limiter

    async def __aenter__(self) -> NotificationsClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop token exchanges in flight and close the connection pool."""
        await self._tokens.aclose()
        await self._http.aclose()

    # --- operations ------------------------------------------------------------------------------------------------

    async def get_destinations(self, region: Region) -> list[Destination]:
        """Every destination of the application in ``region`` (``getDestinations``, grantless)."""
        url = self._url(region, "/notifications/v1/destinations")
        return await self._call(_Request("getDestinations", "GET", url, None), classify_destinations)

    async def create_destination(self, region: Region, *, name: str, sqs_arn: str) -> Destination | Conflict:
        """Create an SQS destination (``createDestination``, grantless); :class:`Conflict` when the ARN has one."""
        url = self._url(region, "/notifications/v1/destinations")
        body = {"name": name, "resourceSpecification": {"sqs": {"arn": sqs_arn}}}
        return await self._call(_Request("createDestination", "POST", url, None, json=body), classify_destination)

    async def delete_destination(self, region: Region, destination_id: str) -> Removed | Conflict:
        """Delete a destination (``deleteDestination``, grantless); :class:`Conflict` while subscriptions use it."""
        url = self._url(region, f"/notifications/v1/destinations/{quote(destination_id, safe='')}")
        return await self._call(_Request("deleteDestination", "DELETE", url, None), classify_removal)

    async def get_subscription(
        self, seller: SellerCredentials, region: Region, notification_type: str, payload_version: str
    ) -> Subscription | None:
        """The seller's subscription to ``notification_type`` (``getSubscription``, seller token); None if none."""
        url = self._url(region, f"/notifications/v1/subscriptions/{quote(notification_type, safe='')}")
        request = _Request("getSubscription", "GET", url, seller, params={"payloadVersion": payload_version})
        outcome: Subscription | Conflict | Missing = await self._call(request, classify_subscription)
        if isinstance(outcome, Conflict):  # not in the model for getSubscription: do not guess
            raise RejectedRequest(f"getSubscription answered 409 ({outcome.describe()})", status=409)
        return None if isinstance(outcome, Missing) else outcome

    async def create_subscription(
        self,
        seller: SellerCredentials,
        region: Region,
        notification_type: str,
        *,
        payload_version: str,
        destination_id: str,
        processing_directive: Mapping[str, Any] | None = None,
    ) -> Subscription | Conflict:
        """Subscribe the seller (``createSubscription``, seller token); :class:`Conflict` when subscribed already."""
        url = self._url(region, f"/notifications/v1/subscriptions/{quote(notification_type, safe='')}")
        body: dict[str, Any] = {"payloadVersion": payload_version, "destinationId": destination_id}
        if processing_directive is not None:
            body["processingDirective"] = dict(processing_directive)
        request = _Request("createSubscription", "POST", url, seller, json=body)
        outcome: Subscription | Conflict | Missing = await self._call(request, classify_subscription)
        if isinstance(outcome, Missing):
            raise RejectedRequest(
                f"createSubscription answered 404 (is destination {destination_id} unknown in this region?)",
                status=404,
                request_id=outcome.request_id,
            )
        return outcome

    async def delete_subscription_by_id(
        self, region: Region, notification_type: str, subscription_id: str
    ) -> Removed | Conflict:
        """Delete a subscription of the app by id (``deleteSubscriptionById``, grantless)."""
        path = f"/notifications/v1/subscriptions/{quote(notification_type, safe='')}/{quote(subscription_id, safe='')}"
        url = self._url(region, path)
        return await self._call(_Request("deleteSubscriptionById", "DELETE", url, None), classify_removal)

    # --- machinery -------------------------------------------------------------------------------------------------

    def _url(self, region: Region, path: str) -> str:
        return (self._spapi_endpoint or REGION_BASE_URLS[region]) + path

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._config.backoff_cap, self._config.backoff_base * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    def _who(self, request: _Request) -> str:
        return f"seller {request.seller.seller_id}" if request.seller else self._app_key

    async def _token(self, request: _Request, deadline: float) -> AccessToken:
        max_wait = max(0.0, deadline - self._clock.monotonic())
        if request.seller is None:
            return await self._tokens.grantless_token(SCOPE_NOTIFICATIONS, max_wait=max_wait)
        return await self._tokens.access_token(request.seller, max_wait=max_wait)

    def _forget(self, request: _Request, token: AccessToken) -> None:
        if request.seller is None:
            self._tokens.invalidate_grantless(SCOPE_NOTIFICATIONS, token)
        else:
            self._tokens.invalidate(request.seller, token)

    async def _call(self, request: _Request, classify: Callable[[httpx.Response], _R | Transient | Denied]) -> _R:
        """Token, bucket, attempt, classify; retries transient failures, a denial once with a fresh token."""
        deadline = self._clock.monotonic() + self._config.call_deadline
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token: AccessToken | None = None
            outcome: _R | Transient | Denied
            try:
                token = await self._token(request, deadline)
            except RetryLater as exc:
                outcome = Transient(status=exc.status, request_id=None, reason=exc.message)
            else:
                outcome = await self._attempt(request, token, deadline, classify)
            if isinstance(outcome, Transient):
                delay = self._backoff(attempt)
                if attempt >= self._config.max_attempts or self._clock.monotonic() + delay >= deadline:
                    raise self._give_up(request, outcome, delay)
                logger.info(
                    "spapi retry %s op=%s attempt=%d reason=%r",
                    self._who(request),
                    request.operation,
                    attempt,
                    outcome.reason,
                )
                await self._sleep(delay)
                continue
            if isinstance(outcome, Denied):
                if not refreshed and token is not None:
                    refreshed = True
                    self._forget(request, token)
                    continue
                raise self._denied(request, outcome)
            logger.debug("spapi done %s op=%s %s", self._who(request), request.operation, outcome)
            return outcome

    async def _attempt(
        self,
        request: _Request,
        token: AccessToken,
        deadline: float,
        classify: Callable[[httpx.Response], _R | Transient | Denied],
    ) -> _R | Transient | Denied:
        """One rate-limited HTTP attempt; transport failures come back as :class:`Transient`."""
        key = (request.seller.seller_id if request.seller else self._app_key, request.operation)
        if await self._limiter.acquire(key, max_wait=deadline - self._clock.monotonic()) is None:
            wait = self._limiter.delay(key)
            raise RetryLater(
                f"rate limit of {key[0]} for {key[1]} needs {wait:.1f}s, more than the call deadline allows",
                retry_after=wait,
            )
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            return Transient(status=None, request_id=None, reason="deadline reached while waiting for the rate limit")
        try:
            response = await self._http.request(
                request.method,
                request.url,
                params=dict(request.params) if request.params else None,
                json=dict(request.json) if request.json is not None else None,
                headers={"x-amz-access-token": token.value.get_secret_value()},
                timeout=min(self._config.request_timeout, remaining),
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return Transient(status=None, request_id=None, reason=f"no answer: {type(exc).__name__}")
        self._limiter.observe_limit(key, response.headers.get("x-amzn-RateLimit-Limit"))
        outcome = classify(response)
        if isinstance(outcome, Transient) and outcome.throttled:
            self._limiter.throttled(key)
        return outcome

    def _give_up(self, request: _Request, last: Transient, retry_after: float) -> RetryLater:
        logger.warning(
            "spapi giving up %s op=%s reason=%r request_id=%s",
            self._who(request),
            request.operation,
            last.reason,
            last.request_id,
        )
        return RetryLater(
            f"{request.operation} for {self._who(request)} did not succeed in time ({last.reason})",
            retry_after=retry_after,
            request_id=last.request_id,
            status=last.status,
        )

    def _denied(self, request: _Request, denied: Denied) -> AccessDenied | AppCredentialsRejected:
        error = denied.error
        text = f"{error.code}: {error.message}" if error else f"HTTP {denied.status}"
        if error and error.details:
            text += f" ({error.details})"
        if request.seller is None:
            return AppCredentialsRejected(
                f"{request.operation} (grantless) denied for {self._app_key}: {text}; check that the app has "
                "access to the Notifications API",
                error=error.code if error else None,
                status=denied.status,
            )
        return AccessDenied(
            f"{request.operation}: access denied for seller {request.seller.seller_id}: {text}",
            seller_id=request.seller.seller_id,
            request_id=denied.request_id,
            code=error.code if error else None,
            details=error.details if error else None,
        )
