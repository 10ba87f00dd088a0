"""JSON Schema of every topic's value, generated from the models that write it (pydantic's JSON Schema).

``python -m streams.schemas DIR`` (``make schemas``) writes one ``<topic>.schema.json`` per topic into ``DIR``
(``docs/schemas/``); ``tests/unit/streams/test_schemas.py`` fails when a model changed and the files were not
regenerated, and the end-to-end test validates real records of a run against them. ``order-changes`` carries
Amazon's ORDER_CHANGE notification: its schema is Amazon's own (vendored with the lab, ``devstack/spapi_models``);
the one here is our model of it, which accepts what Amazon's accepts and is stricter where Amazon's is too loose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from statemachine import Notification, SendCommand
from streams.alerts import Alert
from streams.deadletters import DeadLetter
from streams.orders import ORDER_EVENT
from streams.outcomes import OUTCOME_EVENT
from streams.registry import SellerRecord
from streams.topics import (
    ALERTS,
    DEAD_LETTERS,
    ORDER_CHANGES,
    ORDER_EVENTS,
    OUTCOMES,
    SELLERS,
    SEND_COMMANDS,
    TopicSpec,
)

VALUE_TYPES: dict[str, TypeAdapter[Any]] = {
    ORDER_CHANGES.name: TypeAdapter(Notification),
    ORDER_EVENTS.name: ORDER_EVENT,
    SEND_COMMANDS.name: TypeAdapter(SendCommand),
    OUTCOMES.name: OUTCOME_EVENT,
    DEAD_LETTERS.name: TypeAdapter(DeadLetter),
    SELLERS.name: TypeAdapter(Annotated[SellerRecord, Field(description="A seller; its refresh token encrypted.")]),
    ALERTS.name: TypeAdapter(Alert),
}
"""The type of each topic's values (by contract name, without the deployment's prefix)."""


def schema_of(spec: TopicSpec) -> dict[str, Any]:
    """The JSON Schema of ``spec``'s values, as it is written to the wire (``mode="serialization"``)."""
    schema = VALUE_TYPES[spec.name].json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://solicit.invalid/schemas/{spec.name}.schema.json",
        "title": spec.name,
        "description": f"{spec.description} Key: {spec.key}.",
        **schema,
    }


def render(spec: TopicSpec) -> str:
    return json.dumps(schema_of(spec), indent=2, sort_keys=True) + "\n"


def write_all(directory: Path, specs: tuple[TopicSpec, ...]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        path = directory / f"{spec.name}.schema.json"
        path.write_text(render(spec), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - `make schemas`
    from streams.topics import ALL_TOPICS

    for path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas"), ALL_TOPICS):
        print(path)
