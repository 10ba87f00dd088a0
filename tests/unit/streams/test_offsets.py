"""Offsets are committed only past records that were processed (issue 9, found by the chaos suite).

Faust skipped and acknowledged buffered events during rebalances, and a partition's stream could start past the
group's committed offset; either way the next commit moved past orders nobody processed (78 lost in a CI run)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust.streams
import pytest
from faust.events import Event
from faust.transport.consumer import Consumer

import streams.app
from streams.app import acknowledge, committable_offset, harden_faust
from streams.delivery import OffsetGuard

TP = ("order-changes", 3)


def test_a_record_ahead_of_the_committed_offset_sends_the_agent_back() -> None:
    guard = OffsetGuard()
    guard.assigned({TP: 10})
    assert guard.ahead(*TP, 15) == 10
    assert guard.ahead(*TP, 10) is None


def test_the_expected_offset_follows_what_was_processed() -> None:
    guard = OffsetGuard()
    guard.assigned({TP: 10})
    guard.processed(*TP, 10)
    assert guard.ahead(*TP, 11) is None
    assert guard.ahead(*TP, 12) == 11


def test_a_record_read_again_is_processed_again_and_does_not_move_the_mark_back() -> None:
    guard = OffsetGuard()
    guard.assigned({TP: 10})
    for offset in (10, 11, 12):
        guard.processed(*TP, offset)
    assert guard.ahead(*TP, 11) is None  # at least once: a redelivered record is handled again
    guard.processed(*TP, 11)
    assert guard.ahead(*TP, 14) == 13


def test_without_a_committed_offset_the_first_record_is_accepted() -> None:
    guard = OffsetGuard()
    guard.assigned({TP: None})
    assert guard.ahead(*TP, 500) is None
    guard.processed(*TP, 500)
    assert guard.ahead(*TP, 502) == 501


def test_a_revoked_partition_is_forgotten() -> None:
    guard = OffsetGuard()
    guard.assigned({TP: 10})
    guard.revoked([TP])
    assert guard.ahead(*TP, 99) is None


class RecordingMessage:
    def __init__(self) -> None:
        self.acks = 0

    def ack(self, consumer: Any) -> bool:
        self.acks += 1
        return True


def test_faust_cannot_acknowledge_an_event_we_did_not_finish() -> None:
    harden_faust()
    message = RecordingMessage()
    event = Event(SimpleNamespace(consumer=object()), None, None, {}, message)  # type: ignore[arg-type]
    assert event.ack() is False  # what Faust's stream does to events it skips during a rebalance
    assert message.acks == 0
    acknowledge(event)
    assert message.acks == 1


def test_the_accelerated_stream_iterator_never_acknowledges_by_itself() -> None:
    harden_faust()
    accelerated = faust.streams._CStreamIterator  # type: ignore[attr-defined]
    if accelerated is None:
        pytest.fail("faust's Cython extension is expected (faust-streaming wheels ship it)")
    assert accelerated.__name__ == "NoImplicitAcks"


async def test_a_gap_in_offsets_stops_the_worker_instead_of_counting_as_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harden_faust()
    reasons: list[str] = []
    monkeypatch.setattr(streams.app, "stop_worker", reasons.append)
    await Consumer._add_gap(object(), SimpleNamespace(topic="order-changes", partition=3), 10, 14)  # type: ignore[arg-type]
    assert reasons == ["records 10..13 of order-changes[3] were skipped by the client"]


def test_an_offset_acknowledged_out_of_order_is_not_committed_past_the_one_in_flight() -> None:
    # 100 is in flight (its record write not confirmed), 101 had no outputs and was acknowledged at once.
    # Faust's own rule (min(acked) - committed > 1) committed 102 here and lost 100 in a crash.
    acked, index = [101], {101}
    assert committable_offset(acked, index, committed=100) is None
    acked.append(100)
    index.add(100)
    assert committable_offset(acked, index, committed=100) == 102
    assert acked == [] and index == set()


def test_only_the_run_starting_at_the_committed_offset_is_committed() -> None:
    acked, index = [103, 100, 101, 105], {100, 101, 103, 105}
    assert committable_offset(acked, index, committed=100) == 102
    assert acked == [103, 105] and index == {103, 105}


def test_offsets_acknowledged_again_after_a_replay_are_dropped() -> None:
    acked, index = [97, 98, 100], {97, 98, 100}
    assert committable_offset(acked, index, committed=100) == 101
    assert acked == [] and index == set()


def test_nothing_is_committed_before_the_partition_is_anchored() -> None:
    acked, index = [5, 6], {5, 6}
    assert committable_offset(acked, index, committed=None) is None
    assert committable_offset(acked, index, committed=0) is None  # offset 0 is a real position, not "unknown"
    assert committable_offset(acked, index, committed=5) == 7


def test_faust_commits_through_our_rule() -> None:
    harden_faust()
    consumer = SimpleNamespace(_acked={TP: [11]}, _acked_index={TP: {11}}, _committed_offset={TP: 10})
    assert Consumer._new_offset(consumer, TP) is None  # type: ignore[arg-type]
