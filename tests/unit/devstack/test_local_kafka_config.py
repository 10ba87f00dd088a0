from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from devstack.local_kafka.config import BrokerConfig, new_cluster_id, read_listener_port, render_server_properties


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
