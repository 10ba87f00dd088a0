"""Dead letters are bounded (issue 9.5): a 900 KB body used to make a dead letter past the 1 MB producer limit."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from streams.deadletters import MAX_RAW_BYTES, DeadLetter

AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("raw", [b"x" * 900_000, "é" * 400_000, bytes(range(256)) * 4000])
def test_a_huge_input_makes_a_small_dead_letter_that_says_what_it_cut(raw: bytes | str) -> None:
    data = raw.encode() if isinstance(raw, str) else raw
    letter = DeadLetter.build(source="t", reason="r" * 5000, raw=raw, at=AT)
    assert len(letter.to_json()) < 200_000
    assert letter.raw_truncated
    assert letter.raw_size == len(data)
    assert letter.raw_sha256 == hashlib.sha256(data).hexdigest()
    assert data.startswith(letter.raw_bytes()[: MAX_RAW_BYTES - 3])
    assert len(letter.reason) == 1000


@pytest.mark.parametrize("raw", [b"{}", b"\xff\xfe", "plain"])
def test_a_small_input_is_kept_whole(raw: bytes | str) -> None:
    data = raw.encode() if isinstance(raw, str) else raw
    letter = DeadLetter.build(source="t", reason="r", raw=raw, at=AT)
    assert not letter.raw_truncated
    assert letter.raw_bytes() == data
    assert DeadLetter.model_validate_json(letter.to_json()) == letter
