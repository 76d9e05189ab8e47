"""The docs stay true: every config field is described, the generated reference is current,
and every CLI command is in the README."""

from __future__ import annotations

from agent.cli import _parser
from agent.config.reference import render, undocumented
from tests.helpers import ROOT


def test_every_config_field_has_a_description() -> None:
    assert undocumented() == []


def test_config_reference_is_generated_from_the_models() -> None:
    current = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert current == render(), "run: python -m agent.config.reference > docs/config-reference.md"


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in _parser()._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"`edge-agent {name}" in readme, f"edge-agent {name} is not documented in the README"
