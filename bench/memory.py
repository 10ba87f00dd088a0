"""Issue 12 P4: a worker's memory with a million tracked orders, its recovery from the changelog and its restart.

    .venv/bin/python -m bench.memory [--orders 1000000] [--partitions 12] [--sellers 200] [--restarts 3]
        [--crashes 1] [--lookups 20000] [--keep DIR]

Writes ``--orders`` order records (shipped or waiting, next check 1-30 days ahead, across ``--sellers`` sellers)
straight into the ``orders`` table's changelog topic of a fresh app id, in the stored format
(:func:`streams.orders.encode_record`, key ``seller/order``, partition :func:`streams.orders.partition_for`), then:

1. starts a real ``solicit worker`` on a fresh data dir and times it until ``GET /readyz`` answers 200: the
   recovery of every record from the changelog, the due index and the funnel counters rebuilt;
2. reads its resident memory (``VmRSS``) once ready and idle, and its peak (``VmHWM``);
3. stops it (SIGTERM), starts it again on the same data dir and times it until ready again (restart with local
   state, after a clean shutdown: the due index and counters come from the checkpoints, ``streams/checkpoint.py``),
   and reads its memory again; ``--restarts`` times, the median restart counts. After the last one it reads
   ``--lookups`` orders through the web API (``GET /orders/...``: point reads, which fill the orders table's block
   caches as the agent's reads do) and reads its memory once more. Then ``--crashes`` starts that follow a SIGKILL
   (no checkpoint: every partition is rebuilt from the table), reported apart.

Prints the figures and their ratios to the targets (RSS <= 300 MiB, restart <= 30 s), with each start's CPU seconds
and the machine's load average: on a shared machine the wall time also measures the neighbours. Uses
``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts a broker from the cached jars in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from connectors.crypto import generate_key
from connectors.kafka import NewTopicSpec, create_missing_topics
from devstack.demo.stack import ChildProcess, local_kafka, solicit_argv
from devstack.local_kafka import find_free_ports
from statemachine import OrderChanged, OrderRecord, SendResult, SendResultKind, TimerFired, apply
from statemachine.types import format_datetime
from streams.orders import decode_record, encode_record, partition_for
from streams.settings import KafkaSettings
from streams.topic_admin import ensure_topics

RSS_TARGET_MIB = 300.0
RESTART_TARGET_S = 30.0
TOKEN = secrets.token_urlsafe(24)
"""The web API token of this run's workers."""
IDLE_S = 10.0
"""Seconds a ready worker is left idle before its memory is read."""
MARKETPLACES = ("ATVPDKIKX0DER", "A1F83G8C2ARO7P", "A1PA6795UKMFR9")
ORDER_MARK = "999-9999999-9999999"
DUE_MARK = datetime(2099, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Template:
    """One realistic stored record with the order id and the next check left as marks, filled in per order."""

    record: OrderRecord
    head: bytes
    """The encoded record with the marks in it."""
    due_mark: bytes

    @classmethod
    def of(cls, record: OrderRecord) -> Template:
        marked = record.model_copy(update={"order_id": ORDER_MARK, "next_due": DUE_MARK, "due_at": DUE_MARK})
        due_mark = _json_time(DUE_MARK)
        return cls(record=record, head=encode_record(marked)[9:], due_mark=due_mark)

    def value(self, order_id: str, due: datetime) -> bytes:
        """``encode_record`` of this record for ``order_id`` due at ``due``, without pydantic (1M records)."""
        due_ms = int(due.timestamp() * 1000)
        body = self.head.replace(ORDER_MARK.encode(), order_id.encode()).replace(self.due_mark, _json_time(due))
        return b"\x02" + due_ms.to_bytes(8, "big") + body

    def exact(self, order_id: str, due: datetime) -> bytes:
        return encode_record(self.record.model_copy(update={"order_id": order_id, "next_due": due, "due_at": due}))


def _json_time(when: datetime) -> bytes:
    """How the record's JSON spells ``when`` (its serializer, :func:`statemachine.types.format_datetime`)."""
    return format_datetime(when).encode()


def templates(seller: str, marketplace: str, now: datetime) -> tuple[Template, Template]:
    """A shipped and a waiting record of ``seller``, made by the core itself from a Shipped notification."""
    order, shipped_at = "111-0000000-0000001", now - timedelta(days=10)
    event = OrderChanged(
        notification_id=f"bench-{seller}",
        event_time=shipped_at,
        seller_id=seller,
        order_id=order,
        marketplace_id=marketplace,
        status="Shipped",
        fulfillment="MFN",
        change_time=shipped_at,
        purchase_date=shipped_at - timedelta(days=1),
        earliest_delivery=shipped_at + timedelta(days=3),
        latest_delivery=shipped_at + timedelta(days=7),
    )
    shipped = apply(None, event, shipped_at).record
    assert shipped is not None and shipped.next_due is not None
    eligible = apply(shipped, TimerFired(seller_id=seller, order_id=order), shipped.next_due).record
    assert eligible is not None
    answer = SendResult(
        seller_id=seller,
        order_id=order,
        lease_id=eligible.lease_id,
        result=SendResultKind.NOT_YET_AVAILABLE,
        request_id="bench",
    )
    waiting = apply(eligible, answer, shipped.next_due + timedelta(minutes=1)).record
    assert waiting is not None
    return Template.of(shipped), Template.of(waiting)


def records(
    count: int, sellers: int, partitions: int, now: datetime, sample: list[str], every: int = 50
) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of ``count`` orders, next checks spread over the next 30 days; one key in ``every`` is
    added to ``sample`` (the orders looked up later)."""
    rng = random.Random(12)
    made = [templates(f"A{i:03d}BENCHSELLR", MARKETPLACES[i % len(MARKETPLACES)], now) for i in range(sellers)]
    for i in range(count):
        seller = i % sellers
        template = made[seller][i % 2]
        order_id = f"{100 + seller % 900:03d}-{i:07d}-{rng.randrange(10_000_000):07d}"
        due = now + timedelta(days=1, seconds=rng.randrange(29 * 86_400))
        value = template.value(order_id, due)
        if i % 50_000 == 0:
            assert value == template.exact(order_id, due), "the fast encoding drifted from encode_record"
            assert decode_record(value).order_id == order_id
        key = f"{template.record.seller_id}/{order_id}"
        if i % every == 0:
            sample.append(key)
        yield partition_for(key.encode(), partitions), key.encode(), value


async def produce(bootstrap: str, topic: str, rows: Iterator[tuple[int, bytes, bytes]]) -> int:
    """Write ``rows`` to ``topic`` in full batches per partition; the number written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=512 << 10)
    await producer.start()
    try:
        builders: dict[int, Any] = {}
        futures: list[Any] = []
        written = 0
        for partition, key, value in rows:
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next
                futures.append(await producer.send_batch(builder, topic, partition=partition))
                builder = builders[partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
            written += 1
        for partition, builder in builders.items():
            if builder.record_count():
                futures.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*futures)
        return written
    finally:
        await producer.stop()


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(rest.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def wait_ready(worker: ChildProcess, port: int, timeout: float) -> None:
    """Return once the worker's ``/readyz`` answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not worker.alive():
            raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the worker was not ready after {timeout:.0f} s:\n{worker.log_tail()}")


@dataclass
class Run:
    """One start of the worker."""

    ready_s: float
    cpu_s: float
    """CPU seconds the worker used until ready: the cost itself, whatever else runs on the machine."""
    load: float
    """The machine's one-minute load average when the worker was ready (2 cores)."""
    rss_mib: float
    peak_mib: float
    looked_up: int = 0
    """Orders read through the web API after the idle reading (each a point read of the orders table)."""
    rss_after_mib: float = 0.0
    """Resident memory after those reads (the orders table's block caches warm)."""
    kept: int = 0
    """Partitions whose due index and counters came from the last clean shutdown's checkpoint (not rebuilt)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(
    env: dict[str, str], port: int, log: Path, timeout: float, lookups: Sequence[str] = (), *, crash: bool = False
) -> Run:
    """Start a worker, time it until ready, leave it idle, read its memory; then look ``lookups`` up through the web
    API and read its memory again; stop it (SIGTERM, a clean shutdown; ``crash``: SIGKILL)."""
    worker = ChildProcess("worker", solicit_argv("worker"), env, log)
    launched = time.monotonic()
    worker.start()
    try:
        wait_ready(worker, port, timeout)
        ready, cpu, load = time.monotonic() - launched, cpu_seconds(worker.pid), os.getloadavg()[0]
        time.sleep(IDLE_S)
        run = Run(ready, cpu, load, *memory_mib(worker.pid))
        if lookups:
            run.looked_up = asyncio.run(look_up(port, lookups))
            run.rss_after_mib = memory_mib(worker.pid)[0]
        run.kept = log.read_text(errors="replace").count("kept from the last clean shutdown")
    finally:
        if crash:
            worker.kill()
        else:
            worker.stop(timeout=60)
    return run


async def look_up(port: int, keys: Sequence[str]) -> int:
    """GET each order of ``keys`` from the worker's web API, eight at a time; how many were found."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    found = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
        for start in range(0, len(keys), 8):
            answers = await asyncio.gather(*(client.get(f"/orders/{key}") for key in keys[start : start + 8]))
            found += sum(1 for answer in answers if answer.status_code == 200)
    return found


def worker_env(bootstrap: str, prefix: str, app_id: str, partitions: int, state: Path) -> tuple[dict[str, str], int]:
    (port,) = find_free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLICIT_")} | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SOLICIT_KAFKA__TOPIC_PREFIX": prefix,
        "SOLICIT_KAFKA__PARTITIONS": str(partitions),
        "SOLICIT_WORKER__APP_ID": app_id,
        "SOLICIT_WORKER__DATA_DIR": str(state),
        "SOLICIT_WORKER__ID": "bench",
        "SOLICIT_WORKER__STANDBY_REPLICAS": "0",
        "SOLICIT_SECRET_KEY": generate_key(),
        "SOLICIT_WEB__PORT": str(port),
        "SOLICIT_WEB__BIND": "127.0.0.1",
        "SOLICIT_WEB__ADVERTISED_HOST": "127.0.0.1",
        "SOLICIT_LOG_LEVEL": "info",
        "SOLICIT_WEB__TOKENS": json.dumps({"bench": TOKEN}),
    }
    return env, port


async def prepare(bootstrap: str, prefix: str, app_id: str, partitions: int) -> str:
    """The service's topics and the orders table's changelog (compacted, as Faust makes it); its name."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, partitions=partitions, topic_prefix=prefix)
    await ensure_topics(kafka)
    changelog = f"{app_id}-orders-changelog"
    await create_missing_topics(kafka, [NewTopicSpec(changelog, partitions, config={"cleanup.policy": "compact"})])
    return changelog


def report(orders: int, produced_s: float, fresh: Run, restarts: list[Run], crashed: list[Run]) -> None:
    """The figures, each restart's, and the verdict (the median clean restart against the target)."""
    print(f"\nproduced {orders:,} records to the changelog at {orders / produced_s:,.0f}/s\n")
    print(f"{'start':<28} {'to ready':>9} {'CPU':>8} {'load':>5} {'RSS idle':>9} {'peak RSS':>9} {'kept':>5}")
    starts = [("fresh data dir (recovery)", fresh), *((f"restart {i + 1}", r) for i, r in enumerate(restarts))]
    starts += [(f"restart after a crash {i + 1}", r) for i, r in enumerate(crashed)]
    for name, run in starts:
        print(
            f"{name:<28} {run.ready_s:8.1f}s {run.cpu_s:7.1f}s {run.load:5.1f}"
            f" {run.rss_mib:6.0f}MiB {run.peak_mib:6.0f}MiB {run.kept:5d}"
        )
    if crashed:
        print("\nrestart after a crash (SIGKILL: everything rebuilt from the table), median:", end=" ")
        print(f"{statistics.median(r.ready_s for r in crashed):.1f} s (not the goal's figure)")
    restart = statistics.median(r.ready_s for r in restarts)
    rss = max(r.rss_mib for r in [fresh, *restarts, *crashed])
    print(f"\nrestart to ready after a clean shutdown (median): {restart:.1f} s,", end=" ")
    print(f"ratio to the target ({RESTART_TARGET_S:.0f} s):", end=" ")
    print(f"{restart / RESTART_TARGET_S:.2f}")
    print(f"RSS ready and idle (largest): {rss:.0f} MiB, ratio to the target ({RSS_TARGET_MIB:.0f} MiB):", end=" ")
    print(f"{rss / RSS_TARGET_MIB:.2f}")
    last = restarts[-1]
    if last.looked_up:
        print(f"RSS after {last.looked_up:,} random order lookups (point reads): {last.rss_after_mib:.0f} MiB", end=" ")
        print(f"ratio {last.rss_after_mib / RSS_TARGET_MIB:.2f}")
    met = rss <= RSS_TARGET_MIB and restart <= RESTART_TARGET_S
    print(f"P4 memory and restart: {'met' if met else 'MISSED'} ({orders:,} orders)")


async def produce_all(bootstrap: str, prefix: str, app_id: str, args: argparse.Namespace) -> tuple[float, list[str]]:
    """Seconds it took, and a sample of the order keys written."""
    changelog = await prepare(bootstrap, prefix, app_id, args.partitions)
    started = time.perf_counter()
    sample: list[str] = []
    every = max(1, args.orders // max(1, args.lookups))
    rows = records(args.orders, args.sellers, args.partitions, now(), sample, every)
    written = await produce(bootstrap, changelog, rows)
    took = time.perf_counter() - started
    print(f"produced {written:,} records to {changelog} in {took:.1f} s", flush=True)
    return took, sample


def now() -> datetime:
    return datetime.now(UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--sellers", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a start may take to get ready")
    parser.add_argument("--restarts", type=int, default=3, help="restarts on the same data dir (the median counts)")
    parser.add_argument("--crashes", type=int, default=1, help="then: killed (SIGKILL) and started again, times")
    parser.add_argument("--lookups", type=int, default=20_000, help="orders read through the web API at the end")
    parser.add_argument("--keep", type=Path, help="keep the workers' state and logs here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="solicit-memory-") as tmp:
        work = args.keep or Path(tmp)
        with local_kafka(work / "kafka") as (bootstrap, _):
            measure(bootstrap, work, args)


def measure(bootstrap: str, work: Path, args: argparse.Namespace) -> None:
    run_id = uuid.uuid4().hex[:6]
    prefix, app_id = f"mem-{run_id}.", f"mem-{run_id}"
    produced_s, sample = asyncio.run(produce_all(bootstrap, prefix, app_id, args))
    env, port = worker_env(bootstrap, prefix, app_id, args.partitions, work / "state")
    fresh = run_worker(env, port, work / "worker-fresh.log", args.timeout)
    print(f"fresh start ready in {fresh.ready_s:.1f} s, RSS {fresh.rss_mib:.0f} MiB", flush=True)
    restarts = []
    for i in range(args.restarts):
        lookups = sample if i == args.restarts - 1 and args.lookups else []  # the last one is then read at random
        restarts.append(run_worker(env, port, work / f"worker-restart-{i + 1}.log", args.timeout, lookups))
        print(f"restart {i + 1} ready in {restarts[-1].ready_s:.1f} s, RSS {restarts[-1].rss_mib:.0f} MiB", flush=True)
    crashed = []
    if args.crashes:  # one more start, killed at its end; then each start after a kill
        run_worker(env, port, work / "worker-to-crash.log", args.timeout, crash=True)
        for i in range(args.crashes):
            last = i == args.crashes - 1
            crashed.append(run_worker(env, port, work / f"worker-crashed-{i + 1}.log", args.timeout, crash=not last))
            print(f"restart after a crash {i + 1} ready in {crashed[-1].ready_s:.1f} s", flush=True)
    report(args.orders, produced_s, fresh, restarts, crashed)


if __name__ == "__main__":
    main()
