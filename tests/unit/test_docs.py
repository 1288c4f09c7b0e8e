"""The README and docs/: commands run as written, links resolve, the configuration table is the code's."""

import re
from pathlib import Path

import pytest

from graph.state import Fallback
from tests.stub_backend import StubBackend
from tests.support.settings_doc import CONFIGURATION, with_table
from tests.unit.graph.test_graph import run

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_cli_examples_call_the_installed_command(page: Path) -> None:
    """`make install` does not put `reasoner` on the PATH: examples call .venv/bin/reasoner."""
    commands = [line for line in page.read_text().splitlines() if line.startswith("$ ")]
    for command in commands:
        for found in re.finditer(r"(\S*)reasoner (ask|serve)\b", command):
            assert found.group(1).endswith(".venv/bin/"), command


def test_the_readme_shows_reasoner_ask() -> None:
    assert any(line.startswith("$ .venv/bin/reasoner ask") for line in README.read_text().splitlines())


def test_the_configuration_table_is_generated_from_settings() -> None:
    """`make docs` rewrites it; this fails when a setting changed and the table did not."""
    text = CONFIGURATION.read_text()
    assert with_table(text) == text, "docs/configuration.md is out of date: run `make docs`"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to dashes."""
    found: set[str] = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = re.match(r"#{1,6} (.+)", line)
        if heading and not in_code:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            count = sum(1 for anchor in found if re.fullmatch(rf"{re.escape(slug)}(-\d+)?", anchor))
            found.add(f"{slug}-{count}" if count else slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken, broken


def _keys(value: object) -> set[str]:
    """Every key at any depth of a JSON value (the keys of a list's items too)."""
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _keys(item)}
    return set()


async def test_the_example_result_has_every_field_of_a_real_one(stub: StubBackend) -> None:
    """docs/api.md's example result was pasted from a real run: a field added to the result since
    fails here until the example is pasted again."""
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("## The result object") :]
    example = section[section.index("{\n") : section.index("\n}\n") + 2]
    shown = set(re.findall(r'"(\w+)":', example))
    result = await run(stub, "What is the boiling point of water, and who measured it?")
    assert result["fallbacks"] == [] and "fallbacks" in shown  # the example shows a fallback's keys
    assert shown == _keys(result) | set(Fallback.__annotations__)
