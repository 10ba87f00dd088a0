"""Onboarding on Amazon's side: one SQS destination per (app, region), one ORDER_CHANGE subscription per seller.

The steps (``docs/amazon-facts.md`` §8, ``docs/sellers.md`` "Subscribing sellers"), each idempotent so that running
``solicit sellers subscribe`` twice changes nothing the second time:

1. **Destination** (grantless, per app and region): ``getDestinations``; the one whose SQS ARN is the queue's is
   used; none: ``createDestination``; its 409 (made meanwhile, or a create that took effect before failing) means
   "look again".
2. **Subscription** (the seller's token): ``getSubscription``; one to our destination is "already subscribed"; one to
   another destination is a failure (Amazon allows one per seller and type; ``unsubscribe`` first); none:
   ``createSubscription`` with the filter below; its 409 means "look again".

Unsubscribing: ``getSubscription`` (the seller's token) finds the id, ``deleteSubscriptionById`` (grantless) deletes
it. The destination stays unless asked for (``delete_destination``); Amazon refuses to delete one that subscriptions
still use, which is reported, not forced.

Sellers are grouped by (app, region): each app has its own client (LWA credentials, grantless token); within a group
sellers run concurrently (each seller has its own rate-limit buckets; the grantless ones are the app's). Results are
values, reported as each finishes; a failure of one seller never stops another. No result holds a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from itertools import groupby

from connectors.spapi import AppCredentialsRejected, RejectedRequest, SellerCredentials, SpApiError
from connectors.spapi.notification_responses import Conflict, Destination, Subscription
from connectors.spapi.notifications import ORDER_CHANGE, ORDER_CHANGE_PAYLOAD_VERSION, NotificationsClient
from statemachine.marketplaces import Region

__all__ = [
    "PROCESSING_DIRECTIVE",
    "DestinationOutcome",
    "DestinationResult",
    "Onboarding",
    "Outcome",
    "SellerResult",
    "Target",
    "exit_code",
    "find_or_create_destination",
]

PROCESSING_DIRECTIVE = {"eventFilter": {"eventFilterType": ORDER_CHANGE, "orderChangeTypes": ["OrderStatusChange"]}}
"""Only order status changes: the state machine decides by ``OrderStatus`` alone (``BuyerRequestedChange`` and
``DeliveryTipChange`` carry nothing it uses). Amazon's own solicitations sample subscribes the same way."""


class Outcome(StrEnum):
    """What happened to one seller."""

    SUBSCRIBED = "subscribed"
    ALREADY_SUBSCRIBED = "already subscribed"
    UNSUBSCRIBED = "unsubscribed"
    NOT_SUBSCRIBED = "not subscribed"
    FAILED = "failed"


class DestinationOutcome(StrEnum):
    """What happened to the destination of one (app, region)."""

    CREATED = "created"
    FOUND = "found"
    DELETED = "deleted"
    ABSENT = "absent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Target:
    """A seller to (un)subscribe: its credentials (the decrypted refresh token, a SecretStr), region and app."""

    seller: SellerCredentials
    region: Region
    app: str

    @property
    def seller_id(self) -> str:
        return self.seller.seller_id


@dataclass(frozen=True, slots=True)
class SellerResult:
    """One seller's result; ``configuration`` marks failures only our configuration can fix."""

    seller_id: str
    outcome: Outcome
    detail: str
    configuration: bool = False

    def line(self) -> str:
        """``SELLER: subscribed (subscription ..., destination ...)`` or ``SELLER: failed: reason``."""
        if self.outcome is Outcome.FAILED:
            return f"{self.seller_id}: failed: {self.detail}"
        return f"{self.seller_id}: {self.outcome} ({self.detail})"


@dataclass(frozen=True, slots=True)
class DestinationResult:
    """The destination step of one (app, region)."""

    app: str
    region: Region
    outcome: DestinationOutcome
    destination_id: str | None
    detail: str
    configuration: bool = False

    def line(self) -> str:
        """``destination (app default, region NA): created <id> (<arn>)``."""
        where = f"destination (app {self.app}, region {self.region})"
        if self.outcome is DestinationOutcome.FAILED:
            return f"{where}: failed: {self.detail}"
        shown = f" {self.destination_id}" if self.destination_id else ""
        return f"{where}: {self.outcome}{shown} ({self.detail})"


Result = SellerResult | DestinationResult
Report = Callable[[Result], None]

_CHANGES = frozenset({Outcome.SUBSCRIBED, Outcome.UNSUBSCRIBED, DestinationOutcome.CREATED, DestinationOutcome.DELETED})


def changed(results: Iterable[Result]) -> bool:
    """Did anything change at Amazon?"""
    return any(result.outcome in _CHANGES for result in results)


def exit_code(results: Iterable[Result]) -> int:
    """2 when a failure needs our configuration fixed, else 1 when anything failed, else 0."""
    failed = [result for result in results if result.outcome in (Outcome.FAILED, DestinationOutcome.FAILED)]
    if any(result.configuration for result in failed):
        return 2
    return 1 if failed else 0


def _matching(destinations: Iterable[Destination], sqs_arn: str) -> Destination | None:
    return next((destination for destination in destinations if destination.sqs_arn == sqs_arn), None)


def _failed(seller_id: str, exc: SpApiError, prefix: str = "") -> SellerResult:
    return SellerResult(seller_id, Outcome.FAILED, prefix + str(exc), isinstance(exc, AppCredentialsRejected))


def _described(subscription: Subscription) -> str:
    return f"subscription {subscription.subscription_id}, destination {subscription.destination_id}"


async def find_or_create_destination(
    client: NotificationsClient, region: Region, *, sqs_arn: str, name: str
) -> tuple[Destination, bool]:
    """The app's destination for ``sqs_arn`` in ``region`` and whether it was created now."""
    found = _matching(await client.get_destinations(region), sqs_arn)
    if found is not None:
        return found, False
    created = await client.create_destination(region, name=name, sqs_arn=sqs_arn)
    if isinstance(created, Destination):
        return created, True
    found = _matching(await client.get_destinations(region), sqs_arn)
    if found is None:
        raise RejectedRequest(
            f"createDestination answered {created.describe()}, yet getDestinations lists none for {sqs_arn}",
            status=409,
            request_id=created.request_id,
        )
    return found, False


async def subscribe_seller(client: NotificationsClient, target: Target, destination_id: str) -> SellerResult:
    """Make sure ``target`` has an ORDER_CHANGE subscription to ``destination_id``."""
    seller, region = target.seller, target.region
    try:
        existing = await client.get_subscription(seller, region, ORDER_CHANGE, ORDER_CHANGE_PAYLOAD_VERSION)
        if existing is None:
            created = await client.create_subscription(
                seller,
                region,
                ORDER_CHANGE,
                payload_version=ORDER_CHANGE_PAYLOAD_VERSION,
                destination_id=destination_id,
                processing_directive=PROCESSING_DIRECTIVE,
            )
            if isinstance(created, Subscription):
                return SellerResult(target.seller_id, Outcome.SUBSCRIBED, _described(created))
            existing = await client.get_subscription(seller, region, ORDER_CHANGE, ORDER_CHANGE_PAYLOAD_VERSION)
            if existing is None:
                reason = f"createSubscription answered {created.describe()}, yet getSubscription finds none"
                return SellerResult(target.seller_id, Outcome.FAILED, reason)
    except SpApiError as exc:
        return _failed(target.seller_id, exc)
    if existing.destination_id != destination_id:
        reason = (
            f"already subscribed to another destination ({_described(existing)}), not to this queue's "
            f"{destination_id}; run `solicit sellers unsubscribe {target.seller_id}` first"
        )
        return SellerResult(target.seller_id, Outcome.FAILED, reason)
    return SellerResult(target.seller_id, Outcome.ALREADY_SUBSCRIBED, _described(existing))


async def unsubscribe_seller(client: NotificationsClient, target: Target) -> SellerResult:
    """Delete ``target``'s ORDER_CHANGE subscription, whatever destination it points to."""
    try:
        existing = await client.get_subscription(
            target.seller, target.region, ORDER_CHANGE, ORDER_CHANGE_PAYLOAD_VERSION
        )
        if existing is None:
            return SellerResult(target.seller_id, Outcome.NOT_SUBSCRIBED, f"no {ORDER_CHANGE} subscription")
        removed = await client.delete_subscription_by_id(target.region, ORDER_CHANGE, existing.subscription_id)
    except SpApiError as exc:
        return _failed(target.seller_id, exc)
    if isinstance(removed, Conflict):
        return SellerResult(target.seller_id, Outcome.FAILED, f"deleteSubscriptionById answered {removed.describe()}")
    if not removed.existed:
        detail = f"subscription {existing.subscription_id} was gone already"
        return SellerResult(target.seller_id, Outcome.NOT_SUBSCRIBED, detail)
    return SellerResult(target.seller_id, Outcome.UNSUBSCRIBED, _described(existing))


async def delete_destination(client: NotificationsClient, app: str, region: Region, sqs_arn: str) -> DestinationResult:
    """Delete the app's destination for ``sqs_arn`` in ``region``, if Amazon lets us (no subscription uses it)."""
    try:
        found = _matching(await client.get_destinations(region), sqs_arn)
        if found is None:
            return DestinationResult(app, region, DestinationOutcome.ABSENT, None, f"none for {sqs_arn}")
        removed = await client.delete_destination(region, found.destination_id)
    except SpApiError as exc:
        configuration = isinstance(exc, AppCredentialsRejected)
        return DestinationResult(app, region, DestinationOutcome.FAILED, None, str(exc), configuration)
    if isinstance(removed, Conflict):
        reason = f"{found.destination_id} kept: {removed.describe()} (sellers not unsubscribed here still use it)"
        return DestinationResult(app, region, DestinationOutcome.FAILED, found.destination_id, reason)
    outcome = DestinationOutcome.DELETED if removed.existed else DestinationOutcome.ABSENT
    return DestinationResult(app, region, outcome, found.destination_id, sqs_arn)


class Onboarding:
    """Subscribe or unsubscribe many sellers: grouped by (app, region), the sellers of a group concurrently."""

    def __init__(self, clients: Mapping[str, NotificationsClient], report: Report, *, concurrency: int = 8) -> None:
        self._clients = clients
        self._report = report
        self._concurrency = concurrency
        self.results: list[Result] = []

    def _emit(self, result: Result) -> None:
        self.results.append(result)
        self._report(result)

    async def subscribe(self, targets: Iterable[Target], *, sqs_arn: str, destination_name: str) -> list[Result]:
        """Destination per (app, region), then every seller's subscription to it."""
        for (app, region), group in _groups(targets):
            client = self._clients[app]
            try:
                destination, created = await find_or_create_destination(
                    client, region, sqs_arn=sqs_arn, name=destination_name
                )
            except SpApiError as exc:
                configuration = isinstance(exc, AppCredentialsRejected)
                self._emit(DestinationResult(app, region, DestinationOutcome.FAILED, None, str(exc), configuration))
                for target in group:
                    self._emit(_failed(target.seller_id, exc, prefix="no destination: "))
                continue
            outcome = DestinationOutcome.CREATED if created else DestinationOutcome.FOUND
            self._emit(DestinationResult(app, region, outcome, destination.destination_id, sqs_arn))
            await self._each(group, partial(subscribe_seller, client, destination_id=destination.destination_id))
        return self.results

    async def unsubscribe(self, targets: Iterable[Target], *, destination_arn: str | None = None) -> list[Result]:
        """Every seller's subscription deleted; then, with ``destination_arn``, the destination of each group."""
        groups = _groups(targets)
        for (app, _region), group in groups:
            await self._each(group, partial(unsubscribe_seller, self._clients[app]))
        if destination_arn is not None:
            for app, region in (key for key, _group in groups):
                self._emit(await delete_destination(self._clients[app], app, region, destination_arn))
        return self.results

    async def _each(self, group: list[Target], step: Callable[[Target], Awaitable[SellerResult]]) -> None:
        gate = asyncio.Semaphore(self._concurrency)

        async def run(target: Target) -> None:
            async with gate:
                self._emit(await step(target))

        await asyncio.gather(*(run(target) for target in group))


def _groups(targets: Iterable[Target]) -> list[tuple[tuple[str, Region], list[Target]]]:
    ordered = sorted(targets, key=lambda target: (target.app, target.region, target.seller_id))
    return [(key, list(group)) for key, group in groupby(ordered, key=lambda target: (target.app, target.region))]
