"""Backfill and reconciliation (Orders API getOrders), with the real processes: ``solicit sandbox``,
``solicit sellers import`` (which backfills), ``solicit worker`` (which reconciles daily), on a real broker.

1. A seller imported with 200 past orders Amazon knows and no notification at all: after the import's backfill,
   every order whose window is open is solicited exactly once (the sandbox's ledger), and nothing else is even asked.
2. A notification the live feed dropped is made good by the next daily reconciliation (simulated clock, a day every
   two seconds), without a second solicitation for an order the live feed delivered, and with the delivery dates a
   notification lacked.
3. The pacing measured: a backfill of 3,000 orders (30 pages) at a getOrders plan scaled 60x (``bench/backfill.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.backfill import measure
from connectors.kafka import KafkaConnection, produce_all
from devstack.demo.run import DEMO_TIMING_ENV
from devstack.demo.stack import Stack, StackConfig, solicit_argv
from devstack.local_kafka import find_free_ports
from statemachine import order_key, parse_notification
from statemachine.types import format_datetime
from streams.bridge import forwarded_value
from streams.topics import ORDER_CHANGES
from tests.support.factories import notification_dict
from tests.support.kafka import KafkaTopicFactory

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]

SELLER = "A2BACKFILLSELLER"
TOKEN = "Atzr|backfill-seller-token"
US = "ATVPDKIKX0DER"
DAY = timedelta(days=1)
FAST_SENDS = {
    # The sandbox's Solicitations plan and the client's, raised from Amazon's 1/s so 150 sends take seconds.
    "SOLICIT_SPAPI__RATE": "20",
    "SOLICIT_SPAPI__BURST": "20",
    "SOLICIT_RECONCILE__CHECK_INTERVAL": "0.2",
}


@pytest.fixture
def stack_factory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(speed: float, **env: str) -> Stack:
        (sandbox_port,) = find_free_ports(1)
        config = StackConfig(
            run_dir=tmp_path / f"run{len(stacks)}",
            kafka_bootstrap=kafka_bootstrap,
            sqs_endpoint="http://127.0.0.1:9",  # no bridge in these runs
            queue_url="http://127.0.0.1:9/queue/unused",
            sandbox_port=sandbox_port,
            partitions=4,
            sim_speed=speed,
            extra_env={**DEMO_TIMING_ENV, **FAST_SENDS, **env},
        )
        stack = Stack(config)
        stacks.append(stack)
        stack.start_sandbox("--rate", "20", "--burst", "20")
        stack.sandbox("POST", "sellers", [{"seller_id": SELLER, "refresh_token": TOKEN}])
        return stack

    yield make
    for stack in stacks:
        stack.close()


def import_seller(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    path = stack.config.run_dir / "sellers.json"
    entry = {"seller_id": SELLER, "name": "Backfill", "region": "NA", "marketplace_ids": [US], "refresh_token": TOKEN}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"sellers": [entry]}), encoding="utf-8")
    result = subprocess.run(
        solicit_argv("sellers", "import", str(path), *args),
        env=stack.config.env(SOLICIT_LOG_LEVEL="warning"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def truth(order_id: str, edd: datetime, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "seller_id": SELLER,
        "order_id": order_id,
        "marketplace_id": US,
        "earliest_delivery": edd.isoformat(),
        "latest_delivery": (edd + 2 * DAY).isoformat(),
    }
    values.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()})
    return values


def two_hundred_orders(now: datetime) -> tuple[list[dict[str, Any]], set[str]]:
    """150 orders with an open window, 20 closed, 10 not open yet, 10 canceled, 10 never shipped; the open ones."""
    orders: list[dict[str, Any]] = []
    open_now: set[str] = set()
    for n in range(200):
        order_id, kind = f"200-{n:07d}-{n * 7:07d}", n % 20
        if kind < 15:
            orders.append(truth(order_id, now - (6 + n % 15) * DAY))  # window [EDD + 5 d, EDD + 32 d] holds now
            open_now.add(order_id)
        elif kind < 17:
            orders.append(truth(order_id, now - 40 * DAY, purchase_date=now - 42 * DAY))  # closed 8 days ago
        elif kind == 17:
            orders.append(truth(order_id, now + 10 * DAY, purchase_date=now - DAY))  # opens in 15 days
        elif kind == 18:
            orders.append(truth(order_id, now - 8 * DAY, status="Canceled"))
        else:
            orders.append(truth(order_id, now - 8 * DAY, status="Unshipped"))
    return orders, open_now


def wait_for(condition: Callable[[], bool], *, within: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {c.name}\n{c.log_tail(40)}" for c in stack.children)
    pytest.fail(f"{what}: not within {within:.0f} s\n{logs}")


def solicitations(stack: Stack) -> Counter[str]:
    return Counter(s["order_id"] for s in stack.sandbox("GET", "ledger")["solicitations"])


def test_an_imported_seller_s_open_orders_are_solicited_once_without_any_notification(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(60.0)  # a simulated minute per second: no window opens or closes during the run
    now = stack.config.clock().now()
    orders, open_now = two_hundred_orders(now)
    stack.sandbox("POST", "orders", orders)

    started = time.monotonic()
    imported = import_seller(stack)  # publishes the seller, then backfills it (45 days by default)
    backfill_seconds = time.monotonic() - started
    line = re.search(
        r"backfill since \S+: (\d+) order\(s\) in (\d+) page\(s\), (\d+) published \(([\d.]+) s\)", imported.stdout
    )
    assert line, imported.stdout
    listed, pages, published, seconds = int(line[1]), int(line[2]), int(line[3]), float(line[4])
    assert (listed, pages, published) == (200, 2, 200)

    stack.start_worker("a")
    wait_for(
        lambda: len(solicitations(stack)) >= len(open_now), within=180, what="every open order solicited", stack=stack
    )
    time.sleep(3)  # anything more would come now
    ledger = stack.sandbox("GET", "ledger")
    created = Counter(s["order_id"] for s in ledger["solicitations"])
    assert set(created) == open_now and set(created.values()) == {1}
    windows = {o["order_id"]: o for o in orders}
    for row in ledger["solicitations"]:
        order = windows[row["order_id"]]
        at = datetime.fromisoformat(row["at"])
        assert datetime.fromisoformat(order["earliest_delivery"]) + 5 * DAY <= at
        assert at <= datetime.fromisoformat(order["latest_delivery"]) + 30 * DAY
    asked = {c["order_id"] for c in ledger["calls"] if c["order_id"]}
    assert asked == open_now  # closed, future, canceled and unshipped orders: not one call
    listing = [c for c in ledger["calls"] if c["operation"] == "getOrders" and "CreatedAfter" in c["query"]]
    assert [c["status"] for c in listing] == [200, 200]  # two pages, inside the burst of Amazon's plan
    assert all(c["status"] != 429 for c in ledger["calls"])  # (a daily run of the worker may list too)
    print(
        f"\n[backfill] {listed} orders in {pages} pages listed and published in {seconds:.2f} s "
        f"(the import command {backfill_seconds:.1f} s); getOrders calls {len(listing)}, 429s 0; "
        f"{len(created)} open-window orders solicited once each"
    )


def test_a_notification_the_live_feed_dropped_is_made_good_by_the_daily_reconciliation(
    stack_factory: Callable[..., Stack],
) -> None:
    # A simulated day every two seconds; FBA-style estimates check 10 days after shipping (then 5 more for the delay),
    # far from Amazon's window (6 days after shipping), so which of the two scheduled an order shows in the ledger.
    stack = stack_factory(43200.0, SOLICIT_TIMING__AFN_TRANSIT_DAYS="10", SOLICIT_TIMING__AFN_MAX_TRANSIT_DAYS="14")
    import_seller(stack, "--backfill-days", "0")
    worker = stack.start_worker("a")
    now = stack.config.clock().now()
    delivered, dropped, dateless = (f"300-0000000-000000{n}" for n in (1, 2, 3))
    shipped_at, edd = now - timedelta(hours=1), now + DAY  # Amazon's window opens in 6 days (12 s)
    facts = {"last_updated": shipped_at, "purchase_date": now - 2 * DAY}
    stack.sandbox("POST", "orders", [truth(order_id, edd, **facts) for order_id in (delivered, dropped, dateless)])
    # The live feed: the Shipped notification of one order as Amazon sent it; of another without its delivery dates
    # (our estimate would check it first 15 days after shipping); of the third nothing at all.
    live = [
        notification_dict(seller=SELLER, order=delivered, event_time=shipped_at, edd=edd, ldd=edd + 2 * DAY),
        notification_dict(seller=SELLER, order=dateless, event_time=shipped_at, edd=None, ldd=None),
    ]
    records = [
        (
            order_key(SELLER, n["Payload"]["OrderChangeNotification"]["AmazonOrderId"]).encode(),
            forwarded_value(parse_notification(json.dumps(n))),
        )
        for n in live
    ]
    topic = ORDER_CHANGES.named(stack.config.topic_prefix)
    asyncio.run(
        produce_all(KafkaConnection(bootstrap_servers=stack.config.kafka_bootstrap), topic, records, client_id="t")
    )

    wait_for(lambda: len(solicitations(stack)) >= 3, within=120, what="three orders solicited", stack=stack)
    time.sleep(2)
    ledger = stack.sandbox("GET", "ledger")
    assert solicitations(stack) == {delivered: 1, dropped: 1, dateless: 1}
    creates = Counter(c["order_id"] for c in ledger["calls"] if c["operation"].startswith("create"))
    assert creates == {delivered: 1, dropped: 1, dateless: 1}
    # The dateless order was solicited when Amazon's window opened (day 6), not at our estimate (day 15).
    sent_at = {s["order_id"]: datetime.fromisoformat(s["at"]) for s in ledger["solicitations"]}
    assert sent_at[dateless] < shipped_at + 12 * DAY
    daily = [c for c in ledger["calls"] if c["operation"] == "getOrders"]
    assert daily and all("LastUpdatedAfter" in c["query"] and "CreatedAfter" not in c["query"] for c in daily)
    log = worker.log_path.read_text(errors="replace")
    assert re.search(rf"{SELLER}/{dropped}: new -> shipped \(.*\(reconciliation\)\)", log)
    (live_ship,) = [line for line in log.splitlines() if f"{SELLER}/{delivered}: new -> shipped" in line]
    assert "(delivery window)" in live_ship and "reconciliation" not in live_ship
    assert f"daily reconciliation of {SELLER}: daily since" in log
    when = format_datetime(sent_at[dropped])
    print(f"\n[reconcile] {len(daily)} daily getOrders call(s); the dropped order solicited at {when}")


async def test_a_backfill_of_3000_orders_keeps_to_the_plan(
    kafka_bootstrap: str, kafka_topic_factory: KafkaTopicFactory
) -> None:
    topic = await kafka_topic_factory(partitions=4)
    result = await measure(bootstrap=kafka_bootstrap, topic=topic, orders=3000, rate=1.0, burst=20)
    print(f"\n[backfill] {result.summary()}")
    assert (result.orders, result.pages, result.published) == (3000, 30, 3000)
    assert result.throttled == 0
    assert result.seconds >= result.minimum  # the plan's pace is kept: never faster than Amazon's bucket allows
