"""``solicit sellers subscribe|unsubscribe``: onboarding on Amazon's side (``docs/sellers.md``, "Subscribing sellers").

``subscribe ID...|--all`` checks the SQS queue first (``GetQueueAttributes``: its ARN, access policy and encryption,
:mod:`streams.queue_policy`); if Amazon's publisher could not send to it, it prints the statement(s) to add and exits 2
without calling Amazon. Then every configuration problem is looked for before Amazon is called (LWA credentials of
every app involved, every refresh token decryptable), and only then :class:`streams.onboarding.Onboarding` finds or
creates the destination of each (app, region) and each seller's ORDER_CHANGE subscription. ``unsubscribe`` deletes the
subscriptions and, with ``--destination``, the queue's destination of each (app, region) too.

Output: one line per seller (``subscribed``, ``already subscribed``, ``unsubscribed``, ``not subscribed``, ``failed:
reason``) and per destination, then a summary that says when nothing changed. No token is ever printed.

Exit codes: 0 every seller succeeded; 1 an Amazon call failed for a seller (or Kafka or SQS failed, or an id is not in
the registry); 2 configuration: no queue URL, a queue Amazon cannot deliver to, an app without LWA credentials (or
with credentials LWA rejects), a missing or wrong ``SOLICIT_SECRET_KEY``, or bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from connectors.crypto import SecretKeyError, TokenCipher, UndecryptableToken
from connectors.spapi import AppCredentials, NotificationsClient, SellerCredentials
from connectors.sqs import SqsError, SqsQueue
from streams.cli.shell import EXIT_OK, EXIT_USAGE, CommandError, ConfigurationError, load_settings
from streams.directory import load_registry
from streams.onboarding import Onboarding, Outcome, Result, SellerResult, Target, changed, exit_code
from streams.queue_policy import (
    AMAZON_PUBLISHER_ACCOUNT,
    QUEUE_ATTRIBUTES,
    QueueCheck,
    check_queue,
    key_statement,
    queue_statement,
)
from streams.registry import DEFAULT_APP, RegistryError, SellerRecord, UnknownSeller
from streams.settings import Settings
from streams.topics import SELLERS

Action = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

_QUEUE_HELP = "the SQS queue Amazon delivers to (default: SOLICIT_BRIDGE__QUEUE_URL, the bridge's queue)"


def register(actions: Any, common: argparse.ArgumentParser) -> None:
    """Add ``subscribe`` and ``unsubscribe`` to the ``sellers`` actions."""
    subscribe = actions.add_parser(
        "subscribe",
        parents=[common],
        help="subscribe sellers to ORDER_CHANGE notifications into the SQS queue (Amazon's side of onboarding)",
        description=(
            "Check that Amazon may send to the SQS queue (else print the policy statement to add, exit 2), find or "
            "create the app's destination for it in each region, then create each seller's ORDER_CHANGE "
            "subscription. Idempotent: a second run changes nothing and says so."
        ),
    )
    _add_selection(subscribe)
    subscribe.add_argument("--queue-url", default=None, help=_QUEUE_HELP)
    subscribe.set_defaults(run=_guarded(_subscribe))

    unsubscribe = actions.add_parser(
        "unsubscribe",
        parents=[common],
        help="delete sellers' ORDER_CHANGE subscriptions (the destination stays unless --destination)",
    )
    _add_selection(unsubscribe)
    unsubscribe.add_argument(
        "--destination",
        action="store_true",
        help="also delete the queue's destination in each region (Amazon refuses while other subscriptions use it)",
    )
    unsubscribe.add_argument("--queue-url", default=None, help=_QUEUE_HELP + "; only with --destination")
    unsubscribe.set_defaults(run=_guarded(_unsubscribe))


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("seller_ids", nargs="*", metavar="ID", help="the seller ids (or --all)")
    parser.add_argument("--all", action="store_true", help="every seller in the registry")


# --- actions -------------------------------------------------------------------------------------------------------


async def _subscribe(args: argparse.Namespace, settings: Settings) -> int:
    _require_selection(args)
    cipher = TokenCipher(settings.secret_key)
    check = check_queue(await _queue_attributes(_queue_url(args, settings)))
    _print_statements(check)
    if not check.ok:
        raise ConfigurationError([_undeliverable(check)])
    targets = await _targets(args, settings, cipher)
    if not targets:
        return EXIT_OK
    destination_name = ("solicit-" + check.queue_arn.rsplit(":", 1)[-1])[:256]  # the model's limit

    def step(run: Onboarding) -> Coroutine[Any, Any, list[Result]]:
        return run.subscribe(targets, sqs_arn=check.queue_arn, destination_name=destination_name)

    results = await _onboard(settings, targets, step)
    return _summary(results, (Outcome.SUBSCRIBED, Outcome.ALREADY_SUBSCRIBED, Outcome.FAILED))


async def _unsubscribe(args: argparse.Namespace, settings: Settings) -> int:
    _require_selection(args)
    cipher = TokenCipher(settings.secret_key)
    arn: str | None = None
    if args.destination:
        arn = (await _queue_attributes(_queue_url(args, settings))).get("QueueArn")
        if not arn:
            raise CommandError("GetQueueAttributes returned no QueueArn")
    elif args.queue_url:
        raise CommandError("--queue-url is used only with --destination", EXIT_USAGE)
    targets = await _targets(args, settings, cipher)
    if not targets:
        return EXIT_OK
    results = await _onboard(settings, targets, lambda run: run.unsubscribe(targets, destination_arn=arn))
    return _summary(results, (Outcome.UNSUBSCRIBED, Outcome.NOT_SUBSCRIBED, Outcome.FAILED))


# --- steps ---------------------------------------------------------------------------------------------------------


def _queue_url(args: argparse.Namespace, settings: Settings) -> str:
    url = args.queue_url or settings.bridge.queue_url
    if not url:
        raise ConfigurationError(["SOLICIT_BRIDGE__QUEUE_URL: not set (or pass --queue-url)"])
    return str(url)


async def _queue_attributes(queue_url: str) -> dict[str, str]:
    async with SqsQueue.open(queue_url, max_connections=1) as queue:
        return await queue.attributes(QUEUE_ATTRIBUTES)


def _undeliverable(check: QueueCheck) -> str:
    return (
        f"Amazon's SP-API publisher (AWS account {AMAZON_PUBLISHER_ACCOUNT}) cannot deliver to {check.queue_arn}: "
        f"{'; '.join(check.problems)}. Nothing was sent to Amazon; add the statement(s) printed above"
    )


def _print_statements(check: QueueCheck) -> None:
    """The statements to add, as JSON, each after a line saying where it goes."""
    if check.missing_actions:
        print(f"Add this statement to the access policy of the queue {check.queue_arn}:")
        print(json.dumps(queue_statement(check.queue_arn), indent=2))
    if check.kms_key is not None:
        print(
            f"The queue is encrypted with the KMS key {check.kms_key}: the key's policy must let the AWS account "
            f"{AMAZON_PUBLISHER_ACCOUNT} use it (solicit cannot read key policies). Add this statement if missing:"
        )
        print(json.dumps(key_statement(), indent=2))


async def _targets(args: argparse.Namespace, settings: Settings, cipher: TokenCipher) -> list[Target]:
    """The selected sellers with their decrypted tokens; every configuration problem at once, before Amazon."""
    records = _selected(args, await load_registry(settings.kafka, topic=args.topic))
    problems = _missing_credentials(records, settings)
    targets: list[Target] = []
    for record in records:
        try:
            token = record.refresh_token(cipher)
        except UndecryptableToken:
            problems.append(f"seller {record.seller_id}: no key in SOLICIT_SECRET_KEY decrypts its refresh token")
            continue
        targets.append(Target(SellerCredentials(record.seller_id, token), record.region, record.app))
    if problems:
        raise ConfigurationError([*problems, "nothing was sent to Amazon"])
    if not targets:
        print(f"No sellers in {args.topic}; nothing to do.")
    return targets


def _missing_credentials(records: list[SellerRecord], settings: Settings) -> list[str]:
    problems: list[str] = []
    for app in sorted({record.app for record in records}):
        if settings.spapi.lwa_app(app) is None:
            where = "SOLICIT_SPAPI__LWA_CLIENT_ID/_SECRET" if app == DEFAULT_APP else "SOLICIT_SPAPI__LWA_APPS"
            sellers = ", ".join(record.seller_id for record in records if record.app == app)
            problems.append(f"app {app!r} (seller(s) {sellers}) has no LWA credentials ({where})")
    return problems


def _require_selection(args: argparse.Namespace) -> None:
    if args.all == bool(args.seller_ids):
        raise CommandError("name the sellers (ID ...) or pass --all, not both", EXIT_USAGE)


def _selected(args: argparse.Namespace, sellers: dict[str, SellerRecord]) -> list[SellerRecord]:
    ids: Sequence[str] = args.seller_ids
    if args.all:
        return [sellers[seller_id] for seller_id in sorted(sellers)]
    for seller_id in ids:
        if seller_id not in sellers:
            raise UnknownSeller(seller_id, args.topic)
    return [sellers[seller_id] for seller_id in dict.fromkeys(ids)]


async def _onboard(
    settings: Settings,
    targets: list[Target],
    step: Callable[[Onboarding], Coroutine[Any, Any, list[Result]]],
) -> list[Result]:
    """Run ``step`` with one Notifications client per app; print each result as it comes."""
    spapi = settings.spapi
    clock = settings.sim.clock()
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, NotificationsClient] = {}
        for app in sorted({target.app for target in targets}):
            credentials = spapi.lwa_app(app)
            assert credentials is not None  # checked by _targets
            client = NotificationsClient(
                app=AppCredentials(client_id=credentials.client_id, client_secret=credentials.client_secret),
                clock=clock,
                spapi_endpoint=spapi.endpoint,
                lwa_endpoint=spapi.lwa_endpoint,
                config=spapi,
            )
            clients[app] = await stack.enter_async_context(client)
        return await step(Onboarding(clients, lambda result: print(result.line(), flush=True)))


def _summary(results: list[Result], shown: tuple[Outcome, ...]) -> int:
    sellers = [result for result in results if isinstance(result, SellerResult)]
    counts = ", ".join(f"{sum(1 for r in sellers if r.outcome is outcome)} {outcome}" for outcome in shown)
    print(f"{len(sellers)} seller(s): {counts}." + ("" if changed(results) else " Nothing changed at Amazon."))
    return exit_code(results)


def _guarded(action: Action) -> Callable[[argparse.Namespace], int]:
    """Load the settings, point the action at the sellers topic, run it; expected failures become exit codes."""

    def run(args: argparse.Namespace) -> int:
        settings = load_settings()
        if getattr(args, "topic", "") is None:
            args.topic = SELLERS.named(settings.kafka.topic_prefix)  # the topic the worker reads
        try:
            return asyncio.run(action(args, settings))
        except SecretKeyError as exc:
            raise ConfigurationError([str(exc)]) from None
        except (RegistryError, SqsError) as exc:
            raise CommandError(str(exc)) from None
        except KafkaError as exc:
            raise CommandError(f"Kafka at {settings.kafka.bootstrap_servers}: {exc}") from None

    return run
