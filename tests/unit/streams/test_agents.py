"""The timer's publishing survives a send error (issue 9.13: it used to crash the worker)."""

from __future__ import annotations

import pytest

from streams.agents import publish_firings
from streams.dueindex import DueEntry, DueFiring, index_key_ms


class FlakySink:
    def __init__(self, fail_after: int) -> None:
        self.fail_after = fail_after
        self.sent: list[tuple[DueFiring, int]] = []

    async def firing(self, firing: DueFiring, partition: int) -> None:
        if len(self.sent) >= self.fail_after:
            raise ConnectionError("broker gone")
        self.sent.append((firing, partition))


async def test_a_send_error_stops_the_tick_not_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    batch = [(2, DueEntry.parse(index_key_ms(1000 + i, f"S/{i}"))) for i in range(5)]
    sink = FlakySink(fail_after=2)
    assert await publish_firings(sink, batch) == 2
    assert [(f.order_id, p) for f, p in sink.sent] == [("0", 2), ("1", 2)]
    assert "they come again" in caplog.text
