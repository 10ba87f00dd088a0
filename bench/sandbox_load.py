"""A synthetic load: S sellers x N orders each, sent through the real client against a sandbox, measured.

Used by ``tests/integration/test_rate_limits.py`` and ``bench/spapi_rate.py`` (and handy to see the rate limits at
work without Amazon). Every order goes GET actions -> POST solicitation, as the sender does; all orders start
at once, so each seller's buckets are the bottleneck, and the sellers run side by side.

The theoretical minimum for one seller is set by the GET bucket: ``burst`` calls at once, then one per
``1/rate`` seconds, so the last GET (and its POST, whose bucket is never the tighter one) cannot start before
``(N - burst) / rate`` seconds; sellers are independent, so that is also the minimum for all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from pydantic import SecretStr

from connectors.clock import Clock
from connectors.spapi import (
    AppCredentials,
    ClientConfig,
    NotAvailable,
    OutsideWindow,
    RetryLater,
    SellerCredentials,
    Sent,
    SolicitationsClient,
)
from devstack.sandbox import OrderIn, SandboxServer, SellerIn

__all__ = ["LoadReport", "run_load", "theoretical_minimum"]

US = "ATVPDKIKX0DER"


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a load run measured."""

    sellers: int
    orders_per_seller: int
    elapsed: float
    minimum: float
    outcomes: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    """429 answers the sandbox gave."""
    calls: int = 0

    @property
    def ratio(self) -> float:
        """Measured time over the theoretical minimum (1.0 is perfect)."""
        return self.elapsed / self.minimum if self.minimum > 0 else float("inf")

    def summary(self) -> str:
        """One human-readable paragraph."""
        return (
            f"{self.sellers} sellers x {self.orders_per_seller} orders: {self.outcomes.get('sent', 0)} sent, "
            f"{self.calls} SP-API calls, {self.throttled} x 429; {self.elapsed:.2f} s vs theoretical minimum "
            f"{self.minimum:.2f} s (ratio {self.ratio:.3f}); outcomes {dict(self.outcomes)}"
        )


def theoretical_minimum(orders_per_seller: int, *, rate: float, burst: int) -> float:
    """Earliest moment the last order of a seller can be sent under a (rate, burst) bucket per operation."""
    return max(0, orders_per_seller - burst) / rate


def seller_credentials(index: int) -> SellerCredentials:
    """The credentials of synthetic seller ``index``."""
    return SellerCredentials(seller_id=f"SELLER{index:03d}", refresh_token=SecretStr(f"Atzr|load-{index:03d}"))


def order_id(seller: int, order: int) -> str:
    """A 3-7-7 Amazon-style order id for synthetic seller/order numbers."""
    return f"{100 + seller:03d}-{order:07d}-{seller * 1000 + order:07d}"


async def _one_order(client: SolicitationsClient, seller: SellerCredentials, oid: str) -> str:
    while True:
        try:
            actions = await client.get_solicitation_actions(seller, oid, US)
            if not actions.offered:
                return "not_offered"
            result = await client.create_product_review_and_seller_feedback(seller, oid, US)
        except RetryLater as exc:
            await asyncio.sleep(exc.retry_after)
            continue
        if isinstance(result, Sent):
            return "sent"
        if isinstance(result, NotAvailable):
            return "sent_ambiguously" if result.maybe_sent else "not_available"
        assert isinstance(result, OutsideWindow)
        return "outside_window"


async def run_load(
    sandbox: SandboxServer,
    *,
    clock: Clock,
    sellers: int,
    orders_per_seller: int,
    client_config: ClientConfig | None = None,
) -> LoadReport:
    """Register the sellers and orders in ``sandbox``, send everything, and measure."""
    state = sandbox.state
    config = state.config
    now = clock.now()
    creds = [seller_credentials(i) for i in range(sellers)]
    for cred in creds:
        state.add_seller(SellerIn(seller_id=cred.seller_id, refresh_token=cred.refresh_token))
    state.add_orders(
        [
            OrderIn(
                seller_id=creds[s].seller_id,
                order_id=order_id(s, o),
                marketplace_id=US,
                earliest_delivery=now - timedelta(days=10),
                latest_delivery=now - timedelta(days=8),
            )
            for s in range(sellers)
            for o in range(orders_per_seller)
        ]
    )
    first_call = len(state.calls)
    app = AppCredentials(client_id=config.client_id, client_secret=config.client_secret)
    client_config = client_config or ClientConfig(call_deadline=120.0)
    async with SolicitationsClient(
        app=app, clock=clock, spapi_endpoint=sandbox.url, lwa_endpoint=sandbox.lwa_url, config=client_config
    ) as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(_one_order(client, creds[s], order_id(s, o)) for s in range(sellers) for o in range(orders_per_seller))
        )
        elapsed = time.perf_counter() - started
    spapi_calls = [c for c in state.calls[first_call:] if c.operation != "lwaToken"]
    return LoadReport(
        sellers=sellers,
        orders_per_seller=orders_per_seller,
        elapsed=elapsed,
        minimum=theoretical_minimum(orders_per_seller, rate=config.rate, burst=config.burst),
        outcomes=Counter(outcomes),
        throttled=sum(1 for c in spapi_calls if c.status == 429),
        calls=len(spapi_calls),
    )
