"""``solicit worker``: run one worker of the Faust app (orders agent, timers, sender) until SIGTERM/Ctrl-C.

Before Faust starts, the topics are created if missing and the co-partitioned ones are checked: a worker that found
``order-changes`` with another partition count than ``order-events`` and the orders table would put one order's
state on two partitions, so it refuses to start and says which topic is off. It also refuses to start (exit 2, one
line) when it could not send for its sellers: no usable ``SOLICIT_SECRET_KEY``, or no LWA credentials for an app its
sellers use. Start as many workers as you like (each
with its own ``SOLICIT_WORKER__ID``): Kafka splits the partitions between them.

Faust's worker would set up logging again when it starts (mode's ``setup_logging``: its own colored format on
stdout, ``SOLICIT_LOG_FORMAT`` lost) and, at level WARNING or above, add its progress spinner's handler and put the
root logger at DEBUG, so that every library builds DEBUG records for nothing. :func:`faust_worker` keeps the logging
``load_settings`` configured (:mod:`streams.logs`) and has no spinner.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connectors.crypto import SecretKeyError, TokenCipher
from streams.cli.shell import EXIT_OK, CommandError, ConfigurationError, load_settings, require_kafka
from streams.directory import load_registry
from streams.registry import SellerRecord, SellersTopicMissing
from streams.settings import Settings
from streams.topic_admin import ensure_topics, partition_problem
from streams.topics import SELLERS

if TYPE_CHECKING:
    import faust


def register(subparsers: Any) -> None:
    """Add ``worker`` to the ``solicit`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run a worker: orders state machine, timers, rate-limited sender",
        description=(
            "Consume ORDER_CHANGE notifications from Kafka, keep every order in its state machine (RocksDB), "
            "fire due orders and send review requests through the SP-API, per-seller rate limited."
        ),
    )
    parser.add_argument("--worker-id", default=None, help="unique id of this worker (default: SOLICIT_WORKER__ID)")
    parser.set_defaults(run=run)


async def prepare_topics(settings: Settings) -> str | None:
    """Create missing topics; return a problem description when the co-partitioned ones disagree."""
    await ensure_topics(settings.kafka)
    return await partition_problem(settings.kafka)


def credential_problem(settings: Settings, sellers: Mapping[str, SellerRecord]) -> str | None:
    """Why this worker could not send for its sellers, or None: a worker that starts anyway would defer every order
    until its window closed (issue 9.11). Checks the secret key against every token, and every seller's LWA app."""
    try:
        cipher = TokenCipher(settings.secret_key)
    except SecretKeyError as exc:
        return str(exc)
    undecryptable = [s for s in sorted(sellers) if not _opens(cipher, sellers[s])]
    if undecryptable:
        listed = ", ".join(undecryptable[:5]) + (" ..." if len(undecryptable) > 5 else "")
        return (
            f"SOLICIT_SECRET_KEY opens the refresh token of none of {len(undecryptable)} seller(s) ({listed}): "
            "set the key the tokens were imported with (during a rotation: <new>,<old>)"
        )
    missing = sorted({s.app for s in sellers.values() if settings.spapi.lwa_app(s.app) is None})
    if missing:
        users = sum(1 for s in sellers.values() if s.app in missing)
        return (
            f"SOLICIT_SPAPI__LWA_CLIENT_ID/SOLICIT_SPAPI__LWA_APPS: no LWA credentials for app(s) "
            f"{', '.join(repr(a) for a in missing)}, which {users} seller(s) use"
        )
    return None


def _opens(cipher: TokenCipher, seller: SellerRecord) -> bool:
    try:
        cipher.decrypt(seller.refresh_token_encrypted, seller_id=seller.seller_id)
    except SecretKeyError:
        return False
    return True


async def _sellers(settings: Settings) -> dict[str, SellerRecord]:
    try:
        return await load_registry(settings.kafka, topic=SELLERS.named(settings.kafka.topic_prefix))
    except SellersTopicMissing:
        return {}


async def _preflight(settings: Settings) -> tuple[str | None, dict[str, SellerRecord]]:
    return await prepare_topics(settings), await _sellers(settings)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.worker_id:
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"id": args.worker_id})})
    require_kafka(settings.kafka)
    try:
        problem, sellers = asyncio.run(_preflight(settings))
    except Exception as exc:  # broker unreachable and the like: say so, no traceback
        raise CommandError(f"cannot prepare topics on {settings.kafka.bootstrap_servers}: {exc}") from None
    if problem is not None:
        raise CommandError(problem)
    credentials = credential_problem(settings, sellers)
    if credentials is not None:
        raise ConfigurationError([credentials])

    from streams import agents
    from streams.app import build_worker

    settings.worker.state_dir().mkdir(parents=True, exist_ok=True)
    worker_app = build_worker(settings)
    agents.register(worker_app)
    worker = faust_worker(worker_app.app, settings.log_level)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits the process
    return EXIT_OK


def faust_worker(app: faust.App, log_level: str) -> faust.Worker:
    """Faust's worker for ``app``, logging through what :func:`load_settings` configured: Faust neither replaces
    the handlers (``override_logging=False``) nor redirects stdout, prints no banner (``quiet``), and has no spinner
    (its handler would lower the root logger to DEBUG at level WARNING and above)."""
    import faust

    worker = faust.Worker(app, loglevel=log_level, quiet=True, override_logging=False)
    worker.spinner = None
    return worker
