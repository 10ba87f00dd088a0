"""Retry, stop, and acknowledge only what Kafka confirmed (issues 9.6 and 9.7)."""

from __future__ import annotations

import asyncio

import pytest

from streams.command_feed import OffsetTracker
from streams.delivery import ack_when_delivered, handle_with_retries


class Failed(Exception):
    pass


def recorder() -> tuple[list[str], object]:
    reasons: list[str] = []

    def fail(reason: str) -> None:
        reasons.append(reason)

    return reasons, fail


async def no_sleep(_seconds: float) -> None:
    return None


async def test_a_transient_error_is_retried_and_the_record_handled() -> None:
    attempts = 0

    async def handle() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OSError("rocksdb: resource busy")
        return "handled"

    reasons, fail = recorder()
    assert await handle_with_retries(handle, what="r", fail=fail, sleep=no_sleep) == "handled"  # type: ignore[arg-type]
    assert attempts == 3 and reasons == []


async def test_a_persistent_error_stops_the_worker_instead_of_acknowledging() -> None:
    async def handle() -> str:
        raise OSError("producer buffer full")

    reasons, fail = recorder()
    with pytest.raises(OSError, match="buffer"):
        await handle_with_retries(handle, what="t[1]@7", fail=fail, delays=(0, 0), sleep=no_sleep)  # type: ignore[arg-type]
    assert reasons == ["t[1]@7 failed 3 times; last: OSError: producer buffer full"]


async def test_the_input_is_acknowledged_only_after_every_output_is_delivered() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    acked: list[bool] = []
    reasons, fail = recorder()
    ack_when_delivered([first, second], lambda: acked.append(True), what="r", fail=fail)  # type: ignore[arg-type]
    first.set_result(None)
    await asyncio.sleep(0)
    assert acked == []
    second.set_result(None)
    await asyncio.sleep(0.01)
    assert acked == [True] and reasons == []


async def test_a_lost_output_stops_the_worker_and_the_input_is_not_acknowledged() -> None:
    lost = asyncio.get_running_loop().create_future()
    acked: list[bool] = []
    reasons, fail = recorder()
    ack_when_delivered([lost], lambda: acked.append(True), what="r", fail=fail)  # type: ignore[arg-type]
    lost.set_exception(Failed("NotEnoughReplicas"))
    await asyncio.sleep(0.01)
    assert acked == []
    assert reasons == ["an output of r was not delivered: Failed: NotEnoughReplicas"]


def test_nothing_to_deliver_is_acknowledged_at_once() -> None:
    acked: list[bool] = []
    ack_when_delivered([], lambda: acked.append(True), what="r")
    assert acked == [True]


def test_the_committed_offset_stays_at_the_oldest_unsettled_command() -> None:
    # Issue 9.8: commands were acknowledged when queued, so a crash lost them until their leases ran out.
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.read(0, offset)
    tracker.read(1, 5)
    tracker.settled((0, 11))
    assert tracker.to_commit() == {0: 10, 1: 5}
    tracker.committed({0: 10, 1: 5})
    tracker.settled((0, 10))
    assert tracker.to_commit() == {0: 12}
    tracker.settled((0, 12))
    tracker.settled((1, 5))
    assert tracker.to_commit() == {0: 13, 1: 6}
    tracker.forget({0})
    tracker.settled((0, 99))  # a late settle for a partition that moved away is ignored
    assert tracker.committable(0) is None
    assert tracker.unsettled() == 0
