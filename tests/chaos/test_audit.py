"""The verdict's own checks, on a small plan and hand-made ledgers: each detector finds what it must, and a clean
run has nothing to report. (Fast; part of ``make chaos`` so the figures of the long run can be trusted.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.chaos import plan as plans
from tests.chaos.audit import RunCounters, audit
from tests.chaos.kafka_io import crc32_partition, murmur2_partition

pytestmark = pytest.mark.chaos

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def plan() -> plans.ChaosPlan:
    return plans.build(NOW, sellers=5, seed=1)


def first(plan: plans.ChaosPlan, kind: str) -> plans.ChaosOrder:
    return next(order for order in plan.orders if order.kind == kind)


def solicitation(order: plans.ChaosOrder, at: datetime, seller_id: str | None = None) -> dict[str, Any]:
    return {
        "seller_id": seller_id or order.seller_id,
        "order_id": order.order_id,
        "marketplace_id": order.marketplace_id,
        "request_id": "r",
        "at": at.isoformat(),
        "monotonic": 1.0,
    }


def call(order: plans.ChaosOrder, seller_id: str, operation: str = "getSolicitationActionsForOrder") -> dict[str, Any]:
    return {
        "seq": 1,
        "operation": operation,
        "seller_id": seller_id,
        "order_id": order.order_id,
        "status": 200,
        "fault": None,
        "monotonic": 2.0,
        "at": NOW.isoformat(),
    }


def clean(plan: plans.ChaosPlan) -> tuple[dict[str, Any], dict[str, str]]:
    """A ledger and final states where every promise is kept."""
    ledger: dict[str, Any] = {"calls": [], "solicitations": []}
    states = {}
    for order in plan.orders:
        if order.eligible:
            ledger["solicitations"].append(solicitation(order, order.window()[0] + timedelta(days=1)))
            states[order.key] = "sent"
        else:
            states[order.key] = {"pending": "pending", "future": "shipped", "unknown": "waiting"}.get(
                order.kind, order.expected
            )
    return ledger, states


def test_the_plan_has_fifty_sellers_of_forty_orders_and_each_delivery_path() -> None:
    big = plans.build(NOW)
    registered = [o for o in big.orders if o.seller_id != plans.UNKNOWN_SELLER]
    assert len(registered) == 2000
    assert len({o.seller_id for o in registered}) == 50
    assert len({o.order_id for o in big.orders}) == len(big.orders)
    assert 0.07 < big.count("kafka") / len(big.deliveries) < 0.13
    assert {o.kind for o in big.orders if o.eligible} == {"open", "soon", "afn", "sequence"}


def test_a_clean_run_has_no_failures(plan: plans.ChaosPlan) -> None:
    ledger, states = clean(plan)
    figures = audit(plan, ledger, states, counters=RunCounters())
    assert figures.failures() == []
    assert figures.solicitations == len(plan.eligible())


def test_each_broken_promise_is_found(plan: plans.ChaosPlan) -> None:
    ledger, states = clean(plan)
    missed, twice, late = [o for o in plan.orders if o.eligible][:3]
    canceled, stranger = first(plan, "canceled"), first(plan, "unknown")
    ledger["solicitations"] = [
        s for s in ledger["solicitations"] if s["order_id"] not in (missed.order_id, late.order_id)
    ]
    ledger["solicitations"] += [
        solicitation(twice, twice.window()[0] + timedelta(days=2)),
        solicitation(late, late.window()[1] + timedelta(days=1)),
        solicitation(canceled, NOW),
    ]
    other = next(o.seller_id for o in plan.orders if o.seller_id != stranger.seller_id)
    ledger["calls"] = [call(stranger, other)]
    states[missed.key] = "sent"  # outcomes say sent, Amazon never saw it
    del states[first(plan, "pending").key]

    figures = audit(plan, ledger, states, counters=RunCounters())

    assert figures.misses == [missed.key]
    assert figures.duplicates == [twice.key]
    assert figures.out_of_window == [late.key]
    assert figures.ineligible_solicited == {"canceled": [canceled.key]}
    assert [d.split()[0] for d in figures.disagreements] == sorted([missed.key, canceled.key], key=plan_order(plan))
    assert len(figures.breaches) == 1 and stranger.order_id in figures.breaches[0]
    assert figures.lost == [first(plan, "pending").key]
    assert len(figures.failures()) == 8


def plan_order(plan: plans.ChaosPlan) -> Any:
    index = {order.key: n for n, order in enumerate(plan.orders)}
    return lambda key: index[key]


def test_partitioners_differ_for_most_keys() -> None:
    """The direct producer's CRC32 and the bridge's murmur2 disagree on most order keys: the case under test."""
    keys = [f"A{n:03d}CHAOSSELLER/111-{n:07d}-0000000".encode() for n in range(200)]
    differ = sum(1 for key in keys if crc32_partition(key, 4) != murmur2_partition(key, 4))
    assert differ > 100
    assert all(0 <= crc32_partition(key, 4) < 4 for key in keys)
