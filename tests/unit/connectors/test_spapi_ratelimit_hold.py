"""Amazon's bucket starts refilling when our request reaches it, not when we send it: a bucket emptied from full
credits no refill until that request is answered, so the client can use the whole burst without 429s."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from connectors.clock import ManualClock
from connectors.spapi import ClientConfig
from connectors.spapi.client import OPERATION_GET
from connectors.spapi.ratelimit import RateLimiter, TokenBucket
from tests.support.spapi_fakes import LWA_URL, ORDER, US, actions, make_client, seller, token_response


def test_a_bucket_emptied_from_full_refills_only_from_the_answer() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2, now=0.0)
    assert bucket.reserve(0.0, hold=True) == 0.0
    assert bucket.reserve(0.0, hold=True) == 0.0  # the burst is usable at once
    assert bucket.delay(1.5) == pytest.approx(1.0)  # in flight: nothing refilled yet
    assert not bucket.at_rest(100.0)
    bucket.answered(1.5)
    assert bucket.delay(2.0) == pytest.approx(0.5)  # refilling since the answer
    assert bucket.delay(1000.0) == 0.0


def test_without_hold_refill_counts_from_the_send() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2, now=0.0)
    bucket.reserve(0.0)
    assert not bucket.held
    assert bucket.delay(0.5) == 0.0
    assert bucket.tokens == pytest.approx(1.5)


def test_only_a_take_from_the_full_bucket_holds_it() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=0.0)
    bucket.reserve(0.0, hold=True)
    bucket.answered(0.5)
    assert bucket.reserve(0.5, hold=True) == pytest.approx(1.0)  # not full: waits for its token, holds nothing
    assert not bucket.held
    assert bucket.delay(2.5) == 0.0  # refilling all along


async def test_the_limiter_releases_a_held_key_only() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=1, monotonic=lambda: now[0], hold_until_answered=True)
    await limiter.acquire("a")
    await limiter.acquire("b")
    now[0] = 2.0
    limiter.answered("a")
    limiter.answered("unknown")  # no bucket: nothing to do
    assert limiter.delay("a") == pytest.approx(1.0)
    assert limiter.delay("b") == pytest.approx(1.0)  # still in flight
    now[0] = 3.0
    assert limiter.delay("a") == 0.0


async def test_the_client_waits_a_full_interval_after_a_slow_first_answer() -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))

    def amazon(request: httpx.Request) -> httpx.Response:
        if str(request.url) == LWA_URL:
            return token_response(1)
        clock.advance(0.7)  # the answer takes 0.7 s: the request reached Amazon somewhere in between
        return actions()

    config = ClientConfig(rate=1.0, burst=1, burst_headroom=0)
    client, _, sleep = make_client(amazon, config=config, clock=clock)
    async with client:
        await client.get_solicitation_actions(seller(), ORDER, US)
        await client.get_solicitation_actions(seller(), ORDER, US)
        assert not client.limiter.bucket((seller().seller_id, OPERATION_GET)).held
    # Had it counted from the send, it would have waited 0.3 s and could reach Amazon before its token.
    assert sleep.calls == [pytest.approx(1.0)]


class AnsweredAt:
    """A fake clock and sleep; the request that emptied the full bucket of ``key`` is answered at ``answer``."""

    def __init__(self, answer: float, key: str = "k") -> None:
        self.now = 0.0
        self.answer = answer
        self.key = key
        self.limiter = RateLimiter(
            rate=1.0, burst=1, monotonic=lambda: self.now, sleep=self.sleep, hold_until_answered=True
        )

    async def sleep(self, seconds: float) -> None:
        end = self.now + seconds
        if self.now < self.answer <= end:
            self.now = self.answer
            self.limiter.answered(self.key)
        self.now = end


async def test_tokens_reserved_during_a_hold_come_as_much_later_as_the_hold_lasted() -> None:
    fake = AnsweredAt(0.25)
    assert await fake.limiter.acquire("k") == 0.0  # from the full bucket: held until answered
    waited = await fake.limiter.acquire("k")  # reserved while held: due at 1.0 by the count, 1.25 by Amazon's
    assert waited == pytest.approx(1.25)
    assert fake.now == pytest.approx(1.25)


async def test_a_waiter_whose_token_is_due_while_the_hold_lasts_waits_for_the_answer() -> None:
    fake = AnsweredAt(1.6)  # a slow answer
    await fake.limiter.acquire("k")
    assert await fake.limiter.acquire("k") == pytest.approx(2.6)  # the token refills from the answer: 1.6 + 1


def test_after_an_answer_a_nearly_full_bucket_holds_at_most_burst_minus_one() -> None:
    # A seller that fell behind its schedule: 4.6 tokens when the request leaves, so no hold; Amazon's bucket may
    # have been full (capped) until the request arrived, just before the answer, so the refill meanwhile is not ours.
    bucket = TokenBucket(rate=1.0, burst=5, tokens=4.6, updated=0.0)
    assert bucket.reserve(0.0, hold=True) == 0.0
    assert not bucket.held
    bucket.answered(0.9)
    assert bucket.tokens == pytest.approx(4.0)  # not 4.5
    bucket.answered(5.0)
    assert bucket.tokens == pytest.approx(4.0)  # capped again, whatever the idle time


def test_an_answer_leaves_a_busy_bucket_alone() -> None:
    bucket = TokenBucket(rate=1.0, burst=5, tokens=1.0, updated=0.0)
    bucket.reserve(0.0, hold=True)
    bucket.answered(0.3)
    assert bucket.tokens == pytest.approx(0.3)
