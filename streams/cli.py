"""The ``solicit`` command line: one sub-command per process or tool.

Each sub-command lives in its own module under ``streams/commands/`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``run`` (a callable taking the parsed
arguments and returning the exit code) as a default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streams import __version__

# Order here is the order of `solicit --help`.
COMMAND_MODULES: tuple[str, ...] = ("demo", "kafka", "sandbox", "sellers", "bridge", "worker")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="solicit",
        description=(
            "Ask every Amazon buyer once for a product review and seller feedback "
            "(SP-API Solicitations), for many sellers, inside the window and the rate limits."
        ),
    )
    parser.add_argument("--version", action="version", version=f"solicit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"streams.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``solicit`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    code = run(args)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
