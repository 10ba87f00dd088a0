"""docs/schemas holds the JSON Schema of every topic's value, generated from the models, and records validate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from statemachine import OrderState
from statemachine.events import StateChanged
from streams.alerts import Alert, AlertKind
from streams.deadletters import DeadLetter
from streams.schemas import render, schema_of
from streams.topics import ALERTS, ALL_TOPICS, DEAD_LETTERS, OUTCOMES, TopicSpec

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "schemas"
AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=[spec.name for spec in ALL_TOPICS])
def test_each_topic_schema_is_the_one_the_models_generate(spec: TopicSpec) -> None:
    path = SCHEMAS / f"{spec.name}.schema.json"
    assert path.read_text(encoding="utf-8") == render(spec), "run `make schemas`"


def test_no_schema_file_is_left_over_from_a_topic_that_is_gone() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(f"{s.name}.schema.json" for s in ALL_TOPICS)


def test_records_validate_and_a_broken_one_does_not() -> None:
    changed = StateChanged(
        order_key="S/1",
        seller_id="S",
        order_id="1",
        source=OrderState.NEW,
        dest=OrderState.SHIPPED,
        trigger="ship",
        reason="shipped",
        at=AT,
    )
    jsonschema.validate(json.loads(changed.model_dump_json()), schema_of(OUTCOMES))
    letter = DeadLetter.build(source="sqs", reason="not JSON", raw=b"\xff", at=AT)
    jsonschema.validate(json.loads(letter.to_json()), schema_of(DEAD_LETTERS))
    alert = Alert(
        alert_id="error_rate:S",
        kind=AlertKind.ERROR_RATE,
        status="raised",
        seller_id="S",
        subject="S",
        message="9 of the last 10 calls failed",
        at=AT,
    )
    jsonschema.validate(json.loads(alert.model_dump_json()), schema_of(ALERTS))
    broken = json.loads(changed.model_dump_json()) | {"dest": "teleported"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema_of(OUTCOMES))
