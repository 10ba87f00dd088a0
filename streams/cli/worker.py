"""``solicit worker``: run one worker of the Faust app (orders agent, timers, sender) until SIGTERM/Ctrl-C.

Before Faust starts, the topics are created if missing and the co-partitioned ones are checked: a worker that found
``order-changes`` with another partition count than ``order-events`` and the orders table would put one order's
state on two partitions, so it refuses to start and says which topic is off. Start as many workers as you like (each
with its own ``SOLICIT_WORKER__ID``): Kafka splits the partitions between them.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.cli.shell import EXIT_OK, CommandError, load_settings
from streams.settings import Settings
from streams.topic_admin import co_partitioning_problem, ensure_topics


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
    return await co_partitioning_problem(settings.kafka)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.worker_id:
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"id": args.worker_id})})
    try:
        problem = asyncio.run(prepare_topics(settings))
    except Exception as exc:  # broker unreachable and the like: say so, no traceback
        raise CommandError(f"cannot prepare topics on {settings.kafka.bootstrap_servers}: {exc}") from None
    if problem is not None:
        raise CommandError(problem)

    import faust

    from streams import agents
    from streams.app import build_worker

    settings.worker.state_dir().mkdir(parents=True, exist_ok=True)
    worker_app = build_worker(settings)
    agents.register(worker_app)
    worker = faust.Worker(worker_app.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits the process
    return EXIT_OK
