"""``solicit demo``: the whole pipeline on a local stack, weeks of order life in about a minute.

Starts (or reuses) a local Kafka broker, a moto SQS server, the SP-API sandbox, workers and the SQS bridge;
imports the demo sellers; feeds the scenario's ORDER_CHANGE traffic through SQS; shows progress while orders
move through their states; prints a per-seller summary; stops everything it started.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import SecretStr

from connectors.crypto import TokenCipher
from devstack.demo import scenario as scenarios
from devstack.demo.monitor import OutcomeMonitor, RunView
from devstack.demo.stack import Stack, StackConfig, local_kafka, moto_sqs
from devstack.local_kafka import find_free_ports
from streams.directory import publish_records
from streams.registry import SellerRecord, parse_import_file
from streams.topic_admin import ensure_topics
from streams.topics import DEAD_LETTERS, OUTCOMES, SELLERS

DEMO_TIMING_ENV = {
    # At 43,200 simulated seconds per real second one real second is half a day, so leases and deferrals
    # are set in days: a sender that takes a few real seconds must not look dead.
    "SOLICIT_TIMING__LEASE_TIMEOUT": "P5D",
    "SOLICIT_SENDER__ATTENTION_RETRY": "P7D",
    "SOLICIT_SENDER__UNKNOWN_SELLER_RETRY": "P7D",
    "SOLICIT_WORKER__TIMER_INTERVAL": "0.2",
    "SOLICIT_WORKER__STANDBY_REPLICAS": "0",
    # The daily Orders API reconciliation runs beside the live feed (a simulated day every two seconds).
    "SOLICIT_RECONCILE__CHECK_INTERVAL": "0.5",
}


@dataclass
class DemoOptions:
    sellers: int = 24
    workers: int = 1
    speed: float = 43200.0
    timeout: float = 240.0
    exit_after_summary: bool = False
    data_dir: Path = Path(".run/demo")
    partitions: int = 4


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when every order ended where the scenario expects."""
    return asyncio.run(_run(options, out))


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


async def _run(options: DemoOptions, out: TextIO) -> int:
    started = time.monotonic()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    _say(out, "solicit demo: starting a local stack (Kafka, SQS, SP-API sandbox, worker, bridge)")
    with local_kafka(options.data_dir / "kafka") as (bootstrap, _broker), moto_sqs() as sqs_endpoint:
        _say(out, f"  kafka {bootstrap}, sqs {sqs_endpoint}")
        queue_url = _create_queue(sqs_endpoint)
        (sandbox_port,) = find_free_ports(1)
        config = StackConfig(
            run_dir=options.data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S"),
            kafka_bootstrap=bootstrap,
            sqs_endpoint=sqs_endpoint,
            queue_url=queue_url,
            sandbox_port=sandbox_port,
            partitions=options.partitions,
            sim_speed=options.speed,
            extra_env=dict(DEMO_TIMING_ENV),
        )
        stack = Stack(config)
        monitor = OutcomeMonitor(
            config.connection(),
            outcomes_topic=OUTCOMES.named(config.topic_prefix),
            dead_letters_topic=DEAD_LETTERS.named(config.topic_prefix),
        )
        try:
            return await _drive(options, config, stack, monitor, out, started)
        finally:
            _say(out, "stopping the services the demo started ...")
            await monitor.stop()
            stack.close()
            _say(out, f"logs: {config.run_dir / 'logs'}")


class DemoRun:
    """The steps of a run on a started :class:`Stack`; the demo and the end-to-end tests share them."""

    def __init__(self, stack: Stack, *, sellers: int) -> None:
        self.stack = stack
        self.config = stack.config
        self.sellers = sellers
        self.clock = self.config.clock()
        self.plan = scenarios.build(self.clock.now(), sellers=sellers)

    async def prepare(self) -> None:
        """Topics, the sandbox with its sellers, and the registry."""
        config = self.config
        await ensure_topics(config.kafka())
        self.stack.start_sandbox()
        self.stack.sandbox("POST", "sellers", self.plan.sandbox_sellers)
        await _import_sellers(config, self.plan.registry_file)

    def feed(self) -> scenarios.Scenario:
        """Build the traffic against business time *now* and send it through SQS."""
        self.plan = scenarios.build(self.clock.now(), sellers=self.sellers)
        self.stack.sandbox("POST", "orders", [order.truth for order in self.plan.orders if order.truth])
        for seller_id in self.plan.revoked:
            self.stack.sandbox("POST", f"sellers/{seller_id}/revoke")
        _send_to_sqs(self.config, self.plan.bodies)
        return self.plan

    def monitor(self) -> OutcomeMonitor:
        return OutcomeMonitor(
            self.config.connection(),
            outcomes_topic=OUTCOMES.named(self.config.topic_prefix),
            dead_letters_topic=DEAD_LETTERS.named(self.config.topic_prefix),
        )

    async def wait_settled(self, view: RunView, *, within: float, every: float = 2.0, report: Any = None) -> bool:
        """Wait until every order is where the scenario expects; False after ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await asyncio.sleep(every)
            if report is not None:
                report(view)
            if _settled(view, self.plan.expected(), self.plan.malformed):
                return True
        return False

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = self.stack.sandbox("GET", "ledger")
        return result

    def problems(self, view: RunView, ledger: dict[str, Any]) -> list[str]:
        return _check(self.plan, view, ledger)


async def _drive(
    options: DemoOptions, config: StackConfig, stack: Stack, monitor: OutcomeMonitor, out: TextIO, started: float
) -> int:
    run = DemoRun(stack, sellers=options.sellers)
    await run.prepare()
    _say(out, f"  sandbox {config.sandbox_url}; {options.sellers} sellers imported into the registry")
    for index in range(options.workers):
        stack.start_worker(str(index + 1))
    stack.start_bridge()
    _say(out, f"  {options.workers} worker(s) and the bridge are up ({time.monotonic() - started:.0f} s)")
    _say(out, f"  dashboard {stack.web_url('1')}/dashboard (token {config.web_token}); API docs/web-api.md")
    await monitor.start()
    plan = run.feed()
    _say(
        out,
        f"fed {len(plan.bodies)} SQS messages: {len(plan.orders)} orders, duplicates, out-of-order updates and "
        f"{plan.malformed} malformed bodies (simulated time runs {options.speed:,.0f}x)",
    )
    total = len(plan.orders)

    def report(view: RunView) -> None:
        _say(out, _progress(view, run.clock.now(), time.monotonic() - started, total))

    finished = await run.wait_settled(monitor.view, within=options.timeout, report=report)
    if not finished:
        _say(out, f"not every order reached its expected state within {options.timeout:.0f} s")
    ledger = run.ledger()
    _say(out, "")
    _say(out, _summary(await _group_stats(stack, len(monitor.view.states)), monitor.view, ledger))
    problems = run.problems(monitor.view, ledger)
    for problem in problems:
        _say(out, f"PROBLEM: {problem}")
    if not problems:
        _say(out, "every order ended where expected; every solicitation was created exactly once.")
    _say(out, f"total {time.monotonic() - started:.0f} s")
    if not options.exit_after_summary:
        _say(out, "the stack keeps running; Ctrl-C stops it")
        await _wait_for_interrupt(monitor.view, run.clock, started, total, out)
    return 0 if finished and not problems else 1


async def _import_sellers(config: StackConfig, registry_file: dict[str, Any]) -> None:
    cipher = TokenCipher(SecretStr(config.secret_key))
    entries = parse_import_file(json.dumps(registry_file))
    now = config.clock().now()
    records = [
        SellerRecord.from_entry(entry, refresh_token_encrypted=cipher.encrypt(entry.refresh_token), updated_at=now)
        for entry in entries
    ]
    await publish_records(config.kafka(), records, topic=SELLERS.named(config.topic_prefix))


def _client(endpoint: str) -> Any:
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",  # noqa: S106 - moto accepts any credentials
    )


def _create_queue(endpoint: str) -> str:
    url: str = _client(endpoint).create_queue(QueueName=f"order-change-{int(time.time())}")["QueueUrl"]
    return url


def _send_to_sqs(config: StackConfig, bodies: list[str]) -> None:
    client = _client(config.sqs_endpoint)
    for start in range(0, len(bodies), 10):
        batch = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]
        answer = client.send_message_batch(QueueUrl=config.queue_url, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused messages: {answer['Failed']}")


def _settled(view: RunView, expected: dict[str, str], malformed: int) -> bool:
    if len(view.dead_letters) < malformed:
        return False
    for key, want in expected.items():
        state = view.states.get(key)
        if state is None:
            return False
        if want == "waiting":
            if scenarios.category(state) != "waiting":
                return False
        elif scenarios.category(state) != want:
            return False
    return True


def _progress(view: RunView, now: Any, elapsed: float, total: int) -> str:
    order = ["pending", "shipped", "eligible", "waiting", "sent", "skipped", "expired", "canceled", "failed"]
    states = view.by_state()
    parts = ", ".join(f"{states[s]} {s}" for s in order if states.get(s))
    return (
        f"[{elapsed:5.0f} s | sim {now:%Y-%m-%d %H:%M}] {len(view.states)}/{total} orders: {parts or '-'}"
        f" | {len(view.dead_letters)} dead letters"
    )


SUMMARY_COLUMNS: dict[str, tuple[str, ...]] = {
    "sent": ("sent",),
    "skipped": ("skipped",),
    "waiting": ("pending", "shipped", "waiting", "eligible"),
    "expired": ("expired",),
    "canceled": ("canceled",),
    "failed": ("failed",),
    "dead-lettered": ("dead_lettered",),
}


async def _group_stats(stack: Stack, orders: int, within: float = 30) -> dict[str, Any]:
    """The workers' ``GET /stats`` once it covers every order the outcomes topic knows (counters follow records)."""
    deadline = time.monotonic() + within
    while True:
        stats: dict[str, Any] = (await asyncio.to_thread(stack.web, "GET", "/stats")).json()
        complete = stats.get("complete") and stats["totals"]["funnel"]["received"] >= orders
        if complete or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.5)


def _summary(stats: dict[str, Any], view: RunView, ledger: dict[str, Any]) -> str:
    """The per-seller summary, from the workers' statistics (the same numbers as the API and the dashboard)."""
    columns = [*SUMMARY_COLUMNS, "429s"]
    header = f"{'seller':<22} {'name':<16} " + " ".join(f"{c:>13}" for c in columns)
    lines = ["per-seller summary (GET /stats)", header, "-" * len(header)]
    for seller in stats["sellers"]:
        counts = [sum(seller["funnel"][s] for s in states) for states in SUMMARY_COLUMNS.values()]
        counts.append(seller["throttled"]["1d"])
        name = seller["name"] or "(not registered)"
        lines.append(f"{seller['seller_id']:<22} {name:<16} " + " ".join(f"{n:>13}" for n in counts))
    malformed = sum(1 for letter in view.dead_letters if _dead_letter_seller(letter) == "(no seller)")
    if malformed:
        lines.append(f"{'(no seller)':<22} {'(malformed)':<16} " + " ".join(
            f"{malformed if c == 'dead-lettered' else 0:>13}" for c in columns
        ))  # fmt: skip
    totals = stats["totals"]
    total = [sum(totals["funnel"][s] for s in states) for states in SUMMARY_COLUMNS.values()]
    total[list(SUMMARY_COLUMNS).index("dead-lettered")] += malformed
    total.append(totals["throttled"]["1d"])
    lines.append("-" * len(header))
    lines.append(f"{'total':<22} {'':<16} " + " ".join(f"{n:>13}" for n in total))
    coverage = totals["coverage"]["30d"]
    lines.append(
        f"coverage (30 days): {coverage['solicited']}/{coverage['eligible']}; send attempts: {dict(view.attempts)}; "
        f"solicitations in the sandbox ledger: {len(ledger['solicitations'])}"
    )
    return "\n".join(lines)


def _dead_letter_seller(letter: dict[str, Any]) -> str:
    try:
        raw = json.loads(str(letter.get("raw", "")))
        if isinstance(raw, str):
            raw = json.loads(raw)
        return str(raw["Payload"]["OrderChangeNotification"]["SellerId"])
    except (ValueError, KeyError, TypeError):
        return "(no seller)"


def _check(plan: scenarios.Scenario, view: RunView, ledger: dict[str, Any]) -> list[str]:
    problems = []
    created = Counter(f"{s['seller_id']}/{s['order_id']}" for s in ledger["solicitations"])
    twice = [key for key, n in created.items() if n > 1]
    if twice:
        problems.append(f"solicited more than once: {twice}")
    unexpected = set(created) - plan.must_be_sent()
    if unexpected:
        problems.append(f"solicited although not expected: {sorted(unexpected)}")
    missing = plan.must_be_sent() - set(created)
    if missing:
        problems.append(f"{len(missing)} order(s) expected to be sent were not: {sorted(missing)[:5]} ...")
    if len(view.dead_letters) != plan.malformed:
        problems.append(f"{len(view.dead_letters)} dead letters, expected {plan.malformed}")
    return problems


async def _wait_for_interrupt(view: RunView, clock: Any, started: float, total: int, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=10)
            except TimeoutError:
                _say(out, _progress(view, clock.now(), time.monotonic() - started, total))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


__all__ = ["DemoOptions", "DemoRun", "run_demo"]
