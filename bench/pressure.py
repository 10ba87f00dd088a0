"""P5 (issue 12): coverage under pressure, as a ratio of the theoretical optimum, in a scaled run.

    .venv/bin/python -m bench.pressure [--rate 20] [--day-seconds 1.5] [--days 40] [--per-day 150000]

One seller's orders flow through the real :class:`streams.sender.Sender` and :class:`SolicitationsClient` into the
in-process sandbox, on a simulated clock. Amazon's plan is 1 request/s per operation, 86,400 GETs and 86,400 POSTs
a business day; the scaled run keeps that ratio with a business day lasting ``--day-seconds`` real seconds and the
seller's rate (in the sandbox and in ``ClientConfig.rate``) ``--rate`` requests/s: a business day then holds
``rate x day_seconds`` orders' worth of quota, and ``--per-day`` is scaled by the same factor
(``per_day / 86,400``), so 150,000 orders a day is 1.74 x the quota.

Orders arrive spread over ``--days`` business days (random times, seeded), each as the command the orders agent
issues when its window opens (25 days to its deadline, plus 0-4 days when the delivery dates differ); a share
(``--late-share``) arrive late in their window (1-25 days left: backfilled, or re-checked after a deferral), so
deadlines are not in arrival order. Two scenarios:

* **overload**: demand above the quota for ``--days`` days. The optimum is computed offline: unit jobs at a fixed
  rate with a burst (Amazon's bucket), released at their arrivals, each due by its deadline: earliest deadline
  first over the arrival sequence, discarding jobs that can no longer make it, is optimal. The bench prints
  sent-before-deadline / optimum (target >= 0.95) and the SP-API calls spent on orders that missed anyway
  (target 0).
* **burst**: ``--per-day`` orders in one business day, then quiet (demand below the quota over the windows):
  every order must be sent in time.

"Sent before its deadline" is what the sandbox recorded: it creates a solicitation only inside the order's window
(EDD + 5 d <= now <= LDD + 30 d, business time), so every solicitation in its ledger was in time.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bench.sandbox_load import seller_credentials
from bench.sending import (
    US,
    InProcessSandbox,
    MemorySink,
    SandboxHandle,
    build_sender,
    sandbox_sellers,
    seller_records,
    send_command,
)
from connectors.clock import SimulatedClock
from connectors.crypto import TokenCipher, generate_key
from connectors.spapi import ClientConfig
from devstack.sandbox import OrderIn, SandboxConfig, SandboxServer
from streams.sender import Sender

__all__ = ["Job", "PressureReport", "make_jobs", "optimum", "run_scenario"]

AMAZON_DAILY_QUOTA = 86_400
"""Requests a day per (seller, operation) at Amazon's default plan (1 request/s)."""
BURST = 5
"""Amazon's default burst per (seller, operation)."""
WINDOW_DAYS = 25.0
"""EDD + 5 d to LDD + 30 d when both delivery dates agree."""
START = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Job:
    """One order: when its command arrives and when its window closes, in business seconds from the start."""

    order_id: str
    arrival: float
    deadline: float

    def order_in(self, seller_id: str) -> OrderIn:
        """The order as the sandbox knows it: a window open at ``arrival`` and closing at ``deadline``."""
        latest = START + timedelta(seconds=self.deadline) - timedelta(days=30)
        earliest = min(START + timedelta(seconds=self.arrival) - timedelta(days=5), latest)
        return OrderIn(
            seller_id=seller_id,
            order_id=self.order_id,
            marketplace_id=US,
            earliest_delivery=earliest,
            latest_delivery=latest,
        )


def make_jobs(rng: random.Random, *, count: int, over_days: float, late_share: float, prefix: str = "900") -> list[Job]:
    """``count`` orders arriving at random over ``over_days`` business days, sorted by arrival."""
    jobs = []
    for n in range(count):
        arrival = rng.uniform(0.0, over_days * DAY)
        if rng.random() < late_share:
            left = rng.uniform(1.0, WINDOW_DAYS)
        else:
            left = WINDOW_DAYS + rng.choice((0.0, 0.0, 1.0, 2.0, 4.0))
        jobs.append(Job(order_id=f"{prefix}-{n:07d}-{n:07d}", arrival=arrival, deadline=arrival + left * DAY))
    return sorted(jobs, key=lambda job: job.arrival)


def optimum(jobs: Sequence[tuple[float, float]], *, rate: float, burst: float) -> int:
    """How many unit jobs (arrival, deadline), served one per token of a (rate, burst) bucket full at 0, can meet
    their deadline: earliest deadline first over the arrival sequence, discarding jobs past their deadline."""
    pending = sorted(jobs)
    heap: list[float] = []
    now, tokens, index, served = 0.0, float(burst), 0, 0
    while index < len(pending) or heap:
        if not heap and pending[index][0] > now:  # idle until the next arrival; the bucket refills meanwhile
            tokens = min(float(burst), tokens + (pending[index][0] - now) * rate)
            now = pending[index][0]
        while index < len(pending) and pending[index][0] <= now:
            heapq.heappush(heap, pending[index][1])
            index += 1
        while heap and heap[0] < now:
            heapq.heappop(heap)
        if not heap:
            continue
        if tokens < 1.0:  # wait for the next token; jobs arriving meanwhile compete for it
            now += (1.0 - tokens) / rate
            tokens = 1.0
            continue
        heapq.heappop(heap)
        tokens -= 1.0
        served += 1
    return served


@dataclass(frozen=True, slots=True)
class PressureReport:
    """What one scenario measured."""

    name: str
    orders: int
    optimum: int
    sent_in_time: int
    calls: int
    wasted_calls: int
    """SP-API calls for orders that were not solicited in the end (lost causes)."""
    dropped_uncalled: int
    """Orders that cost no call at all (none sent, none wasted)."""
    dropped_by_sender: int
    """Commands the sender dropped because they could no longer make their deadline."""
    throttled: int
    elapsed: float
    outcomes: Counter[str]

    @property
    def ratio(self) -> float:
        return self.sent_in_time / self.optimum if self.optimum else 1.0

    def lines(self) -> list[str]:
        return [
            f"P5 {self.name}: {self.orders} orders, optimum {self.optimum} sendable in time, "
            f"sent before deadline {self.sent_in_time}: ratio={self.ratio:.4f}",
            f"  calls={self.calls} wasted_calls={self.wasted_calls} (on orders that missed anyway) "
            f"uncalled={self.dropped_uncalled} (sender dropped {self.dropped_by_sender}) http_429={self.throttled} "
            f"elapsed_s={self.elapsed:.1f} "
            f"results {dict(self.outcomes)}",
        ]


@dataclass(frozen=True, slots=True)
class Scale:
    """How the scaled run maps onto Amazon's plan."""

    rate: float
    """Requests/s per operation of the seller, real time (sandbox and client)."""
    day_seconds: float
    """Real seconds per business day."""

    @property
    def speed(self) -> float:
        return DAY / self.day_seconds

    def orders_per_day(self, amazon_per_day: float) -> float:
        """Amazon's daily demand scaled by the same factor as the quota."""
        return amazon_per_day * self.rate * self.day_seconds / AMAZON_DAILY_QUOTA


async def run_scenario(name: str, jobs: list[Job], scale: Scale, *, lead: float = 1.0) -> PressureReport:
    """Play ``jobs`` in real time through one sender and measure against the offline optimum."""
    clock = SimulatedClock(start=START, speed=scale.speed, anchor=time.time() + lead)
    cipher = TokenCipher(SecretStr(generate_key()))
    seller_id = seller_credentials(0).seller_id
    async with SandboxServer(SandboxConfig(seed=1), clock=clock) as server:
        sandbox = InProcessSandbox(server)
        await sandbox.add_sellers(sandbox_sellers([0], rate=scale.rate))
        await sandbox.add_orders([job.order_in(seller_id) for job in jobs])
        sink = MemorySink(clock)
        config = ClientConfig(rate=scale.rate, burst=BURST)
        sender, client = build_sender(sandbox, seller_records(cipher, [0]), cipher, sink, clock, config)
        await asyncio.sleep(max(0.0, clock.anchor - time.time()))
        started = clock.monotonic()
        try:
            await _play(sender, jobs, seller_id, clock, started, scale)
        finally:
            await sender.close()
            await client.aclose()
        elapsed = clock.monotonic() - started
        return await _report(name, jobs, scale, sandbox, sink, sender.dropped(), elapsed)


async def _play(
    sender: Sender, jobs: list[Job], seller_id: str, clock: SimulatedClock, started: float, scale: Scale
) -> None:
    """Submit each command at its arrival (real time), then wait until the sender has nothing left."""
    for offset, job in enumerate(jobs):
        wait = started + job.arrival / scale.speed - clock.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        now = START + timedelta(seconds=job.arrival)
        deadline = START + timedelta(seconds=job.deadline)
        sender.submit(send_command(seller_id, job.order_id, now, deadline), partition=0, offset=offset)
    last = max(job.deadline for job in jobs) / scale.speed
    while sender.lanes() and clock.monotonic() - started < last + 5.0:  # noqa: ASYNC110 - polls the sender
        await asyncio.sleep(0.05)


async def _report(
    name: str, jobs: list[Job], scale: Scale, sandbox: SandboxHandle, sink: MemorySink, dropped: int, elapsed: float
) -> PressureReport:
    solicited = await sandbox.solicited()
    calls = await sandbox.calls()
    called = {c.order_id for c in calls}
    real_jobs = [(job.arrival / scale.speed, job.deadline / scale.speed) for job in jobs]
    return PressureReport(
        name=name,
        orders=len(jobs),
        optimum=optimum(real_jobs, rate=scale.rate, burst=BURST),
        sent_in_time=len(solicited),
        calls=len(calls),
        wasted_calls=sum(1 for c in calls if c.order_id not in solicited),
        dropped_uncalled=sum(1 for job in jobs if job.order_id not in called),
        dropped_by_sender=dropped,
        throttled=sum(1 for c in calls if c.status == 429),
        elapsed=elapsed,
        outcomes=sink.outcomes(),
    )


async def _main(args: argparse.Namespace) -> list[PressureReport]:
    scale = Scale(rate=args.rate, day_seconds=args.day_seconds)
    per_day = scale.orders_per_day(args.per_day)
    rng = random.Random(args.seed)
    overload = make_jobs(rng, count=round(per_day * args.days), over_days=args.days, late_share=args.late_share)
    burst = make_jobs(rng, count=round(per_day), over_days=1.0, late_share=args.late_share, prefix="901")
    print(
        f"scale: 1 business day = {scale.day_seconds} s (speed {scale.speed:.0f}), rate {scale.rate}/s per operation "
        f"= {scale.rate * scale.day_seconds:.0f} orders/day of quota; demand {per_day:.1f} orders/day "
        f"({args.per_day / AMAZON_DAILY_QUOTA:.2f} x the quota)"
    )
    reports = [await run_scenario("overload", overload, scale)]
    print("\n".join(reports[0].lines()))
    reports.append(await run_scenario("burst then quiet", burst, scale))
    second = reports[1]
    print("\n".join(second.lines()))
    print(f"  every order sent in time: {'yes' if second.sent_in_time == second.orders else 'NO'}")
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s per operation of the seller (real)")
    parser.add_argument("--day-seconds", type=float, default=1.5, help="real seconds per business day")
    parser.add_argument("--days", type=float, default=40.0, help="business days of sustained demand")
    parser.add_argument("--per-day", type=float, default=150_000, help="orders a day at Amazon's scale")
    parser.add_argument("--late-share", type=float, default=0.2, help="share of orders arriving late in their window")
    parser.add_argument("--seed", type=int, default=12)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
