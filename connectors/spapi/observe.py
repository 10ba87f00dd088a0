"""What the SP-API connector tells an observer (metrics): each HTTP attempt, and each failed LWA token exchange.

The connector never imports ``streams``: a caller that wants numbers passes plain callables
(``SolicitationsClient(observer=..., lwa_observer=...)``) and receives these frozen records. They carry only
bounded, non-secret values: an operation id, a seller id, an HTTP status, seconds, and a reason from
:data:`LWA_FAILURE_REASONS`; never a token, an order id or a message text.

An observer that raises is logged and ignored (:func:`notify`): measuring must never change what the client does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "LWA_FAILURE_REASONS",
    "CallObserved",
    "CallObserver",
    "LwaFailure",
    "LwaObserver",
    "lwa_failure_reason",
    "notify",
]

logger = logging.getLogger(__name__)

_OAUTH_ERRORS = (
    "invalid_grant",
    "invalid_client",
    "invalid_request",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_grant_type",
)
LWA_FAILURE_REASONS = (
    *_OAUTH_ERRORS,
    "throttled",
    "server_error",
    "timeout",
    "unreachable",
    "malformed_response",
    "other",
)
"""Every ``LwaFailure.reason``: the OAuth error code LWA answered, or what else went wrong."""


@dataclass(frozen=True, slots=True)
class CallObserved:
    """One HTTP attempt of an SP-API operation (a retried call reports each attempt)."""

    operation: str
    """The operation id of Amazon's model (``getSolicitationActionsForOrder``, ...)."""
    seller_id: str
    status: int | None
    """The HTTP status, or ``None`` when no answer arrived (timeout, connection error)."""
    seconds: float
    """Real seconds of the HTTP exchange alone (rate-limit waits and backoff excluded)."""
    throttled: bool
    """Amazon answered 429: the seller's bucket for this operation was empty."""


@dataclass(frozen=True, slots=True)
class LwaFailure:
    """A token exchange with LWA that did not give a token (reported once per exchange, not per waiter)."""

    seller_id: str | None
    """The seller whose refresh token was exchanged; ``None`` for the app's own (grantless) token."""
    reason: str
    """One of :data:`LWA_FAILURE_REASONS`."""


CallObserver = Callable[[CallObserved], None]
LwaObserver = Callable[[LwaFailure], None]

_E = TypeVar("_E")


def lwa_failure_reason(status: int, error: str | None) -> str:
    """The bounded reason for a non-200 LWA answer: its OAuth ``error`` code when it is a known one, else the class
    of the status (``throttled`` for 429, ``server_error`` for 5xx), else ``other``."""
    if error == "invalid_grant":
        return error
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    return error if error in _OAUTH_ERRORS else "other"


def notify(observer: Callable[[_E], None] | None, event: _E) -> None:
    """Call ``observer`` with ``event``; an observer that raises is logged and ignored."""
    if observer is None:
        return
    try:
        observer(event)
    except Exception:
        logger.exception("SP-API observer %r failed on %s", observer, type(event).__name__)
