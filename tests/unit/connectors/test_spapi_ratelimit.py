from __future__ import annotations

import asyncio
import math

import pytest

from connectors.spapi.ratelimit import RateLimiter, TokenBucket


class FakeTime:
    """A monotonic source and a sleep that advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_full_bucket_serves_burst_at_once_then_one_per_interval() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=5, now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(8)]
    assert waits == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0]


def test_reservations_queue_fifo_and_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=2, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(0.5)
    # Long idle: the bucket holds at most `burst` tokens again, never more.
    assert bucket.delay(100.0) == 0.0
    assert bucket.tokens == pytest.approx(2.0)


def test_reserve_over_max_wait_takes_nothing() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0, max_wait=0.5) is None
    assert bucket.tokens == pytest.approx(0.0)
    assert bucket.reserve(0.0, max_wait=1.0) == pytest.approx(1.0)


def test_refund_returns_a_token_without_exceeding_burst() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2, now=0.0)
    bucket.reserve(0.0)
    bucket.refund(0.0)
    bucket.refund(0.0)
    assert bucket.tokens == pytest.approx(2.0)


def test_slow_down_drains_and_halves_the_rate_for_its_duration() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=5, now=0.0)
    bucket.slow_down(0.0, factor=0.5, duration=10.0)
    assert bucket.tokens == 0.0
    # At half rate one token takes 2 s; the fifth of a queue finishes after the slow period.
    assert bucket.reserve(0.0) == pytest.approx(2.0)
    assert bucket.reserve(0.0) == pytest.approx(4.0)
    for _ in range(3):
        bucket.reserve(0.0)
    assert bucket.delay(0.0) == pytest.approx(10.0 + 1.0)  # 5 tokens by t=10, the 6th at full rate


def test_refill_crossing_the_end_of_a_slow_period_uses_both_rates() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=10, now=0.0)
    bucket.slow_down(0.0, factor=0.5, duration=4.0)
    bucket.delay(6.0)  # 4 s at 0.5/s + 2 s at 1/s
    assert bucket.tokens == pytest.approx(4.0)


def test_set_rate_applies_from_now_and_ignores_nonsense() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=0.0)
    bucket.reserve(0.0)
    bucket.set_rate(4.0, 0.0)
    assert bucket.delay(0.0) == pytest.approx(0.25)
    bucket.set_rate(0.0, 0.0)
    bucket.set_rate(math.inf, 0.0)
    assert bucket.rate == 4.0


def test_at_rest_means_full_and_not_slowed_and_looking_does_not_refill() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2, now=0.0)
    assert bucket.at_rest(0.0)
    bucket.reserve(0.0)
    assert not bucket.at_rest(0.5)
    assert bucket.at_rest(1.0)
    assert (bucket.tokens, bucket.updated) == (1.0, 0.0)
    bucket.slow_down(1.0, factor=0.5, duration=10.0)
    assert not bucket.at_rest(10.0)  # full again at t=5, but still slowed
    assert bucket.at_rest(11.0)


def test_bucket_rejects_invalid_plans() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket.full(rate=0.0, burst=5, now=0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket.full(rate=1.0, burst=0, now=0.0)


async def test_limiter_keys_are_independent() -> None:
    time = FakeTime()
    limiter = RateLimiter(rate=1.0, burst=1, monotonic=time.monotonic, sleep=time.sleep)
    assert await limiter.acquire(("A", "get")) == 0.0
    assert await limiter.acquire(("B", "get")) == 0.0
    assert await limiter.acquire(("A", "post")) == 0.0
    assert time.sleeps == []
    assert await limiter.acquire(("A", "get")) == pytest.approx(1.0)
    assert time.sleeps == [pytest.approx(1.0)]


async def test_waiting_on_one_key_does_not_block_another_key() -> None:
    limiter = RateLimiter(rate=0.01, burst=1, monotonic=asyncio.get_running_loop().time)
    await limiter.acquire("slow")
    slow = asyncio.create_task(limiter.acquire("slow"))  # would wait 100 s
    await asyncio.sleep(0)
    assert await asyncio.wait_for(limiter.acquire("fast"), timeout=1.0) == 0.0
    assert not slow.done()
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    # The cancelled waiter gave its token back: the next one waits 100 s, not 200 s.
    assert limiter.delay("slow") == pytest.approx(100.0, abs=1.0)


async def test_acquire_over_max_wait_returns_none_without_sleeping() -> None:
    time = FakeTime()
    limiter = RateLimiter(rate=1.0, burst=1, monotonic=time.monotonic, sleep=time.sleep)
    await limiter.acquire("k")
    assert await limiter.acquire("k", max_wait=0.5) is None
    assert time.sleeps == []


def test_observe_limit_adapts_only_that_key() -> None:
    time = FakeTime()
    limiter = RateLimiter(rate=1.0, burst=5, monotonic=time.monotonic, sleep=time.sleep)
    limiter.observe_limit(("A", "get"), "2.0")
    limiter.observe_limit(("A", "get"), None)
    limiter.observe_limit(("A", "get"), "not-a-number")
    assert limiter.bucket(("A", "get")).rate == 2.0
    assert limiter.bucket(("B", "get")).rate == 1.0


def test_throttled_slows_only_that_key() -> None:
    time = FakeTime()
    limiter = RateLimiter(
        rate=1.0, burst=5, monotonic=time.monotonic, sleep=time.sleep, slow_factor=0.25, slow_seconds=8.0
    )
    limiter.throttled(("A", "get"))
    assert limiter.delay(("A", "get")) == pytest.approx(4.0)
    assert limiter.delay(("B", "get")) == 0.0


def test_limiter_rejects_bad_slow_factor() -> None:
    with pytest.raises(ValueError, match="slow_factor"):
        RateLimiter(rate=1.0, burst=5, monotonic=lambda: 0.0, slow_factor=0.0)
