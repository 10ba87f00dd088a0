"""The vendored SP-API models are the bytes SOURCES.md names (sha256), with their licence beside them."""

from __future__ import annotations

import hashlib
import re

import pytest

from devstack import spapi_models

SOURCES = (spapi_models.HERE / "SOURCES.md").read_text(encoding="utf-8")
ROWS = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", SOURCES, re.MULTILINE)


def test_sources_lists_every_vendored_model() -> None:
    vendored = {path.name for path in spapi_models.HERE.glob("*.json")}
    assert {name for name, _ in ROWS} == vendored
    assert len(vendored) == 6


@pytest.mark.parametrize(("name", "sha256"), ROWS)
def test_each_model_is_the_recorded_upstream_file(name: str, sha256: str) -> None:
    assert hashlib.sha256(spapi_models.path(name).read_bytes()).hexdigest() == sha256


def test_the_licence_and_notice_travel_with_the_models() -> None:
    assert "Apache License" in (spapi_models.HERE / "LICENSE").read_text(encoding="utf-8")
    assert "Amazon.com" in (spapi_models.HERE / "NOTICE").read_text(encoding="utf-8")


def test_an_unknown_model_is_an_error() -> None:
    with pytest.raises(FileNotFoundError):
        spapi_models.path("nope.json")
