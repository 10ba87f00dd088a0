"""One module per ``solicit`` sub-command; see ``streams/cli.py``. Shared helpers live here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def print_usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A ``run`` for a command group called without a sub-command: print its help, exit 2 (usage error)."""

    def run(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return run
