"""README.md stays a short entry point, and the documentation it leads to holds together: every page linked, every
relative link alive, every ``docs/amazon-facts.md §N`` cited by the code present, no pointer outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FACTS = DOCS / "amazon-facts.md"

MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_DIRS = ("statemachine", "connectors", "streams", "devstack", "bench", "tests", "docs", ".ci")
TEXT_SUFFIXES = {".py", ".md", ".xml", ".toml", ".properties", ".cfg", ".txt", ""}


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_the_readme_is_at_most_150_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_the_readme_names_its_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {target.split("#")[0] for target in MARKDOWN_LINK.findall(README.read_text(encoding="utf-8"))}
    unlinked = [f"docs/{page.name}" for page in sorted(DOCS.glob("*.md")) if f"docs/{page.name}" not in linked]
    assert unlinked == []


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_every_relative_link_points_to_a_file_of_the_repository(page: Path) -> None:
    broken = []
    for target in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
        path = target.split("#")[0]
        if not path or re.match(r"^[a-z]+:", path):
            continue
        resolved = (page.parent / path).resolve()
        if not resolved.exists() or ROOT not in resolved.parents:
            broken.append(target)
    assert broken == []


def repository_text_files() -> list[Path]:
    found = [README, ROOT / "Makefile", ROOT / "pyproject.toml"]
    for name in CODE_DIRS:
        found.extend(
            path
            for path in sorted((ROOT / name).rglob("*"))
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts
        )
    return found


def test_nothing_points_outside_the_repository_to_the_old_notes() -> None:
    # Split so that this file does not match itself.
    outside = ("../" + "shared", "streaming" + "-notes", "spapi" + "-reference")
    hits = [
        f"{path.relative_to(ROOT)}: {needle}"
        for path in repository_text_files()
        for needle in outside
        if needle in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert hits == []


def facts_sections() -> set[str]:
    """Section numbers of docs/amazon-facts.md: ``## §N ...`` gives ``N``, ``### N.M ...`` gives ``N.M``."""
    numbers: set[str] = set()
    for line in FACTS.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^(?:## §(\d+)|### (\d+\.\d+)) ", line):
            numbers.add(match[1] or match[2])
    return numbers


def cited_sections() -> dict[str, set[str]]:
    """Every ``§N`` or ``§N.M`` on a line of our code that mentions docs/amazon-facts.md, with where it is cited."""
    cited: dict[str, set[str]] = {}
    for path in repository_text_files():
        if path.suffix != ".py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "amazon-facts.md" not in line:
                continue
            for first, last in re.findall(r"§(\d+(?:\.\d+)?)(?:-§(\d+))?", line):
                span = [first] if not last else [str(n) for n in range(int(first), int(last) + 1)]
                for section in span:
                    cited.setdefault(section, set()).add(f"{path.relative_to(ROOT)}:{number}")
    return cited


def test_the_amazon_facts_have_sections_1_to_7() -> None:
    assert {str(n) for n in range(1, 8)} <= facts_sections()


def test_every_amazon_facts_section_the_code_cites_exists() -> None:
    cited = cited_sections()
    assert cited, "no code cites docs/amazon-facts.md any more: is this test still needed?"
    missing = {section: sorted(where) for section, where in cited.items() if section not in facts_sections()}
    assert missing == {}
