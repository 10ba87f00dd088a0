"""``solicit``: the parser with every command, and the entry point of the console script."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from streams import __version__
from streams.cli.shell import EXIT_OK, run_guarded

SERVICE_COMMANDS: tuple[str, ...] = ("worker", "bridge", "sellers", "orders")
"""The service's commands, in the order of ``solicit --help``; plugins (the lab) follow."""

PLUGIN_GROUP = "solicit.commands"


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="solicit",
        description=(
            "Ask every Amazon buyer once for a product review and seller feedback "
            "(SP-API Solicitations), for many sellers, inside the window and the rate limits."
        ),
    )
    parser.add_argument("--version", action="version", version=f"solicit {__version__}")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in SERVICE_COMMANDS:
        importlib.import_module(f"streams.cli.{name}").register(sub)
    for plugin in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name):
        plugin.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``solicit`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return EXIT_OK
    return run_guarded(f"solicit {args.command}", run, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
