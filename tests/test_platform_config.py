"""The `platform:` section: it loads beside the energy meters; mistakes are located sentences."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.loader import load_config_text
from agent.core.errors import ConfigError
from agent.platform.errors import PlatformError
from agent.platform.profiles import SHIPPED, Padding

SITE = """\
site: {{id: office, name: Office}}
buses:
  board: {{kind: tcp, host: 127.0.0.1, port: 5020}}
devices:
  - {{name: main_meter, bus: board, unit_id: 1, profile: eastron-sdm630}}
energy:
  meters:
    - {{name: main, device: main_meter, point: import_energy, role: main}}
platform:
{platform}
"""

GOOD = """\
  host: platform.example.cn
  port: 6001
  building_id: 421000A001
  gateway_id: "01"
  key_file: {key}
  meters:
    - {{meter: main, id: 1}}"""


def load(platform: str, key: Path) -> object:
    # The key file is checked at connect time here; `validate` checks it too (test below).
    return load_config_text(
        SITE.format(platform=platform.format(key=key)), filename="site.yaml", check_files=False
    )


def test_a_platform_section_loads_with_the_guideline_defaults(tmp_path: Path) -> None:
    config = load(GOOD, tmp_path / "k")
    platform = config.platform  # type: ignore[attr-defined]
    assert platform.period == 900
    assert platform.profile_settings == SHIPPED["guideline-a"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("421000A001", "42100A001"), "platform.building_id: "),
        (("{meter: main, id: 1}", "{meter: mian, id: 1}"), "no energy meter is named 'mian'"),
        (
            ("port: 6001", "port: 6001\n  profile: zhejiang"),
            "platform.profile: no platform profile is named 'zhejiang' (did you mean",
        ),
        (("port: 6001", "port: 6001\n  profile: custom"), "profile custom needs `settings`"),
        (("port: 6001", "port: 6001\n  period: 7m"), "whole minutes that divide a day"),
        (("port: 6001", "port: 6001\n  period: 10m"), "a multiple of the energy interval"),
    ],
)
def test_mistakes_are_located(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(GOOD.replace(*change), tmp_path / "k")
    text = str(caught.value)
    assert message in text
    assert "site.yaml:" in text


def test_a_custom_profile_takes_every_setting_from_the_config(tmp_path: Path) -> None:
    custom = GOOD.replace(
        "port: 6001",
        "port: 6001\n  profile: custom\n  settings: {{header: 68681616, tail: 55AA55AA,"
        " padding: ascii-zero}}",
    )
    config = load(custom, tmp_path / "k")
    settings = config.platform.profile_settings  # type: ignore[attr-defined]
    assert settings.padding is Padding.ASCII_ZERO
    assert settings.tail == "55aa55aa"


def test_the_key_file_is_read_at_connect_time_and_checked(tmp_path: Path) -> None:
    key = tmp_path / "k"
    config = load(GOOD, key)
    platform = config.platform  # type: ignore[attr-defined]
    with pytest.raises(PlatformError, match="cannot be read"):
        platform.aes_key()
    key.write_text("too short\n", encoding="utf-8")
    with pytest.raises(PlatformError, match="16 characters"):
        platform.aes_key()
    key.write_text("0123456789ABCDEF\n", encoding="utf-8")
    assert platform.aes_key().key == b"0123456789ABCDEF"
    assert platform.secret() == "0123456789ABCDEF"


def test_validate_names_a_missing_platform_key_file(tmp_path: Path) -> None:
    key = tmp_path / "k"
    with pytest.raises(ConfigError, match=r"platform\.key_file"):
        load_config_text(SITE.format(platform=GOOD.format(key=key)), filename="site.yaml")
    key.write_text("0123456789ABCDEF\n", encoding="utf-8")
    load_config_text(SITE.format(platform=GOOD.format(key=key)), filename="site.yaml")
