"""``make bench``: issue 12's goals P1-P5, one after the other, each printing its ratio against a baseline measured
in the same run (never a timed assertion). ``BENCH_ARGS=--quick`` runs smaller sizes (minutes instead of ~half an
hour); the figures in docs/benchmarks.md come from the full sizes.

    .venv/bin/python -m bench.run_all [--quick] [--only P1 P3]

Each benchmark is its own process (a fresh interpreter and its own broker or sandbox), so one cannot slow the next.
The last lines are the goals' verdicts, collected from each benchmark's output.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

FULL: dict[str, list[str]] = {
    "P1": ["bench.ingest", "--runs", "3"],
    "P2": ["bench.timers"],
    "P3": ["bench.sending"],
    "P4": ["bench.memory", "--orders", "1000000"],
    "P5": ["bench.pressure"],
}
QUICK: dict[str, list[str]] = {
    "P1": ["bench.ingest", "--runs", "1"],
    "P2": ["bench.timers", "--large", "200000", "--deleted", "20000", "--ticks", "500"],
    "P3": ["bench.sending", "--no-baselines"],
    "P4": ["bench.memory", "--orders", "100000", "--restarts", "1"],
    "P5": ["bench.pressure", "--days", "10"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run of every goal)")
    parser.add_argument("--only", nargs="+", choices=sorted(FULL), default=sorted(FULL), metavar="GOAL")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    verdicts: list[str] = []
    failed: list[str] = []
    for goal in args.only:
        command = [sys.executable, "-m", *plan[goal]]
        print(f"=== {goal}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        sys.stdout.write(run.stdout)
        sys.stderr.write(run.stderr[-4000:] if run.returncode else "")
        verdicts.extend(line for line in run.stdout.splitlines() if line.startswith(f"{goal} "))
        if run.returncode:
            failed.append(f"{goal} (exit {run.returncode})")
        print(f"=== {goal} took {time.monotonic() - started:.0f} s", flush=True)
    print("\n".join(["", "=== goals", *verdicts, *(f"{name}: the benchmark failed" for name in failed)]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
