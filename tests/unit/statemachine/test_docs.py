"""docs/state-machine.md shows the transition table the code enforces."""

from __future__ import annotations

from pathlib import Path

from statemachine.machine import TRANSITIONS

DOC = Path(__file__).resolve().parents[3] / "docs" / "state-machine.md"


def test_the_documented_transition_table_is_the_code_table() -> None:
    text = DOC.read_text()
    block = text.split("<!-- generated from")[1].split("<!-- end generated -->")[0]
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    expected = [f"| `{t.value}` | {', '.join(s.value for s in src)} | {d.value} |" for t, src, d in TRANSITIONS]
    assert rows == expected
