"""Failures of the SP-API connector, named for what the caller does next.

Domain outcomes (sent, not available, outside the window, actions offered or not) are *results*
(:mod:`connectors.spapi.results`), never exceptions: the sender branches on them every day. Only failures raise,
and every failure raised by this package is a :class:`SpApiError`; third-party exceptions (``httpx``) are mapped
at the edge and never escape.

Our exception hierarchy::

    SpApiError                      root; catch it to catch everything this package raises
    ├── RetryLater                  429 / 5xx / timeouts / connection errors after the call's retries and deadline
    │                                 are spent, or a rate-limit wait longer than the deadline: try the order
    │                                 again after ``retry_after`` seconds (``maybe_sent``: a POST may already
    │                                 have taken effect)
    ├── SellerNeedsAttention        this seller cannot be served until a human acts; park the seller's orders, alert
    │   ├── AuthorizationRevoked    LWA said ``invalid_grant``: the seller must re-authorize the app
    │   └── AccessDenied            SP-API 403 about the token, role or app authorization
    ├── AppCredentialsRejected      LWA rejected our app's client id/secret (e.g. an unrotated secret): stop every
    │                                 seller and alert the operator; no seller action helps
    └── RejectedRequest             the request itself is wrong (400, 404, 413, 415, unknown 4xx): dead-letter the
        │                             order, never retry it unchanged
        └── UnknownMarketplace      the order names a marketplace id we have no region for (never defaulted)

Every error that came from an HTTP response keeps Amazon's ``x-amzn-RequestId`` as ``request_id`` (quote it in
support tickets). No message, ``repr`` or attribute of these errors contains a token or secret: they are built
only from ids, status codes and Amazon's error ``code``/``message`` texts.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AppCredentialsRejected",
    "AuthorizationRevoked",
    "RejectedRequest",
    "RetryLater",
    "SellerNeedsAttention",
    "SpApiError",
    "UnknownMarketplace",
]


class SpApiError(Exception):
    """Root of every failure this package raises."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (x-amzn-RequestId={self.request_id})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, request_id={self.request_id!r})"


class RetryLater(SpApiError):
    """Amazon was throttling, failing or unreachable for longer than this call may wait: try again later.

    ``retry_after`` is a hint in seconds (the backoff or rate-limit wait we would have used next).
    ``maybe_sent`` is true when a ``createProductReviewAndSellerFeedbackSolicitation`` attempt failed ambiguously
    (a 5xx or a timeout after the request was written): Amazon may have sent the solicitation, so a later
    403 "not available" for this order means "sent", not "ineligible".
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        request_id: str | None = None,
        status: int | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after = retry_after
        self.status = status
        self.maybe_sent = maybe_sent

    def __repr__(self) -> str:
        return (
            f"RetryLater({self.message!r}, retry_after={self.retry_after:.3f}, status={self.status!r}, "
            f"request_id={self.request_id!r}, maybe_sent={self.maybe_sent!r})"
        )


class SellerNeedsAttention(SpApiError):
    """Nothing more can be done for this seller until a human acts; retrying only burns quota."""

    def __init__(self, message: str, *, seller_id: str, request_id: str | None = None) -> None:
        super().__init__(message, request_id=request_id)
        self.seller_id = seller_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, seller_id={self.seller_id!r}, request_id={self.request_id!r})"


class AuthorizationRevoked(SellerNeedsAttention):
    """LWA answered ``invalid_grant``: the seller's refresh token is revoked or invalid; they must re-authorize."""


class AccessDenied(SellerNeedsAttention):
    """SP-API answered 403 about access: token rejected, role missing, or the seller has not authorized the app.

    Raised only after one retry with a freshly exchanged access token, so a token Amazon expired early is not
    mistaken for a lost authorization. ``code``/``details`` are Amazon's texts (they never contain the token).
    """

    def __init__(
        self,
        message: str,
        *,
        seller_id: str,
        request_id: str | None = None,
        code: str | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message, seller_id=seller_id, request_id=request_id)
        self.code = code
        self.details = details


class AppCredentialsRejected(SpApiError):
    """LWA rejected the application's own credentials (``invalid_client`` and similar): fix the configuration."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.status = status


class RejectedRequest(SpApiError):
    """Amazon rejected the request as malformed or unknown (400/404/413/415): dead-letter, never retry unchanged."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r}, "
            f"request_id={self.request_id!r})"
        )


class UnknownMarketplace(RejectedRequest):
    """The marketplace id is not in our table, so we do not know which regional endpoint serves it."""

    def __init__(self, marketplace_id: str) -> None:
        super().__init__(f"unknown marketplace id {marketplace_id!r}: no SP-API region known for it")
        self.marketplace_id = marketplace_id
