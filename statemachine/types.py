"""Value types the whole project shares: ISO-8601 date-times, Amazon ids, and the frozen base model of our records.

Pure, like the rest of the core: pydantic types and nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

__all__ = ["FrozenModel", "IsoDateTime", "OrderIdStr", "SellerIdStr", "format_datetime"]


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"is not an ISO-8601 date-time: {value[:40]!r}") from None
    else:
        raise ValueError(f"must be an ISO-8601 date-time string, not {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"is out of range once converted to UTC: {value!r}") from None


@lru_cache(maxsize=4096)
def format_datetime(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, the way Amazon writes it. Memoized: an order record carries the same
    few instants many times and is serialised more than once per event (P1 in docs/benchmarks.md)."""
    timespec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_parse_datetime), PlainSerializer(format_datetime, return_type=str)]
"""A date-time that must be ISO-8601 on the wire; always UTC once parsed."""

SellerIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,64}$")]
"""Seller (merchant) ids are alphanumeric; they become part of Kafka keys and log lines."""
OrderIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")]
"""Amazon order ids are 3-7-7 digits; we accept letters, digits and dashes: the id goes into an API path."""


class FrozenModel(BaseModel):
    """Base of our own records and events: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")
