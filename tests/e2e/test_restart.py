"""A clean restart of a worker (issue 12 P4): the due index and the funnel counters of its partitions come from the
checkpoints it wrote at its shutdown (streams/checkpoint.py), not from reading every record again, and they are right:
the counters equal what the outcomes topic says, and the timers go on firing until every order is where it belongs."""

from __future__ import annotations

import re

import pytest

from devstack.demo.monitor import OutcomeMonitor
from devstack.demo.run import DemoRun
from devstack.demo.stack import ChildProcess
from tests.e2e.test_pipeline import run, settle
from tests.e2e.test_web import group_stats, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]
__all__ = ["run"]

KEPT = "kept from the last clean shutdown"
REBUILT = "rebuilt from the orders table"


async def test_a_clean_restart_keeps_the_due_index_and_the_counters(run: tuple[DemoRun, OutcomeMonitor]) -> None:
    demo, monitor = run
    stack = demo.stack
    partitions = stack.config.partitions
    first = stack.start_worker("a")
    stack.start_bridge()
    await monitor.start()
    demo.feed()
    await settle(demo, monitor)
    await wait_ready(stack, "a")
    assert first.stop() == 0
    assert checkpointed(first) == partitions  # every partition, once the streams were drained

    again = stack.start_worker("a")
    await wait_ready(stack, "a")
    kept, rebuilt = mentions(again, KEPT), mentions(again, REBUILT)
    # Orders keep moving in business time: a partition changed before its turn came is rebuilt, the others are kept.
    assert kept >= 1 and kept + rebuilt >= partitions, (kept, rebuilt)
    stats, states = await group_stats(stack, monitor, workers=("a",))
    assert stats["complete"] is True
    for state, n in states.items():
        assert stats["totals"]["funnel"][state] == n, (state, stats["totals"]["funnel"], states)
    await settle(demo, monitor)
    assert demo.problems(monitor.view, demo.ledger()) == []


def checkpointed(worker: ChildProcess) -> int:
    found = re.findall(r"checkpointed the due index and counters of (\d+) partition", worker.log_path.read_text())
    assert len(found) == 1, found
    return int(found[0])


def mentions(worker: ChildProcess, text: str) -> int:
    return sum(1 for line in worker.log_path.read_text(errors="replace").splitlines() if text in line)
