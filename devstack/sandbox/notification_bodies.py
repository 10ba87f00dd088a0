"""Request bodies of the Notifications operations the sandbox serves, checked as Amazon does (or as the model says).

Pure functions: each returns the parsed request or a :class:`Invalid` naming the problem, which the rules
(:mod:`.notifications`) answer with ``400 InvalidInput``. Where Amazon's behaviour is known from its answers, the
details reuse its words (``docs/amazon-facts.md`` §8); elsewhere the model's schema decides
(``CreateDestinationRequest``, ``CreateSubscriptionRequest``, ``ProcessingDirective``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NOTIFICATION_TYPES",
    "DestinationRequest",
    "Invalid",
    "SubscriptionRequest",
    "parse_destination_request",
    "parse_subscription_request",
    "unknown_type",
]

NOTIFICATION_TYPES: dict[str, tuple[str, ...]] = {"ORDER_CHANGE": ("1.0",)}
"""Notification types the sandbox knows, with their payload versions (*sandbox choice*: only ORDER_CHANGE)."""

ORDER_CHANGE_TYPES = frozenset({"BuyerRequestedChange", "DeliveryTipChange", "OrderStatusChange"})
"""``OrderChangeTypeEnum`` of the model."""

_SQS_ARN = re.compile(r"^arn:aws:sqs:\S+:\S+:\S+")
"""``SqsResource.arn`` pattern of the model (at most 1000 characters)."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a request is refused (the ``details`` of the 400)."""

    details: str


@dataclass(frozen=True, slots=True)
class DestinationRequest:
    name: str
    arn: str


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    payload_version: str
    destination_id: str
    processing_directive: dict[str, Any] | None


def unknown_type(notification_type: str) -> Invalid | None:
    """The 400 for a notification type the sandbox does not serve (Amazon's text, models#467)."""
    if notification_type in NOTIFICATION_TYPES:
        return None
    return Invalid(f'Invalid value "{notification_type}" for path parameter notificationType')


def _json_object(body: bytes) -> dict[str, Any] | Invalid:
    try:
        value = json.loads(body) if body else None
    except ValueError:
        return Invalid("The request body is not valid JSON.")
    return value if isinstance(value, dict) else Invalid("The request body must be a JSON object.")


def parse_destination_request(body: bytes) -> DestinationRequest | Invalid:
    """``CreateDestinationRequest``: a name (at most 256 characters, as ``Destination.name``) and one SQS ARN."""
    value = _json_object(body)
    if isinstance(value, Invalid):
        return value
    name, spec = value.get("name"), value.get("resourceSpecification")
    if not isinstance(name, str) or not 0 < len(name) <= 256:
        return Invalid("name is required: a string of 1 to 256 characters.")
    if not isinstance(spec, dict):
        return Invalid("resourceSpecification is required.")
    if "eventBridge" in spec:  # sandbox choice: SQS only
        return Invalid("The sandbox serves SQS destinations only (resourceSpecification.sqs).")
    sqs = spec.get("sqs")
    arn = sqs.get("arn") if isinstance(sqs, dict) else None
    if not isinstance(arn, str) or len(arn) > 1000 or not _SQS_ARN.match(arn):
        return Invalid(
            "resourceSpecification.sqs.arn must be an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)."
        )
    return DestinationRequest(name=name, arn=arn)


def parse_subscription_request(notification_type: str, body: bytes) -> SubscriptionRequest | Invalid:
    """``CreateSubscriptionRequest`` for ``notification_type`` (known: check :func:`unknown_type` first)."""
    value = _json_object(body)
    if isinstance(value, Invalid):
        return value
    version, destination_id = value.get("payloadVersion"), value.get("destinationId")
    if not isinstance(destination_id, str) or not destination_id:
        return Invalid("destinationId is required.")
    if version not in NOTIFICATION_TYPES[notification_type]:
        supported = ", ".join(NOTIFICATION_TYPES[notification_type])
        return Invalid(f"payloadVersion must be one of {supported} for notification type {notification_type}.")
    directive = value.get("processingDirective")
    if directive is not None:
        problem = _directive_problem(notification_type, directive)
        if problem is not None:
            return Invalid(problem)
    return SubscriptionRequest(
        payload_version=str(version), destination_id=destination_id, processing_directive=directive
    )


def _directive_problem(notification_type: str, directive: object) -> str | None:
    """What is wrong with a ``ProcessingDirective`` for ORDER_CHANGE, or None."""
    if not isinstance(directive, dict):
        return "processingDirective must be an object."
    event_filter, expression = directive.get("eventFilter"), directive.get("filterExpression")
    if event_filter is not None and expression is not None:
        return "eventFilter and filterExpression are mutually exclusive."
    if expression is not None and (not isinstance(expression, str) or not 1 <= len(expression) <= 256):
        return "filterExpression must be a string of 1 to 256 characters."
    if event_filter is None:
        return None
    # Amazon refuses an ORDER_CHANGE eventFilter with anything but the change types (marketplaceIds: models#4135).
    shown = json.dumps(event_filter, separators=(",", ":"))[:200]
    refusal = f"EventFilter Payload {shown} failed to validate for notification type {notification_type}"
    if not isinstance(event_filter, dict) or event_filter.get("eventFilterType") != notification_type:
        return refusal
    if set(event_filter) - {"eventFilterType", "orderChangeTypes"}:
        return refusal
    types = event_filter.get("orderChangeTypes", [])
    if not isinstance(types, list) or not all(isinstance(t, str) and t in ORDER_CHANGE_TYPES for t in types):
        return refusal
    return None
