"""``solicit demo``: the whole pipeline on a local stack (see :mod:`devstack.demo.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from devstack.settings import DevSettings
from streams.cli.shell import CommandError, load_settings


def register(subparsers: Any) -> None:
    """Add ``demo`` to the ``solicit`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on a local stack with demo sellers and traffic, then print a summary",
        description=(
            "Start a local Kafka broker, a moto SQS server, the SP-API sandbox, workers and the SQS bridge; import "
            "demo sellers; feed realistic ORDER_CHANGE traffic through SQS (MFN and FBA, shipped, canceled, "
            "duplicates, malformed); show progress in simulated time; print a per-seller summary; stop what it "
            "started. Needs the dev extras (moto)."
        ),
    )
    parser.add_argument("--sellers", type=int, default=24, help="number of demo sellers (default 24, at least 6)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--speed", type=float, default=43200.0, help="simulated seconds per real second (default 43200: 12 h/s)"
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="give up waiting after this many seconds")
    parser.add_argument("--data-dir", type=Path, default=Path(".run/demo"), help="state and logs (default .run/demo)")
    parser.add_argument(
        "--exit-after-summary",
        action="store_true",
        help="stop everything right after the summary (CI); otherwise keep running until Ctrl-C",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    load_settings(DevSettings)  # a bad SOLICIT_* variable stops the demo before it starts anything
    try:
        import moto  # noqa: F401
    except ImportError:
        raise CommandError(
            "solicit demo needs the development extras: pip install -e '.[dev]' (or: make demo)"
        ) from None
    from devstack.demo.run import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            sellers=args.sellers,
            workers=args.workers,
            speed=args.speed,
            timeout=args.timeout,
            exit_after_summary=args.exit_after_summary,
            data_dir=args.data_dir,
        )
    )
