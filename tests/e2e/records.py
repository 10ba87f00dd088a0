"""What a run left behind, read as an outside system would: every record of every topic, and the processes' logs.

:func:`read_topic` reads a topic from the beginning to the end offsets of the moment with a plain aiokafka consumer
(no group, every partition); :func:`schema_problems` validates the values against the published JSON Schemas in
``docs/schemas`` (the contract integrations code against, generated from the models by ``streams.schemas``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from connectors.kafka import KafkaConnection, partition_counts
from streams.topics import TopicSpec

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
LOG_FIELDS = frozenset({"time", "level", "logger", "message"})


async def read_topic(connection: KafkaConnection, topic: str, *, within: float = 60) -> list[ConsumerRecord] | None:
    """Every record of ``topic`` up to its end offsets as of now, in partition then offset order; None when the
    topic does not exist."""
    consumer = AIOKafkaConsumer(
        **connection.client_kwargs(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(within):
            if topic not in await consumer.topics():  # listed, not named: naming it could auto-create it
                return None
            count = (await partition_counts(connection, [topic]))[topic]
            partitions = [TopicPartition(topic, p) for p in range(count)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in partitions}
            remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            while remaining:
                for tp, batch in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                    records[tp].extend(r for r in batch if r.offset < ends[tp])
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
            return [record for tp in partitions for record in records[tp]]
    finally:
        await consumer.stop()


def validator_for(spec: TopicSpec) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{spec.name}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def schema_problems(spec: TopicSpec, records: Iterable[ConsumerRecord]) -> tuple[int, list[str]]:
    """How many values were validated against ``spec``'s schema (tombstones are not values), and every problem as
    ``<topic>[<partition>]@<offset>: <path>: <message>``."""
    validator = validator_for(spec)
    validated, problems = 0, []
    for record in records:
        if record.value is None:
            continue
        validated += 1
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            value: Any = json.loads(record.value)
        except ValueError as exc:
            problems.append(f"{where}: not JSON: {exc}")
            continue
        for error in validator.iter_errors(value):
            problems.append(f"{where}: {error.json_path}: {error.message[:300]}")
    return validated, problems


def json_log_problems(text: str) -> tuple[int, list[str]]:
    """How many lines of a process's log are JSON log lines, and every line that is not (or lacks a field)."""
    lines, problems = 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except ValueError:
            problems.append(f"line {number} is not JSON: {line[:200]}")
            continue
        if not isinstance(fields, dict) or not set(fields) >= LOG_FIELDS:
            problems.append(f"line {number} lacks a log field: {line[:200]}")
            continue
        lines += 1
    return lines, problems
