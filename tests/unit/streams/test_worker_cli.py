"""A worker that could not send for its sellers refuses to start (issue 9.11): it used to start and defer every
order until its window closed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from connectors.crypto import TokenCipher, generate_key
from statemachine.marketplaces import Region
from streams.cli.main import main
from streams.cli.worker import credential_problem
from streams.registry import SellerRecord
from streams.settings import LwaApp, Settings

KEY = generate_key()


def seller(seller_id: str, *, app: str = "default", key: str = KEY) -> SellerRecord:
    return SellerRecord(
        seller_id=seller_id,
        name=seller_id,
        region=Region.NA,
        marketplace_ids=("ATVPDKIKX0DER",),
        app=app,
        refresh_token_encrypted=TokenCipher(SecretStr(key)).encrypt(SecretStr("Atzr|TOPSECRET")),
        updated_at=datetime.now(UTC),
    )


def settings(**spapi: object) -> Settings:
    base: dict[str, object] = {"lwa_client_id": "id", "lwa_client_secret": SecretStr("s")}
    return Settings(secret_key=SecretStr(KEY), spapi={**base, **spapi})  # type: ignore[arg-type]


def test_a_worker_with_what_its_sellers_need_may_start() -> None:
    eu = LwaApp(client_id="eu", client_secret=SecretStr("x"))
    sellers = {"A1": seller("A1"), "A2": seller("A2", app="eu")}
    assert credential_problem(settings(lwa_apps={"eu": eu}), sellers) is None
    assert credential_problem(settings(), {}) is None


def test_no_secret_key_is_refused() -> None:
    problem = credential_problem(Settings(), {"A1": seller("A1")})
    assert problem is not None and "SOLICIT_SECRET_KEY is not set" in problem


def test_a_key_that_opens_no_token_is_refused_naming_the_sellers() -> None:
    other = generate_key()
    problem = credential_problem(settings(), {"A1": seller("A1", key=other), "A2": seller("A2", key=other)})
    assert problem is not None
    assert "none of 2 seller(s) (A1, A2)" in problem
    assert KEY not in problem and other not in problem and "TOPSECRET" not in problem


def test_a_missing_lwa_app_is_refused_naming_it() -> None:
    problem = credential_problem(settings(), {"A1": seller("A1", app="eu"), "A2": seller("A2")})
    assert problem is not None and "app(s) 'eu', which 1 seller(s) use" in problem


def test_bad_settings_stop_the_worker_with_exit_2_and_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOLICIT_SPAPI__LWA_APPS", '{"x": {"client_id": "a", "client_secret": ["TOPSECRET"]}}')
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SOLICIT_SPAPI__LWA_APPS" in err and "TOPSECRET" not in err
