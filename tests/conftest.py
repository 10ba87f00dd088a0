"""Shared test configuration.

Fixture plugins live in ``tests/support/`` and are registered here.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins: list[str] = ["tests.support.kafka", "tests.support.spapi", "tests.support.sqs", "tests.browser"]


@pytest.fixture(autouse=True)
def _clean_solicit_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build settings explicitly: strip our own variables from the environment."""
    for name in list(os.environ):
        if name.startswith("SOLICIT_"):
            monkeypatch.delenv(name, raising=False)
