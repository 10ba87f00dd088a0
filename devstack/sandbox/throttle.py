"""Amazon's side of the rate limit: a token bucket per (seller, operation) that answers 429 when empty.

Deliberately separate from the client's :mod:`connectors.spapi.ratelimit` (no shared code): the sandbox is the
referee the client is measured against, so a bug in the client's bucket must not be mirrored here.
Amazon's rule (``docs/amazon-facts.md`` §2): ``rate`` tokens per second, at most ``burst`` stored,
a request takes one token, an empty bucket rejects.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerBucket"]

_EPSILON = 1e-9  # float noise only; never a deliberate tolerance


@dataclass(slots=True)
class ServerBucket:
    """One bucket; ``now`` is real monotonic seconds."""

    rate: float
    burst: int
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> ServerBucket:
        """An idle seller's bucket."""
        return cls(rate=rate, burst=burst, tokens=float(burst), updated=now)

    def try_take(self, now: float) -> bool:
        """Take a token if one is there; ``False`` means answer 429."""
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens + _EPSILON >= 1.0:
            self.tokens -= 1.0
            return True
        return False
