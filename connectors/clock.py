"""The one source of time for every process (worker, bridge, sandbox, demo).

Two kinds of time exist here and they are kept apart:

* **business time** (``Clock.now()``): what the order rules see: delivery windows, due times, leases. In
  production it is the wall clock. A :class:`SimulatedClock` runs it faster (``speed`` simulated seconds per
  real second) from a chosen ``start``, so the demo and end-to-end tests can live through weeks of order
  life in seconds. Every process of one run must agree on it, so a simulated clock is fully described by
  settings: ``start``, ``speed`` and ``anchor`` (the real Unix time at which business time equals ``start``).
* **real elapsed time** (``Clock.monotonic()``): rate limits, HTTP timeouts and backoff. Amazon's limits are
  per real second, so these are never simulated.

Nothing else in the project reads the wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Clock(Protocol):
    """What code that needs time is given."""

    def now(self) -> datetime:
        """Business time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Real elapsed seconds from an arbitrary origin (never simulated)."""
        ...

    def real_seconds(self, business: timedelta) -> float:
        """How many real seconds pass while ``business`` time passes."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def real_seconds(self, business: timedelta) -> float:
        return business.total_seconds()

    def __repr__(self) -> str:
        return "SystemClock()"


@dataclass(frozen=True)
class SimulatedClock:
    """Business time that starts at ``start`` when the wall clock reads ``anchor`` and runs ``speed`` x faster."""

    start: datetime
    speed: float = 1.0
    anchor: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("SimulatedClock.start must be timezone-aware")
        if self.speed <= 0:
            raise ValueError("SimulatedClock.speed must be positive")

    def now(self) -> datetime:
        elapsed = time.time() - self.anchor
        return (self.start + timedelta(seconds=elapsed * self.speed)).astimezone(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def real_seconds(self, business: timedelta) -> float:
        return business.total_seconds() / self.speed


class Simulation(BaseModel):
    """Settings of simulated business time; unset ``start`` means the wall clock (production)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: AwareDatetime | None = Field(
        default=None, description="When set, business time is simulated and starts here (ISO-8601 with offset)."
    )
    speed: float = Field(default=1.0, gt=0, description="Simulated seconds per real second.")
    anchor: float | None = Field(
        default=None,
        description="Real Unix time at which simulated time equals start; every process of a run must share it.",
    )

    def clock(self) -> Clock:
        """The process clock these settings describe."""
        if self.start is None:
            return SystemClock()
        if self.anchor is None:
            return SimulatedClock(start=self.start, speed=self.speed)
        return SimulatedClock(start=self.start, speed=self.speed, anchor=self.anchor)


class ManualClock:
    """A clock tests move by hand. ``monotonic`` advances together with ``now``."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock start must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def real_seconds(self, business: timedelta) -> float:
        return business.total_seconds()

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` (a timedelta, or seconds)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
