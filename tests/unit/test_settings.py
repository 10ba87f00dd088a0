"""Settings: the documented configuration is the real one; the helpers build what processes use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.clock import SimulatedClock, SystemClock
from streams.settings import DEFAULT_APP, Settings, configuration_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_configuration_lists_every_setting_as_the_code_does() -> None:
    assert DOC.read_text() == configuration_markdown(), "run `make docs`"


def test_every_setting_is_described() -> None:
    assert all(field.description for field in Settings.model_fields.values())


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("SOLICIT_PARTITIONS", "24")
    monkeypatch.setenv("SOLICIT_LWA_APPS", '{"eu": {"client_id": "id-eu", "client_secret": "s-eu"}}')
    monkeypatch.setenv("SOLICIT_RECHECK_INTERVAL_HOURS", "12")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.partitions == 24
    eu = settings.lwa_app("eu")
    assert eu is not None
    assert eu.client_id == "id-eu"
    assert "s-eu" not in repr(settings)
    assert settings.lwa_app(DEFAULT_APP) is None  # no default credentials configured
    assert settings.timing().recheck_interval == timedelta(hours=12)


def test_the_clock_is_simulated_only_when_asked() -> None:
    assert isinstance(Settings().clock(), SystemClock)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    clock = Settings(sim_start=start, sim_speed=3600, sim_anchor=1_000_000.0).clock()
    assert isinstance(clock, SimulatedClock)
    assert clock.real_seconds(timedelta(hours=1)) == 1.0


def test_each_worker_has_its_own_state_directory() -> None:
    assert Settings(worker_id="w7", data_dir=Path("/var/lib/solicit")).worker_dir() == Path(
        "/var/lib/solicit/worker-w7"
    )
