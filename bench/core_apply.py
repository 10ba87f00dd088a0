"""How fast is the pure core? A whole order life through ``apply``, against parsing alone.

    .venv/bin/python bench/core_apply.py [--orders 5000]

Baseline: ``parse_notification`` of each order's Shipped notification (pydantic, the cost every record pays
anyway). Measured: the same parse plus the whole life through ``apply`` (notification, due timer, send result:
three events and three transitions per order). Prints events/s and the ratio of the two per-order costs.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

from devstack.demo.scenario import _notification
from statemachine import OrderChanged, SendResult, SendResultKind, TimerFired, apply, parse_notification

NOW = datetime(2026, 3, 10, tzinfo=UTC)


def bodies(count: int) -> list[bytes]:
    return [
        json.dumps(
            _notification(
                NOW - timedelta(days=1),
                "A01BENCHSELLER",
                f"111-{i:07d}-0000001",
                "ATVPDKIKX0DER",
                "Shipped",
                edd=NOW - timedelta(days=4),
            )
        ).encode()
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args()
    data = bodies(args.orders)

    start = time.perf_counter()
    for body in data:
        parse_notification(body)
    baseline = time.perf_counter() - start

    start = time.perf_counter()
    for body in data:
        event = OrderChanged.from_notification(parse_notification(body))
        record = apply(None, event, NOW).record
        assert record is not None and record.next_due is not None
        out = apply(record, TimerFired(seller_id=event.seller_id, order_id=event.order_id), record.next_due)
        assert out.record is not None
        (command,) = out.commands
        sent = SendResult(
            seller_id=event.seller_id, order_id=event.order_id, lease_id=command.lease_id, result=SendResultKind.SENT
        )
        final = apply(out.record, sent, record.next_due + timedelta(seconds=2)).record
        assert final is not None and final.state.value == "sent"
    measured = time.perf_counter() - start

    events = 3 * args.orders
    print(f"orders: {args.orders}")
    per_parse, per_life = baseline * 1e6 / args.orders, measured * 1e6 / args.orders
    print(f"baseline parse only:      {args.orders / baseline:10,.0f} orders/s ({per_parse:6.1f} us/order)")
    print(
        f"parse + whole life apply: {args.orders / measured:10,.0f} orders/s ({per_life:6.1f} us/order)"
        f" = {events / measured:,.0f} events/s"
    )
    print(f"ratio (life / parse): {measured / baseline:.2f}")


if __name__ == "__main__":
    main()
