"""Turn an SQS message body (or a Kafka record value) into a :class:`Notification`, or say exactly why not.

Accepted bodies: the notification JSON itself, or that JSON double-encoded as a JSON string (Amazon's own
sample handles both). Everything else raises :class:`InvalidNotification` with a reason that names the field
and the problem, for the dead-letter topic and the log. No other exception escapes.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from statemachine.errors import InvalidNotification
from statemachine.notification import Notification

MAX_BODY_BYTES = 1024 * 1024
"""SQS messages are at most 1 MiB; anything larger did not come from Amazon."""

_MAX_ERRORS_IN_REASON = 3


def parse_notification(body: str | bytes, *, max_bytes: int = MAX_BODY_BYTES) -> Notification:
    """Parse one ORDER_CHANGE notification body; raise :class:`InvalidNotification` when it is unusable."""
    text = _decode(body, max_bytes)
    stripped = text.lstrip()
    if not stripped:
        raise InvalidNotification("body is empty")
    if stripped.startswith('"'):
        text = _unwrap_double_encoded(text)
    try:
        return Notification.model_validate_json(text)
    except ValidationError as exc:  # pydantic reports bad JSON, too deep nesting and bad values all this way
        raise InvalidNotification(describe_validation_error(exc)) from None


def _decode(body: str | bytes, max_bytes: int) -> str:
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        if len(raw) > max_bytes:
            raise InvalidNotification(f"body is {len(raw)} bytes, more than the {max_bytes} allowed")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidNotification(
                f"body is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
            ) from None
    if not isinstance(body, str):
        raise InvalidNotification(f"body must be text or bytes, not {type(body).__name__}")
    if len(body) > max_bytes or len(body.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidNotification(f"body is more than the {max_bytes} bytes allowed")
    return body


def _unwrap_double_encoded(text: str) -> str:
    try:
        inner: str = json.loads(text)  # JSON text starting with '"' is a string or no JSON at all
    except ValueError as exc:
        raise InvalidNotification(f"body is not JSON: {exc}") from None
    if inner.lstrip().startswith('"'):
        raise InvalidNotification("body is JSON-encoded more than twice")
    if not inner.strip():
        raise InvalidNotification("body is a double-encoded empty string")
    if not inner.lstrip().startswith("{"):
        raise InvalidNotification("body is a JSON string that does not hold a JSON object")
    return inner


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem (at most three), each naming the field path and what was wrong."""
    parts: list[str] = []
    errors = exc.errors(include_url=False)
    for error in errors[:_MAX_ERRORS_IN_REASON]:
        location = _format_location(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "json_invalid":
            parts.append(f"body is not JSON: {message.removeprefix('Invalid JSON: ')}")
            continue
        if error["type"] == "missing":
            parts.append(f"{location}: required field is missing")
            continue
        if error["type"] == "literal_error":
            parts.append(f"{location}: {message}, got {_short(error.get('input'))}")
            continue
        if error["type"] == "model_type" and not error["loc"]:
            parts.append(f"body must be a JSON object, got {_json_kind(error.get('input'))}")
            continue
        where = location or "body"
        if error["type"] == "value_error":
            parts.append(f"{where}: {message}")
            continue
        parts.append(f"{where}: {message} (got {_short(error.get('input'))})")
    if len(errors) > _MAX_ERRORS_IN_REASON:
        parts.append(f"and {len(errors) - _MAX_ERRORS_IN_REASON} more problem(s)")
    return "; ".join(parts)


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(value: object) -> str:
    # Strings never get here: a body that is a JSON string is unwrapped (or refused) before validation.
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
