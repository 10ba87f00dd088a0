"""The layout's one rule: dependencies point inward. The lab (``devstack``) may use the product; the product never uses
the lab, and each product package only the ones below it: ``streams`` -> ``connectors`` -> ``statemachine``.

Every import counts, at module level or inside a function, absolute or relative.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("statemachine", "connectors", "streams", "devstack", "tests", "bench")
ALLOWED: dict[str, set[str]] = {
    "statemachine": {"statemachine"},
    "connectors": {"statemachine", "connectors"},
    "streams": {"statemachine", "connectors", "streams"},
    "devstack": {"statemachine", "connectors", "streams", "devstack"},
}


def imported_packages(path: Path, package: str) -> set[tuple[str, int]]:
    """Our top-level packages ``path`` imports, with the line of each import."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        for name in names:
            top = name.split(".")[0]
            if top in OURS:
                found.add((top, node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependencies_point_inward(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for top, line in sorted(imported_packages(path, package))
        if top not in ALLOWED[package]
    ]
    assert wrong == []


def test_the_rule_sees_every_kind_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import devstack.demo\nfrom streams import app\ndef f():\n    from bench import x\nfrom . import y\n",
        encoding="utf-8",
    )
    assert {top for top, _ in imported_packages(sample, "connectors")} == {"devstack", "streams", "bench", "connectors"}


MAX_FUNCTION_LINES = 60


def test_no_function_of_the_product_is_longer_than_60_lines() -> None:
    """Short functions (issue 8): a long one is a sign that it does several things."""
    long = []
    for package in ("statemachine", "connectors", "streams"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
