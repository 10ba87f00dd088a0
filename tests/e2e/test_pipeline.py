"""End to end, with the real processes: SQS (moto server) -> bridge -> Kafka -> worker(s) -> SP-API sandbox.

Each test runs the demo scenario (six sellers: regular, paused, dry-run, send hours, revoked; an unregistered
seller; MFN and FBA orders; shipped, canceled, closed and future windows; duplicates; out-of-order updates;
malformed bodies) on simulated time and checks the sandbox's ledger: a solicitation exactly once for every order
whose window opened, none for any other. Workers are stopped, restarted and killed mid-run. The first run also reads
back every record of every topic and validates it against its published JSON Schema (docs/schemas), and runs its
worker and bridge with ``SOLICIT_LOG_FORMAT=json``: every line they write must be a JSON log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devstack.demo.monitor import OutcomeMonitor
from devstack.demo.run import DEMO_TIMING_ENV, DemoRun, _create_queue
from devstack.demo.stack import ChildProcess, Stack, StackConfig, moto_sqs
from devstack.local_kafka import find_free_ports
from streams import topics
from streams.topics import ALERTS, ALL_TOPICS, DEAD_LETTERS
from tests.e2e.records import json_log_problems, read_topic, schema_problems

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]

SELLERS = 6
E2E_ENV = {**DEMO_TIMING_ENV, "SOLICIT_KAFKA__SESSION_TIMEOUT": "10"}
MAY_BE_EMPTY = {DEAD_LETTERS.name, ALERTS.name}
"""Topics a run may leave empty; every other topic must have had at least one record validated."""


@pytest.fixture
async def run(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[tuple[DemoRun, OutcomeMonitor]]:
    with moto_sqs() as sqs_endpoint:
        (sandbox_port,) = find_free_ports(1)
        config = StackConfig(
            run_dir=tmp_path,
            kafka_bootstrap=kafka_bootstrap,
            sqs_endpoint=sqs_endpoint,
            queue_url=_create_queue(sqs_endpoint),
            sandbox_port=sandbox_port,
            partitions=4,
            extra_env=dict(E2E_ENV),
        )
        stack = Stack(config)
        demo = DemoRun(stack, sellers=SELLERS)
        monitor = demo.monitor()
        try:
            await demo.prepare()
            yield demo, monitor
        finally:
            await monitor.stop()
            stack.close()


async def settle(demo: DemoRun, monitor: OutcomeMonitor, within: float = 180) -> None:
    settled = await demo.wait_settled(monitor.view, within=within, every=1.0)
    if not settled:
        expected = demo.plan.expected()
        wrong = {k: (monitor.view.states.get(k), v) for k, v in expected.items() if monitor.view.states.get(k) != v}
        logs = "\n".join(f"--- {c.name}\n{c.log_tail(30)}" for c in demo.stack.children)
        pytest.fail(
            f"not settled after {within} s; (state, expected) of some orders: {list(wrong.items())[:8]}\n{logs}"
        )


async def test_sqs_to_solicitation_exactly_once_for_every_open_window(run: tuple[DemoRun, OutcomeMonitor]) -> None:
    demo, monitor = run
    demo.stack.config.extra_env["SOLICIT_LOG_FORMAT"] = "json"  # the processes started from here on
    worker = demo.stack.start_worker("a")
    bridge = demo.stack.start_bridge()
    await monitor.start()
    started = time.monotonic()
    plan = demo.feed()
    await settle(demo, monitor)
    elapsed = time.monotonic() - started
    print(f"[e2e] {len(plan.orders)} orders settled {elapsed:.1f} s after feeding")

    ledger = demo.ledger()
    assert demo.problems(monitor.view, ledger) == []
    solicited = sorted(f"{s['seller_id']}/{s['order_id']}" for s in ledger["solicitations"])
    assert solicited == sorted(plan.must_be_sent())
    by_kind = {o.key: o.kind for o in plan.orders}
    assert {by_kind[k] for k in solicited} == {"mfn", "sequence", "afn"}
    # FBA orders were resolved by re-checks: asked before the window opened, then sent on a later day.
    afn_gets = [
        c
        for c in ledger["calls"]
        if c["operation"] == "getSolicitationActionsForOrder"
        and by_kind.get(f"{c['seller_id']}/{c['order_id']}") == "afn"
    ]
    assert len(afn_gets) > len([k for k in solicited if by_kind[k] == "afn"])
    # Nothing was asked for canceled, closed-window, future or unregistered-seller orders.
    asked = {f"{c['seller_id']}/{c['order_id']}" for c in ledger["calls"] if c.get("order_id")}
    assert not {k for k in asked if by_kind.get(k) in ("canceled", "old", "future")}
    assert monitor.view.states[next(o.key for o in plan.orders if o.kind == "future")] == "shipped"
    unregistered = [k for k in monitor.view.states if k.startswith("AUNREGISTERED")]
    assert len(unregistered) == 2
    assert all("is not in the registry" in monitor.view.reasons[k] for k in unregistered)

    await assert_every_record_matches_its_schema(demo)
    worker.stop()
    bridge.stop()
    assert_json_logs_without_tokens(demo, [worker, bridge])


async def assert_every_record_matches_its_schema(demo: DemoRun) -> None:
    """Every value of every topic of the run validates against docs/schemas; the registry holds no plaintext token."""
    config = demo.config
    validated: dict[str, int] = {}
    problems: list[str] = []
    for spec in ALL_TOPICS:
        records = await read_topic(config.connection(), spec.named(config.topic_prefix))
        assert records is not None or spec.name in MAY_BE_EMPTY, f"the run has no topic {spec.name}"
        validated[spec.name], found = schema_problems(spec, records or [])
        problems.extend(found)
        if spec is topics.SELLERS:
            tokens = [entry["refresh_token"].encode() for entry in demo.plan.registry_file["sellers"]]
            plaintext = [r.offset for r in records or [] if r.value and any(t in r.value for t in tokens)]
            assert plaintext == [], f"sellers records at offsets {plaintext} hold a plaintext refresh token"
            assert not any(b"Atzr|" in r.value for r in records or [] if r.value)
    print(f"[e2e] records validated against their schemas: {validated}")
    assert problems == [], f"{len(problems)} record(s) do not match their schema:\n" + "\n".join(problems[:20])
    assert {name for name, count in validated.items() if count == 0} <= MAY_BE_EMPTY, validated


def assert_json_logs_without_tokens(demo: DemoRun, children: list[ChildProcess]) -> None:
    """With SOLICIT_LOG_FORMAT=json every line a process wrote (Faust's worker included) is a JSON log line."""
    tokens = [entry["refresh_token"] for entry in demo.plan.registry_file["sellers"]]
    for child in children:
        text = child.log_path.read_text(errors="replace")
        lines, problems = json_log_problems(text)
        assert problems == [], f"{child.name}: " + "\n".join(problems[:10])
        assert lines > 0, f"{child.name} logged nothing"
        assert not any(token in text for token in tokens), f"{child.name} logged a refresh token"
    assert transitions(children[0]) > 0  # the worker's state changes, as JSON lines


async def test_two_workers_split_the_partitions_and_survive_a_restart(run: tuple[DemoRun, OutcomeMonitor]) -> None:
    demo, monitor = run
    first = demo.stack.start_worker("a")
    second = demo.stack.start_worker("b")
    demo.stack.start_bridge()
    await monitor.start()
    plan = demo.feed()
    # Let some orders be sent, then take the second worker away and bring it back mid-run.
    await wait_for(lambda: sent(monitor) >= 3, within=120)
    assert second.stop() == 0
    assert transitions(first) > 0
    assert transitions(second) > 0  # the partitions were split: both workers moved orders
    assert sent(monitor) < len(plan.must_be_sent())
    await asyncio.sleep(2)
    again = demo.stack.start_worker("b", wait=False)
    await settle(demo, monitor)
    assert demo.problems(monitor.view, demo.ledger()) == []
    assert transitions(again) > 0  # the restarted worker got partitions back and worked them


async def test_a_worker_killed_mid_run_loses_nothing_and_sends_nothing_twice(
    run: tuple[DemoRun, OutcomeMonitor],
) -> None:
    demo, monitor = run
    worker = demo.stack.start_worker("a")
    demo.stack.start_bridge()
    await monitor.start()
    plan = demo.feed()
    await wait_for(lambda: sent(monitor) >= 3, within=120)
    worker.kill()  # SIGKILL: no goodbye, no commit, no flush
    assert sent(monitor) < len(plan.must_be_sent())
    restarted = demo.stack.start_worker("a", wait=False)
    await settle(demo, monitor, within=240)
    assert demo.problems(monitor.view, demo.ledger()) == []
    assert transitions(restarted) > 0  # it recovered the state from the changelog and carried on


def sent(monitor: OutcomeMonitor) -> int:
    return sum(1 for state in monitor.view.states.values() if state == "sent")


def transitions(worker: ChildProcess) -> int:
    """Order state changes this worker process logged."""
    return sum(1 for line in worker.log_path.read_text(errors="replace").splitlines() if " -> " in line)


async def wait_for(condition: object, *, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"condition not met within {within} s")
