"""``solicit bridge``: forward ORDER_CHANGE notifications from Amazon's SQS queue to Kafka until SIGTERM/SIGINT.

A thin shell over :class:`streams.bridge.Bridge`. It reads the one Settings object, makes sure the two topics it
writes exist (``ensure_topics``, with ``SOLICIT_PARTITIONS`` partitions), installs the signal handlers that stop the
bridge gracefully, and turns expected failures into a message on stderr and exit code 1. The AWS SDK reads its own
standard variables (``AWS_DEFAULT_REGION``, credentials, ``AWS_ENDPOINT_URL_SQS``), so nothing AWS-specific is
configured here.

Exit codes: 0 after a graceful stop; 1 when the bridge cannot run (no queue URL, queue missing, wrong region or
credentials, Kafka unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from typing import Any

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from connectors.sqs import SqsError
from streams.bridge import AfterProduce, Bridge
from streams.settings import Settings
from streams.topics import DEAD_LETTERS, ORDER_CHANGES, ensure_topics

EXIT_OK = 0
EXIT_ERROR = 1


def register(subparsers: Any) -> None:
    """Add ``bridge`` to the ``solicit`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bridge",
        help="forward ORDER_CHANGE notifications from SQS to Kafka (delete only after Kafka acknowledged)",
        description=(
            "Long-poll the SQS queue Amazon delivers ORDER_CHANGE notifications to, produce each valid notification "
            f"to {ORDER_CHANGES.name} (keyed by seller/order) and each unusable body to {DEAD_LETTERS.name}, and "
            "delete messages from SQS only after Kafka acknowledged them. AWS settings come from the standard "
            "variables (AWS_DEFAULT_REGION, credentials, AWS_ENDPOINT_URL_SQS). SIGTERM/SIGINT stop it gracefully."
        ),
    )
    parser.add_argument("--queue-url", default=None, help="SQS queue URL (default: SOLICIT_SQS_QUEUE_URL)")
    parser.add_argument(
        "--pollers", type=_positive, default=None, help="concurrent long polls (default: SOLICIT_BRIDGE_POLLERS, 4)"
    )
    parser.add_argument(
        "--visibility-timeout",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help=(
            "how long a received message stays hidden while it is forwarded, extended while a batch takes longer "
            "(default: SOLICIT_BRIDGE_VISIBILITY_TIMEOUT, 60)"
        ),
    )
    parser.add_argument(
        "--order-changes-topic",
        default=None,
        help=f"topic for notifications (default SOLICIT_TOPIC_PREFIX + {ORDER_CHANGES.name})",
    )
    parser.add_argument(
        "--dead-letters-topic",
        default=None,
        help=f"topic for unusable bodies (default SOLICIT_TOPIC_PREFIX + {DEAD_LETTERS.name})",
    )
    parser.add_argument(
        "--stats-interval", type=float, default=30.0, metavar="SECONDS", help="seconds between counter log lines"
    )
    parser.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    parser.set_defaults(run=execute)


def execute(args: argparse.Namespace, *, after_produce: AfterProduce | None = None) -> int:
    """Run the bridge the arguments describe. ``after_produce`` is for fault-injection tests only."""
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"solicit bridge: error: invalid settings: {exc}", file=sys.stderr)
        return EXIT_ERROR
    queue_url = args.queue_url or settings.sqs_queue_url
    if not queue_url:
        print(
            "solicit bridge: error: no SQS queue: set SOLICIT_SQS_QUEUE_URL or pass --queue-url",
            file=sys.stderr,
        )
        return EXIT_ERROR
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    bridge = Bridge(
        queue_url=queue_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        clock=settings.clock(),
        pollers=args.pollers or settings.bridge_pollers,
        visibility_timeout=args.visibility_timeout or settings.bridge_visibility_timeout,
        order_changes_topic=args.order_changes_topic or ORDER_CHANGES.named(settings.topic_prefix),
        dead_letters_topic=args.dead_letters_topic or DEAD_LETTERS.named(settings.topic_prefix),
        stats_interval=args.stats_interval,
        after_produce=after_produce,
    )
    try:
        asyncio.run(_serve(bridge, partitions=settings.partitions))
    except SqsError as exc:
        print(f"solicit bridge: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (KafkaError, OSError) as exc:
        print(
            f"solicit bridge: error: Kafka at {settings.kafka_bootstrap_servers} is not usable: {exc!r} "
            "(start one with `solicit kafka up`, or set KAFKA_BOOTSTRAP_SERVERS)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK


async def _serve(bridge: Bridge, *, partitions: int) -> None:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, _stop, bridge, sig)
    try:
        topics = (
            dataclasses.replace(ORDER_CHANGES, name=bridge.order_changes_topic),
            dataclasses.replace(DEAD_LETTERS, name=bridge.dead_letters_topic),
        )
        created = await ensure_topics(bridge.bootstrap_servers, partitions=partitions, topics=topics)
        if created:
            logging.getLogger(__name__).info("created topic(s) %s with %d partitions", ", ".join(created), partitions)
        await bridge.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _stop(bridge: Bridge, sig: signal.Signals) -> None:
    logging.getLogger(__name__).info("%s: finishing the batches in flight, then stopping", sig.name)
    bridge.stop()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
