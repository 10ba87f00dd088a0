"""docs/topics.md is the topics' contract: a section per topic, and every fields table equal to its model's fields.

A fields table is a line ``Model: `dotted.path.ClassName` `` followed by a markdown table whose header row is
``| Field | Type | Meaning |`` and whose first column names each field (in backticks), in the model's order.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel, create_model

from streams.dueindex import DueFiring
from streams.topics import ALL_TOPICS, TopicSpec

ROOT = Path(__file__).resolve().parents[3]
TOPICS_DOC = ROOT / "docs" / "topics.md"
README = ROOT / "README.md"

MODEL_LINE = re.compile(r"^Model: `(?P<path>[A-Za-z_][\w.]*\.[A-Za-z_]\w*)`\s*$")
HEADER = "| Field | Type | Meaning |"
SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|){3}$")

DOCUMENTED_MODELS = {
    "statemachine.notification.Notification",
    "streams.dueindex.DueFiring",
    "statemachine.events.SendStarted",
    "statemachine.events.SendResult",
    "statemachine.events.SendCommand",
    "statemachine.events.StateChanged",
    "streams.outcomes.SendAttempt",
    "streams.deadletters.DeadLetter",
    "streams.registry.SellerRecord",
    "streams.alerts.Alert",
}
"""Every value model of a topic; each needs its fields table."""


@dataclass(frozen=True)
class FieldsTable:
    """One ``Model:`` line and the field names of the table after it (``problem`` when there is no such table)."""

    model: str
    line: int
    fields: tuple[str, ...]
    problem: str = ""


def fields_tables(text: str) -> list[FieldsTable]:
    """Every fields table of a markdown text, in order."""
    lines = text.splitlines()
    tables: list[FieldsTable] = []
    for number, line in enumerate(lines, start=1):
        match = MODEL_LINE.match(line)
        if match is None:
            continue
        rest = lines[number:]
        while rest and not rest[0].strip():
            rest = rest[1:]
        if len(rest) < 2 or rest[0].strip() != HEADER or not SEPARATOR.match(rest[1].strip()):
            problem = f"line {number}: not followed by a table with the header {HEADER!r}"
            tables.append(FieldsTable(match["path"], number, (), problem))
            continue
        fields: list[str] = []
        for row in rest[2:]:
            if not row.startswith("|"):
                break
            fields.append(row.split("|")[1].strip().strip("`"))
        tables.append(FieldsTable(match["path"], number, tuple(fields)))
    return tables


def model_class(path: str) -> type[BaseModel]:
    module, _, name = path.rpartition(".")
    found = getattr(importlib.import_module(module), name)
    assert isinstance(found, type) and issubclass(found, BaseModel), f"{path} is not a pydantic model"
    return found


def check_table(table: FieldsTable, model: type[BaseModel]) -> None:
    """The table lists exactly the model's fields, in the model's order."""
    assert not table.problem, table.problem
    expected = tuple(model.model_fields)
    missing = [name for name in expected if name not in table.fields]
    unknown = [name for name in table.fields if name not in expected]
    assert table.fields == expected, (
        f"docs/topics.md line {table.line}, {table.model}: missing {missing}, not in the model {unknown}, "
        f"documented order {list(table.fields)}, model order {list(expected)}"
    )


TABLES = fields_tables(TOPICS_DOC.read_text(encoding="utf-8"))


def test_every_topic_value_model_has_one_fields_table() -> None:
    documented = [table.model for table in TABLES]
    assert sorted(documented) == sorted(DOCUMENTED_MODELS)


@pytest.mark.parametrize("table", TABLES, ids=[table.model for table in TABLES])
def test_a_fields_table_is_its_models_fields_in_order(table: FieldsTable) -> None:
    check_table(table, model_class(table.model))


def test_the_check_fails_when_a_model_gains_a_field() -> None:
    (documented,) = [table for table in TABLES if table.model == "streams.dueindex.DueFiring"]
    check_table(documented, DueFiring)
    grown = create_model("DueFiring", __base__=DueFiring, attempt=(int, 0))
    with pytest.raises(AssertionError, match="missing \\['attempt'\\]"):
        check_table(documented, grown)


def test_the_check_fails_when_the_table_loses_or_reorders_a_field() -> None:
    (documented,) = [table for table in TABLES if table.model == "streams.dueindex.DueFiring"]
    with pytest.raises(AssertionError, match="missing"):
        check_table(FieldsTable(documented.model, documented.line, documented.fields[:-1]), DueFiring)
    with pytest.raises(AssertionError, match="documented order"):
        check_table(FieldsTable(documented.model, documented.line, documented.fields[::-1]), DueFiring)


def test_the_parser_reads_a_table_and_reports_a_model_line_without_one() -> None:
    text = (
        "Model: `pkg.mod.Thing`\n\n| Field | Type | Meaning |\n|---|---|---|\n| `a` | int | x |\n| `b` | str | y |\n\n"
        "Model: `pkg.mod.Other`\n\nsome prose\n"
    )
    first, second = fields_tables(text)
    assert (first.model, first.fields, first.problem) == ("pkg.mod.Thing", ("a", "b"), "")
    assert second.model == "pkg.mod.Other"
    assert "not followed by a table" in second.problem


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text up to the next ``## `` heading."""
    found: dict[str, str] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            found[heading] = ""
        elif heading is not None:
            found[heading] += line + "\n"
    return found


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=[spec.name for spec in ALL_TOPICS])
def test_every_topic_has_a_section_naming_it(spec: TopicSpec) -> None:
    name = spec.name
    short = name.removeprefix("solicit.").rsplit(".v", 1)[0]
    body = sections(TOPICS_DOC.read_text(encoding="utf-8")).get(short)
    assert body is not None, f"docs/topics.md has no section '## {short}'"
    assert f"| Name | `{name}` |" in body
    assert "| Key |" in body
    assert "| Partitions |" in body


def test_the_pages_the_readme_mentions_exist() -> None:
    text = README.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"docs/[\w./-]+\.(?:md|json)", text))
    assert mentioned, "README.md links no page of docs/"
    missing = sorted(page for page in mentioned if not (ROOT / page).is_file())
    assert missing == []
