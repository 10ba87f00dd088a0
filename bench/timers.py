"""Issue 12 P2: does a timer tick stay O(due) with a million scheduled orders, after deletes and after a restart?

    .venv/bin/python -m bench.timers [--small 10000] [--large 1000000] [--deleted 100000] [--ticks 3000]

Uses :class:`streams.dueindex.LocalDueIndex` and :class:`streams.dueindex.DueScanner` directly (no Kafka): one
partition's index holds ``--small`` entries due tomorrow or later, another ``--large``. A tick is one
:func:`streams.dueindex.collect_due` call at a fixed "now" with nothing due. Each case's ticks are interleaved with
ticks of the small index (the baseline, measured in the same run and the same state), and the ratio of the two
medians is printed against the target (<= 1.5x):

* **not due**: the large index, nothing ever deleted;
* **head deletes**: ``--deleted`` orders came due, were scheduled, fired and handled (their entries deleted, as the
  orders agent does), leaving that many tombstones at the head of the large index;
* **restart**: both indexes closed and reopened from disk, new scanners (hint at the index head). The tombstones
  are still there unless the index compacted them away (a worker also rebuilds its index on assignment).

``first µs`` is the case's first tick: the one that may walk tombstones before the hint moves past them.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from streams.dueindex import RECORD_V2, DueScanner, LocalDueIndex, collect_due, index_key_ms

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
SMALL, LARGE = 0, 1
TARGET = 1.5


@dataclass
class Tick:
    """One series of ticks, in µs."""

    median_us: float
    first_us: float


def fill(index: LocalDueIndex, partition: int, count: int, first_ms: int) -> None:
    """Rebuild ``partition``'s index as the worker does after an assignment, from ``count`` stored records due one
    second apart from ``first_ms`` on (:meth:`LocalDueIndex.rebuilding`: batched writes, flushed at the end)."""
    with index.rebuilding(partition) as build:
        for i in range(count):
            key = f"A{i % 200:03d}BENCH/111-{i:07d}-0000001".encode()
            build.add(key, RECORD_V2 + (first_ms + i * 1000).to_bytes(8, "big") + b"{}")


def delete_head(index: LocalDueIndex, scanner: DueScanner, partition: int, count: int) -> None:
    """``count`` orders due before now are scheduled, handed out, handled and deleted, as in the worker."""
    keys = [index_key_ms(NOW_MS - (count - i) * 1000, f"A{i % 200:03d}BENCH/222-{i:07d}-0000001") for i in range(count)]
    for key in keys:
        index.add(partition, key)
        scanner.scheduled(partition, key)
    for key in keys:  # the agent handled each firing: the entry goes, the scanner forgets it
        index.remove(partition, key)
        scanner.done(partition, key)


def ticker(index: LocalDueIndex, partition: int, scanner: DueScanner | None = None) -> Callable[[], float]:
    """One timed tick of ``partition`` with ``scanner`` (a new one by default), in µs."""
    used = scanner or DueScanner()

    def tick() -> float:
        start = time.perf_counter_ns()
        found = collect_due(used, index, [partition], NOW, 0.0)
        elapsed = (time.perf_counter_ns() - start) / 1000
        assert found == [], "nothing may be due in this benchmark"
        return elapsed

    return tick


def measure(case: Callable[[], float], baseline: Callable[[], float], ticks: int) -> tuple[Tick, Tick]:
    """The first tick of each, then ``ticks`` more of each, interleaved (a busy neighbour slows both alike)."""
    first_case, first_base = case(), baseline()
    pairs = [(case(), baseline()) for _ in range(ticks)]
    return (
        Tick(statistics.median(c for c, _ in pairs), first_case),
        Tick(statistics.median(b for _, b in pairs), first_base),
    )


def report(name: str, case: Tick, baseline: Tick) -> bool:
    ratio = case.median_us / baseline.median_us
    met = ratio <= TARGET
    print(
        f"{name:<40} {case.median_us:9.1f} {baseline.median_us:9.1f} {ratio:6.2f} {'met' if met else 'MISSED':>7}"
        f" {case.first_us:10,.0f}"
    )
    return met


def run(small: int, large: int, deleted: int, ticks: int, root: Path) -> bool:
    """Every case, printed; True when each met the target."""
    index = LocalDueIndex(root)
    started = time.perf_counter()
    fill(index, SMALL, small, NOW_MS + 86_400_000)
    fill(index, LARGE, large, NOW_MS + 86_400_000)
    print(f"filled {small:,} + {large:,} entries in {time.perf_counter() - started:.1f} s; {ticks:,} ticks a case\n")
    header = f"{'case (nothing due)':<40} {'median µs':>9} {f'{small:,} µs':>9} {'ratio':>6} {'<=1.5x':>7}"
    print(f"{header} {'first µs':>10}")
    results = [report(f"{large:,} scheduled", *measure(ticker(index, LARGE), ticker(index, SMALL), ticks))]

    scanner = DueScanner()
    collect_due(scanner, index, [LARGE], NOW, 0.0)
    started = time.perf_counter()
    delete_head(index, scanner, LARGE, deleted)
    took = time.perf_counter() - started
    case = measure(ticker(index, LARGE, scanner), ticker(index, SMALL), ticks)
    results.append(report(f"{large:,} after {deleted:,} head deletes", *case))

    index.close()
    gc.collect()  # an iterator still referenced keeps its store open
    reopened = LocalDueIndex(root)
    case = measure(ticker(reopened, LARGE), ticker(reopened, SMALL), ticks)
    results.append(report(f"{large:,} after deletes and a restart", *case))
    reopened.close()
    print(f"\n{deleted:,} schedules + deletes: {took:.2f} s ({took / deleted * 1e6:.1f} µs each, compaction included)")
    return all(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--deleted", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=3_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="solicit-timers-") as tmp:
        met = run(args.small, args.large, args.deleted, args.ticks, Path(tmp) / "due-index")
    print(f"P2 timers: {'met' if met else 'MISSED'} (each case <= {TARGET}x the {args.small:,}-entry tick)")


if __name__ == "__main__":
    main()
