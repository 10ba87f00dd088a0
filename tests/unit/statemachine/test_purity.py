"""The core stays pure: no I/O libraries, no asyncio, no outer layers, no wall clock, no randomness."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import statemachine

PACKAGE = Path(statemachine.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

FORBIDDEN_MODULES = {
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "httpx",
    "aiohttp",
    "requests",
    "boto3",
    "botocore",
    "aiobotocore",
    "asyncio",
    "socket",
    "threading",
    "subprocess",
    "time",
    "random",
    "secrets",
    "uuid",
    "os",
    "connectors",
    "streams",
}
WALL_CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns"}
FORBIDDEN_BUILTINS = {"open", "input", "print", "exec", "eval", "__import__"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in WALL_CLOCK_CALLS:
                found.append(f"call .{func.attr}() (line {node.lineno})")
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                found.append(f"call {func.id}() (line {node.lineno})")
    return found


def test_the_package_has_sources() -> None:
    assert len(SOURCES) >= 8


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_module_imports_nothing_impure(path: Path) -> None:
    assert _violations(path) == []


def test_the_checker_catches_what_it_forbids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import asyncio\nfrom httpx import AsyncClient\nimport faust.app\nfrom datetime import datetime\n"
        "x = datetime.now()\nopen('f')\nfrom streams.cli import main\n"
    )
    found = _violations(bad)
    assert len(found) == 6, found


def test_importing_the_core_loads_no_io_framework() -> None:
    code = (
        "import sys, statemachine\n"
        "bad = {'asyncio', 'faust', 'mode', 'aiokafka', 'httpx', 'aiohttp', 'boto3', 'botocore',\n"
        "       'aiobotocore', 'connectors', 'streams'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_statemachine_is_our_package_not_a_namesake() -> None:
    # `python-statemachine` installs a module of the same name; make sure we import ours.
    assert (PACKAGE / "apply.py").exists()
    assert Path(statemachine.__file__).resolve().parent.parent == Path(__file__).resolve().parents[3]
