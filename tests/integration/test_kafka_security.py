"""Kafka security, in one place (issue 10), against a real broker with a SASL_SSL listener (SCRAM-SHA-512 over TLS).

The module starts its own broker from the cached jars, whatever ``KAFKA_BOOTSTRAP_SERVERS`` says: the session broker
is PLAINTEXT only. A CA and the broker's certificate are made here (``tests/support/tls.py``), the SCRAM user is
created when the storage is formatted. The processes under test are given only the SASL_SSL address and the
``SOLICIT_KAFKA__*`` security settings, never the PLAINTEXT one, so everything they do goes through TLS and SASL:

* ``solicit sellers import``, ``solicit bridge`` and ``solicit worker`` run the demo scenario end to end
  (SQS -> bridge -> Kafka -> worker -> SP-API sandbox) and every order ends where it must, solicited exactly once;
* a wrong password makes ``sellers list``, ``bridge`` and ``worker`` exit 2 within seconds with one line on stderr
  that names the problem and not the password; the preflight names other mismatches (CA, protocol, port) too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.kafka import KafkaConnection, KafkaUnusable, check_connection
from devstack.demo.run import DEMO_TIMING_ENV, DemoRun, _create_queue
from devstack.demo.stack import Stack, StackConfig, moto_sqs, solicit_argv
from devstack.local_kafka import JarCache, LocalBroker, LocalKafkaError, SaslSslListener, find_free_ports
from streams.directory import load_registry, publish_records
from streams.registry import SellerRecord, parse_import_file
from streams.settings import KafkaSettings
from streams.topic_admin import ensure_topics
from streams.topics import SELLERS
from tests.support.tls import Pki, make_pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

USER = "alice"
PASSWORD = "Alice-SCRAM-Secret-7"
WRONG_PASSWORD = "Not-Alices-Password-9"
FAIL_FAST_S = 20.0
SELLER = {
    "seller_id": "A1SECURED",
    "name": "Secured",
    "region": "NA",
    "marketplace_ids": ["ATVPDKIKX0DER"],
    "refresh_token": "Atzr|secured",
}


@dataclass(frozen=True)
class SecuredKafka:
    """A broker with a PLAINTEXT listener (for nothing under test) and a SASL_SSL one."""

    plain_bootstrap: str
    bootstrap: str
    """The SASL_SSL listener."""
    pki: Pki

    def connection(self, **overrides: object) -> KafkaConnection:
        values: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password": SecretStr(PASSWORD),
            "ssl_cafile": self.pki.ca_cert,
        }
        values.update(overrides)
        return KafkaConnection(**values)


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory, kafka_jar_cache: JarCache) -> Iterator[SecuredKafka]:
    base = tmp_path_factory.mktemp("secured-kafka")
    pki = make_pki(base / "pki")
    port, controller_port, sasl_port = find_free_ports(3)
    broker = LocalBroker(
        data_dir=base / "data",
        port=port,
        controller_port=controller_port,
        kafka_home=kafka_jar_cache.home,
        sasl_ssl=SaslSslListener(port=sasl_port, keystore=pki.server_keystore, users=((USER, PASSWORD),)),
    )
    started = time.monotonic()
    try:
        report = broker.start()
    except (LocalKafkaError, OSError) as exc:
        reason = str(exc)
    else:
        reason = ""
    if reason:
        pytest.fail(f"The SASL_SSL test broker could not start.\n{reason}", pytrace=False)
    assert report.sasl_ssl_bootstrap is not None
    print(f"[security] broker with SASL_SSL on {report.sasl_ssl_bootstrap} up in {time.monotonic() - started:.1f} s")
    try:
        yield SecuredKafka(plain_bootstrap=report.bootstrap, bootstrap=report.sasl_ssl_bootstrap, pki=pki)
    finally:
        broker.stop()


# --- the connector through SASL_SSL -----------------------------------------------------------------------------------


async def test_topic_admin_and_the_registry_writer_and_reader_work_through_sasl_ssl(
    secured_kafka: SecuredKafka,
) -> None:
    connection = secured_kafka.connection()
    await check_connection(connection)
    kafka = KafkaSettings(**connection.model_dump(), partitions=2)
    topic = dataclasses.replace(SELLERS, name=f"t-secured-sellers-{uuid.uuid4().hex[:8]}")
    assert await ensure_topics(kafka, [topic]) == [topic.name]
    record = SellerRecord.from_entry(
        parse_import_file(json.dumps({"sellers": [SELLER]}))[0],
        refresh_token_encrypted="gAAAAA-not-a-real-token",
        updated_at=datetime.now(UTC),
    )
    assert await publish_records(kafka, [record], topic=topic.name) == 1
    assert list(await load_registry(kafka, topic=topic.name)) == ["A1SECURED"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"sasl_password": SecretStr(WRONG_PASSWORD)}, "authentication failed at {address} (SASL SCRAM-SHA-512 as "),
        ({"sasl_username": "mallory"}, "authentication failed at {address} (SASL SCRAM-SHA-512 as user 'mallory')"),
        ({"sasl_mechanism": "SCRAM-SHA-256"}, "{address} does not offer SASL SCRAM-SHA-256"),
        ({"ssl_cafile": "other"}, "cannot reach {address} (TLS handshake failed: certificate verify failed: "),
        ({"ssl_cafile": None}, "cannot reach {address} (TLS handshake failed: certificate verify failed: "),
        (
            {"security_protocol": "SSL", "sasl_mechanism": None, "sasl_username": "", "sasl_password": SecretStr("")},
            "{address} closed the connection during the handshake (does its listener expect SASL?",
        ),
        (
            {
                "security_protocol": "PLAINTEXT",
                "sasl_mechanism": None,
                "sasl_username": "",
                "sasl_password": SecretStr(""),
                "ssl_cafile": None,
            },
            "{address} closed the connection during the handshake (does its listener expect TLS or SASL?",
        ),
    ],
)
async def test_the_preflight_names_what_is_wrong_in_one_line(
    secured_kafka: SecuredKafka, overrides: dict[str, object], expected: str
) -> None:
    if overrides.get("ssl_cafile") == "other":
        overrides = {**overrides, "ssl_cafile": secured_kafka.pki.other_ca_cert}
    connection = secured_kafka.connection(**overrides)
    started = time.monotonic()
    with pytest.raises(KafkaUnusable) as raised:
        await check_connection(connection)
    line = str(raised.value)
    assert time.monotonic() - started < 5
    assert line.startswith("Kafka: ") and expected.format(address=secured_kafka.bootstrap) in line, line
    assert "\n" not in line and PASSWORD not in line and WRONG_PASSWORD not in line


async def test_an_unreachable_address_is_named_and_a_good_one_is_enough(secured_kafka: SecuredKafka) -> None:
    (closed,) = find_free_ports(1)
    with pytest.raises(KafkaUnusable, match=rf"cannot reach 127.0.0.1:{closed} \(connection refused\)"):
        await check_connection(secured_kafka.connection(bootstrap_servers=f"127.0.0.1:{closed}"))
    # One answering address is enough, as for the clients' own bootstrap.
    await check_connection(secured_kafka.connection(bootstrap_servers=f"127.0.0.1:{closed},{secured_kafka.bootstrap}"))


# --- the real processes -----------------------------------------------------------------------------------------------


def _stack(secured_kafka: SecuredKafka, tmp_path: Path, connection: KafkaConnection, sqs_endpoint: str) -> Stack:
    (sandbox_port,) = find_free_ports(1)
    config = StackConfig(
        run_dir=tmp_path,
        kafka_bootstrap=connection.bootstrap_servers,
        kafka_security=connection,
        sqs_endpoint=sqs_endpoint,
        queue_url=_create_queue(sqs_endpoint),
        sandbox_port=sandbox_port,
        partitions=2,
        extra_env={**DEMO_TIMING_ENV, "SOLICIT_KAFKA__SESSION_TIMEOUT": "10"},
    )
    env = config.env()
    # The processes know the SASL_SSL listener only: nothing can fall back to PLAINTEXT.
    assert secured_kafka.plain_bootstrap not in " ".join(env.values())
    assert env["SOLICIT_KAFKA__BOOTSTRAP_SERVERS"] == connection.bootstrap_servers
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == connection.bootstrap_servers
    assert env["SOLICIT_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["SOLICIT_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["SOLICIT_KAFKA__SASL_USERNAME"] == USER
    assert env["SOLICIT_KAFKA__SSL_CAFILE"] == str(connection.ssl_cafile)
    return Stack(config)


async def test_sellers_bridge_and_worker_run_end_to_end_through_sasl_ssl_only(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    with moto_sqs() as sqs_endpoint:
        stack = _stack(secured_kafka, tmp_path, secured_kafka.connection(), sqs_endpoint)
        config = stack.config
        demo = DemoRun(stack, sellers=6)
        monitor = demo.monitor()
        started = time.monotonic()
        try:
            stack.start_sandbox()
            stack.sandbox("POST", "sellers", demo.plan.sandbox_sellers)
            sellers_file = tmp_path / "sellers.json"
            sellers_file.write_text(json.dumps(demo.plan.registry_file), encoding="utf-8")
            imported = await _solicit(config.env(), "sellers", "import", str(sellers_file))
            assert imported.returncode == 0, imported.stderr
            assert "Imported 6 seller(s)" in imported.stdout
            listed = await _solicit(config.env(), "sellers", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            assert len(json.loads(listed.stdout)) == 6
            assert PASSWORD not in imported.stdout + imported.stderr + listed.stdout + listed.stderr

            worker = stack.start_worker("a")
            bridge = stack.start_bridge()
            await monitor.start()  # the test's own reader connects through SASL_SSL too (config.connection())
            plan = demo.feed()
            settled = await demo.wait_settled(monitor.view, within=240, every=1.0)
            elapsed = time.monotonic() - started
            if not settled:
                logs = "\n".join(f"--- {c.name}\n{c.log_tail(30)}" for c in stack.children)
                pytest.fail(f"not settled through SASL_SSL after {elapsed:.0f} s\n{logs}")
            print(f"[security] {len(plan.orders)} orders settled through SASL_SSL, {elapsed:.1f} s after the start")

            ledger = demo.ledger()
            assert demo.problems(monitor.view, ledger) == []
            solicited = sorted(f"{s['seller_id']}/{s['order_id']}" for s in ledger["solicitations"])
            assert solicited == sorted(plan.must_be_sent())
            for child in (worker, bridge):
                log = child.log_path.read_text(errors="replace")
                assert PASSWORD not in log
                assert "Traceback" not in log
        finally:
            await monitor.stop()
            stack.close()


async def test_a_wrong_password_stops_every_kafka_command_at_once_with_one_line(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    wrong = secured_kafka.connection(sasl_password=SecretStr(WRONG_PASSWORD))
    with moto_sqs() as sqs_endpoint:
        stack = _stack(secured_kafka, tmp_path, wrong, sqs_endpoint)
        env = stack.config.env(SOLICIT_WORKER__ID="wrong-password")
        assert env["SOLICIT_KAFKA__SASL_PASSWORD"] == WRONG_PASSWORD
        commands = {
            "sellers list": ("sellers", "list"),
            "bridge": ("bridge",),  # SOLICIT_BRIDGE__QUEUE_URL is set: Kafka is the one problem
            "worker": ("worker",),
        }
        started = time.monotonic()
        results = await asyncio.gather(*(_solicit(env, *argv) for argv in commands.values()))
        elapsed = time.monotonic() - started
    print(f"[security] three commands refused a wrong password in {elapsed:.1f} s (together)")
    expected = (
        f"configuration error: Kafka: authentication failed at {secured_kafka.bootstrap} "
        f"(SASL SCRAM-SHA-512 as user '{USER}')"
    )
    for name, result in zip(commands, results, strict=True):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (name, result.stderr)
        assert len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith(f"solicit {name.split()[0]}: {expected}"), (name, lines[0])
        assert "invalid credentials" in lines[0]
        assert WRONG_PASSWORD not in result.stderr + result.stdout
        assert result.seconds < FAIL_FAST_S, (name, result.seconds)


async def test_the_cli_names_a_closed_port_and_an_untrusted_certificate(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    (closed,) = find_free_ports(1)
    cases = {
        f"cannot reach 127.0.0.1:{closed} (connection refused)": secured_kafka.connection(
            bootstrap_servers=f"127.0.0.1:{closed}"
        ),
        "(TLS handshake failed: certificate verify failed: ": secured_kafka.connection(
            ssl_cafile=secured_kafka.pki.other_ca_cert
        ),
    }
    with moto_sqs() as sqs_endpoint:
        envs = [
            _stack(secured_kafka, tmp_path / str(i), c, sqs_endpoint).config.env() for i, c in enumerate(cases.values())
        ]
        results = await asyncio.gather(*(_solicit(env, "sellers", "list") for env in envs))
    for phrase, result in zip(cases, results, strict=True):
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("solicit sellers: configuration error: Kafka: ") and phrase in line, line
        assert PASSWORD not in line
        assert result.seconds < FAIL_FAST_S


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


async def _solicit(env: dict[str, str], *args: str, limit: float = 120.0) -> Finished:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *solicit_argv(*args),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=limit)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        pytest.fail(f"solicit {' '.join(args)} still running after {limit:g} s:\n{stderr.decode(errors='replace')}")
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode(), time.monotonic() - started)
