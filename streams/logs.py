"""How every ``solicit`` process logs: one line per event on stderr, plain or JSON, the same fields, secrets masked.

* **Fields**: ``time`` (ISO-8601 UTC, milliseconds), ``level``, ``logger``, ``message``, and when the code knows them
  the order's context: ``seller_id``, ``order_key``, ``state``, ``reason`` (passed as ``extra={...}``; any other
  ``extra`` key follows them). A logged exception is the ``exception`` field.
* **plain** (``SOLICIT_LOG_FORMAT=plain``, the default): ``<time> <level> <logger>: <message> key=value ...``, the
  context appended as ``key=value`` (quoted when the value has a space, a quote or ``=``) so ``grep order_key=S/1``
  finds an order's story. Line breaks inside the message are written ``\\n``; a traceback follows its line as
  Python prints it, for a person to read.
* **json** (``SOLICIT_LOG_FORMAT=json``): one JSON object per line (python-json-logger) with exactly the same fields
  and values, the traceback inside it: for log shippers.
* **Secrets**: :class:`SecretMask`, a filter on the handler, masks what looks like an LWA refresh token
  (``Atzr|...``), access token (``Atza|...``) or a ``client_secret``/``refresh_token``/``access_token`` value in the
  final message, the ``extra`` fields and the traceback. The code never logs them; this is the last line of defence.

:func:`configure_logging` installs it once per process (``streams.cli.shell.load_settings`` calls it);
``solicit worker`` keeps it through Faust's start (``streams.cli.worker.faust_worker``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, date, datetime
from enum import Enum
from typing import IO, Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["plain", "json"]

CONTEXT_FIELDS: tuple[str, ...] = ("seller_id", "order_key", "state", "reason")
"""The order's context, in this order, when a log call passes them as ``extra``."""

MASK = "***"

_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_TOKEN = re.compile(r"(Atz[ar])(\||%7C)[^\s\"'&,;)\]}<>]+", re.IGNORECASE)
_SECRET_NAMES = r"(?:client_secret|refresh_token|access_token)"  # noqa: S105 - field names, not secrets
_ALREADY_MASKED = r"Atz[ar](?:\||%7C)\*\*\*"
_QUOTED_SECRET = re.compile(
    rf"""({_SECRET_NAMES}["']?\s*[:=]\s*)(["'])(?!{_ALREADY_MASKED}\2)(?:\\.|(?!\2).)*\2""", re.IGNORECASE
)
_BARE_SECRET = re.compile(
    rf"""({_SECRET_NAMES}["']?\s*[:=]\s*)(?![\s"']|{_ALREADY_MASKED})[^\s"'&,;)\]}}<>]+""", re.IGNORECASE
)
_PLAIN_NEEDS_QUOTES = re.compile(r"[\s\"=]")

_TRACEBACKS = logging.Formatter()
_installed: tuple[logging.Handler, LogFormat] | None = None


def mask_secrets(text: str) -> str:
    """``text`` with LWA tokens and secret values replaced by ``***`` (the token's ``Atzr|`` prefix is kept)."""
    text = _TOKEN.sub(rf"\1\2{MASK}", text)
    text = _QUOTED_SECRET.sub(rf"\1\2{MASK}\2", text)
    return _BARE_SECRET.sub(rf"\1{MASK}", text)


def scalar(value: object) -> str | int | float | bool | None:
    """An ``extra`` value as both formats write it: JSON's scalars as they are, enums by value, the rest as text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Enum):
        return scalar(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` a log call passed, None left out: the order's context first (:data:`CONTEXT_FIELDS`), then the
    rest by name."""
    given = {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD_ATTRIBUTES and not k.startswith("_") and v is not None
    }
    ordered = {k: given.pop(k) for k in CONTEXT_FIELDS if k in given}
    return {k: scalar(v) for k, v in [*ordered.items(), *sorted(given.items())]}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Every field of ``record``, as both formats write them."""
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        **extra_fields(record),
    }
    if record.exc_info and not record.exc_text:
        record.exc_text = _TRACEBACKS.formatException(record.exc_info)
    if record.exc_text:
        fields["exception"] = record.exc_text
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


class PlainFormatter(logging.Formatter):
    """``<time> <level> <logger>: <message> key=value ...``; a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        trailer = [fields.pop(k) for k in ("exception", "stack") if k in fields]
        head = f"{fields.pop('time')} {fields.pop('level')} {fields.pop('logger')}: "
        message = str(fields.pop("message")).replace("\r", "\\r").replace("\n", "\\n")
        pairs = "".join(f" {key}={_plain_value(value)}" for key, value in fields.items())
        return "\n".join([head + message + pairs, *trailer])


def _plain_value(value: object) -> str:
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return json.dumps(text) if not text or _PLAIN_NEEDS_QUOTES.search(text) else text


class JsonLinesFormatter(JsonFormatter):
    """One JSON object per line with the fields of :func:`record_fields` (python-json-logger does the encoding)."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        # message_dict holds python-json-logger's own (unmasked) exc_info: the masked record fields replace it.
        log_data.update(record_fields(record))


class SecretMask(logging.Filter):
    """Masks secrets (:func:`mask_secrets`) in the final message, the ``extra`` fields and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: keep the template, drop the arguments
            message = f"{record.msg} (log arguments did not fit the message)"
        record.msg, record.args = mask_secrets(message), ()
        for key in [k for k in record.__dict__ if k not in _STANDARD_ATTRIBUTES]:
            value = scalar(record.__dict__[key])
            record.__dict__[key] = mask_secrets(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


def build_handler(fmt: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A stderr (or ``stream``) handler writing ``fmt``, with :class:`SecretMask`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLinesFormatter(json_ensure_ascii=False) if fmt == "json" else PlainFormatter())
    handler.addFilter(SecretMask())
    return handler


def configure_logging(level: str, fmt: LogFormat = "plain") -> None:
    """Log to stderr at ``level`` in ``fmt``. A process that configured logging already (a host application,
    pytest, an earlier call) keeps its own configuration."""
    global _installed
    root = logging.getLogger()
    if not root.handlers:
        handler = build_handler(fmt)
        root.addHandler(handler)
        root.setLevel(level.upper())
        _installed = (handler, fmt)
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every callback at INFO
    logging.getLogger("aiokafka.helpers").setLevel(logging.WARNING)  # "Loading SSL CA from ..." per client made


def report_json(logger: str, message: str) -> bool:
    """Write a command's final error line as a JSON log line (ERROR, whatever the level) when this process logs
    JSON; False, writing nothing, when it does not (the caller prints its plain line)."""
    if _installed is None or _installed[1] != "json":
        return False
    record = logging.LogRecord(logger, logging.ERROR, __name__, 0, message, None, None)
    _installed[0].handle(record)  # the handler's mask and format, not the loggers' level: this line is always written
    return True
