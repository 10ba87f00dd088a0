"""Login with Amazon: turn a seller's refresh token (or the app itself) into an access token, cached, refreshed ahead
of expiry.

One access token per refresh token, reused by every call for that seller until shortly before it expires
(``docs/amazon-facts.md`` §5). When many requests for one seller need a new token at once, exactly one
exchange runs and the others await it (single flight), so a burst of 30 orders costs one LWA call, not 30.

**Grantless** operations (``createDestination``, ``deleteSubscriptionById``, ...; ``docs/amazon-facts.md`` §8) act
for the application, not for a seller: :meth:`LwaTokenCache.grantless_token` exchanges the app's client id and secret
(``grant_type=client_credentials`` with a ``scope``) and caches one token per (app, scope) with the same single flight
and refresh ahead of expiry. A cache belongs to one app, so its keys are per app already; the grantless key names the
client id anyway, so that no key of one app can ever equal a key of another.

Failures become the package's errors: ``invalid_grant`` on a refresh token is :class:`AuthorizationRevoked` (the
seller must re-authorize; retrying cannot help, so it is never retried); ``invalid_client`` and other rejections of
our own request (``invalid_scope`` for a grantless token) are :class:`AppCredentialsRejected`; 429/5xx/timeouts are
:class:`RetryLater` for the caller's retry loop.

Observing: every exchange that gives no token is reported once (not once per waiter) to the optional ``observer`` as
an :class:`~connectors.spapi.observe.LwaFailure` with a bounded reason (metrics count them per seller).

Memory: tokens of sellers that stopped calling would stay forever, so every ``sweep_interval`` seconds a call
first drops the tokens that have expired (an expired token is never handed out, so only memory changes).

Secrets: the refresh token is read with ``get_secret_value()`` only to build the form body; the cache is keyed by
a SHA-256 digest of it; access tokens are kept as ``SecretStr``. Nothing here logs or formats a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from .credentials import AppCredentials, SellerCredentials
from .errors import AppCredentialsRejected, AuthorizationRevoked, RetryLater
from .observe import LwaFailure, LwaObserver, lwa_failure_reason, notify

__all__ = ["GRANTLESS_SCOPES", "SCOPE_NOTIFICATIONS", "AccessToken", "LwaTokenCache"]

logger = logging.getLogger(__name__)

_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded;charset=UTF-8"

SCOPE_NOTIFICATIONS = "sellingpartnerapi::notifications"
"""LWA scope of the grantless Notifications operations."""
GRANTLESS_SCOPES = frozenset({SCOPE_NOTIFICATIONS, "sellingpartnerapi::migration"})
"""The scopes LWA issues grantless (``client_credentials``) tokens for."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An LWA access token and when (monotonic seconds) to stop using and to start replacing it."""

    value: SecretStr
    expires_at: float
    refresh_at: float


@dataclass(frozen=True, slots=True)
class _Grant:
    """What one cached token stands for: a seller's authorization (``seller``) or the app itself (``scope``)."""

    key: str
    label: str
    """Who the token is for, in messages: ``seller X`` or ``app <client id> (scope ...)``; never a secret."""
    seller: SellerCredentials | None = None
    scope: str | None = None

    def form_fields(self) -> dict[str, str]:
        """The grant part of the token request; reads the refresh token's value only here."""
        if self.seller is not None:
            return {"grant_type": "refresh_token", "refresh_token": self.seller.refresh_token.get_secret_value()}
        return {"grant_type": "client_credentials", "scope": str(self.scope)}


def _cache_key(seller: SellerCredentials) -> str:
    return hashlib.sha256(seller.refresh_token.get_secret_value().encode()).hexdigest()


def _seller_grant(seller: SellerCredentials) -> _Grant:
    return _Grant(key=_cache_key(seller), label=f"seller {seller.seller_id}", seller=seller)


class LwaTokenCache:
    """Access tokens per refresh token and per grantless scope, with single-flight refresh ahead of expiry."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        app: AppCredentials,
        token_url: str,
        monotonic: Callable[[], float],
        refresh_margin: float = 300.0,
        request_timeout: float = 10.0,
        sweep_interval: float = 60.0,
        observer: LwaObserver | None = None,
    ) -> None:
        self._http = http
        self._observer = observer
        self._app = app
        self._token_url = token_url
        self._monotonic = monotonic
        self._refresh_margin = refresh_margin
        self._request_timeout = request_timeout
        self._tokens: dict[str, AccessToken] = {}
        self._in_flight: dict[str, asyncio.Task[AccessToken]] = {}
        self._sweep_interval = sweep_interval
        self._next_sweep = monotonic() + sweep_interval

    def __repr__(self) -> str:
        return f"LwaTokenCache(token_url={self._token_url!r}, client_id={self._app.client_id!r})"

    @property
    def cached_tokens(self) -> int:
        """How many access tokens are held (for metrics and tests)."""
        return len(self._tokens)

    async def access_token(self, seller: SellerCredentials, *, max_wait: float | None = None) -> AccessToken:
        """A usable access token for ``seller``: the cached one, or a fresh one from LWA.

        ``max_wait`` bounds only this caller's wait; a shared exchange keeps running for the other waiters. When a
        refresh ahead of expiry fails transiently, the old token is returned while it is still valid.
        """
        return await self._token_for(_seller_grant(seller), max_wait)

    async def grantless_token(self, scope: str = SCOPE_NOTIFICATIONS, *, max_wait: float | None = None) -> AccessToken:
        """A usable grantless access token of this app for ``scope`` (one of :data:`GRANTLESS_SCOPES`)."""
        return await self._token_for(self._grantless_grant(scope), max_wait)

    def _grantless_grant(self, scope: str) -> _Grant:
        if scope not in GRANTLESS_SCOPES:
            raise ValueError(f"not a grantless LWA scope: {scope!r} (known: {sorted(GRANTLESS_SCOPES)})")
        client_id = self._app.client_id
        return _Grant(key=f"grantless:{client_id}:{scope}", label=f"app {client_id} (scope {scope})", scope=scope)

    async def _token_for(self, grant: _Grant, max_wait: float | None) -> AccessToken:
        now = self._monotonic()
        if now >= self._next_sweep:
            self.sweep()
        cached = self._tokens.get(grant.key)
        if cached is not None and now < cached.refresh_at:
            return cached
        task = self._in_flight.get(grant.key)
        if task is None or task.done():
            task = asyncio.create_task(self._exchange(grant), name=f"lwa-refresh-{grant.label}")
            task.add_done_callback(_consume_exception)
            self._in_flight[grant.key] = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), max_wait)
        except TimeoutError:
            if cached is not None and self._monotonic() < cached.expires_at:
                return cached
            raise RetryLater(f"LWA token exchange for {grant.label} did not finish in time", retry_after=1.0) from None
        except RetryLater:
            if cached is not None and self._monotonic() < cached.expires_at:
                return cached
            raise

    def invalidate(self, seller: SellerCredentials, token: AccessToken) -> None:
        """Forget ``token`` (Amazon refused it) unless a newer token has already replaced it."""
        self._forget(_cache_key(seller), token)

    def invalidate_grantless(self, scope: str, token: AccessToken) -> None:
        """Forget a grantless ``token`` of ``scope`` (Amazon refused it) unless a newer one replaced it."""
        self._forget(self._grantless_grant(scope).key, token)

    def _forget(self, key: str, token: AccessToken) -> None:
        if self._tokens.get(key) is token:
            del self._tokens[key]

    def sweep(self) -> int:
        """Drop every expired token and return how many; ``access_token`` calls this every ``sweep_interval``.

        Drops only tokens past ``expires_at``, which ``access_token`` never returns (nor falls back to), so no caller
        can tell. No ``await`` here, so an exchange in flight cannot interleave: it stores its new token when it
        finishes, exactly as it would have; ``invalidate`` and ``_exchange`` already tolerate a missing key.
        """
        now = self._monotonic()
        self._next_sweep = now + self._sweep_interval
        expired = [key for key, token in self._tokens.items() if now >= token.expires_at]
        for key in expired:
            del self._tokens[key]
        return len(expired)

    async def aclose(self) -> None:
        """Cancel exchanges still running (the HTTP client is closed by its owner)."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()

    async def _exchange(self, grant: _Grant) -> AccessToken:
        try:
            token = await self._request_token(grant)
        except AuthorizationRevoked:
            self._tokens.pop(grant.key, None)
            raise
        else:
            self._tokens[grant.key] = token
            return token
        finally:
            self._in_flight.pop(grant.key, None)

    async def _request_token(self, grant: _Grant) -> AccessToken:
        sent_at = self._monotonic()
        form = {
            **grant.form_fields(),
            "client_id": self._app.client_id,
            "client_secret": self._app.client_secret.get_secret_value(),
        }
        try:
            response = await self._http.post(
                self._token_url,
                data=form,
                headers={"content-type": _FORM_CONTENT_TYPE},
                timeout=self._request_timeout,
            )
        except httpx.TimeoutException:
            self._failed(grant, "timeout")
            raise RetryLater(f"LWA token exchange for {grant.label} timed out", retry_after=1.0) from None
        except httpx.TransportError as exc:
            self._failed(grant, "unreachable")
            raise RetryLater(f"LWA unreachable for {grant.label}: {type(exc).__name__}", retry_after=1.0) from None
        logger.debug("LWA token exchange %s status=%s", grant.label, response.status_code)
        body = _json_object(response)
        if response.status_code == 200:
            return self._parse_token(grant, body, sent_at)
        self._failed(grant, lwa_failure_reason(response.status_code, _error_code(body)))
        raise _rejection(grant, response.status_code, body)

    def _failed(self, grant: _Grant, reason: str) -> None:
        seller_id = grant.seller.seller_id if grant.seller is not None else None
        notify(self._observer, LwaFailure(seller_id=seller_id, reason=reason))

    def _parse_token(self, grant: _Grant, body: dict[str, Any] | None, sent_at: float) -> AccessToken:
        value = body.get("access_token") if body else None
        expires_in = body.get("expires_in") if body else None
        if not isinstance(value, str) or not value or not isinstance(expires_in, int | float) or expires_in <= 0:
            self._failed(grant, "malformed_response")
            raise RetryLater(f"LWA returned a malformed token response for {grant.label}", retry_after=1.0)
        # Count the lifetime from when we *sent* the request: the token may have been issued any time after.
        margin = min(self._refresh_margin, expires_in / 2)
        return AccessToken(
            value=SecretStr(value),
            expires_at=sent_at + expires_in,
            refresh_at=sent_at + expires_in - margin,
        )


def _rejection(grant: _Grant, status: int, body: dict[str, Any] | None) -> Exception:
    """The error for a non-200 LWA answer (decided by the OAuth ``error`` code, not the status: §5)."""
    error = _error_code(body) or ""
    description = str(body.get("error_description", "")) if body else ""
    if error == "invalid_grant" and grant.seller is not None:
        seller_id = grant.seller.seller_id
        logger.warning("LWA: seller %s refresh token rejected (invalid_grant)", seller_id)
        return AuthorizationRevoked(
            f"seller {seller_id} must re-authorize the app (LWA invalid_grant: {description})", seller_id=seller_id
        )
    if status == 429 or status >= 500:
        return RetryLater(f"LWA answered {status} for {grant.label}", retry_after=1.0, status=status)
    return AppCredentialsRejected(
        f"LWA rejected the token request for {grant.label} ({status} {error or 'no error code'}: {description}); "
        "check the app's client id and secret"
        + (" and that the app may use this grantless scope" if grant.scope is not None else ""),
        error=error or None,
        status=status,
    )


def _error_code(body: dict[str, Any] | None) -> str | None:
    """The OAuth ``error`` of an LWA answer, if any."""
    error = str(body.get("error", "")) if body else ""
    return error or None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _consume_exception(task: asyncio.Task[AccessToken]) -> None:
    # Waiters may all have given up (deadline); mark the exception retrieved so asyncio does not log it.
    if not task.cancelled():
        task.exception()
