"""Dead letters: input we could not use, kept with the reason and where it came from.

Bad input never crashes a worker and never vanishes: whoever rejects a record publishes a :class:`DeadLetter`
on ``solicit.dead-letters.v1`` and logs the reason. The raw bytes are kept (UTF-8 text when they decode,
base64 otherwise) so the record can be inspected and replayed.

A dead letter is bounded: the raw input is cut to :data:`MAX_RAW_BYTES` (``raw_truncated`` says so) and its full
size and sha256 are kept, so a 900 KB body can never grow past the producer's 1 MB limit (a dead letter that cannot
be published would be lost, or retried forever). The reason is cut to :data:`MAX_REASON_CHARS`.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from statemachine.types import IsoDateTime

MAX_RAW_BYTES = 64 * 1024
"""The most of a rejected record's bytes a dead letter keeps."""
MAX_REASON_CHARS = 1000


class DeadLetter(BaseModel):
    """One rejected input record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    source: str
    """Where it came from: ``sqs``, or the Kafka topic name."""
    reason: str
    raw: str
    raw_encoding: Literal["utf-8", "base64"]
    raw_truncated: bool = False
    """Only the first :data:`MAX_RAW_BYTES` of the input are in ``raw``."""
    raw_size: int = 0
    """Size of the whole input in bytes."""
    raw_sha256: str = ""
    """sha256 of the whole input (hex), to match a dead letter with its source."""
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
        """A dead letter for ``raw``, whatever its bytes are (kept up to :data:`MAX_RAW_BYTES`)."""
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
        kept = data[:MAX_RAW_BYTES]
        try:
            text, encoding = kept.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as exc:
            if len(kept) < len(data) and exc.start >= len(kept) - 3:  # a character cut in half at the limit
                kept = kept[: exc.start]
                text, encoding = kept.decode("utf-8", "replace"), "utf-8"
            else:
                text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        return cls(
            source=source,
            reason=reason[:MAX_REASON_CHARS],
            raw=text,
            raw_encoding=encoding,
            raw_truncated=len(kept) < len(data),
            raw_size=len(data),
            raw_sha256=hashlib.sha256(data).hexdigest(),
            key=key,
            metadata=dict(metadata or {}),
            at=at,
        )

    def raw_bytes(self) -> bytes:
        """The original bytes (their first :data:`MAX_RAW_BYTES` when ``raw_truncated``)."""
        return base64.b64decode(self.raw) if self.raw_encoding == "base64" else self.raw.encode("utf-8")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
