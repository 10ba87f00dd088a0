"""Faust wiring and process entry points: topics, tables, agents, timers, the CLI.

Depends on ``connectors`` and ``statemachine``; nothing depends on it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("solicit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
