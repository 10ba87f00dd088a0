"""Client-side token buckets, one per (seller, operation), so we stay inside Amazon's usage plans.

Amazon throttles with a token bucket per (application, seller) pair and operation: ``rate`` tokens per second, at
most ``burst`` stored, an empty bucket answers 429 (``docs/amazon-facts.md`` §2). Mirroring that bucket
on our side lets hundreds of sellers run at their full quota without 429s, and a throttled seller slows only its
own buckets.

Why our own code and not a library: ``aiolimiter`` (per-limiter leaky bucket) reads the event loop's clock, so it
cannot be driven by an injected time source and tested without sleeping, and it has no notion of "the server just
said 429, drain and slow down" or of changing the rate from a response header; ``pyrate-limiter`` is a
sliding-window log, not Amazon's token bucket, and would either exceed or under-use the plan. The bucket here is
pure arithmetic over a ``monotonic()`` source (real elapsed time: Amazon's limits are per real second, so a
simulated business clock never touches them).

Where Amazon's bucket starts: an idle seller's bucket at Amazon is full and starts refilling only once our request
*reaches* Amazon, which may be up to a round trip after we sent it (a busy event loop, the network). A client that
counted refill from the send would be ahead of Amazon by that much for as long as the seller stays busy, and a
throttled start (hundreds of sellers at once) turned that into 429s minutes later. So a limiter built with
``hold_until_answered`` credits no refill to a bucket emptied from full until that request is answered
(:meth:`RateLimiter.answered`), and after any answer holds at most ``burst - 1`` tokens (a bucket nearly full when
the request left may have been full at Amazon until it arrived): the count can then only lag Amazon's, and the
burst can be used whole (issue 12).

Reservations instead of polling: a caller *reserves* the next token and is told how long to wait; the bucket's
level may go negative, each negative unit being a caller already queued. Waits are therefore FIFO per key,
computed once, and one key's queue never delays another key (each waiter sleeps on its own).

Memory: sellers come and go (and bad input brings made-up SellerIds), so buckets are swept every
``sweep_interval`` seconds. A bucket that is full, not slowed, has nobody waiting and has the default plan is
exactly what ``bucket()`` would create for that key, so dropping it changes no delay. A bucket whose rate came from
an ``x-amzn-RateLimit-Limit`` header is kept until idle for ``adapted_idle`` (1 hour by default): that keeps the
learned plan over ordinary pauses between a seller's batches, and forgetting it costs little, since the next
response carries the header again (until then the default plan applies: a slower start, or one 429 that
``throttled`` absorbs).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

__all__ = ["RateLimiter", "Sleep", "TokenBucket"]

_HELD_POLL = 0.05
"""Seconds between looks at a bucket still held when a waiter's token should have come."""

Sleep = Callable[[float], Awaitable[None]]
"""How to wait (``asyncio.sleep`` in production; tests pass one that advances a fake clock)."""


@dataclass(slots=True)
class TokenBucket:
    """One token bucket in Amazon's shape, with reservations and a temporary slow-down after a 429.

    All methods take ``now`` (monotonic seconds) explicitly, so the bucket is pure and tested without a clock.
    While ``now < slowed_until`` the refill rate is ``rate * slow_factor``.
    """

    rate: float
    burst: float
    tokens: float
    updated: float
    slowed_until: float = -math.inf
    slow_factor: float = 1.0
    waiters: int = 0
    """Callers sleeping on a reservation; they hold this bucket to refund it, so it must not be replaced."""
    held_since: float | None = None
    """A request took a token from the full bucket then and is not answered yet: no refill is credited meanwhile."""
    held_back: float = 0.0
    """Seconds of refill held back so far; every token reserved before a hold ends comes that much later."""

    @property
    def held(self) -> bool:
        return self.held_since is not None

    @classmethod
    def full(cls, *, rate: float, burst: float, now: float) -> TokenBucket:
        """A bucket holding ``burst`` tokens at ``now`` (an idle seller's bucket on Amazon's side is full)."""
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def _earned(self, start: float, end: float) -> float:
        """Tokens refilled between ``start`` and ``end``, honouring the slow-down period."""
        if end <= start:
            return 0.0
        slow_span = max(0.0, min(end, self.slowed_until) - start)
        fast_span = max(0.0, end - max(start, self.slowed_until))
        return slow_span * self.rate * self.slow_factor + fast_span * self.rate

    def _refill(self, now: float) -> None:
        if self.held_since is not None:
            self.updated = max(self.updated, now)
            return
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + self._earned(self.updated, now))
            self.updated = now

    def _time_to_earn(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until ``amount`` more tokens have been refilled."""
        if amount <= 0:
            return 0.0
        slow_rate = self.rate * self.slow_factor
        slow_span = max(0.0, self.slowed_until - now)
        slow_tokens = slow_span * slow_rate
        if amount <= slow_tokens:
            return amount / slow_rate
        return slow_span + (amount - slow_tokens) / self.rate

    def at_rest(self, now: float) -> bool:
        """Full and not slowed at ``now``: from here on it behaves exactly like a new ``full`` bucket of its plan.

        Read-only (no refill), so that looking does not count as use: ``updated`` stays the time of the last use.
        """
        if now < self.slowed_until or self.held:
            return False
        return self.tokens + self._earned(self.updated, now) >= self.burst

    def delay(self, now: float) -> float:
        """Seconds a reservation made at ``now`` would wait (nothing is reserved)."""
        self._refill(now)
        return self._time_to_earn(1.0 - self.tokens, now)

    def reserve(self, now: float, max_wait: float = math.inf, *, hold: bool = False) -> float | None:
        """Take the next token; return how long to wait for it, or ``None`` (nothing taken) if over ``max_wait``.

        With ``hold``, taking from a full bucket stops its refill until :meth:`answered`."""
        wait = self.delay(now)
        if wait > max_wait:
            return None
        if hold and self.tokens >= self.burst:
            self.held_since = now
        self.tokens -= 1.0
        return wait

    def answered(self, now: float) -> None:
        """A request was answered (or failed): a bucket it emptied from full refills from now on, and none holds more
        than ``burst - 1``, since Amazon may have taken that request's token only now, from a bucket it kept full."""
        if self.held_since is not None:
            self.held_back += max(0.0, now - self.held_since)
            self.held_since = None
            self.updated = now
        self._refill(now)
        self.tokens = min(self.tokens, self.burst - 1.0)

    def refund(self, now: float) -> None:
        """Give back a reserved token whose request was never sent (its waiter was cancelled)."""
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + 1.0)

    def set_rate(self, rate: float, now: float) -> None:
        """Use ``rate`` from now on (Amazon told us the plan applied to this seller)."""
        if rate <= 0 or not math.isfinite(rate):
            return
        self._refill(now)
        self.rate = rate

    def slow_down(self, now: float, *, factor: float, duration: float) -> None:
        """Amazon throttled us anyway: its bucket is empty, so ours is too, and refill slower for a while."""
        self._refill(now)
        self.tokens = min(self.tokens, 0.0)
        self.slow_factor = factor
        self.slowed_until = max(self.slowed_until, now + duration)


class RateLimiter:
    """Token buckets by key (``(seller_id, operation)``), created on first use with the default rate and burst."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        monotonic: Callable[[], float],
        sleep: Sleep = asyncio.sleep,
        slow_factor: float = 0.5,
        slow_seconds: float = 10.0,
        sweep_interval: float = 60.0,
        adapted_idle: float = 3600.0,
        hold_until_answered: bool = False,
    ) -> None:
        if not 0 < slow_factor <= 1:
            raise ValueError("slow_factor must be in (0, 1]")
        self._rate = rate
        self._burst = burst
        self._monotonic = monotonic
        self._sleep = sleep
        self._slow_factor = slow_factor
        self._slow_seconds = slow_seconds
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._sweep_interval = sweep_interval
        self._adapted_idle = adapted_idle
        self._hold = hold_until_answered
        """Every acquire must then be followed by :meth:`answered` for the same key (see the module docstring)."""
        self._next_sweep = monotonic() + sweep_interval

    @property
    def bucket_count(self) -> int:
        """How many buckets are held (for metrics and tests)."""
        return len(self._buckets)

    def bucket(self, key: Hashable) -> TokenBucket:
        """The bucket for ``key`` (created full on first use); sweeps first when a sweep is due."""
        now = self._monotonic()
        if now >= self._next_sweep:
            self.sweep()
        found = self._buckets.get(key)
        if found is None:
            found = TokenBucket.full(rate=self._rate, burst=self._burst, now=now)
            self._buckets[key] = found
        return found

    def sweep(self) -> int:
        """Drop the buckets that may be forgotten (see the module docstring) and return how many."""
        now = self._monotonic()
        self._next_sweep = now + self._sweep_interval
        idle = [key for key, bucket in self._buckets.items() if self._forgettable(bucket, now)]
        for key in idle:
            del self._buckets[key]
        return len(idle)

    def _forgettable(self, bucket: TokenBucket, now: float) -> bool:
        """At rest with nobody waiting, and either on the default plan or unused for ``adapted_idle``."""
        if bucket.waiters or not bucket.at_rest(now):
            return False
        if bucket.rate == self._rate and bucket.burst == self._burst:
            return True
        return now - bucket.updated >= self._adapted_idle

    def delay(self, key: Hashable) -> float:
        """Seconds a request for ``key`` would wait now."""
        return self.bucket(key).delay(self._monotonic())

    async def acquire(self, key: Hashable, max_wait: float = math.inf) -> float | None:
        """Wait for ``key``'s next token; return the wait, or ``None`` at once if it would exceed ``max_wait``.

        Only this caller sleeps; callers of other keys proceed meanwhile. A cancelled waiter gives its token back.
        """
        bucket = self.bucket(key)
        reserved_at = self._monotonic()
        wait = bucket.reserve(reserved_at, max_wait, hold=self._hold)
        if wait is None or wait <= 0:
            return wait
        bucket.waiters += 1
        try:
            wait = await self._sleep_for_token(bucket, reserved_at, wait)
        except asyncio.CancelledError:
            bucket.refund(self._monotonic())
            raise
        finally:
            bucket.waiters -= 1
        return wait

    async def _sleep_for_token(self, bucket: TokenBucket, reserved_at: float, wait: float) -> float:
        """Sleep until the reserved token is due, later by any refill held back meanwhile; return the seconds slept.

        A hold that ends after the reservation moves every reserved token by its length; while one lasts, its end
        (the answer) is unknown, so the waiter looks again at least every ``_HELD_POLL`` seconds."""
        seen = bucket.held_back
        due = reserved_at + wait
        await self._sleep(wait)
        while True:
            now = self._monotonic()
            shift = bucket.held_back - seen
            held_since = bucket.held_since
            if held_since is not None and due + shift > held_since:
                shift += now - held_since  # held since before our token was due: it is late by at least this
            else:
                held_since = None  # no hold, or one that began after our token was earned
            remaining = due + shift - now
            if remaining <= 0 and held_since is None:
                return now - reserved_at
            await self._sleep(max(remaining, _HELD_POLL) if held_since is not None else remaining)

    def answered(self, key: Hashable) -> None:
        """The request sent for ``key`` was answered or failed (see :meth:`TokenBucket.answered`)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.answered(self._monotonic())

    def observe_limit(self, key: Hashable, header: str | None) -> None:
        """Adapt ``key``'s rate to an ``x-amzn-RateLimit-Limit`` header value, when present and numeric."""
        if not header:
            return
        try:
            rate = float(header)
        except ValueError:
            return
        self.bucket(key).set_rate(rate, self._monotonic())

    def throttled(self, key: Hashable) -> None:
        """Amazon answered 429 for ``key``: drain and slow that bucket only."""
        self.bucket(key).slow_down(self._monotonic(), factor=self._slow_factor, duration=self._slow_seconds)
