"""``solicit kafka up|down|status``: the local development broker, started from cached Maven jars.

A thin shell over :class:`devstack.local_kafka.LocalBroker`. Its only jobs are to turn Settings and flags into a
broker, print results for people, and turn errors into exit codes. ``up`` detaches the broker (its own session),
so it keeps running after this command returns, and ``down`` stops it later through the pid file in the data dir.
Every expected failure is a ``LocalKafkaError`` whose message says what to do. It is printed on stderr without a
traceback.

Exit codes: 0 success; 1 error; 130 interrupted. ``status`` follows the LSB init-script convention: 0 running and
answering, 1 running but not answering, 3 stopped. That lets scripts write ``solicit kafka status || solicit kafka up``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.local_kafka import KAFKA_VERSION, LocalBroker, LocalKafkaError
from devstack.local_kafka.broker import READY_TIMEOUT_S
from devstack.settings import DevSettings
from streams.cli.shell import EXIT_OK, CommandError, load_settings, print_usage

STATUS_NOT_ANSWERING = 1
STATUS_STOPPED = 3


def register(subparsers: Any) -> None:
    """Add ``kafka`` and its three actions to the ``solicit`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kafka",
        help=f"run a local Kafka {KAFKA_VERSION} broker for development (no Docker)",
        description=(
            f"Run a single-node Kafka {KAFKA_VERSION} broker (KRaft) from Maven Central jars, cached in "
            "SOLICIT_LAB__KAFKA_HOME (default ~/.cache/solicit/kafka-<version>)."
        ),
    )
    actions = parser.add_subparsers(dest="kafka_action", metavar="ACTION", title="actions")
    parser.set_defaults(run=print_usage(parser))

    up = actions.add_parser("up", help="start the broker in the background and wait until it answers")
    _add_data_dir(up)
    up.add_argument("--port", type=int, default=None, help="client port (default: SOLICIT_LAB__KAFKA_PORT, else 9092)")
    up.add_argument(
        "--ready-timeout",
        type=float,
        default=READY_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up when the broker does not answer within this time (default {READY_TIMEOUT_S:.0f})",
    )
    up.set_defaults(run=_guarded(_up))

    down = actions.add_parser("down", help="stop the broker (SIGTERM, then SIGKILL after 20 s)")
    _add_data_dir(down)
    down.set_defaults(run=_guarded(_down))

    status = actions.add_parser(
        "status", help="show whether the broker runs and answers (exit 0 yes, 1 not answering, 3 stopped)"
    )
    _add_data_dir(status)
    status.set_defaults(run=_guarded(_status))


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data, config, log and pid directory (default: SOLICIT_LAB__KAFKA_DATA_DIR, else .run/kafka)",
    )


def _broker(args: argparse.Namespace) -> LocalBroker:
    lab = load_settings(DevSettings).lab
    port = getattr(args, "port", None)
    return LocalBroker(
        data_dir=args.data_dir or lab.kafka_data_dir,
        port=port if port is not None else lab.kafka_port,
        kafka_home=lab.kafka_home,
    )


def _up(args: argparse.Namespace) -> int:
    broker = _broker(args)
    report = broker.start(detach=True, ready_timeout=args.ready_timeout)
    if report.already_running:
        print(f"Kafka is already running at {report.bootstrap} (pid {report.pid}, data {broker.data_dir}).")
        return EXIT_OK
    if report.jars is not None and report.jars.downloaded:
        print(f"Downloaded the Kafka {KAFKA_VERSION} jars to {report.jars.libs} in {report.jars.seconds:.1f} s.")
    print(
        f"Kafka {KAFKA_VERSION} is ready at {report.bootstrap} (pid {report.pid}) in {report.start_seconds:.1f} s "
        f"(format {report.format_seconds:.1f} s, start {report.ready_seconds:.1f} s).\n"
        f"Data and log: {broker.data_dir}. Stop it with `solicit kafka down`."
    )
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    broker = _broker(args)
    if broker.stop():
        print(f"Kafka stopped (data kept in {broker.data_dir}).")
    else:
        print(f"Kafka is not running (data dir {broker.data_dir}).")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    status = _broker(args).status()
    if not status.running:
        print(f"stopped (data dir {status.data_dir})")
        return STATUS_STOPPED
    answering = "answers metadata requests" if status.answers_metadata else "does NOT answer metadata requests"
    print(f"running: pid {status.pid}, 127.0.0.1:{status.port}, {answering} (data dir {status.data_dir})")
    return EXIT_OK if status.answers_metadata else STATUS_NOT_ANSWERING


def _guarded(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The broker's expected failures become one line and exit 1 (through :func:`streams.cli.shell.run_guarded`)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return action(args)
        except (LocalKafkaError, OSError) as exc:
            # OSError: a data or cache dir we cannot create or write (the message names the path).
            raise CommandError(str(exc)) from None

    return run
