"""The quick config path (libyaml, when installed) gives the very config the located path gives,
and leaves everything it does not handle to the located path, whose messages stay as they were."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from agent.config import loader
from agent.config.issues import MAX_DEPTH, MAX_NUMBER, MAX_VALUES, Issues
from agent.config.quick_yaml import available, quick_data
from bench.make_site import site_yaml

pytestmark = pytest.mark.skipif(not available(), reason="PyYAML with libyaml is not installed")

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"max_values": MAX_VALUES, "max_depth": MAX_DEPTH, "max_number": MAX_NUMBER}


def _located(text: str, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(loader, "quick_data", lambda *_, **__: None)
        return loader.load_config_text(text, filename="site.yaml")


@pytest.mark.parametrize(
    "text",
    [
        (ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"),
        (ROOT / "tests" / "configs" / "valid.yaml").read_text(encoding="utf-8"),
        site_yaml(12, 2, [15020, 15021], mqtt_url="mqtt://127.0.0.1:1883", batch_window="250ms"),
        site_yaml(4, 1, [15020], profile="eastron-sdm630"),
    ],
    ids=["demo", "valid", "explicit-points", "profiles"],
)
def test_the_quick_path_gives_the_located_paths_config(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert quick_data(text, **LIMITS) is not None, "the quick path gave up on a plain config"
    assert loader.load_config_text(text, filename="site.yaml") == _located(text, monkeypatch)


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("yes", "yes"),  # YAML 1.2: text (PyYAML's own 1.1 resolver would say True)
        ("0x34", 0x34),
        ("017", 17),  # 1.2: decimal, not octal
        ("1:30", "1:30"),  # 1.2: text, not 90
        ("2026-01-01", "2026-01-01"),  # no setting is a date: the text as written
        ("", None),
        ("'12'", "12"),
        ("1e3", 1000.0),
        ("on", "on"),
    ],
)
def test_plain_scalars_resolve_by_yaml_1_2(scalar: str, value: object) -> None:
    assert quick_data(f"key: {scalar}\n", **LIMITS) == {"key": value}


ODD_SCALARS = [
    *("yes", "no", "on", "off", "y", "n", "Yes", "TRUE", "True", "tRue", "NULL", "Null", "~", "="),
    *("0", "-0", "+7", "007", "08", "-017", "0x1F", "-0x1f", "0X1F", "0o17", "0b101", "1_000"),
    *("1.5", "-1.5", "+.5", ".5", "5.", "1e3", "1E-3", "1.5e+3", ".5e+3", "1e", "e3", "1.2.3"),
    *(".inf", "-.Inf", ".NaN", ".nan", "inf", "nan", "0x", "0o", "1:30", "08:00", "1:30:00"),
    *("2026-01-01", "2026-1-1", "2026-01-01T08:00:00Z", "2026-01-01 08:00:00", "20260101"),
    *("01A00", "0A", "1d", "5s", "250ms", "1h30m", "127.0.0.1", "-", "+", ".", "-a", "=a", "<a"),
]


def _shipped_scalars() -> set[str]:
    """Every plain scalar of the shipped configs and the test configs."""
    import yaml  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from agent.config.quick_yaml import _Loader

    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, yaml.ScalarNode):
            if not node.style:
                found.add(node.value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(key)
                walk(value)

    for path in [*(ROOT / "config").glob("*.yaml"), *(ROOT / "tests" / "configs").glob("*.yaml")]:
        with contextlib.suppress(yaml.YAMLError):
            for document in yaml.compose_all(path.read_text(encoding="utf-8"), Loader=_Loader):
                walk(document)
    return found


@pytest.mark.parametrize("scalar", sorted({*ODD_SCALARS, *_shipped_scalars()}))
def test_a_plain_scalar_is_what_the_located_path_reads_or_left_to_it(scalar: str) -> None:
    from agent.config.located import Tree, parse

    text = f"key: {scalar}\n"
    issues = Issues("site.yaml")
    root = parse(text, issues)
    located = Tree(issues).convert(root) if root is not None and not issues else None
    quick = quick_data(text, **LIMITS)
    if quick is not None:
        assert located is not None, f"the quick path read {scalar!r}, the located one cannot"
        assert quick == located
        assert type(quick["key"]) is type(located["key"])


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # a duplicate key: the located path reports it
        "a: &x 1\nb: *x\n",  # anchors and aliases
        "base: {x: 1}\nm:\n  <<: {x: 2}\n",  # a merge key
        "a: !!int 3\n",  # a tag
        "a: 1\n---\nb: 2\n",  # two documents
        "a: [1, 2\n",  # a syntax error
        "a: \x07\n",  # a character YAML does not allow
        "a: 99999999999999999999999\n",  # a number beyond any setting
        "[[[[[[[[" * 9 + "]]]]]]]]" * 9 + "\n",  # nested too deep
        "? [a, b]\n: 1\n",  # a key that is not a plain value
    ],
)
def test_what_the_located_path_must_see_is_left_to_it(text: str) -> None:
    assert quick_data(text, **LIMITS) is None


def test_errors_are_located_as_before(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text(
        "site: {id: s1, name: S}\n"
        "buses:\n"
        "  b1: {kind: modbus_tcp, host: 127.0.0.1}\n"
        "devices:\n"
        "  - name: m1\n"
        "    bus: b1\n"
        "    points:\n"
        "      active_power: {register: 70000, type: float32}\n",
        encoding="utf-8",
    )
    assert quick_data(bad.read_text(encoding="utf-8"), **LIMITS) is not None  # parses fine
    with pytest.raises(loader.ConfigError) as caught:
        loader.load_config(bad)
    [issue] = caught.value.issues
    assert str(issue).startswith(f"{bad}:8:")
    assert "devices[0].points.active_power.register:" in str(issue)
