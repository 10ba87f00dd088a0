"""At-least-once without "logged and acknowledged": retry what can pass, stop the worker when it cannot, and
acknowledge an input only once everything it produced is confirmed by Kafka (issues 9.6 and 9.7).

* :func:`handle_with_retries`: a failure while handling one record (a RocksDB or producer error) is retried with a
  backoff; if it persists, the worker is stopped. Kafka then delivers the record again, to this worker after its
  restart or to another one. (Input that is simply bad never gets here: the processors dead-letter it.)
* :func:`ack_when_delivered`: the record's offset may be committed only after every changelog write and topic send
  it caused was acknowledged; a failed one stops the worker before the commit.

Faust's own commit path flushes the producer but ignores delivery errors, so this module does the check itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

EXIT_TRANSIENT = 75
"""The worker's exit code when it stops so that Kafka redelivers (EX_TEMPFAIL): a supervisor should restart it."""

RETRY_DELAYS = (0.2, 1.0, 5.0)
"""Pauses between the attempts at one record (four attempts in all)."""

Fail = Callable[[str], Any]


def stop_worker(reason: str) -> NoReturn:
    """Stop this process at once, without committing anything more: unacknowledged records come back."""
    log.critical("stopping the worker so Kafka delivers the unacknowledged records again: %s", reason)
    logging.shutdown()
    os._exit(EXIT_TRANSIENT)


async def handle_with_retries(
    handle: Callable[[], Awaitable[T]],
    *,
    what: str,
    fail: Fail = stop_worker,
    delays: Sequence[float] = RETRY_DELAYS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """What ``handle()`` returns; on errors, retry after each of ``delays``, then ``fail`` (which does not return)."""
    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            return await handle()
        except Exception as exc:
            if delay is None:
                fail(f"{what} failed {attempt} times; last: {type(exc).__name__}: {exc}")
                raise
            log.warning(
                "%s failed (%s: %s); attempt %d again in %.1f s", what, type(exc).__name__, exc, attempt + 1, delay
            )
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def ack_when_delivered(
    deliveries: Sequence[Awaitable[Any]], ack: Callable[[], object], *, what: str, fail: Fail = stop_worker
) -> None:
    """Call ``ack`` once every delivery succeeded; ``fail`` if one did not (the input is then not acknowledged)."""
    if not deliveries:
        ack()
        return
    gathered = asyncio.gather(*deliveries)

    def settled(future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            fail(f"the outputs of {what} were cancelled before Kafka confirmed them")
        elif future.exception() is not None:
            exc = future.exception()
            fail(f"an output of {what} was not delivered: {type(exc).__name__}: {exc}")
        else:
            ack()

    gathered.add_done_callback(settled)


class OffsetGuard:
    """Make sure the orders agent sees every offset of its partitions, in order, from the committed one on.

    Faust can hand a partition's stream records from past the group's committed offset after a rebalance (seen in the
    chaos suite: a worker assigned a partition during a burst of kills started at the log's end, and the offsets in
    between were committed unprocessed). The guard learns the committed offset of each newly assigned partition and
    tells the agent when a record arrives ahead of the next expected one: the agent then seeks back instead of
    processing it, so nothing is ever skipped."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def assigned(self, committed: Mapping[tuple[str, int], int | None]) -> None:
        """The committed offsets of newly assigned partitions (None: the group has none, accept the first record)."""
        for tp, offset in committed.items():
            if offset is None:
                self._next.pop(tp, None)
            else:
                self._next[tp] = offset

    def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            self._next.pop(tp, None)

    def ahead(self, topic: str, partition: int, offset: int) -> int | None:
        """The offset to seek back to when ``offset`` skips records, else None (process it)."""
        expected = self._next.get((topic, partition))
        if expected is not None and offset > expected:
            return expected
        return None

    def processed(self, topic: str, partition: int, offset: int) -> None:
        tp = (topic, partition)
        self._next[tp] = max(self._next.get(tp, offset + 1), offset + 1)
