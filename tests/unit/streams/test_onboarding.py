"""The onboarding steps over a scripted Notifications client: idempotence, 409s, foreign subscriptions, exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from pydantic import SecretStr

from connectors.spapi import AppCredentialsRejected, NotificationsClient, RetryLater, SellerCredentials
from connectors.spapi.notification_responses import Conflict, Destination, Removed, Subscription
from statemachine.marketplaces import Region
from streams.onboarding import (
    PROCESSING_DIRECTIVE,
    DestinationOutcome,
    DestinationResult,
    Onboarding,
    Outcome,
    Result,
    SellerResult,
    Target,
    changed,
    exit_code,
)

ARN = "arn:aws:sqs:us-east-1:123456789012:q"
CONFLICT = Conflict(request_id="r", code="StateConflict", message="conflicts", details="exists")


class ScriptedClient:
    """Answers like Amazon from dictionaries; records every call (by operation name)."""

    def __init__(self, *, destinations: Sequence[Destination] = (), fail: dict[str, Exception] | None = None) -> None:
        self.destinations = list(destinations)
        self.subscriptions: dict[str, Subscription] = {}
        self.fail = fail or {}
        self.calls: list[str] = []
        self.create_conflicts = 0
        self.directives: list[Any] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    async def get_destinations(self, region: Region) -> list[Destination]:
        self._call("getDestinations")
        return list(self.destinations)

    async def create_destination(self, region: Region, *, name: str, sqs_arn: str) -> Destination | Conflict:
        self._call("createDestination")
        made = Destination(f"d-{len(self.destinations) + 1}", name, sqs_arn)
        self.destinations.append(made)
        return CONFLICT if self.create_conflicts else made  # a create that took effect, then "failed"

    async def delete_destination(self, region: Region, destination_id: str) -> Removed | Conflict:
        self._call("deleteDestination")
        if any(s.destination_id == destination_id for s in self.subscriptions.values()):
            return CONFLICT
        before = len(self.destinations)
        self.destinations = [d for d in self.destinations if d.destination_id != destination_id]
        return Removed(existed=len(self.destinations) < before, request_id="r")

    async def get_subscription(self, seller: SellerCredentials, *_: Any) -> Subscription | None:
        self._call("getSubscription")
        return self.subscriptions.get(seller.seller_id)

    async def create_subscription(
        self, seller: SellerCredentials, region: Region, kind: str, **fields: Any
    ) -> Subscription | Conflict:
        self._call("createSubscription")
        self.directives.append(fields["processing_directive"])
        made = Subscription(f"s-{seller.seller_id}", fields["payload_version"], fields["destination_id"])
        conflict = seller.seller_id in self.subscriptions or self.create_conflicts
        self.subscriptions.setdefault(seller.seller_id, made)
        return CONFLICT if conflict else made

    async def delete_subscription_by_id(self, region: Region, kind: str, subscription_id: str) -> Removed | Conflict:
        self._call("deleteSubscriptionById")
        for seller_id, found in list(self.subscriptions.items()):
            if found.subscription_id == subscription_id:
                del self.subscriptions[seller_id]
                return Removed(existed=True, request_id="r")
        return Removed(existed=False, request_id="r")


def target(seller_id: str, region: Region = Region.NA, app: str = "default") -> Target:
    return Target(SellerCredentials(seller_id, SecretStr(f"Atzr|{seller_id}")), region, app)


async def subscribe(clients: dict[str, ScriptedClient], targets: list[Target]) -> list[Result]:
    run = Onboarding(cast(dict[str, NotificationsClient], clients), lambda _result: None, concurrency=2)
    return await run.subscribe(targets, sqs_arn=ARN, destination_name="solicit-q")


def outcomes(results: list[Result]) -> dict[str, str]:
    found: dict[str, str] = {}
    for result in results:
        key = result.seller_id if isinstance(result, SellerResult) else f"{result.app}/{result.region}"
        found[key] = str(result.outcome)
    return found


async def test_first_run_creates_second_run_changes_nothing() -> None:
    client = ScriptedClient()
    sellers = [target("S1"), target("S2"), target("S3")]
    first = await subscribe({"default": client}, sellers)
    assert outcomes(first) == {"default/NA": "created", "S1": "subscribed", "S2": "subscribed", "S3": "subscribed"}
    assert changed(first) and exit_code(first) == 0
    assert client.directives == [PROCESSING_DIRECTIVE] * 3

    client.calls.clear()
    second = await subscribe({"default": client}, sellers)
    assert set(outcomes(second).values()) == {"found", "already subscribed"}
    assert not changed(second) and exit_code(second) == 0
    assert "createDestination" not in client.calls and "createSubscription" not in client.calls
    assert len(client.destinations) == 1 and len(client.subscriptions) == 3


async def test_a_409_after_an_effect_is_read_as_exists() -> None:
    client = ScriptedClient()
    client.create_conflicts = 1
    results = await subscribe({"default": client}, [target("S1")])
    assert outcomes(results) == {"default/NA": "found", "S1": "already subscribed"}
    assert client.calls.count("getDestinations") == 2 and client.calls.count("getSubscription") == 2


async def test_a_subscription_to_another_destination_fails_and_is_left_alone() -> None:
    client = ScriptedClient(destinations=[Destination("d-ours", "solicit", ARN)])
    client.subscriptions["S1"] = Subscription("s-old", "1.0", "d-elsewhere")
    (_, result) = await subscribe({"default": client}, [target("S1")])
    assert isinstance(result, SellerResult) and result.outcome is Outcome.FAILED
    assert "another destination" in result.detail and "unsubscribe S1" in result.detail
    assert client.subscriptions["S1"].destination_id == "d-elsewhere"
    assert exit_code([result]) == 1


async def test_groups_by_app_and_region_and_a_failed_destination_fails_only_its_group() -> None:
    good, bad = ScriptedClient(), ScriptedClient(fail={"getDestinations": RetryLater("down", retry_after=1)})
    results = await subscribe(
        {"default": good, "eu-app": bad}, [target("S1"), target("S2", Region.EU), target("S3", Region.EU, "eu-app")]
    )
    assert outcomes(results) == {
        "default/EU": "created",
        "S2": "subscribed",
        "default/NA": "found",  # one fake serves both regions, as the sandbox does
        "S1": "subscribed",
        "eu-app/EU": "failed",
        "S3": "failed",
    }
    assert exit_code(results) == 1


async def test_failures_only_configuration_can_fix_exit_2() -> None:
    client = ScriptedClient(fail={"getDestinations": AppCredentialsRejected("LWA said invalid_client")})
    results = await subscribe({"default": client}, [target("S1")])
    assert all(result.configuration for result in results)
    assert exit_code(results) == 2
    line = results[1].line()
    assert line.startswith("S1: failed: no destination: LWA said invalid_client")


async def test_unsubscribe_then_destination_after_every_seller() -> None:
    client = ScriptedClient()
    sellers = [target("S1"), target("S2", Region.EU)]
    await subscribe({"default": client}, sellers)
    run = Onboarding(cast(dict[str, NotificationsClient], {"default": client}), lambda _result: None)
    results = await run.unsubscribe([*sellers, target("S9")], destination_arn=ARN)
    assert outcomes(results) == {
        "S1": "unsubscribed",
        "S2": "unsubscribed",
        "S9": "not subscribed",
        "default/EU": "deleted",
        "default/NA": "absent",
    }
    assert client.subscriptions == {} and client.destinations == []
    assert exit_code(results) == 0


async def test_a_destination_still_in_use_is_kept_and_reported() -> None:
    client = ScriptedClient()
    await subscribe({"default": client}, [target("S1"), target("S2")])
    run = Onboarding(cast(dict[str, NotificationsClient], {"default": client}), lambda _result: None)
    results = await run.unsubscribe([target("S1")], destination_arn=ARN)
    destination = results[-1]
    assert isinstance(destination, DestinationResult) and destination.outcome is DestinationOutcome.FAILED
    assert "kept" in destination.line()
    assert exit_code(results) == 1 and len(client.destinations) == 1
