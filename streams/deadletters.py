"""Dead letters: input we could not use, kept with the reason and where it came from.

Bad input never crashes a worker and never vanishes: whoever rejects a record publishes a :class:`DeadLetter`
on ``solicit.dead-letters.v1`` and logs the reason. The raw bytes are kept (UTF-8 text when they decode,
base64 otherwise) so the record can be inspected and replayed.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from statemachine.types import IsoDateTime


class DeadLetter(BaseModel):
    """One rejected input record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    source: str
    """Where it came from: ``sqs``, or the Kafka topic name."""
    reason: str
    raw: str
    raw_encoding: Literal["utf-8", "base64"]
    key: str | None = None
    metadata: dict[str, str] = {}
    """Source details: SQS MessageId/receive count/sent time, or Kafka partition/offset."""
    at: IsoDateTime

    @classmethod
    def build(
        cls,
        *,
        source: str,
        reason: str,
        raw: bytes | str,
        at: datetime,
        key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> DeadLetter:
        """A dead letter for ``raw``, whatever its bytes are."""
        if isinstance(raw, str):
            text, encoding = raw, "utf-8"
        else:
            try:
                text, encoding = raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        return cls(
            source=source,
            reason=reason,
            raw=text,
            raw_encoding=encoding,
            key=key,
            metadata=dict(metadata or {}),
            at=at,
        )

    def raw_bytes(self) -> bytes:
        """The original bytes."""
        return base64.b64decode(self.raw) if self.raw_encoding == "base64" else self.raw.encode("utf-8")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
