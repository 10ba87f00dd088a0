"""Bounded memory: per-seller state of the SP-API client (LWA tokens, rate-limit buckets) is swept, never leaks."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest

from connectors.clock import ManualClock
from connectors.spapi import ClientConfig, SellerCredentials
from connectors.spapi.lwa import LwaTokenCache
from connectors.spapi.ratelimit import RateLimiter
from tests.support.spapi_fakes import LWA_URL, ORDER, US, FakeAmazon, actions, app, make_client, seller, token_response

SELLERS = 10_000


class FakeTokenEndpoint:
    """Just the ``post`` that :class:`LwaTokenCache` calls: 10,000 exchanges through httpx would be slow."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def post(self, url: str, **_: Any) -> httpx.Response:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return token_response(self.calls, self.expires_in)


def token_cache(endpoint: FakeTokenEndpoint, sweep_interval: float = 60.0) -> tuple[LwaTokenCache, ManualClock]:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    cache = LwaTokenCache(
        http=cast(httpx.AsyncClient, endpoint),
        app=app(),
        token_url=LWA_URL,
        monotonic=clock.monotonic,
        sweep_interval=sweep_interval,
    )
    return cache, clock


def seller_n(n: int) -> SellerCredentials:
    return seller(f"S{n}", f"Atzr|refresh-{n}")


class FakeTime:
    """A monotonic source and a sleep that advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(time: FakeTime, **kwargs: Any) -> RateLimiter:
    options: dict[str, Any] = {"rate": 1.0, "burst": 4, "sweep_interval": 60.0, "slow_seconds": 10.0, **kwargs}
    return RateLimiter(monotonic=time.monotonic, sleep=time.sleep, **options)


# LWA tokens


async def test_expired_tokens_of_many_sellers_are_dropped_by_the_next_call() -> None:
    endpoint = FakeTokenEndpoint(expires_in=3600)
    cache, clock = token_cache(endpoint)
    for n in range(SELLERS):
        await cache.access_token(seller_n(n))
    assert cache.cached_tokens == SELLERS
    clock.advance(3600)
    await cache.access_token(seller("new", "Atzr|new"))
    assert cache.cached_tokens == 1


async def test_a_token_still_valid_is_kept_and_reused() -> None:
    endpoint = FakeTokenEndpoint(expires_in=3600)
    cache, clock = token_cache(endpoint)
    old = await cache.access_token(seller_n(1))
    clock.advance(3000)
    young = await cache.access_token(seller_n(2))
    clock.advance(601)  # the first token expired, the second has 2999 s left
    assert cache.sweep() == 1
    assert cache.cached_tokens == 1
    assert await cache.access_token(seller_n(2)) is young
    assert endpoint.calls == 2
    assert old.expires_at <= clock.monotonic() < young.expires_at


async def test_a_token_inside_its_refresh_margin_survives_a_sweep_for_the_fallback() -> None:
    endpoint = FakeTokenEndpoint(expires_in=3600)
    cache, clock = token_cache(endpoint)
    token = await cache.access_token(seller_n(1))
    clock.advance(3500)  # past refresh_at (3300), before expires_at (3600)
    assert cache.sweep() == 0
    assert cache.cached_tokens == 1
    assert token.refresh_at <= clock.monotonic() < token.expires_at


async def test_tokens_are_swept_at_most_once_per_interval() -> None:
    endpoint = FakeTokenEndpoint(expires_in=10)
    cache, clock = token_cache(endpoint, sweep_interval=60.0)
    for n in range(5):
        await cache.access_token(seller_n(n))
    clock.advance(59)  # all expired, but no sweep is due yet: calls stay O(1)
    await cache.access_token(seller_n(100))
    assert cache.cached_tokens == 6
    clock.advance(1)
    await cache.access_token(seller_n(100))
    assert cache.cached_tokens == 1


async def test_a_sweep_during_an_exchange_in_flight_loses_nothing() -> None:
    endpoint = FakeTokenEndpoint(expires_in=100)
    cache, clock = token_cache(endpoint, sweep_interval=1000.0)
    await cache.access_token(seller_n(1))
    clock.advance(100)  # expired: the next call starts an exchange
    endpoint.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.access_token(seller_n(1))) for _ in range(3)]
    await asyncio.sleep(0)
    assert cache.sweep() == 1
    endpoint.gate.set()
    tokens = await asyncio.gather(*waiters)
    assert endpoint.calls == 2
    assert all(token is tokens[0] for token in tokens)
    assert cache.cached_tokens == 1
    assert await cache.access_token(seller_n(1)) is tokens[0]


# Rate-limit buckets


async def test_idle_buckets_of_many_sellers_are_dropped_by_the_next_call() -> None:
    time = FakeTime()
    limits = limiter(time)
    for n in range(SELLERS):
        assert await limits.acquire((f"S{n}", "get")) == 0.0
    assert limits.bucket_count == SELLERS
    time.now += 60.0  # each bucket refilled in 1 s; a sweep is due
    assert await limits.acquire(("new", "get")) == 0.0
    assert limits.bucket_count == 1


async def test_buckets_are_swept_at_most_once_per_interval() -> None:
    time = FakeTime()
    limits = limiter(time, sweep_interval=60.0)
    for n in range(5):
        await limits.acquire((f"S{n}", "get"))
    time.now += 59.0
    await limits.acquire(("other", "get"))
    assert limits.bucket_count == 6
    time.now += 1.0
    limits.delay(("other", "get"))
    assert limits.bucket_count == 1


def test_a_bucket_not_yet_full_again_is_kept() -> None:
    time = FakeTime()
    limits = limiter(time, rate=0.01)
    limits.bucket("k").reserve(time.now)
    time.now += 60.0  # 0.6 of the missing token earned back
    assert limits.sweep() == 0
    assert limits.bucket("k").delay(time.now) == 0.0  # 3.6 tokens left


def test_a_slowed_bucket_is_kept_until_its_slow_down_ends_and_it_is_full() -> None:
    time = FakeTime()
    limits = limiter(time, slow_seconds=100.0, slow_factor=0.5)
    limits.throttled("k")
    time.now += 61.0  # full again (4 tokens at half rate take 8 s), but still slowed
    assert limits.sweep() == 0
    time.now += 39.0  # the slow-down ends: a new bucket would behave the same
    assert limits.sweep() == 1


def test_an_adapted_rate_is_kept_for_an_hour_of_idleness() -> None:
    time = FakeTime()
    limits = limiter(time, adapted_idle=3600.0, sweep_interval=math.inf)  # explicit sweeps only
    limits.observe_limit(("A", "get"), "5.0")
    limits.observe_limit(("B", "get"), "1.0")  # Amazon confirmed the default: nothing to remember
    limits.observe_limit(("C", "get"), "5.0")
    time.now += 1800.0
    limits.delay(("C", "get"))  # a use restarts C's idle time
    time.now += 1799.0
    assert limits.sweep() == 1
    assert limits.bucket(("A", "get")).rate == 5.0  # looking at a bucket is not using it
    time.now += 1.0
    assert limits.sweep() == 1
    assert limits.bucket(("A", "get")).rate == 1.0
    assert limits.bucket(("C", "get")).rate == 5.0


async def test_a_bucket_with_a_sleeping_waiter_is_kept() -> None:
    release = asyncio.Event()
    clock = {"now": 0.0}

    async def sleep(_: float) -> None:
        await release.wait()

    limits = RateLimiter(rate=1.0, burst=1, monotonic=lambda: clock["now"], sleep=sleep, sweep_interval=60.0)
    await limits.acquire("k")
    waiter = asyncio.create_task(limits.acquire("k"))
    await asyncio.sleep(0)
    clock["now"] = 1000.0  # full again long ago, but the waiter still holds the bucket to refund it
    assert limits.sweep() == 0
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limits.sweep() == 1


async def test_eviction_never_changes_a_delay() -> None:
    """The same random workload on a limiter that sweeps at every call and one that never sweeps."""
    rng = random.Random(20260301)
    swept_time, kept_time = FakeTime(), FakeTime()
    swept = limiter(swept_time, sweep_interval=0.0, slow_seconds=20.0)
    kept = limiter(kept_time, sweep_interval=math.inf, slow_seconds=20.0)
    keys: list[Hashable] = [("A", "get"), ("A", "post"), ("B", "get")]
    evicted = 0
    for _ in range(3000):
        key = rng.choice(keys)
        action = rng.random()
        if action < 0.5:
            max_wait = rng.choice([math.inf, 0.5, 2.0])
            assert await swept.acquire(key, max_wait) == await kept.acquire(key, max_wait)
        elif action < 0.55:
            swept.throttled(key)
            kept.throttled(key)
        elif action < 0.6:
            swept.observe_limit(key, "1.0")
            kept.observe_limit(key, "1.0")
        else:
            step = rng.choice([0.1, 0.5, 1.0, 3.0, 8.0])
            swept_time.now += step
            kept_time.now += step
            evicted += swept.sweep()
        assert swept_time.now == kept_time.now
        assert swept.delay(key) == kept.delay(key)
    assert evicted > 100
    assert kept.bucket_count == len(keys)


# Through the client


async def test_the_client_sweeps_both_without_help() -> None:
    sellers = 50
    amazon = FakeAmazon(*[actions() for _ in range(sellers + 1)], expires_in=3600)
    client, clock, _ = make_client(amazon, config=ClientConfig())
    async with client:
        for n in range(sellers):
            await client.get_solicitation_actions(seller_n(n), ORDER, US)
        assert client.limiter.bucket_count == sellers
        clock.advance(3600)
        await client.get_solicitation_actions(seller("new", "Atzr|new"), ORDER, US)
        assert client.limiter.bucket_count == 1
        assert client._tokens.cached_tokens == 1
