"""Rate limits measured, not assumed: 20 sellers x 30 orders through the real client against the sandbox.

Each order is GET actions + POST solicitation; all 600 start at once, so every seller's two buckets (1 request/s,
burst 5, as Amazon's default plan) are the bottleneck and the 20 sellers run side by side. The theoretical
minimum is (30 - 5) / 1 = 25 s. Timing is printed, not asserted (machines differ); what is asserted cannot flake
on a slow machine: every send completes, 429s stay near zero, and a token-bucket replay over the sandbox's own
arrival timestamps shows no (seller, operation) ever went over its plan.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from bench.sandbox_load import run_load
from connectors.clock import SystemClock
from devstack.sandbox import LedgerCall, SandboxConfig, SandboxServer

pytestmark = pytest.mark.integration

SELLERS = 20
ORDERS = 30
RATE = 1.0
BURST = 5

# The client keeps one token of Amazon's burst unused, so a request reaches Amazon's bucket with at least one
# token of slack (one second at 1 request/s) against scheduling and network jitter: over loopback we expect 0.
# Allowing 3 % of the 1,200 calls tolerates multi-second stalls of a loaded 2-core machine (seen: 10 and 15 429s
# while other test suites ran beside it: the sandbox's event loop then sees a stalled client's requests arrive
# together), without hiding a client that ignores the limits (that one collects about a thousand: 20 sellers x 2
# operations x 25 requests over the burst). The benchmark (bench/spapi_rate.py) measures the real rate.
MAX_429 = 36


def over_limit(calls: list[LedgerCall], *, rate: float, burst: int) -> int:
    """Replay Amazon's bucket over the arrival times; count calls that found it empty (they take no token)."""
    tokens, last, violations = float(burst), None, 0
    for call in sorted(calls, key=lambda c: c.monotonic):
        if last is not None:
            tokens = min(float(burst), tokens + (call.monotonic - last) * rate)
        last = call.monotonic
        if tokens < 1.0 - 1e-6:
            violations += 1
        else:
            tokens -= 1.0
    return violations


def test_replay_detects_a_client_over_its_plan() -> None:
    def call(at: float) -> LedgerCall:
        return LedgerCall(
            seq=0,
            request_id="r",
            operation="op",
            method="GET",
            path="/",
            query={},
            seller_id="S",
            order_id=None,
            status=200,
            error_code=None,
            fault=None,
            monotonic=at,
            at=None,  # type: ignore[arg-type]
            body_bytes=0,
            content_type=None,
            user_agent=None,
            has_access_token=True,
        )

    within = [call(0.0) for _ in range(5)] + [call(1.0), call(2.0)]
    assert over_limit(within, rate=1.0, burst=5) == 0
    assert over_limit([*within, call(2.5)], rate=1.0, burst=5) == 1
    assert over_limit([*within, call(2.5), call(3.0)], rate=1.0, burst=5) == 1  # the rejected one took nothing


async def test_twenty_sellers_thirty_orders_each_within_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    clock = SystemClock()
    async with SandboxServer(SandboxConfig(rate=RATE, burst=BURST), clock=clock) as sandbox:
        report = await run_load(sandbox, clock=clock, sellers=SELLERS, orders_per_seller=ORDERS)
        calls = [c for c in sandbox.state.calls if c.operation != "lwaToken"]
        solicitations = list(sandbox.state.solicitations)
        lwa = [c for c in sandbox.state.calls if c.operation == "lwaToken"]

    with capsys.disabled():
        print(
            f"\n[rate limits] total {report.elapsed:.2f} s, theoretical minimum {report.minimum:.2f} s, "
            f"ratio {report.ratio:.3f}, 429s {report.throttled}, SP-API calls {report.calls}"
        )

    assert report.outcomes == {"sent": SELLERS * ORDERS}
    assert len(solicitations) == SELLERS * ORDERS
    assert len({(s.seller_id, s.order_id) for s in solicitations}) == SELLERS * ORDERS
    assert len(lwa) == SELLERS  # one token exchange per seller, however many concurrent requests
    assert report.throttled <= MAX_429
    assert report.calls == 2 * SELLERS * ORDERS + report.throttled

    by_key: defaultdict[tuple[str | None, str], list[LedgerCall]] = defaultdict(list)
    for c in calls:
        by_key[(c.seller_id, c.operation)].append(c)
    assert len(by_key) == 2 * SELLERS
    sent_over_plan = 0
    for key, key_calls in by_key.items():
        accepted = [c for c in key_calls if c.status != 429]
        assert len(accepted) == ORDERS, key
        # Independent of the sandbox's own bucket: what the client sent, replayed against Amazon's rule.
        over = over_limit(key_calls, rate=RATE, burst=BURST)
        assert over == len(key_calls) - len(accepted), key
        sent_over_plan += over
    assert sent_over_plan <= MAX_429

    # Physics, not a performance target: faster than the minimum would mean the limits were not applied.
    assert report.elapsed >= report.minimum
