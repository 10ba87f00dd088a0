from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from connectors.crypto import TokenCipher, UndecryptableToken, generate_key
from statemachine.marketplaces import Region
from statemachine.policy import SellerPolicy, SendHours
from streams.registry import (
    DEFAULT_APP,
    InvalidImportFile,
    Problem,
    SellerEntry,
    SellerRecord,
    UndecodableSellerRecord,
    parse_import_file,
)

REPO = Path(__file__).resolve().parents[3]
TOKEN = "Atzr|IwEBIPlaintextRefreshToken-do-not-leak"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
US, CA, DE, UK, JP = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2", "A1PA6795UKMFR9", "A1F83G8C2ARO7P", "A1VC38T7YXB528"


def entry(seller_id: Any = "A2SELLER1", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "seller_id": seller_id,
        "name": f"Shop {seller_id}",
        "region": "NA",
        "marketplace_ids": [US],
        "refresh_token": f"{TOKEN}-{seller_id}",
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not ...}


def file_of(*entries: dict[str, Any]) -> str:
    return json.dumps({"sellers": list(entries)})


def problems_of(data: str) -> list[str]:
    with pytest.raises(InvalidImportFile) as caught:
        parse_import_file(data)
    return [str(problem) for problem in caught.value.problems]


def record(seller_id: str = "A2SELLER1", **overrides: Any) -> SellerRecord:
    fields: dict[str, Any] = {
        "seller_id": seller_id,
        "name": "Shop",
        "region": Region.NA,
        "marketplace_ids": (US, CA),
        "refresh_token_encrypted": "gAAAAAciphertext",
        "updated_at": NOW,
    }
    fields.update(overrides)
    return SellerRecord(**fields)


# --- the import file -----------------------------------------------------------------------------------------------


def test_the_documented_example_file_is_valid() -> None:
    entries = parse_import_file((REPO / "docs" / "sellers.example.json").read_text(encoding="utf-8"))

    assert [e.seller_id for e in entries] == ["A2EXAMPLEUS001", "A3EXAMPLEEU002", "A1EXAMPLEJP003"]
    assert entries[1].policy.send_hours == SendHours(start_hour=9, end_hour=20)
    assert entries[2].app == "agency-fe"


def test_policy_group_and_app_default_when_absent() -> None:
    (parsed,) = parse_import_file(file_of(entry()))

    assert parsed.policy == SellerPolicy()
    assert (parsed.policy.delay_days, parsed.policy.send_hours) == (5.0, None)
    assert (parsed.policy.paused, parsed.policy.dry_run) == (False, False)
    assert parsed.group is None
    assert parsed.app == DEFAULT_APP
    assert parsed.refresh_token.get_secret_value() == f"{TOKEN}-A2SELLER1"


def test_policy_fields_are_taken_from_the_file() -> None:
    policy = {"delay_days": 9.5, "send_hours": {"start_hour": 8, "end_hour": 18}, "paused": True, "dry_run": True}

    (parsed,) = parse_import_file(file_of(entry(policy=policy, group="Agency A", app="eu-app")))

    assert parsed.policy == SellerPolicy(
        delay_days=9.5, send_hours=SendHours(start_hour=8, end_hour=18), paused=True, dry_run=True
    )
    assert (parsed.group, parsed.app) == ("Agency A", "eu-app")


@pytest.mark.parametrize(
    ("policy", "field", "fragment"),
    [
        ({"delay_days": 30}, "policy.delay_days", "less than or equal to 29"),
        ({"delay_days": -1}, "policy.delay_days", "greater than or equal to 0"),
        ({"send_hours": {"start_hour": 20, "end_hour": 9}}, "policy.send_hours", "before end_hour"),
        ({"send_hours": {"start_hour": 25, "end_hour": 24}}, "policy.send_hours.start_hour", "less than or equal"),
        ({"paused": "maybe"}, "policy.paused", "valid boolean"),
        ({"delay": 3}, "policy.delay", "Extra inputs are not permitted"),
    ],
)
def test_policy_problems_name_the_seller_and_the_field(policy: dict[str, Any], field: str, fragment: str) -> None:
    (problem,) = problems_of(file_of(entry("A2POLICY", policy=policy)))

    assert problem.startswith(f"seller A2POLICY (entry 1): {field}: ")
    assert fragment in problem


def test_missing_seller_id_is_reported_by_entry_position() -> None:
    problems = problems_of(file_of(entry("A2FIRST"), entry(...)))

    assert problems == ["entry 2: seller_id: Field required"]


@pytest.mark.parametrize("field", ["name", "region", "marketplace_ids", "refresh_token"])
def test_each_required_field_is_reported_when_missing(field: str) -> None:
    assert problems_of(file_of(entry("A2MISSING", **{field: ...}))) == [
        f"seller A2MISSING (entry 1): {field}: Field required"
    ]


def test_unknown_marketplace_is_rejected_naming_seller_field_and_id() -> None:
    (problem,) = problems_of(file_of(entry("A2UNKNOWN", marketplace_ids=[US, "AXXXXXXXXXXXX"])))

    assert problem.startswith("seller A2UNKNOWN (entry 1): marketplace_ids: ")
    assert "item 2, 'AXXXXXXXXXXXX', is not a known marketplace id" in problem


def test_marketplace_of_another_region_is_rejected() -> None:
    (problem,) = problems_of(file_of(entry("A2MIXED", region="NA", marketplace_ids=[US, DE])))

    assert problem.startswith("seller A2MIXED (entry 1): marketplace_ids: ")
    assert f"marketplace {DE} (DE) is served by region EU, not NA" in problem


@pytest.mark.parametrize(
    ("region", "ids"), [("EU", [DE, UK]), ("FE", [JP]), ("NA", [US, CA]), ("na", [US]), ("Eu", [DE])]
)
def test_marketplaces_of_the_sellers_region_are_accepted(region: str, ids: list[str]) -> None:
    (parsed,) = parse_import_file(file_of(entry(region=region, marketplace_ids=ids)))

    assert (parsed.region, parsed.marketplace_ids) == (Region(region.upper()), tuple(ids))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"marketplace_ids": []}, "marketplace_ids"),
        ({"marketplace_ids": [US, US]}, "marketplace_ids"),
        ({"region": "US"}, "region"),
        ({"name": ""}, "name"),
        ({"group": ""}, "group"),
        ({"app": "no spaces allowed"}, "app"),
        ({"seller_id": "A2/WITH/SLASH"}, "seller_id"),
        ({"refresh_token": ""}, "refresh_token"),
        ({"refresh_token": "Atzr|pasted-with-newline\n"}, "refresh_token"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, Any], field: str) -> None:
    problems = problems_of(file_of({**entry("A2FIELDS"), **overrides}))

    assert problems, "expected at least one problem"
    assert all(f": {field}: " in problem for problem in problems), problems


def test_duplicate_seller_ids_are_rejected() -> None:
    problems = problems_of(file_of(entry("A2ONE"), entry("A2TWO"), entry("A2ONE", name="Again")))

    assert problems == [
        "seller A2ONE (entry 3): seller_id: duplicate seller id (also entry 1); each seller appears once"
    ]


def test_one_bad_entry_imports_nothing_and_every_problem_is_reported() -> None:
    data = file_of(
        entry("A2GOOD1"),
        entry("A2BAD1", region="EU"),
        entry("A2GOOD2"),
        entry("A2BAD2", policy={"delay_days": 100}, name=""),
    )

    with pytest.raises(InvalidImportFile) as caught:
        parse_import_file(data)

    wheres = [problem.where for problem in caught.value.problems]
    assert wheres == ["seller A2BAD1 (entry 2)", "seller A2BAD2 (entry 4)", "seller A2BAD2 (entry 4)"]
    assert {problem.field for problem in caught.value.problems} == {"marketplace_ids", "name", "policy.delay_days"}
    assert "nothing was imported" in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        json.dumps([entry()]),
        json.dumps({"sellers": {"A2": entry()}}),
        json.dumps({"sellers": [], "extra": 1}),
    ],
)
def test_a_file_of_the_wrong_shape_is_one_file_problem(data: str) -> None:
    (problem,) = problems_of(data)

    assert problem.startswith("file: ")


def test_an_empty_list_is_a_valid_file() -> None:
    assert parse_import_file('{"sellers": []}') == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"refresh_tokn": TOKEN},  # misspelt field: the value must not be echoed
        {"region": TOKEN},
        {"marketplace_ids": TOKEN},
        {"marketplace_ids": [TOKEN]},
        {"name": [TOKEN]},
        {"policy": TOKEN},
        {"refresh_token": [TOKEN]},
        {"refresh_token": f"{TOKEN} "},
    ],
)
def test_problems_never_echo_a_token(overrides: dict[str, Any]) -> None:
    fields = entry("A2LEAK")
    del fields["refresh_token"]
    data = file_of({**fields, **overrides})

    with pytest.raises(InvalidImportFile) as caught:
        parse_import_file(data)

    assert caught.value.problems
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert TOKEN not in repr(caught.value.problems)


def test_entries_do_not_show_their_token() -> None:
    (parsed,) = parse_import_file(file_of(entry()))

    assert TOKEN not in repr(parsed)
    assert TOKEN not in str(parsed)


def test_problem_text() -> None:
    assert str(Problem("seller A2 (entry 1)", "region", "bad")) == "seller A2 (entry 1): region: bad"
    assert str(Problem("file", "", "not JSON")) == "file: not JSON"


# --- the wire record -----------------------------------------------------------------------------------------------


def test_record_from_entry_keeps_every_field_but_the_plaintext() -> None:
    (parsed,) = parse_import_file(
        file_of(entry("A2FULL", group="G", app="second", policy={"paused": True, "delay_days": 3}))
    )

    built = SellerRecord.from_entry(parsed, refresh_token_encrypted="gAAAAAsealed", updated_at=NOW)

    assert built.model_dump(exclude={"refresh_token_encrypted", "updated_at", "schema_version"}) == parsed.model_dump(
        exclude={"refresh_token"}
    )
    assert (built.refresh_token_encrypted, built.updated_at, built.schema_version) == ("gAAAAAsealed", NOW, 1)
    assert TOKEN not in built.model_dump_json()


def test_record_json_round_trip() -> None:
    original = record(group="Agency", policy=SellerPolicy(send_hours=SendHours(start_hour=9, end_hour=17)))

    data = original.to_json()

    assert json.loads(data)["updated_at"].startswith("2026-03-01T12:00:00")
    assert SellerRecord.from_json(data, key="A2SELLER1") == original


def test_record_repr_hides_the_ciphertext() -> None:
    assert "gAAAAAciphertext" not in repr(record())


def test_record_is_validated_like_an_import() -> None:
    with pytest.raises(ValidationError, match="served by region EU"):
        record(marketplace_ids=(DE,))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"not json", "Invalid JSON"),
        (b"\xff\xfe", "Invalid JSON"),
        (b'{"seller_id": "A2SELLER1"}', "name: Field required"),
        (lambda data: data.replace(b'"schema_version":1', b'"schema_version":2'), "schema_version"),
        (lambda data: data.replace(b'"name":"Shop"', b'"name":"Shop","extra":"x"'), "extra"),
    ],
)
def test_undecodable_values_become_a_typed_error_without_the_value(value: Any, fragment: str) -> None:
    data = value(record().to_json()) if callable(value) else value

    with pytest.raises(UndecodableSellerRecord) as caught:
        SellerRecord.from_json(data, key="A2SELLER1")

    assert fragment in caught.value.reason
    assert caught.value.key == "A2SELLER1"
    assert "gAAAAAciphertext" not in str(caught.value)


def test_a_record_under_another_key_is_undecodable() -> None:
    with pytest.raises(UndecodableSellerRecord, match="differs from the key"):
        SellerRecord.from_json(record("A2SELLER1").to_json(), key="A2OTHER")


def test_with_policy_changes_only_the_named_fields() -> None:
    original = record(policy=SellerPolicy(delay_days=8, dry_run=True))
    later = datetime(2026, 3, 2, tzinfo=UTC)

    paused = original.with_policy(paused=True, updated_at=later)

    assert paused.policy == SellerPolicy(delay_days=8, dry_run=True, paused=True)
    assert paused.updated_at == later
    assert paused.model_dump(exclude={"policy", "updated_at"}) == original.model_dump(exclude={"policy", "updated_at"})


def test_record_decrypts_its_token_with_the_cipher() -> None:
    cipher = TokenCipher(SecretStr(generate_key()))
    sealed = record(refresh_token_encrypted=cipher.encrypt(SecretStr(TOKEN)))

    assert sealed.refresh_token(cipher).get_secret_value() == TOKEN
    with pytest.raises(UndecryptableToken, match="of seller A2SELLER1"):
        sealed.refresh_token(TokenCipher(SecretStr(generate_key())))


def test_entry_requires_a_secret_token_type() -> None:
    parsed = SellerEntry.model_validate(entry())

    assert isinstance(parsed.refresh_token, SecretStr)


def test_a_marketplace_override_must_name_one_of_the_sellers_marketplaces() -> None:
    ok = entry("A2OVERRIDE", marketplace_ids=[US, CA])
    ok["policy"] = {"marketplaces": {CA: {"enabled": False}, US: {"delay_days": 8}}}
    (parsed,) = parse_import_file(file_of(ok))
    assert not parsed.policy.enabled(CA) and parsed.policy.for_marketplace(US).delay_days == 8
    bad = entry("A2OVERRIDE", marketplace_ids=[US])
    bad["policy"] = {"marketplaces": {DE: {"enabled": False}}}
    (problem,) = problems_of(file_of(bad))
    assert f"overrides {DE}, not among the seller's marketplace_ids" in problem
