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


_SIZES = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SECONDS = {"ms": 0.001, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


def _readme_default(text: str) -> object:
    """A default as the README writes it (``3 GiB``, ``1 s``, ``Asia/Shanghai``) as a value."""
    text = text.split(":", maxsplit=1)[0].strip().strip("`")
    number, _, unit = text.partition(" ")
    if unit in _SIZES:
        return float(number) * _SIZES[unit]
    if unit in _SECONDS:
        return float(number) * _SECONDS[unit]
    return text


def test_readme_config_defaults_match_the_models() -> None:
    import re

    from agent.config.model import GatewayConfig, SiteInfo, StoreConfig, UplinkConfig

    sections = {
        "site": SiteInfo,
        "gateway": GatewayConfig,
        "store": StoreConfig,
        "uplink": UplinkConfig,
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    checked = 0
    for line in readme.splitlines():
        row = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if row is None or row.group(1) not in sections:
            continue
        fields = sections[row.group(1)].model_fields
        for name, default in re.findall(r"`(\w+)`[^|`]*?\(default ([^)]*)\)", row.group(2)):
            assert name in fields, f"README names {row.group(1)}.{name}, which the model lacks"
            model_default = fields[name].default
            said = _readme_default(default)
            if isinstance(said, float):
                assert float(model_default) == said, (
                    f"README says {row.group(1)}.{name} defaults to {default!r}; "
                    f"the model says {model_default!r}"
                )
            else:
                assert str(model_default) == said, (
                    f"README says {row.group(1)}.{name} defaults to {default!r}; "
                    f"the model says {model_default!r}"
                )
            checked += 1
    assert checked >= 5, "the README's config table was not found"
