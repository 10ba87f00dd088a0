"""The ``server.properties`` of a single-node KRaft broker, and the cluster id. Pure: no IO, no processes.

The file is rendered per run rather than kept as a template with ``--override`` flags, because
``kafka.tools.StorageTool`` reads only the file. Ports and ``log.dirs`` change per run (tests use free ports and
temp dirs). Every value that differs from Kafka's default is there because one node cannot satisfy the
default. The comment above each one says why (notes: docs/architecture.md, "Running Kafka from Maven jars").
Java ``.properties`` files have no trailing comments, so each comment sits on its own line.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
"""Loopback only: the local broker is a development and test tool, never reachable from other machines."""


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    """Where one local broker listens and stores its data.

    ``log_dir`` must be absolute, because the broker resolves a relative one against its own working
    directory, not ours.
    """

    port: int
    controller_port: int
    log_dir: Path
    host: str = DEFAULT_HOST
    node_id: int = 1
    auto_create_partitions: int = 8
    """Partition count of topics created on first use. Our own topics, and Faust's, are created explicitly."""

    def __post_init__(self) -> None:
        for name, port in (("port", self.port), ("controller_port", self.controller_port)):
            if not 0 < port < 65536:
                raise ValueError(f"{name} must be in 1..65535, got {port}")
        if self.port == self.controller_port:
            raise ValueError(f"port and controller_port must differ, both are {self.port}")
        if not self.log_dir.is_absolute():
            raise ValueError(f"log_dir must be absolute, got {self.log_dir}")
        if self.auto_create_partitions < 1:
            raise ValueError("auto_create_partitions must be at least 1")

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"{self.host}:{self.port}"


def render_server_properties(config: BrokerConfig) -> str:
    """The complete ``server.properties`` for a combined broker+controller node with a static quorum.

    A static ``controller.quorum.voters`` means ``StorageTool format`` needs none of ``--standalone`` or
    ``--initial-controllers``, and the same file works for every re-start of a formatted directory.
    """
    host = config.host
    lines = [
        "# Rendered by devstack/local_kafka/config.py for one run; edits are overwritten on the next start.",
        "process.roles=broker,controller",
        f"node.id={config.node_id}",
        f"controller.quorum.voters={config.node_id}@{host}:{config.controller_port}",
        f"listeners=PLAINTEXT://{host}:{config.port},CONTROLLER://{host}:{config.controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{config.port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "# Absolute: the metadata log lands here too (no metadata.log.dir).",
        f"log.dirs={_escape(str(config.log_dir))}",
        "# Partitions of auto-created topics.",
        f"num.partitions={config.auto_create_partitions}",
        "# Faust creates its own topics through CreateTopics; producers to unknown topics create them too.",
        "auto.create.topics.enable=true",
        "# One node: every replication factor and ISR minimum is 1, or the internal topics are never created.",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "# Default 50 and 50: one partition makes the first JoinGroup and the first transaction fast.",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.num.partitions=1",
        "# Default 3000 ms added to every first group join.",
        "group.initial.rebalance.delay.ms=0",
        "# Two cores: fewer threads than the defaults (3 network, 8 io).",
        "num.network.threads=2",
        "num.io.threads=4",
        "",
    ]
    return "\n".join(lines)


def read_listener_port(properties_text: str) -> int | None:
    """The PLAINTEXT port a rendered ``server.properties`` listens on, or None when there is none.

    ``solicit kafka status`` reports the port of the broker that actually runs, which may differ from the
    one the command was given.
    """
    for raw in properties_text.splitlines():
        line = raw.strip()
        if not line.startswith("listeners="):
            continue
        for listener in line.removeprefix("listeners=").split(","):
            name, _, address = listener.partition("://")
            if name.strip() == "PLAINTEXT":
                port = address.rpartition(":")[2]
                return int(port) if port.isdigit() else None
    return None


def new_cluster_id() -> str:
    """A fresh KRaft cluster id: the 16 bytes of a random UUID in unpadded base64url (22 characters).

    The same format ``kafka-storage.sh random-uuid`` prints (``org.apache.kafka.common.Uuid``), made without
    starting a JVM.
    """
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def _escape(value: str) -> str:
    """Escape a value for a Java properties file (backslashes, and characters that would end a key)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")
