"""The ``server.properties`` of a single-node KRaft broker, and the cluster id. Pure: no IO, no processes.

The file is rendered per run rather than kept as a template with ``--override`` flags, because
``kafka.tools.StorageTool`` reads only the file. Ports and ``log.dirs`` change per run (tests use free ports and
temp dirs). Every value that differs from Kafka's default is there because one node cannot satisfy the
default. The comment above each one says why (notes: docs/architecture.md, "Running Kafka from Maven jars").
Java ``.properties`` files have no trailing comments, so each comment sits on its own line.

By default the broker has one client listener, PLAINTEXT. A :class:`SaslSslListener` adds a second one, SASL_SSL with
SCRAM, for tests of the clients' security settings: TLS from a PEM keystore (Kafka 3.9 reads PEM directly, no JKS
and no keytool), SCRAM users created when the storage is formatted (``StorageTool format --add-scram``, see
broker.py), since KRaft keeps SCRAM credentials in the metadata log.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
"""Loopback only: the local broker is a development and test tool, never reachable from other machines."""


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, kw_only=True)
class SaslSslListener:
    """An extra client listener speaking SASL_SSL (SCRAM over TLS), next to PLAINTEXT (which the readiness probe
    and the broker itself keep using).

    ``keystore`` is one PEM file: the server's private key (PKCS#8, unencrypted) followed by its certificate chain.
    ``users`` are the SCRAM credentials created at format time, as (name, password); a restart of a formatted data
    dir keeps the users it was formatted with. Names and passwords may not hold ``,``, ``]`` or ``=`` (the
    ``--add-scram`` syntax has no escaping).
    """

    port: int
    keystore: Path
    mechanism: str = "SCRAM-SHA-512"
    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"the SASL_SSL port must be in 1..65535, got {self.port}")
        if not self.keystore.is_absolute():
            raise ValueError(f"keystore must be absolute, got {self.keystore}")
        if self.mechanism not in SCRAM_MECHANISMS:
            raise ValueError(f"mechanism must be one of {', '.join(SCRAM_MECHANISMS)}, got {self.mechanism}")
        for name, password in self.users:
            if not name or not password or any(c in name + password for c in ",]="):
                raise ValueError(f"SCRAM user {name!r}: name and password must be non-empty, without ',', ']' or '='")

    def scram_arguments(self) -> list[str]:
        """``StorageTool format`` arguments that create the users."""
        arguments: list[str] = []
        for name, password in self.users:
            arguments += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return arguments


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
    sasl_ssl: SaslSslListener | None = None
    """An extra SASL_SSL client listener; None (the default) keeps the broker PLAINTEXT only."""

    def __post_init__(self) -> None:
        for name, port in (("port", self.port), ("controller_port", self.controller_port)):
            if not 0 < port < 65536:
                raise ValueError(f"{name} must be in 1..65535, got {port}")
        if self.port == self.controller_port:
            raise ValueError(f"port and controller_port must differ, both are {self.port}")
        if self.sasl_ssl is not None and self.sasl_ssl.port in (self.port, self.controller_port):
            raise ValueError(f"the SASL_SSL port {self.sasl_ssl.port} is already the client or controller port")
        if not self.log_dir.is_absolute():
            raise ValueError(f"log_dir must be absolute, got {self.log_dir}")
        if self.auto_create_partitions < 1:
            raise ValueError("auto_create_partitions must be at least 1")

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        """The ``host:port`` of the SASL_SSL listener, when there is one."""
        return f"{self.host}:{self.sasl_ssl.port}" if self.sasl_ssl is not None else None


def render_server_properties(config: BrokerConfig) -> str:
    """The complete ``server.properties`` for a combined broker+controller node with a static quorum.

    A static ``controller.quorum.voters`` means ``StorageTool format`` needs none of ``--standalone`` or
    ``--initial-controllers``, and the same file works for every re-start of a formatted directory.
    """
    host = config.host
    listeners = f"PLAINTEXT://{host}:{config.port},CONTROLLER://{host}:{config.controller_port}"
    advertised = f"PLAINTEXT://{host}:{config.port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if config.sasl_ssl is not None:
        listeners += f",SASL_SSL://{host}:{config.sasl_ssl.port}"
        advertised += f",SASL_SSL://{host}:{config.sasl_ssl.port}"
        protocols += ",SASL_SSL:SASL_SSL"
    lines = [
        "# Rendered by devstack/local_kafka/config.py for one run; edits are overwritten on the next start.",
        "process.roles=broker,controller",
        f"node.id={config.node_id}",
        f"controller.quorum.voters={config.node_id}@{host}:{config.controller_port}",
        f"listeners={listeners}",
        f"advertised.listeners={advertised}",
        f"listener.security.protocol.map={protocols}",
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
    ]
    if config.sasl_ssl is not None:
        lines += _sasl_ssl_lines(config.sasl_ssl)
    lines.append("")
    return "\n".join(lines)


def _sasl_ssl_lines(listener: SaslSslListener) -> list[str]:
    prefix = "listener.name.sasl_ssl."
    mechanism = listener.mechanism.lower()
    return [
        "# The SASL_SSL listener: SCRAM over TLS. Its users are created at format time (StorageTool --add-scram).",
        f"{prefix}sasl.enabled.mechanisms={listener.mechanism}",
        "# The broker side of SCRAM needs a login module even though the broker never logs in with it itself.",
        f"{prefix}{mechanism}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "# PEM keystore: the private key (PKCS#8, unencrypted, so no ssl.key.password) and the certificate chain.",
        f"{prefix}ssl.keystore.type=PEM",
        f"{prefix}ssl.keystore.location={_escape(str(listener.keystore))}",
        f"{prefix}ssl.client.auth=none",
    ]


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
    starting a JVM. Like Kafka's ``Uuid.randomUuid()``, it never starts with ``-``: ``StorageTool format -t <id>``
    would read such an id (1 in 64) as an option and fail with "argument --cluster-id/-t: expected one argument".
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def _escape(value: str) -> str:
    """Escape a value for a Java properties file (backslashes, and characters that would end a key)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")
