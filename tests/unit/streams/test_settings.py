"""Settings: the documented configuration is the real one; the helpers build what processes use; a bad setting is
reported by its variable, never by its value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.clock import SimulatedClock, Simulation, SystemClock
from devstack.settings import DevSettings
from streams.cli.shell import ConfigurationError, load_settings
from streams.registry import DEFAULT_APP
from streams.settings import Settings, WorkerSettings, configuration_markdown

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_docs_configuration_lists_every_setting_as_the_code_does() -> None:
    assert DOC.read_text() == configuration_markdown(DevSettings), "run `make docs`"


def test_every_setting_is_described() -> None:
    for group in DevSettings.model_fields.values():
        assert group.description
        annotation = group.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            assert all(field.description for field in annotation.model_fields.values()), annotation


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("SOLICIT_KAFKA__PARTITIONS", "24")
    monkeypatch.setenv("SOLICIT_SPAPI__LWA_APPS", '{"eu": {"client_id": "id-eu", "client_secret": "s-eu"}}')
    monkeypatch.setenv("SOLICIT_TIMING__RECHECK_INTERVAL", "PT12H")
    monkeypatch.setenv("SOLICIT_SENDER__ATTENTION_RETRY", "PT60S")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert settings.kafka.partitions == 24
    eu = settings.spapi.lwa_app("eu")
    assert eu is not None
    assert eu.client_id == "id-eu"
    assert "s-eu" not in repr(settings)
    assert settings.spapi.lwa_app(DEFAULT_APP) is None  # no default credentials configured
    assert settings.timing.recheck_interval == timedelta(hours=12)
    assert settings.sender.attention_retry == timedelta(seconds=60)


def test_our_own_bootstrap_variable_wins_over_the_standard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "standard:9092")
    monkeypatch.setenv("SOLICIT_KAFKA__BOOTSTRAP_SERVERS", "ours:9092")
    monkeypatch.setenv("SOLICIT_KAFKA__PARTITIONS", "3")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "ours:9092"
    assert settings.kafka.partitions == 3


def test_the_clock_is_simulated_only_when_asked() -> None:
    assert isinstance(Settings().sim.clock(), SystemClock)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    clock = Simulation(start=start, speed=3600, anchor=1_000_000.0).clock()
    assert isinstance(clock, SimulatedClock)
    assert clock.real_seconds(timedelta(hours=1)) == 1.0


def test_each_worker_has_its_own_state_directory() -> None:
    assert WorkerSettings(id="w7", data_dir=Path("/var/lib/solicit")).state_dir() == Path("/var/lib/solicit/worker-w7")


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        (
            "SOLICIT_SPAPI__LWA_APPS",
            '{"x": {"client_id": "a", "client_secret": ["TOPSECRET"]}}',
            "SOLICIT_SPAPI__LWA_APPS",
        ),
        ("SOLICIT_SPAPI__LWA_APPS", '{"x": TOPSECRET', "SOLICIT_SPAPI__LWA_APPS"),
        ("SOLICIT_KAFKA__PARTITIONS", "TOPSECRET", "SOLICIT_KAFKA__PARTITIONS"),
        ("SOLICIT_KAFKA", '{"partitions": "TOPSECRET"}', "SOLICIT_KAFKA__PARTITIONS"),
        ("SOLICIT_LOG_LEVEL", "TOPSECRET", "SOLICIT_LOG_LEVEL"),
        ("SOLICIT_SIM__START", "TOPSECRET", "SOLICIT_SIM__START"),
    ],
)
def test_a_bad_setting_names_its_variable_and_never_its_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(Settings)
    text = str(caught.value)
    assert named in text
    assert "TOPSECRET" not in text
    assert caught.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["worker"],
        ["bridge", "--queue-url", "http://q"],
        ["sellers", "list"],
        ["sandbox"],
        ["kafka", "status"],
        ["demo"],
    ],
)
def test_every_command_refuses_a_bad_setting_in_one_line_with_exit_2(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli.main import main

    monkeypatch.setenv("SOLICIT_SPAPI__LWA_APPS", '{"x": {"client_id": "a", "client_secret": ["TOPSECRET"]}}')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "SOLICIT_SPAPI__LWA_APPS" in err and "TOPSECRET" not in err
