"""``solicit bridge``: forward ORDER_CHANGE notifications from Amazon's SQS queue to Kafka until SIGTERM/SIGINT.

A thin shell over :class:`streams.bridge.Bridge`. It reads the one Settings object, makes sure the two topics it
writes exist (:func:`streams.topic_admin.ensure_topics`), installs the signal handlers that stop the bridge gracefully,
and turns expected failures into one line on stderr. The AWS SDK reads its own standard variables
(``AWS_DEFAULT_REGION``, credentials, ``AWS_ENDPOINT_URL_SQS``), so nothing AWS-specific is configured here.

Exit codes: 0 after a graceful stop; 1 when the bridge cannot run (queue missing, wrong region or credentials, Kafka
failing later); 2 when a setting is bad or missing (no queue URL), or Kafka cannot be reached or refuses our
credentials at start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
from typing import Any

from aiokafka.errors import KafkaError

from connectors.sqs import SqsError
from streams.bridge import AfterProduce, Bridge
from streams.cli.shell import EXIT_OK, CommandError, ConfigurationError, load_settings, require_kafka
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.topics import DEAD_LETTERS, ORDER_CHANGES

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``bridge`` to the ``solicit`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bridge",
        help="forward ORDER_CHANGE notifications from SQS to Kafka (delete only after Kafka acknowledged)",
        description=(
            "Long-poll the SQS queue Amazon delivers ORDER_CHANGE notifications to, produce each valid notification "
            f"to {ORDER_CHANGES.name} (keyed by seller/order) and each unusable body to {DEAD_LETTERS.name}, and "
            "delete messages from SQS only after Kafka acknowledged them. Settings: SOLICIT_BRIDGE__* "
            "(docs/configuration.md); AWS settings come from the standard variables (AWS_DEFAULT_REGION, "
            "credentials, AWS_ENDPOINT_URL_SQS). SIGTERM/SIGINT stop it gracefully."
        ),
    )
    parser.add_argument("--queue-url", default=None, help="SQS queue URL (default: SOLICIT_BRIDGE__QUEUE_URL)")
    parser.add_argument("--order-changes-topic", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dead-letters-topic", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(run=execute)


def build_bridge(args: argparse.Namespace, settings: Settings, after_produce: AfterProduce | None = None) -> Bridge:
    """The bridge the settings and flags describe."""
    config = settings.bridge
    if args.queue_url:
        config = config.model_copy(update={"queue_url": args.queue_url})
    if not config.queue_url:
        raise ConfigurationError(["SOLICIT_BRIDGE__QUEUE_URL: not set (or pass --queue-url)"])
    prefix = settings.kafka.topic_prefix
    return Bridge(
        config=config,
        kafka=settings.kafka,
        clock=settings.sim.clock(),
        order_changes_topic=args.order_changes_topic or ORDER_CHANGES.named(prefix),
        dead_letters_topic=args.dead_letters_topic or DEAD_LETTERS.named(prefix),
        after_produce=after_produce,
    )


def execute(args: argparse.Namespace, *, after_produce: AfterProduce | None = None) -> int:
    """Run the bridge the arguments describe. ``after_produce`` is for fault-injection tests only."""
    settings = load_settings()
    bridge = build_bridge(args, settings, after_produce)
    require_kafka(settings.kafka)
    try:
        asyncio.run(_serve(bridge, settings))
    except SqsError as exc:
        raise CommandError(str(exc)) from None
    except (KafkaError, OSError) as exc:
        raise CommandError(
            f"Kafka at {settings.kafka.bootstrap_servers} is not usable: {exc!r} "
            "(start one with `solicit kafka up`, or set KAFKA_BOOTSTRAP_SERVERS)"
        ) from None
    return EXIT_OK


async def _serve(bridge: Bridge, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, _stop, bridge, sig)
    try:
        topics = (
            dataclasses.replace(ORDER_CHANGES, name=bridge.order_changes_topic),
            dataclasses.replace(DEAD_LETTERS, name=bridge.dead_letters_topic),
        )
        created = await ensure_topics(settings.kafka, topics)
        if created:
            log.info("created topic(s) %s with %d partitions", ", ".join(created), settings.kafka.partitions)
        await bridge.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _stop(bridge: Bridge, sig: signal.Signals) -> None:
    log.info("%s: finishing the batches in flight, then stopping", sig.name)
    bridge.stop()
