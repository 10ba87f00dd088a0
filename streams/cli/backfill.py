"""``solicit sellers backfill ID...|--all [--days N]``, and the backfill that follows ``solicit sellers import``.

Runs in the CLI process (:mod:`streams.reconcile`): lists each seller's orders purchased in the last ``N`` days
(``SOLICIT_RECONCILE__BACKFILL_DAYS``, 45) with Orders v0 ``getOrders``, every page, inside the seller's getOrders
rate limit, and publishes each order as ORDER_CHANGE facts on ``order-changes`` for the worker. Sellers run side by
side (each has its own quota at Amazon). Needs ``SOLICIT_SECRET_KEY`` and the LWA credentials of the sellers' apps,
as the worker does. Running it again is always safe: the worker drops facts it has already applied.

Output: one line per seller (orders, pages, published, seconds), then a total. Exit codes: 0 every seller done; 1 a
seller failed (Amazon, its authorization, Kafka) or an id is not in the registry; 2 bad arguments or configuration.

After ``import``: the imported sellers are backfilled (``--backfill-days N``, default the setting; ``0`` skips it),
those of an app without LWA credentials in this process are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from connectors.crypto import TokenCipher
from streams.cli.shell import EXIT_OK, EXIT_USAGE, CommandError
from streams.directory import load_registry
from streams.reconcile import OrderChangesPublisher, OrdersClients, Reconciler, ReconcileReport
from streams.registry import SellerRecord, UnknownSeller
from streams.settings import Settings
from streams.topic_admin import ensure_topics, partition_problem
from streams.topics import ORDER_CHANGES

MAX_DAYS = 365


def register(actions: Any, common: argparse.ArgumentParser) -> None:
    """Add ``backfill`` to the ``sellers`` actions."""
    from streams.cli.sellers import _guarded  # the sellers actions' shell; imported here: it imports this module

    backfill = actions.add_parser(
        "backfill",
        parents=[common],
        help="feed sellers' recent orders from the Orders API to the worker (backfill, reconciliation)",
        description=(
            "List each seller's orders purchased in the last N days with the Orders API (getOrders, every page, "
            "inside the seller's rate limit) and publish them to order-changes for the worker, which solicits those "
            "whose window is open. Safe to repeat: the worker drops facts it has already applied."
        ),
    )
    backfill.add_argument("seller_ids", nargs="*", metavar="ID", help="the sellers to backfill")
    backfill.add_argument("--all", action="store_true", help="every seller of the registry")
    backfill.add_argument("--days", type=int, default=None, metavar="N", help=days_help())
    backfill.set_defaults(run=_guarded(run_backfill))


def days_help() -> str:
    return f"orders purchased in the last N days, 1 to {MAX_DAYS} (default: SOLICIT_RECONCILE__BACKFILL_DAYS, 45)"


async def run_backfill(args: argparse.Namespace, settings: Settings) -> int:
    """``sellers backfill``: the named sellers (or all), the last ``--days`` days."""
    if bool(args.all) == bool(args.seller_ids):
        raise CommandError("name the sellers to backfill, or give --all (not both)", EXIT_USAGE)
    days = _days(args.days, settings)
    registry = await load_registry(settings.kafka, topic=args.topic)
    if args.all:
        sellers = [registry[seller_id] for seller_id in sorted(registry)]
    else:
        unknown = [seller_id for seller_id in args.seller_ids if seller_id not in registry]
        if unknown:
            raise UnknownSeller(unknown[0], args.topic)
        sellers = [registry[seller_id] for seller_id in dict.fromkeys(args.seller_ids)]
    if not sellers:
        print(f"No sellers in {args.topic}; nothing to backfill.")
        return EXIT_OK
    return await backfill(sellers, settings, days)


async def backfill_imported(records: Sequence[SellerRecord], days: int | None, settings: Settings) -> int:
    """After ``sellers import``: backfill the imported sellers whose app has LWA credentials here."""
    if days == 0:
        return EXIT_OK
    ready = [record for record in records if settings.spapi.lwa_app(record.app) is not None]
    waiting = [record.seller_id for record in records if settings.spapi.lwa_app(record.app) is None]
    if waiting:
        _note(
            f"not backfilled (no LWA credentials here for their app): {', '.join(waiting)}; run "
            "`solicit sellers backfill ID...` where they are set (the worker's daily reconciliation covers only "
            "the last few days)"
        )
    if not ready:
        return EXIT_OK
    return await backfill(ready, settings, _days(days, settings))


async def backfill(sellers: Sequence[SellerRecord], settings: Settings, days: int) -> int:
    """List and publish for every seller at once; print a line per seller as each finishes."""
    kafka = settings.kafka
    await ensure_topics(kafka, (ORDER_CHANGES,))
    problem = await partition_problem(kafka, (ORDER_CHANGES,))
    if problem is not None:
        raise CommandError(problem)
    topic = ORDER_CHANGES.named(kafka.topic_prefix)
    clock = settings.sim.clock()
    publisher = OrderChangesPublisher(kafka, topic, client_id="solicit-backfill")
    clients = OrdersClients(settings.spapi, clock)
    reconciler = Reconciler(
        clients=clients,
        cipher=TokenCipher(settings.secret_key),
        publish=publisher.publish,
        clock=clock,
        config=settings.reconcile,
    )
    print(f"Backfilling {len(sellers)} seller(s): orders purchased in the last {days} day(s) -> {topic}", flush=True)
    reports: list[ReconcileReport] = []
    try:
        for finished in asyncio.as_completed([reconciler.backfill(seller, days) for seller in sellers]):
            report = await finished
            reports.append(report)
            print(report.summary(), flush=True)
    finally:
        await clients.aclose()
        await publisher.stop()
    published = sum(report.published for report in reports)
    failed = sorted(report.seller_id for report in reports if report.error)
    print(f"Backfilled {len(reports) - len(failed)} of {len(reports)} seller(s): {published} order(s) published.")
    if failed:
        raise CommandError(
            f"backfill failed for {len(failed)} seller(s): {', '.join(failed)} (see above); running it again is safe"
        )
    return EXIT_OK


def _days(days: int | None, settings: Settings) -> int:
    chosen = settings.reconcile.backfill_days if days is None else days
    if not 1 <= chosen <= MAX_DAYS:
        raise CommandError(f"--days must be 1 to {MAX_DAYS}, not {chosen}", EXIT_USAGE)
    return chosen


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
