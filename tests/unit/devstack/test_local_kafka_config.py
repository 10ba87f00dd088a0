from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

import pytest

from devstack.local_kafka import config as config_module
from devstack.local_kafka.config import (
    BrokerConfig,
    SaslSslListener,
    new_cluster_id,
    read_listener_port,
    render_server_properties,
)


def _config(**overrides: object) -> BrokerConfig:
    values: dict[str, object] = {"port": 19092, "controller_port": 19093, "log_dir": Path("/data/kafka-logs")}
    values.update(overrides)
    return BrokerConfig(**values)  # type: ignore[arg-type]


def _parse(text: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        assert key not in entries, f"duplicate key {key}"
        entries[key] = value
    return entries


def test_renders_a_combined_kraft_node_with_a_static_quorum() -> None:
    props = _parse(render_server_properties(_config()))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == "/data/kafka-logs"


def test_single_node_settings_that_differ_from_kafka_defaults() -> None:
    props = _parse(render_server_properties(_config()))

    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["default.replication.factor"] == "1"
    assert props["offsets.topic.num.partitions"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "8"


def test_comments_are_on_their_own_lines() -> None:
    # Java .properties has no trailing comments: "a=1 # x" would make the value "1 # x".
    for line in render_server_properties(_config()).splitlines():
        if not line.startswith("#"):
            assert "#" not in line, line


def test_listener_port_reads_back_from_the_rendered_file() -> None:
    assert read_listener_port(render_server_properties(_config(port=29092, controller_port=29093))) == 29092
    assert read_listener_port("listeners=CONTROLLER://127.0.0.1:1\n") is None
    assert read_listener_port("") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"log_dir": Path("relative/dir")}, "absolute"),
        ({"controller_port": 19092}, "must differ"),
        ({"port": 0}, "1..65535"),
        ({"controller_port": 70000}, "1..65535"),
        ({"auto_create_partitions": 0}, "at least 1"),
    ],
)
def test_rejects_configs_the_broker_would_misread(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _config(**overrides)


def test_cluster_id_is_16_random_bytes_in_unpadded_base64url() -> None:
    ids = {new_cluster_id() for _ in range(50)}

    assert len(ids) == 50
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # StorageTool's argument parser takes "-t -abc..." for two options; Kafka's own ids never start with "-".
    dashed = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    plain = uuid.UUID(int=1)
    values = iter([dashed, plain])
    monkeypatch.setattr(config_module.uuid, "uuid4", lambda: next(values))
    assert new_cluster_id() == base64.urlsafe_b64encode(plain.bytes).rstrip(b"=").decode()


# --- the optional SASL_SSL listener ---------------------------------------------------------------------------------


def _sasl_ssl(**overrides: object) -> SaslSslListener:
    values: dict[str, object] = {
        "port": 19094,
        "keystore": Path("/data/tls/server.pem"),
        "users": (("alice", "alice-pw"), ("bob", "bob-pw")),
    }
    values.update(overrides)
    return SaslSslListener(**values)  # type: ignore[arg-type]


def test_the_default_broker_has_no_sasl_or_tls_at_all() -> None:
    text = render_server_properties(_config())
    assert "SASL" not in text and "ssl." not in text and "sasl." not in text


def test_a_sasl_ssl_listener_is_added_next_to_plaintext_with_a_pem_keystore_and_scram() -> None:
    props = _parse(render_server_properties(_config(sasl_ssl=_sasl_ssl())))

    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,SASL_SSL://127.0.0.1:19094")
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"  # the broker itself stays on PLAINTEXT
    prefix = "listener.name.sasl_ssl."
    assert props[f"{prefix}sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props[f"{prefix}scram-sha-512.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    )
    assert props[f"{prefix}ssl.keystore.type"] == "PEM"
    assert props[f"{prefix}ssl.keystore.location"] == "/data/tls/server.pem"
    assert not any("password" in key for key in props)  # an unencrypted PEM key needs none


def test_scram_users_are_format_arguments_never_server_properties() -> None:
    listener = _sasl_ssl(mechanism="SCRAM-SHA-256")
    assert listener.scram_arguments() == [
        "--add-scram",
        "SCRAM-SHA-256=[name=alice,password=alice-pw]",
        "--add-scram",
        "SCRAM-SHA-256=[name=bob,password=bob-pw]",
    ]
    assert "alice-pw" not in render_server_properties(_config(sasl_ssl=listener))
    assert "alice-pw" not in repr(listener)
    assert _config(sasl_ssl=listener).sasl_ssl_bootstrap == "127.0.0.1:19094"
    assert _config().sasl_ssl_bootstrap is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 0}, "SASL_SSL port"),
        ({"keystore": Path("server.pem")}, "keystore must be absolute"),
        ({"mechanism": "PLAIN"}, "mechanism must be one of"),
        ({"users": (("alice", "a,b"),)}, "without ','"),
        ({"users": (("", "pw"),)}, "non-empty"),
    ],
)
def test_a_sasl_ssl_listener_that_cannot_work_is_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _sasl_ssl(**overrides)


def test_the_sasl_ssl_port_must_differ_from_the_others() -> None:
    with pytest.raises(ValueError, match="already the client or controller port"):
        _config(sasl_ssl=_sasl_ssl(port=19093))
