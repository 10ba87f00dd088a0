"""The one settings object every process builds once at start (pydantic-settings, nested groups).

Variables: ``SOLICIT_<GROUP>__<FIELD>`` (``env_nested_delimiter="__"``), e.g. ``SOLICIT_KAFKA__PARTITIONS=12``,
``SOLICIT_TIMING__LEASE_TIMEOUT=PT30M``; the few top-level settings are ``SOLICIT_<FIELD>``. A whole group may also
be given as JSON (``SOLICIT_KAFKA='{"partitions": 4}'``). The standard ``KAFKA_BOOTSTRAP_SERVERS`` is read too, below
``SOLICIT_KAFKA__BOOTSTRAP_SERVERS``; AWS settings come from the standard ``AWS_*`` variables, which the AWS SDK
reads itself.

Each default lives in one place: a group is the model of the code that uses it (``Timing`` of the core,
``ClientConfig`` of the SP-API connector, ``SenderConfig`` of the sender, ``BridgeConfig`` of the bridge,
``Simulation`` of the clock, ``KafkaConnection`` of the Kafka connector), extended here only by what the service
adds. Values are passed explicitly into connectors and the Faust app; nothing else reads the environment.
:func:`configuration_markdown` writes ``docs/configuration.md`` from these models (``make docs``).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connectors.clock import Simulation
from connectors.kafka import KafkaConnection
from connectors.spapi import DEFAULT_LWA_TOKEN_URL, ClientConfig
from statemachine.policy import Timing
from streams.alerting import AlertSettings
from streams.bridge import BridgeConfig
from streams.reconcile import ReconcileConfig
from streams.registry import DEFAULT_APP
from streams.sender import SenderConfig
from streams.web.config import WebConfig

ENV_PREFIX = "SOLICIT_"
NESTED_DELIMITER = "__"


class KafkaSettings(KafkaConnection):
    """The cluster (connection, from :class:`connectors.kafka.KafkaConnection`) and how we use it."""

    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of every topic name (several deployments, one cluster).",
    )
    partitions: int = Field(
        default=12,
        ge=1,
        description="Partitions of the order and command topics (and the orders table); fixed once topics exist.",
    )
    replication_factor: int = Field(default=1, ge=1, description="Replication of the topics we create.")
    min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description="min.insync.replicas of the topics we create (at most the replication factor; 2 of 3 in prod).",
    )
    audit_retention: timedelta = Field(
        default=timedelta(days=90),
        gt=timedelta(0),
        description="Retention of the outcomes and dead-letters topics: the audit trail must outlive Amazon's window.",
    )
    session_timeout: float = Field(
        default=30.0,
        ge=6,
        description="Seconds before a silent worker loses its partitions (after a crash, others take over then).",
    )

    @model_validator(mode="after")
    def _isr_fits(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError("min_insync_replicas must not exceed replication_factor")
        return self


class LwaApp(BaseModel):
    """The LWA credentials of one SP-API application."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    client_secret: SecretStr


class SpApiSettings(ClientConfig):
    """Where the SP-API and LWA are, our application's credentials, and the client's tuning (:class:`ClientConfig`)."""

    endpoint: str | None = Field(
        default=None, description="Overrides the regional SP-API base URL for every call (sandbox, tests, proxies)."
    )
    lwa_endpoint: str = Field(default=DEFAULT_LWA_TOKEN_URL, description="LWA token URL.")
    lwa_client_id: str = Field(default="", description="LWA client id of the SP-API application `default`.")
    lwa_client_secret: SecretStr = Field(default=SecretStr(""), description="LWA client secret of `default`.")
    lwa_apps: dict[str, LwaApp] = Field(
        default_factory=dict,
        description=(
            'More SP-API applications, JSON: {"<app name>": {"client_id": "...", "client_secret": "..."}}. '
            "A seller names its app; the app `default` is lwa_client_id/lwa_client_secret."
        ),
    )

    def lwa_app(self, name: str = DEFAULT_APP) -> LwaApp | None:
        """The credentials of the application ``name``; None when it is not configured."""
        if name in self.lwa_apps:
            return self.lwa_apps[name]
        if name == DEFAULT_APP and self.lwa_client_id:
            return LwaApp(client_id=self.lwa_client_id, client_secret=self.lwa_client_secret)
        return None


class WorkerSettings(BaseModel):
    """The Faust app of ``solicit worker``: identity, local state, timers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = Field(default="solicit", description="Faust app id: consumer group and changelog topic prefix.")
    id: str = Field(
        default_factory=socket.gethostname,
        description="Names this worker's RocksDB directory (data_dir/worker-<id>); unique per worker on one host.",
    )
    data_dir: Path = Field(default=Path(".run"), description="Root of local state (RocksDB tables).")
    standby_replicas: int = Field(default=1, ge=0, description="Faust table standby replicas.")
    timer_interval: float = Field(default=1.0, gt=0, description="Real seconds between due-index scans.")
    timer_budget: int = Field(default=1000, ge=1, description="Most timer firings per partition per scan.")
    index_sweep_interval: float = Field(
        default=900.0, gt=0, description="Real seconds between rebuilds of the due index from the orders table."
    )
    shutdown_grace: float = Field(
        default=10.0, ge=0, description="Seconds a create call in flight may take to finish when the worker stops."
    )
    rocksdb_write_buffer_mb: int = Field(
        default=4, ge=1, description="RocksDB memtable size of one orders table partition (two at most each)."
    )
    rocksdb_memtables_mb: int = Field(
        default=64, ge=1, description="RocksDB memtables of all orders table partitions together (flushed beyond)."
    )
    rocksdb_block_cache_mb: int = Field(
        default=64, ge=1, description="One RocksDB block cache shared by all orders table partitions."
    )

    def state_dir(self) -> Path:
        """This worker's own state directory (RocksDB locks are per directory: never share one)."""
        return self.data_dir / f"worker-{self.id}"


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(BaseSettings):
    """Every setting of the service's processes (worker, bridge, sellers). Documented in docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        # Validation errors never quote the input: it may be a secret (a Kafka password, an LWA secret, the key).
        hide_input_in_errors=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Kafka cluster and topics.")
    spapi: SpApiSettings = Field(default_factory=SpApiSettings, description="SP-API, LWA and the client's tuning.")
    timing: Timing = Field(default_factory=Timing, description="Order timing (business time; docs/state-machine.md).")
    sender: SenderConfig = Field(default_factory=SenderConfig, description="The sender's deferrals.")
    reconcile: ReconcileConfig = Field(
        default_factory=ReconcileConfig, description="Backfill and daily reconciliation (Orders API getOrders)."
    )
    bridge: BridgeConfig = Field(default_factory=BridgeConfig, description="The SQS -> Kafka bridge.")
    worker: WorkerSettings = Field(default_factory=WorkerSettings, description="The worker's Faust app.")
    web: WebConfig = Field(default_factory=WebConfig, description="The web API, metrics and dashboard of workers.")
    alerts: AlertSettings = Field(
        default_factory=AlertSettings, description="When alerts are raised and resolved (docs/operations.md)."
    )
    sim: Simulation = Field(default_factory=Simulation, description="Simulated business time (demo, tests).")
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Fernet key(s) encrypting refresh tokens in the sellers topic; comma separated for rotation "
            "(the first encrypts, all decrypt)."
        ),
    )
    log_level: LogLevel = Field(default="info", description="Log level of every command.")
    log_format: Literal["plain", "json"] = Field(
        default="plain",
        description="Logs on stderr: `plain` text or `json` lines, the same fields either way (operations.md#logs).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, StandardVariables(settings_cls)


class StandardVariables(PydanticBaseSettingsSource):
    """Standard variables other tools use for the same thing, below our own: ``KAFKA_BOOTSTRAP_SERVERS``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        return {"kafka": {"bootstrap_servers": servers}} if servers else {}


def variable_of(settings_cls: type[BaseModel], location: tuple[int | str, ...]) -> tuple[str, str]:
    """The environment variable behind a validation error's location, and the rest of the location inside it.

    ``("kafka", "partitions")`` -> ``("SOLICIT_KAFKA__PARTITIONS", "")``;
    ``("spapi", "lwa_apps", "eu", "client_id")`` -> ``("SOLICIT_SPAPI__LWA_APPS", "eu.client_id")``.
    """
    names: list[str] = []
    model: type[BaseModel] | None = settings_cls
    rest = list(location)
    while rest and model is not None and isinstance(rest[0], str) and rest[0] in model.model_fields:
        name = str(rest.pop(0))
        names.append(name)
        annotation = model.model_fields[name].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    variable = ENV_PREFIX + NESTED_DELIMITER.join(names).upper() if names else ENV_PREFIX + "*"
    return variable, ".".join(str(part) for part in rest)


def configuration_markdown(settings_cls: type[BaseModel] = Settings, title: str = "Configuration") -> str:
    """docs/configuration.md: every setting, its variable, default and meaning (``make docs``)."""
    lines = [
        f"# {title}",
        "",
        "Every process reads these once at start (`streams/settings.py`; the lab commands add the `LAB` group of",
        "`devstack/settings.py`). Generated by `make docs`; a test fails when this page and the code disagree.",
        "Durations (`timing`, `sender`) are ISO-8601 (`PT30M`, `P5D`). A whole group can be set as JSON in",
        "`SOLICIT_<GROUP>`. `KAFKA_BOOTSTRAP_SERVERS` is read when `SOLICIT_KAFKA__BOOTSTRAP_SERVERS` is not set.",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
    ]
    for name, field in settings_cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            group = f"{ENV_PREFIX}{name.upper()}{NESTED_DELIMITER}"
            lines.extend(_rows(annotation, group))
        else:
            lines.append(_row(f"{ENV_PREFIX}{name.upper()}", field))
    return "\n".join(lines) + "\n"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    return [_row(prefix + name.upper(), field) for name, field in model.model_fields.items()]


def _row(variable: str, field: FieldInfo) -> str:
    if field.default_factory is not None:
        default = "host name" if field.default_factory is socket.gethostname else "empty"
    elif isinstance(field.default, SecretStr) or field.default == "":
        default = "empty"
    elif field.default is None:
        default = "unset"
    elif isinstance(field.default, timedelta):
        default = f"`{TypeAdapter(timedelta).dump_python(field.default, mode='json')}`"
    else:
        default = f"`{field.default}`"
    return f"| `{variable}` | {default} | {field.description or ''} |"


if __name__ == "__main__":  # pragma: no cover
    print(configuration_markdown(), end="")
