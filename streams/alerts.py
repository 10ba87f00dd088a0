"""Alerts as events: each condition that needs a person is raised once on the ``alerts`` topic, and resolved once.

An :class:`Alert` is keyed by its ``alert_id`` (``<kind>:<subject>``): the latest event of an id says whether it is
open. Every raise and every resolve is also one log line (WARNING / INFO) with the same fields.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from statemachine.types import FrozenModel, IsoDateTime


class AlertKind(StrEnum):
    """What needs attention."""

    AUTHORIZATION_REVOKED = "authorization_revoked"
    """LWA answered invalid_grant: the seller must authorize the app again."""
    ACCESS_DENIED = "access_denied"
    """Amazon denied access (the app lacks the role, or the seller's account is restricted)."""
    ERROR_RATE = "error_rate"
    """Too many of a seller's recent SP-API calls failed."""
    DEADLINE_NEAR = "deadline_near"
    """Orders within hours of their window's end are still unsent."""
    NO_SENDS = "no_sends"
    """Nothing was sent for a seller for days although orders were eligible."""
    DEAD_LETTERS = "dead_letters"
    """The dead-letter rate spiked."""
    CONFIGURATION = "configuration"
    """The service cannot act for a seller: no app credentials, no secret key, an undecryptable token, or LWA
    rejected the application's credentials."""


class SellerProblem(StrEnum):
    """Why the sender could not act for a seller (the deferrals that need a person), as the sender reports it to
    its observers (:class:`streams.sender.SendObserver`)."""

    AUTHORIZATION_REVOKED = "authorization_revoked"
    """LWA answered invalid_grant for the seller's refresh token."""
    ACCESS_DENIED = "access_denied"
    """Amazon answered 403 Unauthorized/AccessDenied for the seller."""
    APP_CREDENTIALS_REJECTED = "app_credentials_rejected"
    """LWA rejected the application's client id or secret."""
    NO_CREDENTIALS = "no_credentials"
    """No LWA application is configured under the seller's app name."""
    NO_SECRET_KEY = "no_secret_key"  # noqa: S105  (a problem name, not a secret)
    """SOLICIT_SECRET_KEY is not set: refresh tokens cannot be decrypted."""
    UNDECRYPTABLE_TOKEN = "undecryptable_token"  # noqa: S105
    """The seller's refresh token cannot be decrypted with the configured keys."""


class Alert(FrozenModel):
    """One raise or resolve of an alert."""

    schema_version: int = 1
    type: Literal["alert"] = "alert"
    alert_id: str
    """``<kind>:<subject>``: the same id for the raise and the resolve."""
    kind: AlertKind
    status: Literal["raised", "resolved"]
    seller_id: str | None = None
    subject: str
    """What the alert is about: a seller id, ``<seller>@p<partition>``, or a worker id."""
    message: str
    at: IsoDateTime
    details: dict[str, str | int | float] = Field(default_factory=dict)
