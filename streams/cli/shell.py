"""What every ``solicit`` command shares: exit codes, the settings loader, logging, and the error boundary.

* **Exit codes**: 0 success; 1 the command ran and failed (Kafka unreachable, an unknown seller); 2 usage or
  configuration (a bad flag, a bad setting, an invalid import file); 130 interrupted.
* **Settings**: :func:`load_settings` builds the process's one settings object. A bad value is reported as one line
  per problem naming the *variable* and what is wrong with it, never the value (it may be a secret).
* **Logging** is configured once, by :func:`load_settings`, from ``SOLICIT_LOG_LEVEL`` and ``SOLICIT_LOG_FORMAT``
  (plain text or JSON lines, :mod:`streams.logs`).
* **Kafka**: :func:`require_kafka` is the first thing every command that needs Kafka does: a broker that cannot be
  reached, or refuses our TLS or SASL credentials, is one line and exit 2 (the connection settings are configuration),
  within seconds, instead of a client retrying in the background.
* **Errors**: :func:`run_guarded` turns an expected failure (:class:`CommandError`, :class:`ConfigurationError`) into
  one line on stderr and its exit code, and anything else into one line naming the exception's type; tracebacks
  only with ``solicit --debug``. A process that logs JSON writes that line as a JSON log line (ERROR), so that a
  log shipper reads a command's last words too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import TypeVar, overload

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from connectors.kafka import KafkaConnection, KafkaUnusable, check_connection
from streams.logs import configure_logging, report_json
from streams.settings import ENV_PREFIX, NESTED_DELIMITER, Settings, variable_of

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

S = TypeVar("S", bound=BaseModel)


class CommandError(Exception):
    """An expected failure of a command: printed as one line, exit 1 (or ``code``)."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class ConfigurationError(CommandError):
    """The configuration cannot work (a bad setting, a missing key): exit 2. ``lines`` never hold a secret value."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines), EXIT_USAGE)
        self.lines = lines


def describe_problems(exc: ValidationError) -> str:
    """Every problem of ``exc`` as ``location: message``, without the input values (they may hold secrets)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def describe_settings_error(settings_cls: type[BaseModel], exc: ValidationError) -> list[str]:
    """One line per problem: the variable, where inside it, and pydantic's message, without the input value."""
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        variable, inside = variable_of(settings_cls, tuple(error["loc"]))
        where = f" ({inside})" if inside else ""
        lines.append(f"{variable}{where}: {error['msg']}")
    return lines


@overload
def load_settings() -> Settings: ...


@overload
def load_settings(settings_cls: type[S], **overrides: object) -> S: ...


def load_settings(settings_cls: type[BaseModel] = Settings, **overrides: object) -> BaseModel:
    """The process's settings, and logging configured from them; :class:`ConfigurationError` if they are bad."""
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_settings_error(settings_cls, exc)) from None
    except SettingsError as exc:
        # pydantic-settings could not decode a JSON variable; its message names the field, not the value.
        raise ConfigurationError([_settings_error_line(exc)]) from None
    configure_logging(getattr(settings, "log_level", "info"), getattr(settings, "log_format", "plain"))
    return settings


def _settings_error_line(exc: SettingsError) -> str:
    """Name the variable whose JSON does not decode (pydantic-settings names only the group)."""
    text = str(exc)
    group = text.split('"')[1].upper() if text.count('"') >= 2 else ""
    prefix = f"{ENV_PREFIX}{group}"
    for name, value in sorted(os.environ.items()):
        if name.upper().startswith(prefix) and value.lstrip()[:1] in ("{", "["):
            try:
                json.loads(value)
            except ValueError:
                return f"{name.upper()}: not valid JSON"
    return f"{prefix} (or one of {prefix}{NESTED_DELIMITER}*): a value that must be JSON is not valid JSON"


def require_kafka(connection: KafkaConnection) -> None:
    """Check that Kafka answers with these connection settings (address, TLS, SASL); :class:`ConfigurationError`
    (exit 2) with one line naming what is wrong when it does not: refused, TLS handshake, authentication, timeout.
    Never a secret: the line names the user, not the password."""
    try:
        asyncio.run(check_connection(connection))
    except KafkaUnusable as exc:
        raise ConfigurationError([str(exc)]) from None


def print_usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A ``run`` for a command group called without a sub-command: print its help, exit 2 (usage error)."""

    def run(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return run


def run_guarded(name: str, run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; expected failures become one line on stderr and an exit code."""
    debug = bool(getattr(args, "debug", False))
    try:
        return int(run(args) or 0)
    except ConfigurationError as exc:
        for line in exc.lines:
            _fail(name, f"configuration error: {line}")
        return exc.code
    except CommandError as exc:
        if debug:
            raise
        _fail(name, f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        _fail(name, "interrupted")
        return EXIT_INTERRUPTED
    except ValidationError as exc:  # a model built from input we were given, not settings: no values either
        if debug:
            raise
        _fail(name, f"error: invalid {exc.title}: {describe_problems(exc)}")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            raise
        _fail(name, f"error: {type(exc).__name__}: {exc} (run with solicit --debug for the traceback)")
        return EXIT_ERROR


def _fail(name: str, text: str) -> None:
    """``<name>: <text>`` on stderr; a JSON log line of the logger ``<name>`` (dotted) when the process logs JSON."""
    if not report_json(name.replace(" ", "."), text):
        print(f"{name}: {text}", file=sys.stderr)
