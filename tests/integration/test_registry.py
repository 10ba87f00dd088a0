from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from connectors.crypto import TokenCipher, UndecryptableToken, generate_key
from connectors.kafka import KafkaConnection
from statemachine.marketplaces import Region
from streams.cli import main
from streams.directory import SellerChange, SellerDirectory, load_registry, publish_records, publish_tombstone
from streams.registry import SellerRecord, SellersTopicMissing
from tests.support.kafka import KafkaTopicFactory

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
US, CA, DE = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2", "A1PA6795UKMFR9"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
async def sellers_topic(kafka_topic_factory: KafkaTopicFactory) -> str:
    return await kafka_topic_factory(partitions=1, config={"cleanup.policy": "compact"})


@pytest.fixture
def secret_key() -> str:
    return generate_key()


@pytest.fixture
def tokens() -> dict[str, str]:
    """A unique plaintext token per seller, so a leak cannot be a coincidence."""
    run = uuid.uuid4().hex
    return {"A2ACME": f"Atzr|IwEB-acme-{run}", "A3KUMO": f"Atzr|IwEB-kumo-{run}"}


def import_file(tmp_path: Path, tokens: dict[str, str], name: str = "sellers.json") -> Path:
    path = tmp_path / name
    path.write_text(
        json.dumps(
            {
                "sellers": [
                    {
                        "seller_id": "A2ACME",
                        "name": "Acme US",
                        "group": "Acme Brands",
                        "region": "NA",
                        "marketplace_ids": [US, CA],
                        "refresh_token": tokens["A2ACME"],
                    },
                    {
                        "seller_id": "A3KUMO",
                        "name": "Kumo EU",
                        "region": "EU",
                        "marketplace_ids": [DE],
                        "app": "eu-app",
                        "refresh_token": tokens["A3KUMO"],
                        "policy": {"delay_days": 7, "send_hours": {"start_hour": 9, "end_hour": 20}, "dry_run": True},
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    return path


def conn(bootstrap: str) -> KafkaConnection:
    return KafkaConnection(bootstrap_servers=bootstrap)


async def solicit(bootstrap: str, key: str, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess: ``solicit sellers ARGS``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SOLICIT_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SOLICIT_SECRET_KEY=key, **env_vars)
    command = [sys.executable, "-m", "streams.cli", "sellers", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def assert_no_secret(result: subprocess.CompletedProcess[str], tokens: dict[str, str]) -> None:
    output = result.stdout + result.stderr
    for token in tokens.values():
        assert token not in output
    assert "gAAAAA" not in output  # not even a Fernet ciphertext


async def raw_records(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on partition 0, as bytes, with no decoding of ours."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        found: list[tuple[bytes | None, bytes | None]] = []
        async with asyncio.timeout(30):
            while await consumer.position(partition) < end:
                for messages in (await consumer.getmany(partition, timeout_ms=500)).values():
                    found.extend((message.key, message.value) for message in messages)
        return found
    finally:
        await consumer.stop()


def listed(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return {seller["seller_id"]: seller for seller in json.loads(result.stdout)}


def record(seller_id: str, cipher: TokenCipher, token: str, **overrides: Any) -> SellerRecord:
    fields: dict[str, Any] = {
        "seller_id": seller_id,
        "name": f"Shop {seller_id}",
        "region": Region.NA,
        "marketplace_ids": (US,),
        "refresh_token_encrypted": cipher.encrypt(SecretStr(token)),
        "updated_at": NOW,
    }
    fields.update(overrides)
    return SellerRecord(**fields)


# --- the CLI against a real broker ---------------------------------------------------------------------------------


async def test_import_list_pause_resume_remove(
    kafka_bootstrap: str, sellers_topic: str, secret_key: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    path = import_file(tmp_path, tokens)
    run = (kafka_bootstrap, secret_key)

    imported = await solicit(*run, "import", str(path), "--topic", sellers_topic)
    assert imported.returncode == 0, imported.stderr
    assert f"Imported 2 seller(s) into {sellers_topic}: 2 new, 0 updated." in imported.stdout
    assert "app 'eu-app' has no LWA credentials here" in imported.stderr
    assert_no_secret(imported, tokens)

    table = await solicit(*run, "list", "--topic", sellers_topic)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "NAME", "GROUP", "REGION", "MARKETPLACES", "APP", "PAUSED", "DRY-RUN", "DELAY", "DAYS", "SEND", "HOURS",
        "ATTENTION",
    ]  # fmt: skip
    assert lines[1].split() == [
        "A2ACME",
        "Acme",
        "US",
        "Acme",
        "Brands",
        "NA",
        "US,CA",
        "default",
        "no",
        "no",
        "5",
        "any",
        "ok",
    ]
    assert lines[2].split() == ["A3KUMO", "Kumo", "EU", "-", "EU", "DE", "eu-app", "no", "yes", "7", "09-20", "ok"]
    assert_no_secret(table, tokens)

    as_json = await solicit(*run, "list", "--json", "--topic", sellers_topic)
    sellers = listed(as_json)
    assert set(sellers) == {"A2ACME", "A3KUMO"}
    assert sellers["A2ACME"]["marketplace_ids"] == [US, CA]
    assert sellers["A3KUMO"]["policy"] == {
        "delay_days": 7.0,
        "send_hours": {"start_hour": 9, "end_hour": 20},
        "paused": False,
        "dry_run": True,
        "marketplaces": {},
    }
    assert not any("token" in field for seller in sellers.values() for field in seller)
    assert_no_secret(as_json, tokens)

    # What is in Kafka: ciphertext that our key opens, never the plaintext.
    raw = await raw_records(kafka_bootstrap, sellers_topic)
    assert [key for key, _ in raw] == [b"A2ACME", b"A3KUMO"]
    cipher = TokenCipher(SecretStr(secret_key))
    for key, value in raw:
        assert key is not None and value is not None
        assert all(token.encode() not in value for token in tokens.values())
        stored = json.loads(value)["refresh_token_encrypted"]
        assert cipher.decrypt(stored).get_secret_value() == tokens[key.decode()]

    paused = await solicit(*run, "pause", "A2ACME", "--topic", sellers_topic)
    assert paused.returncode == 0, paused.stderr
    assert "A2ACME (Acme US) is now paused" in paused.stdout
    assert listed(await solicit(*run, "list", "--json", "--topic", sellers_topic))["A2ACME"]["policy"]["paused"]
    again = await solicit(*run, "pause", "A2ACME", "--topic", sellers_topic)
    assert (again.returncode, "already paused" in again.stdout) == (0, True)

    resumed = await solicit(*run, "resume", "A2ACME", "--topic", sellers_topic)
    assert resumed.returncode == 0, resumed.stderr
    after_resume = listed(await solicit(*run, "list", "--json", "--topic", sellers_topic))
    assert after_resume["A2ACME"]["policy"]["paused"] is False
    assert after_resume["A2ACME"]["name"] == "Acme US"  # the rest of the record is kept

    removed = await solicit(*run, "remove", "A2ACME", "--topic", sellers_topic)
    assert removed.returncode == 0, removed.stderr
    raw = await raw_records(kafka_bootstrap, sellers_topic)
    assert raw[-1] == (b"A2ACME", None)
    assert set(listed(await solicit(*run, "list", "--json", "--topic", sellers_topic))) == {"A3KUMO"}

    reimported = await solicit(*run, "import", str(path), "--topic", sellers_topic)
    assert reimported.returncode == 0, reimported.stderr
    assert "2 seller(s)" in reimported.stdout and "1 new, 1 updated" in reimported.stdout
    assert_no_secret(reimported, tokens)


@pytest.mark.parametrize("action", ["pause", "resume", "remove"])
async def test_unknown_seller_is_an_error(
    kafka_bootstrap: str, sellers_topic: str, secret_key: str, tokens: dict[str, str], tmp_path: Path, action: str
) -> None:
    await solicit(kafka_bootstrap, secret_key, "import", str(import_file(tmp_path, tokens)), "--topic", sellers_topic)
    before = await raw_records(kafka_bootstrap, sellers_topic)

    result = await solicit(kafka_bootstrap, secret_key, action, "A9NOBODY", "--topic", sellers_topic)

    assert result.returncode == 1
    assert "no seller 'A9NOBODY'" in result.stderr
    assert "Traceback" not in result.stderr
    assert await raw_records(kafka_bootstrap, sellers_topic) == before


async def test_a_bad_file_imports_nothing_and_reports_each_entry(
    kafka_bootstrap: str, sellers_topic: str, secret_key: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    document = json.loads(import_file(tmp_path, tokens).read_text(encoding="utf-8"))
    document["sellers"][1]["marketplace_ids"] = [US]  # an NA marketplace for an EU seller
    document["sellers"].append({"name": "No id", "region": "NA", "marketplace_ids": [US], "refresh_token": "Atzr|x"})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document), encoding="utf-8")

    result = await solicit(kafka_bootstrap, secret_key, "import", str(bad), "--topic", sellers_topic)

    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith(f"{bad}: ")]
    assert problems == [
        f"{bad}: seller A3KUMO (entry 2): marketplace_ids: marketplace {US} (US) is served by region NA, not EU "
        "(known ids: statemachine/marketplaces.py; a seller's marketplaces must all be in its region)",
        f"{bad}: entry 3: seller_id: Field required",
    ]
    assert "nothing was imported" in result.stderr
    assert_no_secret(result, tokens)
    assert await raw_records(kafka_bootstrap, sellers_topic) == []  # not even the valid first entry


async def test_list_of_a_missing_topic_says_what_to_do(kafka_bootstrap: str, secret_key: str) -> None:
    result = await solicit(kafka_bootstrap, secret_key, "list", "--topic", f"t-missing-{uuid.uuid4().hex}")

    assert result.returncode == 1
    assert "does not exist" in result.stderr and "solicit sellers import" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_default_topic_carries_the_deployment_prefix(kafka_bootstrap: str, secret_key: str) -> None:
    prefix = f"t-prefix-{uuid.uuid4().hex[:8]}."

    result = await solicit(kafka_bootstrap, secret_key, "list", SOLICIT_KAFKA__TOPIC_PREFIX=prefix)

    assert result.returncode == 1
    assert f"topic {prefix}solicit.sellers.v1 does not exist" in result.stderr


async def test_import_without_a_key_says_how_to_make_one(
    kafka_bootstrap: str, sellers_topic: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    result = await solicit(kafka_bootstrap, "", "import", str(import_file(tmp_path, tokens)), "--topic", sellers_topic)

    assert result.returncode == 2  # a configuration error
    assert "SOLICIT_SECRET_KEY is not set" in result.stderr and "solicit sellers new-key" in result.stderr
    assert await raw_records(kafka_bootstrap, sellers_topic) == []


async def test_rekey_moves_every_token_to_the_new_key(
    kafka_bootstrap: str, sellers_topic: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    old, new = generate_key(), generate_key()
    imported = await solicit(
        kafka_bootstrap, old, "import", str(import_file(tmp_path, tokens)), "--topic", sellers_topic
    )
    assert imported.returncode == 0, imported.stderr

    refused = await solicit(kafka_bootstrap, new, "rekey", "--topic", sellers_topic)
    assert refused.returncode == 1
    assert "seller A2ACME: no key in SOLICIT_SECRET_KEY decrypts" in refused.stderr

    rekeyed = await solicit(kafka_bootstrap, f"{new},{old}", "rekey", "--topic", sellers_topic)
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert_no_secret(rekeyed, tokens)

    registry = await load_registry(conn(kafka_bootstrap), topic=sellers_topic)
    only_new = TokenCipher(SecretStr(new))
    only_old = TokenCipher(SecretStr(old))
    for seller_id, stored in registry.items():
        assert only_new.decrypt(stored.refresh_token_encrypted).get_secret_value() == tokens[seller_id]
        with pytest.raises(UndecryptableToken):
            only_old.decrypt(stored.refresh_token_encrypted)


async def test_in_process_import_logs_no_token(
    kafka_bootstrap: str,
    sellers_topic: str,
    secret_key: str,
    tokens: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("SOLICIT_SECRET_KEY", secret_key)
    caplog.set_level(logging.DEBUG)
    path = import_file(tmp_path, tokens)

    # main() runs its own event loop, so it gets a thread of its own.
    codes = [
        await asyncio.to_thread(main, ["sellers", *args, "--topic", sellers_topic])
        for args in (["import", str(path)], ["list"], ["pause", "A3KUMO"], ["remove", "A2ACME"])
    ]

    assert codes == [0, 0, 0, 0]
    captured = capsys.readouterr()
    assert caplog.records, "expected debug logs from the Kafka client"
    for token in tokens.values():
        assert token not in caplog.text
        assert token not in captured.out + captured.err


# --- reading the topic ---------------------------------------------------------------------------------------------


async def test_load_registry_applies_tombstones_and_skips_undecodable_records(
    kafka_bootstrap: str, sellers_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    cipher = TokenCipher(SecretStr(generate_key()))
    garbage = b'{"refresh_token": "Atzr|hand-written-plaintext"}'
    await publish_records(
        conn(kafka_bootstrap),
        [record("A2KEEP", cipher, "Atzr|keep"), record("A2GONE", cipher, "Atzr|gone")],
        topic=sellers_topic,
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(sellers_topic, garbage, key=b"A2BROKEN")
        # (A keyless record cannot exist here: compacted topics refuse them.)
        await producer.send_and_wait(sellers_topic, garbage, key=b"\xff\xfe")
        await producer.send_and_wait(sellers_topic, record("A2KEEP", cipher, "x").to_json(), key=b"A2WRONG")
    finally:
        await producer.stop()
    await publish_tombstone(conn(kafka_bootstrap), "A2GONE", topic=sellers_topic)
    caplog.set_level(logging.WARNING, logger="streams.directory")

    registry = await load_registry(conn(kafka_bootstrap), topic=sellers_topic)

    assert list(registry) == ["A2KEEP"]
    assert cipher.decrypt(registry["A2KEEP"].refresh_token_encrypted).get_secret_value() == "Atzr|keep"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "'A2BROKEN'" in warnings[0] and "seller_id: Field required" in warnings[0]
    assert "key is not UTF-8" in warnings[1]
    assert "'A2WRONG'" in warnings[2] and "differs from the key" in warnings[2]
    assert "hand-written-plaintext" not in caplog.text
    assert "gAAAAA" not in caplog.text


async def test_load_registry_of_a_missing_topic(kafka_bootstrap: str) -> None:
    with pytest.raises(SellersTopicMissing):
        await load_registry(conn(kafka_bootstrap), topic=f"t-missing-{uuid.uuid4().hex}")


async def test_directory_knows_its_sellers_at_start_and_follows_changes(
    kafka_bootstrap: str, sellers_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cipher = TokenCipher(SecretStr(generate_key()))
    plaintext = f"Atzr|directory-{uuid.uuid4().hex}"
    first = record("A2LIVE", cipher, plaintext)
    await publish_records(conn(kafka_bootstrap), [first, record("A2OTHER", cipher, "Atzr|other")], topic=sellers_topic)
    changes: asyncio.Queue[SellerChange] = asyncio.Queue()

    def broken(_change: SellerChange) -> None:
        raise RuntimeError("a callback bug")

    async with SellerDirectory(
        connection=conn(kafka_bootstrap), topic=sellers_topic, on_change=changes.put_nowait
    ) as directory:
        assert (len(directory), directory.get("A2LIVE"), "A2OTHER" in directory) == (2, first, True)
        assert directory.get("A2NOBODY") is None
        assert changes.empty()  # the initial load is not reported as changes
        directory.subscribe(broken)

        paused = first.with_policy(paused=True, updated_at=datetime(2026, 3, 2, tzinfo=UTC))
        await publish_records(conn(kafka_bootstrap), [paused], topic=sellers_topic)
        async with asyncio.timeout(30):
            change = await changes.get()
        assert change == SellerChange("A2LIVE", first, paused)
        directory_record = directory.get("A2LIVE")
        assert directory_record is not None and directory_record.policy.paused

        await publish_tombstone(conn(kafka_bootstrap), "A2OTHER", topic=sellers_topic)
        async with asyncio.timeout(30):
            change = await changes.get()
        assert (change.seller_id, change.after) == ("A2OTHER", None)
        assert (len(directory), list(directory)) == (1, ["A2LIVE"])
        assert directory.running  # the broken callback did not stop the tail

    assert not directory.running
    assert "a callback bug" in caplog.text
    assert plaintext not in caplog.text


async def test_directory_start_fails_cleanly_on_a_missing_topic(kafka_bootstrap: str) -> None:
    directory = SellerDirectory(connection=conn(kafka_bootstrap), topic=f"t-missing-{uuid.uuid4().hex}")

    with pytest.raises(SellersTopicMissing):
        await directory.start()

    assert not directory.running
    await directory.stop()  # nothing to stop, and no error
