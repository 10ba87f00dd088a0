"""``solicit worker``: run one worker of the Faust app (orders agent, timers, sender) until SIGTERM/Ctrl-C.

Before Faust starts, the topics are created if missing and the co-partitioned ones are checked: a worker
that found ``order-changes`` with another partition count than ``order-events`` and the orders table would
put one order's state on two partitions, so it refuses to start and says which topic is off. Start as many
workers as you like (each with its own ``SOLICIT_WORKER_ID``): Kafka splits the partitions between them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from streams.settings import Settings
from streams.topics import ORDER_CHANGES, ORDER_EVENTS, SEND_COMMANDS, ensure_topics, partition_counts

EXIT_OK = 0
EXIT_ERROR = 1


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
    parser.add_argument("--worker-id", default=None, help="unique id of this worker (default: SOLICIT_WORKER_ID)")
    parser.set_defaults(run=run)


async def prepare_topics(settings: Settings) -> str | None:
    """Create missing topics; return a problem description when the co-partitioned ones disagree."""
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        prefix=settings.topic_prefix,
    )
    names = [spec.named(settings.topic_prefix) for spec in (ORDER_CHANGES, ORDER_EVENTS, SEND_COMMANDS)]
    counts = await partition_counts(settings.kafka_bootstrap_servers, names)
    wrong = {name: count for name, count in counts.items() if count != settings.partitions}
    if wrong:
        listed = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
        return (
            f"topic partitions do not match SOLICIT_PARTITIONS={settings.partitions}: {listed}. "
            "Set SOLICIT_PARTITIONS to the existing count (partitions cannot shrink), or recreate the topics."
        )
    return None


def run(args: argparse.Namespace) -> int:
    overrides = {"worker_id": args.worker_id} if args.worker_id else {}
    settings = Settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every callback at INFO
    try:
        problem = asyncio.run(prepare_topics(settings))
    except Exception as exc:  # broker unreachable and the like: say so, no traceback
        print(f"solicit worker: cannot prepare topics on {settings.kafka_bootstrap_servers}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if problem is not None:
        print(f"solicit worker: {problem}", file=sys.stderr)
        return EXIT_ERROR

    import faust

    from streams.worker import build_pipeline

    settings.worker_dir().mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(settings)
    worker = faust.Worker(pipeline.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits the process
    return EXIT_OK
