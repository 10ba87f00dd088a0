"""The ``solicit`` command line: one shell (:mod:`streams.cli.shell`), one module per command of the service.

The service's own commands (``worker``, ``bridge``, ``sellers``) live here. Other packages add commands through
the ``solicit.commands`` entry point group (the lab's ``demo``, ``sandbox`` and ``kafka`` come from ``devstack``),
so the product never imports the lab. Each command module exposes ``register(subparsers) -> None``, which adds its
parser and sets ``run`` (parsed arguments -> exit code).
"""

from streams.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
