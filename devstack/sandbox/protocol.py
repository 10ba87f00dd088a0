"""What the sandbox's wire looks like: operation names, Amazon's error texts, request facts and replies.

Shared by the rules (:mod:`.state`) and the HTTP layer (:mod:`.app`); pure data, no behaviour beyond shaping an
error body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTION_NAME",
    "HAL_JSON",
    "LWA_JSON",
    "MESSAGES",
    "OPERATION_CREATE",
    "OPERATION_GET",
    "OPERATION_LWA",
    "RATE_LIMIT_HEADER_STATUSES",
    "Reply",
    "RequestFacts",
    "error_body",
]

OPERATION_GET = "getSolicitationActionsForOrder"
OPERATION_CREATE = "createProductReviewAndSellerFeedbackSolicitation"
OPERATION_LWA = "lwaToken"
ACTION_NAME = "productReviewAndSellerFeedback"
HAL_JSON = "application/hal+json"
LWA_JSON = "application/json;charset=UTF-8"

MESSAGES: dict[str, str] = {
    "not_available": "The requested solicitation is not available for this amazonOrderId.",
    "outside_window": (
        "You can't use this feature to request a review outside the 5-30 day range after the order delivery date."
    ),
    "access_denied": "Access to requested resource is denied.",
    "token_missing": "Access token is missing in the request header.",
    "token_invalid": "The access token you provided is revoked, malformed or invalid.",
    "invalid_marketplace": "Missing or invalid request parameters: [marketplaceIds]",
    "quota": "You exceeded your quota for the requested resource.",
    "internal": "We encountered an internal error. Please try again.",
    "unavailable": "Temporary overloading or maintenance of the server.",
    "not_found": "The resource specified does not exist.",
    "too_large": "The request size exceeded the maximum accepted size.",
    "unsupported": "The request payload is in an unsupported format.",
}
"""Error messages; the first nine are Amazon's own texts (reference §1.3), the last three the model's descriptions."""

RATE_LIMIT_HEADER_STATUSES = frozenset({200, 201, 400, 404})
"""Statuses whose answer carries ``x-amzn-RateLimit-Limit``: the model's, minus those it calls deprecated and 403."""


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the sandbox needs to know about an incoming request (built by the HTTP layer)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    access_token: str | None
    user_agent: str | None
    content_type: str | None
    body_bytes: int


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: status, JSON body, headers; ``delay`` is how long to hold the answer."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    content_type: str
    delay: float = 0.0


def error_body(code: str, message_key: str, details: str = "") -> dict[str, Any]:
    """The SP-API error shape ``{"errors": [{code, message, details}]}`` with one of :data:`MESSAGES`."""
    return {"errors": [{"code": code, "message": MESSAGES[message_key], "details": details}]}
