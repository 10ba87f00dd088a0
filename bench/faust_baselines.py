"""What ``bench/ingest.py`` measures the worker against (issue 12, P1): bare Faust agents, and a design prototype.

    python -m bench.faust_baselines a|b|d --topic TOPIC --count N

* ``a``: a Faust agent that iterates ``stream.events()`` and does nothing else (Faust acknowledges each event);
* ``b``: the same, plus ``json.loads(value)`` and one write to a RocksDB table with a changelog (``table[key] =
  value``), declared exactly as the worker's ``orders`` table (:func:`streams.app.build_table`);
* ``d``: not a baseline but the design docs/benchmarks.md proposes, as a prototype: the worker's own
  :class:`streams.orders.OrdersProcessor` in a plain aiokafka loop, a batch at a time (:mod:`bench.batched`).

Configured like ``solicit worker``: the same ``SOLICIT_*`` settings from the environment, the same Faust options
(:func:`streams.app.faust_options`, without the web server), the same logging and no spinner. When the agent has
processed ``N`` events it prints one JSON line, ``{"variant", "count", "first", "last"}`` (``time.time()`` of the
first event and of the ``N``-th, after it was processed), and keeps running until it is stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.settings import Settings

VARIANTS = ("a", "b", "d")


@dataclass
class Counter:
    """Counts processed events; reports the first and the ``count``-th event's time once, on ``out``."""

    variant: str
    count: int
    out: Callable[[str], None] = print
    seen: int = 0
    first: float = 0.0

    def processed(self) -> None:
        self.seen += 1
        if self.seen == 1:
            self.first = time.time()
        if self.seen == self.count:
            report = {"variant": self.variant, "count": self.count, "first": self.first, "last": time.time()}
            self.out(json.dumps(report))


def build_baseline(settings: Settings, variant: str, topic: str, count: int) -> Any:
    """The Faust app of ``variant`` reading ``topic``, with the worker's settings."""
    import faust

    from streams.app import build_table, faust_options

    settings.worker.state_dir().mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.worker.app_id, **(faust_options(settings) | {"web_enabled": False}))
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(topic, partitions=settings.kafka.partitions, **raw)
    counter = Counter(variant, count, out=lambda line: print(line, flush=True))
    if variant == "a":

        @app.agent(source, name="bare")
        async def bare(stream: Any) -> None:
            async for _event in stream.events():
                counter.processed()

    else:
        table = build_table(app, settings)

        @app.agent(source, name="stored")
        async def stored(stream: Any) -> None:
            async for event in stream.events():
                json.loads(event.value)
                table[event.key] = event.value
                counter.processed()

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--topic", required=True, help="the input topic (already created)")
    parser.add_argument("--count", type=int, required=True, help="report once this many events were processed")
    args = parser.parse_args(argv)
    from streams.cli.shell import load_settings
    from streams.cli.worker import faust_worker

    settings = load_settings()  # and logging, as the worker's
    if args.variant == "d":
        import asyncio

        from bench.batched import run_batched

        asyncio.run(run_batched(settings, args.topic, Counter("d", args.count, out=lambda s: print(s, flush=True))))
        return 0
    app = build_baseline(settings, args.variant, args.topic, args.count)
    faust_worker(app, settings.log_level).execute_from_commandline()  # runs until SIGTERM, then exits the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
