"""Reading Notifications API responses: destinations, subscriptions, conflicts and removals as values; every other
status becomes a retry, a denial or a rejection.

Pure functions over ``httpx.Response`` (no I/O), unit-tested with hand-built responses. Facts:
``docs/amazon-facts.md`` §8 (the operations, their 409s) and §3 (error bodies, parsed defensively).

Two answers are domain outcomes, not failures, so they are values here:

* **Conflict**: ``409`` from ``createDestination`` ("A destination with arn ... already exists for the application")
  and ``createSubscription`` ("Subscription already exist for notification type ..."), and the ``403`` "The requested
  action is forbidden." / "Destination has subscriptions" that ``deleteDestination`` answers for a destination still
  in use. The caller looks the existing resource up, or reports it.
* **Missing**: ``404`` from ``getSubscription`` (no subscription) and from the deletes (nothing to delete).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from .errors import RejectedRequest
from .responses import Denied, Transient, parse_errors, request_id_of

__all__ = [
    "Conflict",
    "Destination",
    "Missing",
    "Removed",
    "Subscription",
    "classify_destination",
    "classify_destinations",
    "classify_removal",
    "classify_subscription",
]

_R = TypeVar("_R")

_IN_USE = "has subscriptions"
"""``deleteDestination``'s 403 details for a destination that subscriptions still point to (docs#1800)."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A destination of the application: where Amazon delivers notifications (``sqs_arn`` None: EventBridge)."""

    destination_id: str
    name: str
    sqs_arn: str | None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A seller's subscription to one notification type (and payload version) of the application."""

    subscription_id: str
    payload_version: str
    destination_id: str
    request_id: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Conflict:
    """Amazon refused because of the current state: the resource exists already, or is still in use."""

    request_id: str | None
    code: str | None
    message: str | None
    details: str | None

    def describe(self) -> str:
        """``code: message (details)``, Amazon's own texts (never a token)."""
        text = f"{self.code or 'Conflict'}: {self.message or 'conflict'}"
        return f"{text} ({self.details})" if self.details else text


@dataclass(frozen=True, slots=True)
class Missing:
    """404: Amazon knows no such resource."""

    request_id: str | None


@dataclass(frozen=True, slots=True)
class Removed:
    """A delete was answered: ``existed`` is False when there was nothing to delete (404)."""

    existed: bool
    request_id: str | None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _destination(raw: object) -> Destination | None:
    if not isinstance(raw, dict):
        return None
    destination_id, name = _text(raw.get("destinationId")), raw.get("name")
    if destination_id is None or not isinstance(name, str):
        return None
    resource = raw.get("resource")
    sqs = resource.get("sqs") if isinstance(resource, dict) else None
    arn = _text(sqs.get("arn")) if isinstance(sqs, dict) else None
    return Destination(destination_id=destination_id, name=name, sqs_arn=arn)


def _subscription(raw: object, request_id: str | None) -> Subscription | None:
    if not isinstance(raw, dict):
        return None
    subscription_id, destination_id = _text(raw.get("subscriptionId")), _text(raw.get("destinationId"))
    version = _text(raw.get("payloadVersion"))
    if subscription_id is None or destination_id is None or version is None:
        return None
    return Subscription(subscription_id, version, destination_id, request_id)


def _conflict(response: httpx.Response) -> Conflict:
    errors = parse_errors(response.content)
    first = errors[0] if errors else None
    return Conflict(
        request_id=request_id_of(response),
        code=first.code if first else None,
        message=first.message if first else None,
        details=first.details if first else None,
    )


def _in_use(response: httpx.Response) -> bool:
    return any(_IN_USE in (error.details or error.message or "").lower() for error in parse_errors(response.content))


def _classify(
    response: httpx.Response, parse: Callable[[Any, str | None], _R | None]
) -> _R | Conflict | Missing | Transient | Denied:
    """The shared mapping; ``parse`` reads a 2xx JSON body (``None``: unreadable, retried like Solicitations)."""
    status = response.status_code
    rid = request_id_of(response)
    if 200 <= status < 300:
        try:
            parsed = parse(response.json(), rid)
        except ValueError:
            return Transient(status=status, request_id=rid, reason=f"{status} with a body that is not JSON")
        if parsed is None:
            return Transient(status=status, request_id=rid, reason=f"{status} without a readable payload")
        return parsed
    if status == 409 or (status == 403 and _in_use(response)):
        return _conflict(response)
    if status == 404:
        return Missing(request_id=rid)
    errors = parse_errors(response.content)
    error = errors[0] if errors else None
    if status in (401, 403):
        return Denied(status=status, request_id=rid, error=error)
    if status in (408, 429) or status >= 500:
        reason = f"{status} {error.code}: {error.message}" if error else f"HTTP {status}"
        return Transient(status=status, request_id=rid, reason=reason, maybe_sent=status >= 500)
    raise _rejected(response)


def _rejected(response: httpx.Response) -> RejectedRequest:
    errors = parse_errors(response.content)
    error = errors[0] if errors else None
    text = "no error body"
    if error is not None:
        text = f"{error.code}: {error.message}" + (f" ({error.details})" if error.details else "")
    return RejectedRequest(
        f"Amazon rejected the request with {response.status_code} ({text})",
        status=response.status_code,
        code=error.code if error else None,
        request_id=request_id_of(response),
    )


def _payload(body: Any) -> Any:
    return body.get("payload") if isinstance(body, dict) else None


def _destinations_payload(body: Any, _rid: str | None) -> list[Destination] | None:
    raw = _payload(body)
    if not isinstance(raw, list):
        return None
    return [found for found in map(_destination, raw) if found is not None]


def classify_destinations(response: httpx.Response) -> list[Destination] | Transient | Denied:
    """``getDestinations``: the application's destinations (entries that cannot be read are skipped)."""
    outcome = _classify(response, _destinations_payload)
    if isinstance(outcome, Conflict | Missing):
        raise _rejected(response)
    return outcome


def classify_destination(response: httpx.Response) -> Destination | Conflict | Transient | Denied:
    """``createDestination``: the new destination, or :class:`Conflict` when one exists for the ARN already."""
    outcome = _classify(response, lambda body, _rid: _destination(_payload(body)))
    if isinstance(outcome, Missing):
        raise _rejected(response)
    return outcome


def classify_subscription(response: httpx.Response) -> Subscription | Conflict | Missing | Transient | Denied:
    """``getSubscription`` (404: :class:`Missing`) and ``createSubscription`` (409: :class:`Conflict`)."""
    return _classify(response, lambda body, rid: _subscription(_payload(body), rid))


def classify_removal(response: httpx.Response) -> Removed | Conflict | Transient | Denied:
    """``deleteSubscriptionById`` and ``deleteDestination``: removed, nothing to remove (404), or in use.

    Any 2xx is removed, whatever its body (the model's is ``{}`` or only ``errors``).
    """
    if 200 <= response.status_code < 300:
        return Removed(existed=True, request_id=request_id_of(response))
    outcome = _classify(response, lambda _body, rid: Removed(existed=True, request_id=rid))
    if isinstance(outcome, Missing):
        return Removed(existed=False, request_id=outcome.request_id)
    return outcome
