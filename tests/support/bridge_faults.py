"""Test-only wrapper: ``python -m tests.support.bridge_faults FAULT <solicit bridge options>``.

Runs ``solicit bridge`` exactly as the CLI does (same parser, same ``execute``), with one fault injected through
the bridge's ``after_produce`` seam. That seam runs after Kafka acknowledged a batch and before the batch is
deleted from SQS. The production path reads no fault switch: only this module sets the seam.

Faults:

* ``die-after-produce``: ``os._exit(1)`` at the first acknowledged batch. No finally block runs, the producer is
  not closed, nothing is deleted: it behaves like SIGKILL or an OOM kill at the worst moment.
* ``hold-after-produce SECONDS``: every acknowledged batch waits SECONDS before its delete and announces it on
  stderr, so a test can signal the process exactly while batches are in flight.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from connectors.sqs import SqsMessage
from streams.bridge import AfterProduce
from streams.cli import build_parser
from streams.cli.bridge import execute

DYING = "bridge_faults: dying after the produce ack"
HOLDING = "bridge_faults: holding an acknowledged batch"


async def _die(messages: Sequence[SqsMessage]) -> None:
    print(f"{DYING} of {len(messages)} message(s)", file=sys.stderr, flush=True)
    os._exit(1)


def _hold(seconds: float) -> AfterProduce:
    async def hold(messages: Sequence[SqsMessage]) -> None:
        print(f"{HOLDING} of {len(messages)} message(s) for {seconds:g} s", file=sys.stderr, flush=True)
        await asyncio.sleep(seconds)

    return hold


def main(argv: Sequence[str]) -> int:
    fault, *rest = argv
    hook: AfterProduce
    if fault == "die-after-produce":
        hook = _die
    elif fault == "hold-after-produce":
        seconds, *rest = rest
        hook = _hold(float(seconds))
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    return execute(build_parser().parse_args(["bridge", *rest]), after_produce=hook)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
