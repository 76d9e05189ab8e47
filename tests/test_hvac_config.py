"""The hvac config section: every field described, mistakes refused with a sentence, the section
checked against the site's devices, and the documented example valid."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from agent.config.loader import load_config
from agent.config.reference import description, models
from agent.hvac.program import HvacConfig, hvac_problems
from tests.helpers import DEMO_YAML, ROOT


def load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


BASE = """
zones:
  zone1: {device: hvac_controller, setpoint: zone1_setpoint, mode: zone1_mode, on: zone1_on,
          programme: office}
programmes:
  office:
    workday:
      - {start: "07:30", level: comfort}
      - {start: "18:00", level: off}
"""


def with_changes(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = load(BASE)
    data.update(changes)
    return data


def test_every_hvac_field_has_a_description() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in models(HvacConfig)
        for name in model.model_fields
        if not description(model, name)
    ]
    assert missing == []


def test_a_minimal_section_takes_the_national_limits() -> None:
    hvac = HvacConfig.model_validate(load(BASE))
    assert (hvac.policy.cooling_min, hvac.policy.heating_max) == (26.0, 20.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"policy": {"cooling_min": 24}}, "relaxed_reason"),
        ({"policy": {"heating_max": 22}}, "relaxed_reason"),
        (
            {
                "zones": {
                    "theatre": {
                        "device": "d",
                        "setpoint": "s",
                        "on": "o",
                        "programme": "office",
                        "exemption": {"cooling_min": 20},
                    }
                }
            },
            "reason",
        ),
        (
            {
                "zones": {
                    "theatre": {
                        "device": "d",
                        "setpoint": "s",
                        "on": "o",
                        "programme": "office",
                        "exemption": {"reason": "   "},
                    }
                }
            },
            "reason",
        ),
        (
            {"zones": {"z": {"device": "d", "setpoint": "s", "on": "o", "programme": "ofice"}}},
            "did you mean 'office'",
        ),
        (
            {"programmes": {"office": {"workday": [{"start": "18:00"}]}}},
            "needs a level",
        ),
        (
            {
                "programmes": {
                    "office": {
                        "workday": [
                            {"start": "18:00", "level": "off"},
                            {"start": "07:30", "level": "comfort"},
                        ]
                    }
                }
            },
            "in order",
        ),
        (
            {
                "programmes": {
                    "office": {"workday": [{"start": "08:00", "mode": "fan", "setpoint": 2}]}
                }
            },
            "no setpoint",
        ),
        ({"season": {"cooling": [{"from": "02-30", "to": "09-30"}]}}, "not a day of the year"),
        ({"programmes": {"office": {"special": {"exam": []}}}}, "calendar.special"),
        (
            {"zones": {"z": {"device": "d", "setpont": "s", "on": "o", "programme": "office"}}},
            "setpont",
        ),
    ],
)
def test_mistakes_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        HvacConfig.model_validate(with_changes(**change))


def test_an_exempt_zone_carries_its_reason() -> None:
    data = with_changes()
    data["zones"]["zone1"]["exemption"] = {"reason": "operating theatre", "cooling_min": 22}
    hvac = HvacConfig.model_validate(data)
    exemption = hvac.zones["zone1"].exemption
    assert exemption is not None
    assert exemption.reason == "operating theatre"


def test_the_section_is_checked_against_the_devices() -> None:
    site = load_config(DEMO_YAML)
    ok = HvacConfig.model_validate(load(BASE))
    assert hvac_problems(ok, site.devices) == []
    data = with_changes()
    data["zones"]["zone1"].update({"on": "zone1_temperature", "mode": "zone1_mod"})
    data["zones"]["zone2"] = {
        "device": "hvac_controler",
        "setpoint": "zone2_setpoint",
        "on": "zone2_on",
        "programme": "office",
    }
    data["programmes"]["office"]["workday"].append({"start": "20:00", "setpoint": 40})
    problems = dict(hvac_problems(HvacConfig.model_validate(data), site.devices))
    assert "not declared `writable: true`" in problems[("hvac", "zones", "zone1", "on")]
    assert "did you mean 'zone1_mode'" in problems[("hvac", "zones", "zone1", "mode")]
    assert "did you mean 'hvac_controller'" in problems[("hvac", "zones", "zone2", "device")]
    assert "40 °C" in problems[("hvac", "zones", "zone1", "programme")]


def test_the_documented_example_is_valid() -> None:
    text = (ROOT / "docs" / "hvac.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    examples = [load(block) for block in blocks if block.startswith("hvac:")]
    assert examples, "docs/hvac.md has no ```yaml block starting with hvac:"
    site = load_config(DEMO_YAML)
    for example in examples:
        hvac = HvacConfig.model_validate(example["hvac"])
        assert hvac_problems(hvac, site.devices) == []
