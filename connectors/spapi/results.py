"""What a Solicitations call can tell the caller about an order: small frozen values, never exceptions.

These are the everyday answers the sender branches on; failures are exceptions
(:mod:`connectors.spapi.errors`). Every value keeps Amazon's ``x-amzn-RequestId`` for support tickets.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ActionsResult", "CreateResult", "NotAvailable", "OutsideWindow", "Sent"]


@dataclass(frozen=True, slots=True)
class ActionsResult:
    """Answer of ``getSolicitationActionsForOrder``.

    ``offered`` is true only when ``productReviewAndSellerFeedback`` is among the actions. Not offered is not
    final: Amazon offers the action only inside the order's window, and eligibility can appear on a later day.
    """

    offered: bool
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Sent:
    """201: Amazon accepted the solicitation; the buyer will get the review/feedback request."""

    request_id: str | None


@dataclass(frozen=True, slots=True)
class NotAvailable:
    """403 "The requested solicitation is not available for this amazonOrderId.".

    Amazon gives this both for an order already solicited and for one that is not eligible; the caller decides
    with the order's window. ``maybe_sent`` is true when an earlier attempt of the *same call* failed
    after the request may have taken effect (5xx or a timeout): then this answer almost surely means our own
    earlier attempt sent it, and the order should be treated as sent.
    """

    request_id: str | None
    maybe_sent: bool = False


@dataclass(frozen=True, slots=True)
class OutsideWindow:
    """403 "... outside the 5-30 day range after the order delivery date.": too early or too late for this order."""

    request_id: str | None


CreateResult = Sent | NotAvailable | OutsideWindow
"""Every domain answer of ``createProductReviewAndSellerFeedbackSolicitation``."""
