"""Measure a backfill: one seller's N orders listed with getOrders (every page, the real client, inside the seller's
getOrders plan) against the sandbox, each published to Kafka as ORDER_CHANGE facts (the real reconciler and producer).

    .venv/bin/python -m bench.backfill [--orders 3000] [--rate 1.0] [--burst 20]

Needs a Kafka broker (``KAFKA_BOOTSTRAP_SERVERS``, default 127.0.0.1:9092, e.g. ``solicit kafka up``); writes to a
throwaway topic it deletes afterwards. ``tests/integration/test_backfill.py`` runs the same measurement.

Amazon's default getOrders plan (0.0167 requests/s, burst 20) makes every page past the burst cost a minute, so the
default ``--rate 1.0`` scales time 60x (a minute of Amazon's plan per second) to measure the pacing in seconds; the
summary also projects the time at Amazon's default plan. The theoretical minimum is ``(pages - burst) / rate``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr

from connectors.clock import SystemClock
from connectors.crypto import TokenCipher, generate_key
from connectors.kafka import KafkaConnection, admin_client
from connectors.spapi.orders import GET_ORDERS_BURST, GET_ORDERS_RATE
from devstack.sandbox import OrderIn, SandboxConfig, SandboxServer, SellerIn
from streams.reconcile import OrderChangesPublisher, OrdersClients, ReconcileConfig, Reconciler, ReconcileReport
from streams.registry import SellerRecord
from streams.settings import SpApiSettings

__all__ = ["BackfillMeasurement", "measure"]

US = "ATVPDKIKX0DER"
SELLER = "A2BENCHSELLER"
REFRESH_TOKEN = "Atzr|bench-backfill"


@dataclass(frozen=True, slots=True)
class BackfillMeasurement:
    """What one backfill took."""

    orders: int
    pages: int
    published: int
    seconds: float
    rate: float
    burst: int
    throttled: int
    """429 answers the sandbox gave."""

    @property
    def minimum(self) -> float:
        """The earliest the last page can be asked for: the burst at once, then one page per ``1/rate`` s."""
        return max(0, self.pages - self.burst) / self.rate

    @property
    def at_amazon_default(self) -> float:
        """The same backfill at Amazon's default plan (the client keeps one token of the burst as headroom)."""
        return max(0, self.pages - (GET_ORDERS_BURST - 1)) / GET_ORDERS_RATE

    def summary(self) -> str:
        ratio = self.seconds / self.minimum if self.minimum else float("nan")
        return (
            f"backfill of {self.orders} orders ({self.pages} pages, {self.published} published) took "
            f"{self.seconds:.2f} s at {self.rate:g} req/s burst {self.burst}: minimum {self.minimum:.2f} s "
            f"(ratio {ratio:.3f}), {self.throttled} x 429; at Amazon's default plan "
            f"({GET_ORDERS_RATE} req/s, burst {GET_ORDERS_BURST}) about {self.at_amazon_default / 60:.1f} min"
        )


async def measure(*, bootstrap: str, topic: str, orders: int, rate: float, burst: int) -> BackfillMeasurement:
    """Backfill ``orders`` orders of one seller from a fresh sandbox into ``topic``, and measure it."""
    clock = SystemClock()
    config = SandboxConfig(
        sellers=(SellerIn(seller_id=SELLER, refresh_token=SecretStr(REFRESH_TOKEN)),),
        orders_rate=rate,
        orders_burst=burst,
    )
    async with SandboxServer(config, clock=clock) as sandbox:
        now = clock.now()
        sandbox.state.add_orders(
            [
                OrderIn(
                    seller_id=SELLER,
                    order_id=f"111-{n // 10_000_000:07d}-{n % 10_000_000:07d}",
                    marketplace_id=US,
                    earliest_delivery=now - timedelta(days=1 + n % 30),
                    latest_delivery=now + timedelta(days=1 - n % 30),
                )
                for n in range(orders)
            ]
        )
        spapi = SpApiSettings(
            endpoint=sandbox.url,
            lwa_endpoint=sandbox.lwa_url,
            lwa_client_id=config.client_id,
            lwa_client_secret=config.client_secret,
        )
        report = await _backfill(spapi, KafkaConnection(bootstrap_servers=bootstrap), topic)
        calls = [c for c in sandbox.state.calls if c.operation == "getOrders"]
    if report.error:
        raise RuntimeError(report.summary())
    return BackfillMeasurement(
        orders=report.orders,
        pages=report.pages,
        published=report.published,
        seconds=report.seconds,
        rate=rate,
        burst=burst,
        throttled=sum(1 for c in calls if c.status == 429),
    )


async def _backfill(spapi: SpApiSettings, kafka: KafkaConnection, topic: str) -> ReconcileReport:
    key = generate_key()
    cipher = TokenCipher(SecretStr(key))
    clock = SystemClock()
    seller = SellerRecord(
        seller_id=SELLER,
        name="Bench",
        region="NA",
        marketplace_ids=(US,),
        refresh_token_encrypted=cipher.encrypt(SecretStr(REFRESH_TOKEN)),
        updated_at=clock.now(),
    )
    publisher = OrderChangesPublisher(kafka, topic, client_id="bench-backfill")
    clients = OrdersClients(spapi, clock)
    reconciler = Reconciler(
        clients=clients, cipher=cipher, publish=publisher.publish, clock=clock, config=ReconcileConfig()
    )
    try:
        return await reconciler.backfill(seller, days=45)
    finally:
        await clients.aclose()
        await publisher.stop()


async def _main(orders: int, rate: float, burst: int) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    connection = KafkaConnection(bootstrap_servers=bootstrap)
    topic = f"bench-backfill-{uuid.uuid4().hex[:8]}"
    try:
        result = await measure(bootstrap=bootstrap, topic=topic, orders=orders, rate=rate, burst=burst)
    finally:
        async with admin_client(connection) as admin:
            if topic in await admin.list_topics():
                await admin.delete_topics([topic])
    print(result.summary())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1.0, help="the sandbox's getOrders rate (Amazon: 0.0167)")
    parser.add_argument("--burst", type=int, default=GET_ORDERS_BURST)
    args = parser.parse_args()
    asyncio.run(_main(args.orders, args.rate, args.burst))


if __name__ == "__main__":
    main()
