"""P1 ingest (issue 12): one worker process against bare Faust agents, on the same broker and the same input.

    .venv/bin/python -m bench.ingest [--orders 20000] [--partitions 4] [--runs 3] [--variants a b c d]
                                     [--log-level warning] [--profile DIR]

Each variant reads N Shipped notifications (windows a month away, so nothing is sent) from a fresh, N-record
``order-changes`` topic of ``--partitions`` partitions (all the worker's topics made fresh per variant and run):

* ``a``: a bare Faust agent iterating ``stream.events()`` (``bench/faust_baselines.py``);
* ``b``: a bare Faust agent doing ``json.loads`` and one RocksDB table write (with its changelog) per record;
* ``c``: the real ``solicit worker`` (parse, apply, stage, emit the outcome, write the record after it);
* ``d`` (a reference, not part of P1's verdict): the worker's processor in a batched aiokafka loop without Faust,
  the design docs/benchmarks.md proposes (``bench/batched.py``).

Every variant is its own process, started the same way, with the same ``SOLICIT_*`` environment and Faust settings.
Measured the same way for each: from the first record processed to the ``N``-th, in wall time, and the process's
CPU time over that interval (sampled from ``/proc/<pid>/stat``) for the cores it used. The bare agents report the two
times themselves; for the worker they are the Kafka timestamps of the first and the ``N``-th ``state_changed``
outcome it produced. Variants are interleaved (a, b, c, d, a, ...) so that a slow moment of the machine hits all.
Prints min/median/max records/s, cores and CPU µs per record for each variant, the ratios of each run (c/a, c/b;
d/a, d/b, d/c) and the P1 verdict (on the medians of c/a and c/b, and of c's rate).

``--profile DIR`` adds one more run of each variant under ``py-spy record`` (raw collapsed stacks in
``DIR/<variant>.txt``; its rate is not part of the figures; py-spy 0.3.14: 0.4.3 cannot read this interpreter).
Uses ``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts a broker from the cached jars.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.crypto import generate_key
from devstack.demo.scenario import _notification
from devstack.demo.stack import ChildProcess, local_kafka, solicit_argv
from devstack.ports import find_free_ports
from streams.settings import KafkaSettings
from streams.topic_admin import ensure_topics
from streams.topics import ORDER_CHANGES, OUTCOMES

VARIANTS = {
    "a": "bare Faust agent: stream.events()",
    "b": "bare Faust agent: json.loads + table write",
    "c": "solicit worker",
    "d": "prototype: processor in a batched loop",
}
GOALS = {"c/a": 0.8, "c/b": 1.0, "c": 5000.0}
"""P1: the worker at least 0.8x (a), 1.0x (b), and 5,000 records/s."""
TIMEOUT = 600.0
"""Seconds a variant may take to process the N records (start-up included) before the run fails."""


@dataclass(frozen=True)
class Measurement:
    """One variant's run: N records between ``first`` and ``last`` (wall clock), ``cpu`` seconds of its process."""

    records: int
    first: float
    last: float
    cpu: float
    system: float
    """Of ``cpu``, the seconds spent in the kernel (socket writes and reads, file I/O)."""
    rss_mib: float

    @property
    def seconds(self) -> float:
        return max(self.last - self.first, 1e-6)

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cores(self) -> float:
        return self.cpu / self.seconds

    @property
    def cpu_per_record(self) -> float:
        """CPU microseconds per record (less sensitive than the rate to what else runs on the machine)."""
        return self.cpu / self.records * 1e6


@dataclass
class CpuSampler:
    """Samples a process's CPU time (user + system, all threads) from ``/proc/<pid>/stat`` every ``interval``."""

    pid: int
    interval: float = 0.05
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    """(wall time, CPU seconds, of which in the kernel)"""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            cpu = process_cpu(self.pid)
            if cpu is None:
                return
            self.samples.append((time.time(), *cpu))
            self._stop.wait(self.interval)

    def at(self, moment: float, column: int = 1) -> float:
        """The process's CPU seconds (``column`` 2: kernel CPU seconds) at wall time ``moment``, interpolated
        between the two samples around it."""
        before = [s for s in self.samples if s[0] <= moment] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= moment] or self.samples[-1:]
        t0, c0, t1, c1 = before[-1][0], before[-1][column], after[0][0], after[0][column]
        return c0 if t1 <= t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)

    def between(self, start: float, end: float) -> tuple[float, float]:
        """CPU seconds and kernel CPU seconds used from ``start`` to ``end``."""
        return self.at(end) - self.at(start), self.at(end, 2) - self.at(start, 2)


def process_cpu(pid: int) -> tuple[float, float] | None:
    """CPU seconds (utime + stime) and kernel CPU seconds (stime) of ``pid`` so far; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": fields 3.. of proc(5)
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, int(fields[12]) / tick


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def produce(bootstrap: str, topic: str, count: int) -> None:
    """``count`` Shipped notifications of 50 sellers, windows a month away (nothing becomes due)."""
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(count):
            seller = f"A{i % 50:02d}BENCHSELLER"
            order = f"{100 + i % 50:03d}-{i:07d}-0000001"
            body = _notification(
                now - timedelta(days=1), seller, order, "ATVPDKIKX0DER", "Shipped", edd=now + timedelta(days=30)
            )
            futures.append(
                await producer.send(topic, key=f"{seller}/{order}".encode(), value=json.dumps(body).encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def outcomes_written(bootstrap: str, topic: str, partitions: int) -> int:
    """How many records ``topic`` holds (end offsets: the worker's outcomes are its only records)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def outcome_times(bootstrap: str, topic: str, partitions: int, count: int) -> list[float]:
    """The Kafka timestamps (s) of the ``state_changed`` outcomes on ``topic``, sorted (read once all are there)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        times: list[float] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                times += [m.timestamp / 1000 for m in messages if b'"state_changed"' in (m.value or b"")]
        return sorted(times)[:count]
    finally:
        await consumer.stop()


@dataclass
class Bench:
    """One broker, one temp dir; each :meth:`measure` is one variant on fresh topics."""

    bootstrap: str
    root: Path
    orders: int
    partitions: int
    log_level: str = "warning"

    async def fresh_input(self) -> str:
        """A topic prefix whose topics were just created, its ``order-changes`` holding the N notifications."""
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        kafka = KafkaSettings(bootstrap_servers=self.bootstrap, partitions=self.partitions, topic_prefix=prefix)
        await ensure_topics(kafka)
        await produce(self.bootstrap, ORDER_CHANGES.named(prefix), self.orders)
        return prefix

    def environment(self, prefix: str) -> dict[str, str]:
        """The same ``SOLICIT_*`` settings for every variant (only the names differ from run to run)."""
        kept = {k: v for k, v in os.environ.items() if not k.startswith("SOLICIT_")}
        return kept | {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "SOLICIT_KAFKA__TOPIC_PREFIX": prefix,
            "SOLICIT_KAFKA__PARTITIONS": str(self.partitions),
            "SOLICIT_WORKER__APP_ID": f"{prefix}app",
            "SOLICIT_WORKER__DATA_DIR": str(self.root / prefix / "state"),
            "SOLICIT_WORKER__ID": "bench",
            "SOLICIT_WORKER__STANDBY_REPLICAS": "0",
            "SOLICIT_WEB__PORT": str(find_free_ports(1)[0]),
            "SOLICIT_SECRET_KEY": generate_key(),
            "SOLICIT_LOG_LEVEL": self.log_level,
        }

    def argv(self, variant: str, prefix: str) -> list[str]:
        if variant == "c":
            return solicit_argv("worker")
        topic = ORDER_CHANGES.named(prefix)
        return [sys.executable, "-m", "bench.faust_baselines", variant, "--topic", topic, "--count", str(self.orders)]

    async def measure(self, variant: str, profile: Path | None = None) -> Measurement:
        prefix = await self.fresh_input()
        log = self.root / prefix / f"{variant}.log"
        child = ChildProcess(variant, self.argv(variant, prefix), self.environment(prefix), log).start()
        sampler = CpuSampler(child.pid).start()
        spy = _py_spy(child.pid, profile / f"{variant}.txt") if profile is not None else None
        try:
            first, last = await self._wait(variant, prefix, child)
            memory = rss_mib(child.pid)
            await asyncio.sleep(0.2)  # a CPU sample after the last record
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                spy.wait()
            sampler.stop()
            child.stop()
        return Measurement(self.orders, first, last, *sampler.between(first, last), memory)

    async def _wait(self, variant: str, prefix: str, child: ChildProcess) -> tuple[float, float]:
        """Wall times of the first and the N-th record processed, once the variant has processed N."""
        deadline = time.monotonic() + TIMEOUT
        outcomes = OUTCOMES.named(prefix)
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{variant} exited:\n{child.log_tail()}")
            if variant != "c":
                for line in child.log_path.read_text(errors="replace").splitlines():
                    if line.startswith('{"variant"'):
                        report = json.loads(line)
                        return report["first"], report["last"]
            elif await outcomes_written(self.bootstrap, outcomes, self.partitions) >= self.orders:
                times = await outcome_times(self.bootstrap, outcomes, self.partitions, self.orders)
                if len(times) < self.orders:
                    raise RuntimeError(f"only {len(times)} state changes among the outcomes:\n{child.log_tail()}")
                return times[0], times[-1]
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{variant} did not process {self.orders} records in {TIMEOUT:.0f} s:\n{child.log_tail()}")


def _py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking", "-o", str(output)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def describe(m: Measurement) -> str:
    return (
        f"{m.rate:8,.0f} records/s in {m.seconds:.2f} s, {m.cores:.2f} cores,"
        f" {m.cpu_per_record:.0f} µs CPU/record ({m.system / max(m.cpu, 1e-9):.0%} in the kernel)"
    )


def report(results: dict[str, list[Measurement]]) -> list[str]:
    """The table, the per-run ratios and the P1 verdict, as printed lines."""
    lines = [f"{'variant':<46} {'records/s min / median / max':>28}  {'cores':>18}  {'CPU µs/record':>19}"]
    for variant, runs in results.items():
        rate, cores = spread([m.rate for m in runs]), spread([m.cores for m in runs])
        cpu = spread([m.cpu_per_record for m in runs])
        lines.append(
            f"({variant}) {VARIANTS[variant]:<42} {rate[0]:>8,.0f} / {rate[1]:>7,.0f} / {rate[2]:>7,.0f}"
            f"  {cores[0]:.2f} / {cores[1]:.2f} / {cores[2]:.2f}  {cpu[0]:>5.0f} / {cpu[1]:>5.0f} / {cpu[2]:>5.0f}"
        )
    memory = [m.rss_mib for m in results.get("c", [])]
    if memory:
        lines.append(f"worker resident memory at the end: {statistics.median(memory):.0f} MiB")
    lines += ratio_lines(results, "d", ("a", "b", "c"))[0]
    if "c" not in results:
        return lines
    printed, ratios = ratio_lines(results, "c", ("a", "b"))
    verdict = [
        f"{name} >= {GOALS[name]}? {'yes' if value >= GOALS[name] else 'no'} ({value:.2f})"
        for name, value in ratios.items()
    ]
    median = statistics.median(m.rate for m in results["c"])
    verdict.append(f"c >= {GOALS['c']:,.0f}/s? {'yes' if median >= GOALS['c'] else 'no'} ({median:,.0f}/s)")
    met = all(value >= GOALS[name] for name, value in ratios.items()) and median >= GOALS["c"]
    return [*lines, *printed, f"P1 ingest: {'met' if met else 'MISSED'} (" + "; ".join(verdict) + ")"]


def ratio_lines(
    results: dict[str, list[Measurement]], top: str, bases: Sequence[str]
) -> tuple[list[str], dict[str, float]]:
    """``top``'s rate over each of ``bases``' in the same run (runs interleave the variants), and their medians."""
    lines, ratios = [], {}
    for base in bases:
        if top in results and base in results:
            per_run = [t.rate / b.rate for t, b in zip(results[top], results[base], strict=False)]
            name = f"{top}/{base}"
            ratios[name] = statistics.median(per_run)
            lines.append(f"{name} per run: {' '.join(f'{r:.2f}' for r in per_run)} (median {ratios[name]:.2f})")
    return lines, ratios


async def main(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="solicit-ingest-") as tmp,
        local_kafka(Path(tmp) / "kafka") as (bootstrap, _),
    ):
        bench = Bench(bootstrap, Path(tmp), args.orders, args.partitions, args.log_level)
        results: dict[str, list[Measurement]] = {v: [] for v in args.variants}
        for run in range(1, args.runs + 1):
            for variant in args.variants:
                measured = await bench.measure(variant)
                results[variant].append(measured)
                print(f"run {run} ({variant}): {describe(measured)}", flush=True)
        if args.runs:
            print("\n".join(report(results)))
        if args.profile is not None:
            for variant in args.variants:
                measured = await bench.measure(variant, profile=args.profile)
                print(f"profiled ({variant}): {describe(measured)} -> {args.profile / variant}.txt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--log-level", default="warning", help="SOLICIT_LOG_LEVEL of every variant")
    parser.add_argument("--profile", type=Path, default=None, help="also record a py-spy profile of each variant here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
