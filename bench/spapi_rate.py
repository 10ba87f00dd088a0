"""Measure how close the SP-API client gets to Amazon's rate limits: 20 sellers x 30 orders against the sandbox.

    .venv/bin/python bench/spapi_rate.py [--sellers 20] [--orders 30] [--latency 0.0]

Prints the total time, the theoretical minimum ((orders - burst) / rate, the GET bucket of each seller being the
bottleneck), their ratio and the number of 429s. The same scenario runs in ``tests/integration/test_rate_limits.py``.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.sandbox_load import run_load
from connectors.clock import SystemClock
from devstack.sandbox import FaultConfig, SandboxConfig, SandboxServer


async def _main(sellers: int, orders: int, latency: float) -> None:
    clock = SystemClock()
    config = SandboxConfig(faults=FaultConfig(latency=latency))
    async with SandboxServer(config, clock=clock) as sandbox:
        report = await run_load(sandbox, clock=clock, sellers=sellers, orders_per_seller=orders)
    print(report.summary())
    print(
        f"total_s={report.elapsed:.3f} minimum_s={report.minimum:.3f} "
        f"ratio={report.ratio:.4f} http_429={report.throttled}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sellers", type=int, default=20)
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the sandbox adds to every answer")
    args = parser.parse_args()
    asyncio.run(_main(args.sellers, args.orders, args.latency))


if __name__ == "__main__":
    main()
