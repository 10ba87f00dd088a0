"""Reading Solicitations responses: every documented status mapped to a result, a retry or a rejection.

Pure functions over ``httpx.Response`` (no I/O), so the whole mapping is unit-tested with hand-built responses.
Facts: ``docs/amazon-facts.md`` §1.3 and §3. Error bodies are parsed defensively: a gateway may answer
with HTML or with JSON that lacks ``errors``.

The 403 ambiguity: Amazon uses ``403 Unauthorized`` for "already sent / not eligible", for "outside the window"
and for real authorization failures. We tell them apart by the error ``message`` only (the code is the same).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from .errors import RejectedRequest
from .results import ActionsResult, CreateResult, NotAvailable, OutsideWindow, Sent

__all__ = [
    "ACTION_NAME",
    "ApiError",
    "Denied",
    "Transient",
    "classify_actions",
    "classify_create",
    "parse_errors",
    "request_id_of",
]

ACTION_NAME = "productReviewAndSellerFeedback"
"""The only solicitation action; eligibility is decided by this name in ``_links.actions``."""

_NOT_AVAILABLE = "not available for this amazonorderid"
_OUTSIDE_WINDOW = "5-30 day range"


@dataclass(frozen=True, slots=True)
class ApiError:
    """One entry of an SP-API ``errors`` list."""

    code: str | None
    message: str | None
    details: str | None


@dataclass(frozen=True, slots=True)
class Transient:
    """A failure worth retrying: 429, 408, 5xx, a 2xx body we cannot read, or no answer at all.

    ``status`` is ``None`` when no HTTP response arrived. ``maybe_sent`` is true when Amazon may have
    acted on the request before failing (5xx, or a timeout after the request was written); for a POST that makes
    the attempt ambiguous.
    """

    status: int | None
    request_id: str | None
    reason: str
    maybe_sent: bool = False

    @property
    def throttled(self) -> bool:
        """Amazon's bucket for this (seller, operation) was empty."""
        return self.status == 429


@dataclass(frozen=True, slots=True)
class Denied:
    """A 401/403 about access (token, role, app authorization); the client retries once with a fresh token."""

    status: int
    request_id: str | None
    error: ApiError | None


def request_id_of(response: httpx.Response) -> str | None:
    """Amazon's ``x-amzn-RequestId`` (quote it in support tickets)."""
    value: str | None = response.headers.get("x-amzn-RequestId")
    return value


def parse_errors(content: bytes) -> list[ApiError]:
    """The ``errors`` list of a body, or ``[]`` when the body is not the documented JSON shape."""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        return []
    raw = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        return []
    return [
        ApiError(code=_text(item.get("code")), message=_text(item.get("message")), details=_text(item.get("details")))
        for item in raw
        if isinstance(item, dict)
    ]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first_error(response: httpx.Response) -> ApiError | None:
    errors = parse_errors(response.content)
    return errors[0] if errors else None


def _classify_403(response: httpx.Response) -> NotAvailable | OutsideWindow | Denied:
    rid = request_id_of(response)
    for error in parse_errors(response.content):
        message = (error.message or "").lower()
        if _NOT_AVAILABLE in message:
            return NotAvailable(request_id=rid)
        if _OUTSIDE_WINDOW in message:
            return OutsideWindow(request_id=rid)
    # Any other 403 (including an unreadable body or a message we have never seen) is treated as an access
    # problem: that parks the seller and alerts a human, which is recoverable. Reading it as "not available"
    # would close the order silently, and a real authorization failure would then close every order of the seller.
    return Denied(status=403, request_id=rid, error=_first_error(response))


def _classify_failure(response: httpx.Response) -> Transient | Denied:
    """Statuses both operations share; raises :class:`RejectedRequest` for the dead-letter ones."""
    status = response.status_code
    rid = request_id_of(response)
    if status == 429 or status == 408 or status >= 500:
        error = _first_error(response)
        reason = f"{status} {error.code}: {error.message}" if error else f"HTTP {status}"
        return Transient(status=status, request_id=rid, reason=reason, maybe_sent=status >= 500)
    if status == 401:
        return Denied(status=status, request_id=rid, error=_first_error(response))
    error = _first_error(response)
    code = error.code if error else None
    text = f"{error.code}: {error.message}" if error else "no error body"
    message = f"Amazon rejected the request with {status} ({text})"
    raise RejectedRequest(message, status=status, code=code, request_id=rid)


def classify_actions(response: httpx.Response) -> ActionsResult | Transient | Denied:
    """Map a ``getSolicitationActionsForOrder`` response."""
    status = response.status_code
    rid = request_id_of(response)
    if 200 <= status < 300:
        try:
            body = response.json()
        except ValueError:
            return Transient(status=status, request_id=rid, reason=f"{status} with a body that is not JSON")
        links = body.get("_links") if isinstance(body, dict) else None
        actions = links.get("actions") if isinstance(links, dict) else None
        if not isinstance(actions, list):
            return Transient(status=status, request_id=rid, reason=f"{status} without _links.actions")
        offered = any(isinstance(a, dict) and a.get("name") == ACTION_NAME for a in actions)
        return ActionsResult(offered=offered, request_id=rid)
    if status == 403:
        verdict = _classify_403(response)
        # A domain 403 on the GET means "not offered now", the same as an empty action list.
        if isinstance(verdict, NotAvailable | OutsideWindow):
            return ActionsResult(offered=False, request_id=rid)
        return verdict
    return _classify_failure(response)


def classify_create(response: httpx.Response) -> CreateResult | Transient | Denied:
    """Map a ``createProductReviewAndSellerFeedbackSolicitation`` response (201 is documented; any 2xx is sent)."""
    status = response.status_code
    if 200 <= status < 300:
        return Sent(request_id=request_id_of(response))
    if status == 403:
        return _classify_403(response)
    return _classify_failure(response)
