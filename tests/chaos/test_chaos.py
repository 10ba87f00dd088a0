"""Chaos: every eligible order solicited exactly once, inside its window; nothing lost; nothing misreported.

50 sellers x 40 orders (plus an unregistered seller's 40) flow SQS -> bridge -> Kafka -> two workers -> the SP-API
sandbox on simulated business time, while the harness

* SIGKILLs workers at random moments (seeded) at least ten times, starting a new process each time, and restarts a
  worker cleanly (SIGTERM) twice: its checkpoints (streams/checkpoint.py) are used where they still hold;
* stops and restarts the Kafka broker once (its own broker, on free ports: nobody else's run is harmed);
* SIGKILLs the bridge twice while it holds an acknowledged batch it has not deleted from SQS, and keeps SQS's
  visibility timeout short, so messages come back and arrive twice;
* has the sandbox fail 10 % of SP-API calls with 5xx, answer 5 % of successful creates with a 500 *after* creating
  (ambiguous), and throttle a storm of 300 consecutive calls with 429;
* sends 10 % of the notifications straight to ``order-changes`` partitioned by CRC32 (librdkafka's default) instead
  of murmur2, duplicates 5 % of the SQS messages and shuffles everything (out-of-order arrival).

Then it waits until every order is where the plan says and nothing has moved for a while (hard limit), and judges
the run from the sandbox's ledger and the ``outcomes`` topic (:mod:`tests.chaos.audit`), printing the figures.

Business time runs 4,320x (a day every 20 s), ten times slower than the demo: a worker killed with SIGKILL is only
replaced after the session timeout (10 s), and the broker restart costs tens of seconds, so at the demo's speed the
chaos alone would span weeks of business time. At 4,320x the run's whole chaos is under ten business days, and
every open window has more than thirty days left.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from devstack.demo.run import _import_sellers
from devstack.demo.scenario import category
from devstack.demo.stack import Stack, StackConfig, moto_sqs
from devstack.local_kafka import JarCache, LocalBroker, LocalKafkaError, find_free_ports
from streams.topic_admin import ensure_topics
from streams.topics import DEAD_LETTERS, OUTCOMES
from tests.chaos import plan as plans
from tests.chaos.audit import audit, evidence
from tests.chaos.kafka_io import OutputFollower
from tests.chaos.lab import WORKER_IDS, ChaosLab, Feeder, sqs_client

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

SEED = 9
SELLERS = 50
SPEED = 4320.0
PARTITIONS = 4
KILLS = 12
CHAOS_SECONDS = 150.0
"""Real seconds over which the kills, the broker restart, the bridge kills and the 429 storm are spread."""
SETTLE_LIMIT = 300.0
"""Hard limit (real seconds) for the run to settle once the chaos is over."""
QUIET_SECONDS = 15.0
"""Settled = every order where the plan says, and no state change nor new solicitation for this long."""

CHAOS_ENV = {
    # Business time: a day is 20 real seconds. A lease of two days (40 s) outlasts a seller's queue behind
    # Amazon's rate limit; a lost command comes back after it.
    "SOLICIT_TIMING__LEASE_TIMEOUT": "P2D",
    "SOLICIT_SENDER__ATTENTION_RETRY": "P7D",
    "SOLICIT_SENDER__UNKNOWN_SELLER_RETRY": "P7D",
    "SOLICIT_WORKER__TIMER_INTERVAL": "0.2",
    "SOLICIT_WORKER__STANDBY_REPLICAS": "0",
    # A SIGKILLed worker's partitions move to the other one after this many seconds.
    "SOLICIT_KAFKA__SESSION_TIMEOUT": "10",
    # SQS hands a message out again 5 s after a receive that was not deleted.
    "SOLICIT_BRIDGE__VISIBILITY_TIMEOUT": "5",
    "SOLICIT_BRIDGE__WAIT_SECONDS": "2",
    "SOLICIT_BRIDGE__STATS_INTERVAL": "15",
}
SANDBOX_FAULTS = {"error_rate": 0.10, "ambiguous_rate": 0.05}
STORM_CALLS = 300


def say(text: str) -> None:
    print(f"[chaos] {text}", flush=True)


@pytest.fixture
def quiet_kafka_clients() -> Iterator[None]:
    """The harness's own Kafka clients log every failed reconnect while the broker is down; keep them quiet."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture
async def chaos_lab(tmp_path: Path, kafka_jar_cache: JarCache, quiet_kafka_clients: None) -> AsyncIterator[ChaosLab]:
    """Its own broker (it gets restarted), a moto SQS server, and a stack with the sandbox started."""
    port, controller_port = find_free_ports(2)
    broker = LocalBroker(
        data_dir=tmp_path / "kafka", port=port, controller_port=controller_port, kafka_home=kafka_jar_cache.home
    )
    try:
        await asyncio.to_thread(broker.start)
    except LocalKafkaError as exc:
        pytest.fail(f"the chaos run's Kafka broker could not start:\n{exc}", pytrace=False)
    try:
        with moto_sqs() as sqs_endpoint:
            queue_url = sqs_client(sqs_endpoint).create_queue(QueueName="chaos-order-change")["QueueUrl"]
            (sandbox_port,) = find_free_ports(1)
            config = StackConfig(
                run_dir=tmp_path / "run",
                kafka_bootstrap=broker.bootstrap,
                sqs_endpoint=sqs_endpoint,
                queue_url=queue_url,
                sandbox_port=sandbox_port,
                partitions=PARTITIONS,
                sim_speed=SPEED,
                extra_env=dict(CHAOS_ENV),
            )
            stack = Stack(config)
            try:
                await ensure_topics(config.kafka())
                await asyncio.to_thread(stack.start_sandbox, "--seed", str(SEED))
                yield ChaosLab(broker=broker, stack=stack)
            finally:
                await asyncio.to_thread(stack.close)
    finally:
        await asyncio.to_thread(broker.stop)


async def test_every_eligible_order_is_solicited_exactly_once_through_chaos(chaos_lab: ChaosLab) -> None:
    lab = chaos_lab
    started = time.monotonic()
    plan = plans.build(lab.config.clock().now(), sellers=SELLERS, seed=SEED)
    await prepare(lab, plan)
    await start_services(lab)
    say(f"stack up in {time.monotonic() - started:.0f} s; {len(plan.orders)} orders, {len(plan.deliveries)} deliveries")
    follower = OutputFollower(
        lab.config.kafka_bootstrap,
        outcomes=OUTCOMES.named(lab.config.topic_prefix),
        dead_letters=DEAD_LETTERS.named(lab.config.topic_prefix),
        partitions=PARTITIONS,
    )
    await follower.start()
    try:
        lab.stack.sandbox("POST", "faults", SANDBOX_FAULTS)
        feeder = Feeder(lab, plan)
        feeding = asyncio.create_task(feeder.run())
        await run_chaos(lab, random.Random(SEED), report=lambda: progress(lab, plan, follower, started))
        await feeding
        say(f"chaos over, everything fed after {time.monotonic() - started:.0f} s; waiting for the run to settle")
        settled = await settle(lab, plan, follower, started)
        read_all = await follower.caught_up()
        lab.counters.settled, lab.counters.seconds = settled, time.monotonic() - started
        lab.counters.kept_partitions = sum(
            child.log_path.read_text(errors="replace").count(KEPT) for child in lab.stack.children
        )
        counters_problem = await funnel_disagreement(lab, follower) if settled else None
        ledger = lab.stack.sandbox("GET", "ledger")
        figures = audit(
            plan, ledger, follower.log.states, counters=lab.counters, dead_letter_sizes=follower.log.dead_letter_sizes
        )
    finally:
        await follower.stop()
    say(f"figures\n{figures.report()}")
    failures = figures.failures()
    if counters_problem is not None:
        failures.append(counters_problem)
    if not settled:
        failures.insert(0, f"not settled within {SETTLE_LIMIT:.0f} s after the chaos")
    if not read_all:
        failures.insert(0, "harness: the output topics could not be read to their end; the figures are incomplete")
    if failures:
        stories = "\n".join(evidence(plan, key, ledger, follower.log.history) for key in figures.examples())
        pytest.fail(
            "\n".join(failures) + f"\n\nsome of the orders concerned:\n{stories}\n\nlogs:\n{lab.log_tails()}",
            pytrace=False,
        )


KEPT = "kept from the last clean shutdown"


async def funnel_disagreement(lab: ChaosLab, follower: OutputFollower, within: float = 60) -> str | None:
    """None once the workers' funnel counters (``GET /stats``, summed over the group) equal the states the outcomes
    topic ends with; else what differs. The counters survived the kills (rebuilt from the table) and the clean
    restarts (kept from a checkpoint where it still held)."""
    deadline = time.monotonic() + within
    while True:
        states = Counter(follower.log.states.values())
        try:
            stats = (await asyncio.to_thread(lab.stack.web, "GET", "/stats")).json()
        except Exception as exc:  # a worker still starting: ask again
            stats = {"error": repr(exc)}
        funnel = stats.get("totals", {}).get("funnel", {})
        wrong = {state: (funnel.get(state, 0), n) for state, n in states.items() if funnel.get(state, 0) != n}
        if stats.get("complete") and not wrong:
            return None
        if time.monotonic() > deadline:
            return f"the funnel counters disagree with the outcomes topic ((counted, topic) by state): {wrong or stats}"
        await asyncio.sleep(1.0)


async def prepare(lab: ChaosLab, plan: plans.ChaosPlan) -> None:
    """Amazon's side (sellers and orders in the sandbox) and our registry (every seller but the unknown one)."""
    lab.stack.sandbox("POST", "sellers", plan.sandbox_sellers)
    lab.stack.sandbox("POST", "orders", plan.truths())
    await _import_sellers(lab.config, plan.registry_file)


async def start_services(lab: ChaosLab) -> None:
    """Two workers and the bridge, each ready (the workers have read the registry, the bridge polls SQS)."""
    workers = [lab.start_worker(worker_id) for worker_id in WORKER_IDS]
    for worker in workers:
        await asyncio.to_thread(worker.wait_for_log, "sellers registry loaded", 120)
    bridge = lab.start_bridge()
    await asyncio.to_thread(bridge.wait_for_log, "bridge started", 60)


def chaos_schedule(rng: random.Random, *, kills: int = KILLS, span: float = CHAOS_SECONDS) -> list[tuple[float, str]]:
    """(seconds after the feed starts, action): kills spread over ``span`` at random moments, one broker
    restart near the middle, two bridge kills, two clean worker restarts and a 429 storm while the feed is still
    running."""
    gap = span / kills
    events = [(i * gap + rng.uniform(0.2, 0.8) * gap, "kill") for i in range(kills)]
    events += [(0.45 * span, "broker"), (0.12 * span, "bridge"), (0.3 * span, "bridge"), (0.25 * span, "storm")]
    events += [(0.2 * span, "restart"), (0.65 * span, "restart")]
    return sorted(events)


async def run_chaos(lab: ChaosLab, rng: random.Random, *, report: Callable[[], None]) -> None:
    """Carry out the schedule; between actions, revive services that died on their own and report progress."""
    began = time.monotonic()
    for at, action in chaos_schedule(rng):
        while time.monotonic() - began < at:
            await asyncio.to_thread(lab.revive)
            await asyncio.sleep(1.0)
        if action == "kill":
            victims = list(WORKER_IDS) if rng.random() < 0.2 else [rng.choice(WORKER_IDS)]
            for worker_id in victims:
                await asyncio.to_thread(lab.kill_worker, worker_id)
            say(f"t+{at:5.1f} s SIGKILL worker(s) {victims} (kills so far: {lab.counters.kills})")
        elif action == "restart":
            worker_id = rng.choice(WORKER_IDS)
            code = await asyncio.to_thread(lab.restart_worker_cleanly, worker_id)
            # Not a verdict: with the broker just back, a shutdown may outlast the 30 s before SIGKILL (a crash then).
            say(f"t+{at:5.1f} s SIGTERM worker {worker_id}: exited {code}, started again")
        elif action == "broker":
            say(f"t+{at:5.1f} s stopping the Kafka broker")
            await asyncio.to_thread(lab.restart_broker)
            say(f"           broker back after {time.monotonic() - began - at:.1f} s")
        elif action == "bridge":
            killed = await asyncio.to_thread(lab.kill_bridge_mid_batch)
            say(f"t+{at:5.1f} s SIGKILL the bridge mid-batch: {'done' if killed else 'no batch in flight'}")
        elif action == "storm":
            await asyncio.to_thread(lab.storm_429, STORM_CALLS)
            say(f"t+{at:5.1f} s 429 storm: the next {STORM_CALLS} SP-API calls are throttled")
        report()


async def settle(lab: ChaosLab, plan: plans.ChaosPlan, follower: OutputFollower, started: float) -> bool:
    """True once every order reached its expected state and nothing moved for ``QUIET_SECONDS``."""
    deadline = time.monotonic() + SETTLE_LIMIT
    solicited, quiet_since, last_report = -1, time.monotonic(), 0.0
    while time.monotonic() < deadline:
        await asyncio.sleep(2.0)
        await asyncio.to_thread(lab.revive)
        now_solicited = sum(1 for order in lab.stack.sandbox("GET", "orders")["orders"] if order["solicited"])
        if now_solicited != solicited:
            solicited, quiet_since = now_solicited, time.monotonic()
        states = follower.log.states
        reached = all(order.reached(states.get(order.key)) for order in plan.orders)
        calm = time.monotonic() - max(quiet_since, follower.log.last_change) >= QUIET_SECONDS
        if reached and calm:
            return True
        if time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            progress(lab, plan, follower, started)
    return False


def progress(lab: ChaosLab, plan: plans.ChaosPlan, follower: OutputFollower, started: float) -> None:
    states = follower.log.states
    categories = Counter(category(state) for state in states.values())
    behind = sum(1 for order in plan.orders if not order.reached(states.get(order.key)))
    say(
        f"[{time.monotonic() - started:5.0f} s | sim {lab.config.clock().now():%m-%d %H:%M}] "
        f"{len(states)}/{len(plan.orders)} orders seen {dict(sorted(categories.items()))}; "
        f"{behind} not where expected; {len(follower.log.dead_letters)} dead letters; "
        f"attempts {dict(follower.log.attempts)}"
    )


def test_the_schedule_has_enough_kills_and_one_broker_restart() -> None:
    """The schedule itself: at least ten kills spread over the chaos, one broker restart, in time order."""
    events = chaos_schedule(random.Random(SEED))
    assert [at for at, _ in events] == sorted(at for at, _ in events)
    assert sum(1 for _, action in events if action == "kill") >= 10
    assert [action for _, action in events].count("restart") == 2
    assert [action for _, action in events].count("broker") == 1
    assert max(at for at, _ in events) <= CHAOS_SECONDS
