"""Log lines: plain and JSON carry the same fields, JSON lines parse, secrets are masked, WARNING stays WARNING
through Faust's start, and the ``solicit`` commands honour ``SOLICIT_LOG_FORMAT``."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.local_kafka import find_free_ports
from streams.logs import CONTEXT_FIELDS, LogFormat, build_handler, mask_secrets

ROOT = Path(__file__).resolve().parents[3]
PLAIN_LINE = re.compile(r"^(?P<time>\S+) (?P<level>[A-Z]+) (?P<logger>\S+): (?P<rest>.*)$")
PLAIN_PAIR = re.compile(r' (\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)')
CONTEXT = {"seller_id": "A1SELLER", "order_key": "A1SELLER/111-1", "state": "due", "reason": "window opens = now"}
SECRETS = ("IwEBI-refresh_SECRET.1", "access-SECRET+2", "client-SECRET-3")


class Capture:
    """A logger of its own writing both formats into strings, each line one record (nothing reaches the root)."""

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex[:8]}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.streams: dict[LogFormat, io.StringIO] = {"plain": io.StringIO(), "json": io.StringIO()}
        for fmt, stream in self.streams.items():
            self.logger.addHandler(build_handler(fmt, stream))

    def text(self, fmt: LogFormat) -> str:
        return self.streams[fmt].getvalue()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text("json").splitlines()]

    def close(self) -> None:
        self.logger.handlers.clear()


@pytest.fixture
def capture() -> Iterator[Capture]:
    logs = Capture()
    yield logs
    logs.close()


def parse_plain(line: str) -> dict[str, Any]:
    """A plain line back into its fields (the message is what precedes the trailing ``key=value`` pairs)."""
    match = PLAIN_LINE.match(line)
    assert match is not None, line
    rest = match["rest"]
    pairs: dict[str, Any] = {}
    while (tail := _last_pair(rest)) is not None:
        key, value, start = tail
        pairs = {key: json.loads(value) if value.startswith('"') else value, **pairs}
        rest = rest[:start]
    return {"time": match["time"], "level": match["level"], "logger": match["logger"], "message": rest, **pairs}


def _last_pair(text: str) -> tuple[str, str, int] | None:
    found = [m for m in PLAIN_PAIR.finditer(text) if m.end() == len(text)]
    return (found[-1][1], found[-1][2], found[-1].start()) if found else None


def test_plain_and_json_carry_the_same_fields_for_the_same_record(capture: Capture) -> None:
    capture.logger.info("%s: %s -> %s (%s)", "A1SELLER/111-1", "shipped", "due", "window opens", extra=CONTEXT)
    (record,) = capture.json_lines()
    assert list(record) == ["time", "level", "logger", "message", *CONTEXT_FIELDS]
    assert record["message"] == "A1SELLER/111-1: shipped -> due (window opens)"
    assert record["level"] == "INFO" and record["logger"] == capture.logger.name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert record == {**record, **CONTEXT}
    (line,) = capture.text("plain").splitlines()
    assert parse_plain(line) == record
    assert " order_key=A1SELLER/111-1 " in line  # grep finds an order's lines without a JSON parser


def test_fields_the_code_does_not_know_are_absent_and_other_extras_follow_the_context(capture: Capture) -> None:
    capture.logger.warning("no context")
    capture.logger.warning("more", extra={"attempt": 3, "order_key": "S/1", "seller_id": None})
    bare, more = capture.json_lines()
    assert list(bare) == ["time", "level", "logger", "message"]
    assert list(more) == ["time", "level", "logger", "message", "order_key", "attempt"] and more["attempt"] == 3
    assert [parse_plain(line) for line in capture.text("plain").splitlines()] == [
        bare,
        {**more, "attempt": "3"},  # plain text has no types
    ]


def test_every_event_is_one_json_line_even_with_line_breaks_and_a_traceback(capture: Capture) -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        capture.logger.exception("first\nsecond", extra={"order_key": "S/1"})
    (record,) = capture.json_lines()
    assert record["message"] == "first\nsecond"
    assert record["exception"].startswith("Traceback") and "ValueError: bad" in record["exception"]
    head, *traceback = capture.text("plain").splitlines()
    assert head.endswith(": first\\nsecond order_key=S/1")
    assert traceback[0] == "Traceback (most recent call last):"  # as Python prints it, for a person to read


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("token Atzr|IwEBI-refresh_SECRET.1 for A1", "token Atzr|*** for A1"),
        ("grant_type=refresh_token&refresh_token=Atzr%7CIwEBI-refresh_SECRET.1&x=1", "refresh_token=Atzr%7C***&x=1"),
        ("Authorization: Bearer Atza|access-SECRET+2,", "Bearer Atza|***,"),
        ("client_id=amzn1&client_secret=client-SECRET-3&grant_type=x", "client_secret=***&grant_type=x"),
        ('{"client_id": "amzn1", "client_secret": "client-SECRET-3"}', '"client_secret": "***"}'),
        ("{'client_secret': 'client-SECRET-3', 'x': 1}", "'client_secret': '***', 'x': 1}"),
        ("SOLICIT_SPAPI__LWA_CLIENT_SECRET=client-SECRET-3 set", "CLIENT_SECRET=*** set"),
        ('{"refresh_token": "IwEBI-refresh_SECRET.1"}', '{"refresh_token": "***"}'),
        ('{"refresh_token": "Atzr|IwEBI-refresh_SECRET.1"}', '{"refresh_token": "Atzr|***"}'),
    ],
)
def test_secrets_are_masked_and_what_is_around_them_kept(text: str, kept: str) -> None:
    masked = mask_secrets(text)
    assert not any(secret in masked for secret in SECRETS), masked
    assert kept in masked


def test_what_only_looks_like_a_secret_name_is_left_alone() -> None:
    text = 'grant_type=refresh_token, "refresh_token_encrypted": "gAAAA", client_secret missing'
    assert mask_secrets(text) == text


def test_the_filter_masks_the_message_its_arguments_the_extras_and_the_traceback(capture: Capture) -> None:
    try:
        raise RuntimeError("LWA said no to client_secret=client-SECRET-3")
    except RuntimeError:
        capture.logger.exception(
            "refreshing with %s failed",
            "Atzr|IwEBI-refresh_SECRET.1",
            extra={
                "reason": "bad {'client_secret': 'client-SECRET-3'}",
                "body": {"access_token": "Atza|access-SECRET+2"},
            },
        )
    for fmt in ("plain", "json"):
        text = capture.text(fmt)
        assert not any(secret in text for secret in SECRETS), text
        assert "Atzr|***" in text and "client_secret=***" in text
    (record,) = capture.json_lines()
    assert record["message"] == "refreshing with Atzr|*** failed"


def test_warning_does_not_become_debug_and_faust_keeps_our_format(tmp_path: Path) -> None:
    """What Faust's worker does to logging when it starts (mode's ``default_on_first_start``), on the worker
    ``solicit worker`` builds: the handler stays ours, in both formats, and nothing turns on DEBUG."""
    probe = textwrap.dedent(
        """
        import asyncio, json, logging, sys
        import faust
        from streams.cli.worker import faust_worker
        from streams.logs import configure_logging

        configure_logging("warning", sys.argv[1])
        ours = list(logging.root.handlers)
        worker = faust_worker(faust.App("probe", broker="kafka://127.0.0.1:9"), "warning")
        asyncio.run(worker.default_on_first_start())
        logging.getLogger("probe").warning("after the start", extra={"order_key": "S/1"})
        logging.getLogger("aiokafka").debug("must not be written")
        debug = logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
        print(json.dumps({"debug": debug, "ours": logging.root.handlers == ours}))
        """
    )
    for fmt in ("plain", "json"):
        done = run_python(["-c", probe, fmt], cwd=tmp_path)
        assert json.loads(done.stdout) == {"debug": False, "ours": True}, done.stderr
        (line,) = done.stderr.splitlines()
        fields = json.loads(line) if fmt == "json" else parse_plain(line)
        assert {k: fields[k] for k in ("level", "logger", "message", "order_key")} == {
            "level": "WARNING",
            "logger": "probe",
            "message": "after the start",
            "order_key": "S/1",
        }


def test_solicit_commands_write_json_log_lines_with_solicit_log_format_json(tmp_path: Path) -> None:
    (port,) = find_free_ports(1)  # nothing listens there: the command logs its attempt and fails
    env = {"SOLICIT_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "SOLICIT_LOG_LEVEL": "debug"}
    done = run_python(["-m", "streams.cli", "sellers", "list"], cwd=tmp_path, env={**env, "SOLICIT_LOG_FORMAT": "json"})
    assert done.returncode == 2
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert len(lines) >= 2 and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["level"] == "DEBUG" for line in lines)  # the libraries' logging, not only our last words
    last = lines[-1]
    assert (last["level"], last["logger"]) == ("ERROR", "solicit.sellers")
    assert last["message"].startswith("configuration error: Kafka: cannot reach")

    plain = run_python(["-m", "streams.cli", "sellers", "list"], cwd=tmp_path, env=env)
    assert plain.returncode == 2
    assert plain.stderr.splitlines()[-1].startswith("solicit sellers: configuration error: Kafka: cannot reach")
    assert all(PLAIN_LINE.match(line) for line in plain.stderr.splitlines()[:-1])


def run_python(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SOLICIT_", "KAFKA_"))}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60
    )
