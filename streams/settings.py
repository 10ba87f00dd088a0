"""The one settings object every process builds once at start (pydantic-settings).

Names: our own settings use the ``SOLICIT_`` prefix; Kafka and AWS use their standard variables
(``KAFKA_BOOTSTRAP_SERVERS``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_DEFAULT_REGION``, credentials), which the AWS SDK
reads itself. Values are passed explicitly into connectors and the Faust app; nothing else reads the environment.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.clock import Clock, SimulatedClock, SystemClock

DEFAULT_KAFKA_PORT = 9092
"""The port ``solicit kafka up`` listens on; also the default bootstrap address of every other command."""


class Settings(BaseSettings):
    """Every setting of every process. Documented in README.md, section Configuration."""

    model_config = SettingsConfigDict(env_prefix="SOLICIT_", frozen=True, extra="ignore")

    # --- Kafka -----------------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        default=f"127.0.0.1:{DEFAULT_KAFKA_PORT}",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "SOLICIT_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated.",
    )
    kafka_port: int = Field(default=DEFAULT_KAFKA_PORT, description="Port of the local broker (`solicit kafka up`).")
    kafka_data_dir: Path = Field(
        default=Path(".run/kafka"), description="Data and log directory of the local broker."
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

    # --- Simulated clock (demo and end-to-end tests) ----------------------------------------------------
    sim_start: datetime | None = Field(
        default=None, description="When set, business time is simulated and starts here (ISO-8601)."
    )
    sim_speed: float = Field(default=1.0, gt=0, description="Simulated seconds per real second.")
    sim_anchor: float | None = Field(
        default=None,
        description="Real Unix time at which simulated time equals sim_start; every process of a run must share it.",
    )

    def clock(self) -> Clock:
        """The process clock these settings describe."""
        if self.sim_start is None:
            return SystemClock()
        if self.sim_anchor is None:
            return SimulatedClock(start=self.sim_start, speed=self.sim_speed)
        return SimulatedClock(start=self.sim_start, speed=self.sim_speed, anchor=self.sim_anchor)
