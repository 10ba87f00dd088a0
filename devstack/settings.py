"""The lab commands' settings: the service's :class:`streams.settings.Settings` plus the ``LAB`` group."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from streams.settings import Settings


class LabSettings(BaseModel):
    """Where the local broker and the sandbox run (``SOLICIT_LAB__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_port: int = Field(default=9092, ge=1, le=65535, description="Port of the local broker (`solicit kafka up`).")
    kafka_data_dir: Path = Field(default=Path(".run/kafka"), description="Data and log directory of the local broker.")
    kafka_home: Path | None = Field(
        default=None,
        description="Cache of the local broker's Kafka jars; unset means ~/.cache/solicit/kafka-<version>.",
    )
    sandbox_host: str = Field(default="127.0.0.1", description="Interface `solicit sandbox` listens on.")
    sandbox_port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        description="Port of `solicit sandbox` (SOLICIT_SPAPI__ENDPOINT=http://host:port).",
    )


class DevSettings(Settings):
    """Settings of a lab command: the service's, plus :class:`LabSettings`."""

    lab: LabSettings = Field(default_factory=LabSettings, description="The local lab (broker, sandbox).")


if __name__ == "__main__":  # pragma: no cover - `make docs`
    from streams.settings import configuration_markdown

    print(configuration_markdown(DevSettings), end="")
