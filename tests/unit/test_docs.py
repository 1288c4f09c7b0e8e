"""The README's commands run as written, and its configuration table names real settings."""

import re
from pathlib import Path

from api.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_cli_examples_call_the_installed_command() -> None:
    """`make install` does not put `reasoner` on the PATH: examples call .venv/bin/reasoner."""
    commands = [line for line in README.splitlines() if line.startswith("$ ")]
    assert any("reasoner ask" in c for c in commands)
    for command in commands:
        for found in re.finditer(r"(\S*)reasoner (ask|serve)\b", command):
            assert found.group(1).endswith(".venv/bin/"), command


def test_every_configuration_variable_is_a_setting() -> None:
    section = README[README.index("## Configuration") : README.index("## Architecture")]
    names = {
        name.lower()
        for cell in re.findall(r"^\| ([^|]+) \|", section, flags=re.MULTILINE)
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)
    }
    fields = set(Settings.model_fields) | {"openai_api_key"}
    assert names and names <= fields, sorted(names - fields)
