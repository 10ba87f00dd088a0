"""The one settings object every process builds once at start (pydantic-settings).

Names: our own settings use the ``SOLICIT_`` prefix; Kafka and AWS use their standard variables
(``KAFKA_BOOTSTRAP_SERVERS``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_DEFAULT_REGION``, credentials), which the AWS SDK
reads itself. Values are passed explicitly into connectors and the Faust app; nothing else reads the environment.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.clock import Clock, SimulatedClock, SystemClock
from statemachine.policy import Timing

DEFAULT_APP = "default"
"""The LWA application a seller belongs to when it names none."""

DEFAULT_KAFKA_PORT = 9092
"""The port ``solicit kafka up`` listens on; also the default bootstrap address of every other command."""


class LwaApp(BaseModel):
    """The LWA credentials of one SP-API application."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    client_secret: SecretStr


class Settings(BaseSettings):
    """Every setting of every process. Documented in README.md, section Configuration."""

    model_config = SettingsConfigDict(env_prefix="SOLICIT_", frozen=True, extra="ignore")

    # --- Kafka -----------------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        default=f"127.0.0.1:{DEFAULT_KAFKA_PORT}",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "SOLICIT_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated.",
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of every topic name (several deployments, one cluster).",
    )
    kafka_port: int = Field(default=DEFAULT_KAFKA_PORT, description="Port of the local broker (`solicit kafka up`).")
    kafka_data_dir: Path = Field(
        default=Path(".run/kafka"), description="Data and log directory of the local broker."
    )
    partitions: int = Field(
        default=12,
        ge=1,
        description="Partitions of the order and command topics (and the orders table); fixed once topics exist.",
    )
    kafka_home: Path | None = Field(
        default=None,
        description="Cache of the local broker's Kafka jars; unset means ~/.cache/solicit/kafka-<version>.",
    )

    # --- SP-API and LWA --------------------------------------------------------------------------------
    spapi_endpoint: str | None = Field(
        default=None,
        description="Overrides the regional SP-API base URL for every call (sandbox, tests, proxies).",
    )
    lwa_endpoint: str = Field(
        default="https://api.amazon.com/auth/o2/token", description="LWA token URL."
    )
    lwa_client_id: str = Field(default="", description="LWA client id of the SP-API application.")
    lwa_client_secret: SecretStr = Field(default=SecretStr(""), description="LWA client secret.")
    lwa_apps: dict[str, LwaApp] = Field(
        default_factory=dict,
        description=(
            'More SP-API applications, JSON: {"<app name>": {"client_id": "...", "client_secret": "..."}}. '
            "A seller names its app; the app `default` is lwa_client_id/lwa_client_secret."
        ),
    )

    # --- SP-API client tuning and the local sandbox (connectors/spapi, connectors/sandbox) -------------
    # Passed into connectors.spapi.ClientConfig by the process that builds the client; defaults match it.
    spapi_call_deadline: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one SP-API operation may take in total (token, rate-limit waits, retries, backoff).",
    )
    spapi_request_timeout: float = Field(default=10.0, gt=0, description="Seconds one SP-API HTTP attempt may take.")
    spapi_max_attempts: int = Field(default=5, ge=1, description="HTTP attempts per SP-API operation.")
    spapi_backoff_cap: float = Field(default=8.0, gt=0, description="Longest backoff between two attempts, in seconds.")
    sandbox_host: str = Field(default="127.0.0.1", description="Interface `solicit sandbox` listens on.")
    sandbox_port: int = Field(
        default=8000, ge=0, le=65535, description="Port of `solicit sandbox` (SOLICIT_SPAPI_ENDPOINT=http://host:port)."
    )

    # --- SQS -> Kafka bridge (AWS SDK settings come from the standard AWS_* variables) ---------------------
    sqs_queue_url: str = Field(default="", description="URL of the SQS queue Amazon delivers ORDER_CHANGE to.")
    bridge_pollers: int = Field(default=4, ge=1, le=64, description="Concurrent SQS long-poll loops.")
    bridge_visibility_timeout: int = Field(
        default=60, ge=1, le=43200, description="Seconds a received message stays hidden while it is forwarded."
    )

    # --- Sellers registry -------------------------------------------------------------------------------
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Fernet key(s) encrypting refresh tokens in the sellers topic; comma separated for rotation "
            "(the first encrypts, all decrypt)."
        ),
    )

    # --- Worker (Faust app: orders agent, timers, sender) -------------------------------------------------
    app_id: str = Field(default="solicit", description="Faust app id: consumer group and changelog topic prefix.")
    worker_id: str = Field(
        default_factory=socket.gethostname,
        description="Names this worker's RocksDB directory (data_dir/worker-<id>); unique per worker on one host.",
    )
    data_dir: Path = Field(default=Path(".run"), description="Root of local state (RocksDB tables).")
    replication_factor: int = Field(default=1, ge=1, description="Replication of the topics we create.")
    kafka_session_timeout: float = Field(
        default=30.0,
        ge=6,
        description="Seconds before a silent worker loses its partitions (after a crash, others take over then).",
    )
    standby_replicas: int = Field(default=1, ge=0, description="Faust table standby replicas.")
    timer_interval: float = Field(default=1.0, gt=0, description="Real seconds between due-index scans.")
    timer_budget: int = Field(default=1000, ge=1, description="Most timer firings per partition per scan.")
    rocksdb_write_buffer_mb: int = Field(default=4, ge=1, description="RocksDB write buffer per table partition.")
    rocksdb_block_cache_mb: int = Field(default=16, ge=1, description="RocksDB block cache per table partition.")
    log_level: str = Field(default="info", description="Log level of the worker and the bridge.")

    # --- Order timing (business time; see docs/state-machine.md) ----------------------------------------
    recheck_interval_hours: float = Field(default=24.0, gt=0, description="Re-check after 'not yet available'.")
    lease_timeout_minutes: float = Field(default=30.0, gt=0, description="Re-issue a command unanswered this long.")
    retry_initial_seconds: float = Field(default=300.0, gt=0, description="First backoff after a failed send.")
    retry_max_seconds: float = Field(default=6 * 3600.0, gt=0, description="Longest backoff after failed sends.")
    afn_transit_days: float = Field(default=3.0, ge=0, description="FBA: estimated days from shipment to delivery.")
    afn_max_transit_days: float = Field(default=7.0, ge=0, description="FBA: latest estimated delivery after shipment.")
    pending_timeout_days: float = Field(default=60.0, gt=0, description="Expire orders not shipped this long.")
    retention_days: float = Field(default=90.0, gt=0, description="Keep finished orders this long, then purge.")
    unknown_seller_retry_hours: float = Field(default=24.0, gt=0, description="Re-check orders of unknown sellers.")
    attention_retry_hours: float = Field(
        default=6.0, gt=0, description="Re-check orders of sellers with revoked or missing credentials."
    )

    # --- Simulated clock (demo and end-to-end tests) ----------------------------------------------------
    sim_start: datetime | None = Field(
        default=None, description="When set, business time is simulated and starts here (ISO-8601)."
    )
    sim_speed: float = Field(default=1.0, gt=0, description="Simulated seconds per real second.")
    sim_anchor: float | None = Field(
        default=None,
        description="Real Unix time at which simulated time equals sim_start; every process of a run must share it.",
    )

    def lwa_app(self, name: str = DEFAULT_APP) -> LwaApp | None:
        """The credentials of the application ``name``; None when it is not configured."""
        if name in self.lwa_apps:
            return self.lwa_apps[name]
        if name == DEFAULT_APP and self.lwa_client_id:
            return LwaApp(client_id=self.lwa_client_id, client_secret=self.lwa_client_secret)
        return None

    def timing(self) -> Timing:
        """The core's timing knobs from these settings."""
        return Timing(
            recheck_interval=timedelta(hours=self.recheck_interval_hours),
            lease_timeout=timedelta(minutes=self.lease_timeout_minutes),
            retry_initial=timedelta(seconds=self.retry_initial_seconds),
            retry_max=timedelta(seconds=max(self.retry_max_seconds, self.retry_initial_seconds)),
            afn_transit_days=self.afn_transit_days,
            afn_max_transit_days=self.afn_max_transit_days,
            pending_timeout=timedelta(days=self.pending_timeout_days),
            retention=timedelta(days=self.retention_days),
        )

    def worker_dir(self) -> Path:
        """This worker's own state directory (RocksDB locks are per directory: never share one)."""
        return self.data_dir / f"worker-{self.worker_id}"

    def clock(self) -> Clock:
        """The process clock these settings describe."""
        if self.sim_start is None:
            return SystemClock()
        if self.sim_anchor is None:
            return SimulatedClock(start=self.sim_start, speed=self.sim_speed)
        return SimulatedClock(start=self.sim_start, speed=self.sim_speed, anchor=self.sim_anchor)


def configuration_markdown() -> str:
    """docs/configuration.md: every setting, its variable, default and meaning (``make docs``)."""
    lines = [
        "# Configuration",
        "",
        "Every process reads these once at start (`streams/settings.py`). Generated by `make docs`;",
        "`tests/unit/test_settings.py` fails when this page and the code disagree.",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = " / ".join(f"`{c}`" for c in alias.choices) if isinstance(alias, AliasChoices) else (
            f"`SOLICIT_{name.upper()}`"
        )
        if field.default_factory is not None:
            default = "host name" if name == "worker_id" else "none"
        elif isinstance(field.default, SecretStr) or field.default == "":
            default = "empty"
        elif field.default is None:
            default = "unset"
        else:
            default = f"`{field.default}`"
        lines.append(f"| {variable} | {default} | {field.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(configuration_markdown(), end="")
