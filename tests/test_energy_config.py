"""The energy config: classification rules, cross-checks, factors, and the documented example."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from agent.config.reference import description, models
from agent.energy.config import (
    EnergyConfig,
    MeterConfig,
    QuotaRule,
    cross_check_energy,
    parent_codes,
    sub_item_covers,
    target_meters,
)
from agent.energy.factors import ELECTRICITY_CALORIFIC, GRID_CO2_2022, GRID_CO2_2023, Factor
from tests.helpers import DEMO_YAML, ROOT


def _meter(**fields: Any) -> dict[str, Any]:
    return {"device": "d", "point": fields.get("name", "p"), **fields}


def _energy(*meters: dict[str, Any], **sections: Any) -> EnergyConfig:
    return EnergyConfig.model_validate({"meters": list(meters), **sections})


ELECTRICITY = (
    _meter(name="grid", role="main"),
    _meter(name="export", role="export"),
    _meter(name="lights", sub_item="01A10"),
    _meter(name="corridor", sub_item="01A20"),
    _meter(name="chiller", sub_item="01B1A"),
    _meter(name="pumps", sub_item="01B1C"),
    _meter(name="pv", role="generation"),
)


def test_every_energy_field_is_described() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in models(EnergyConfig)
        for name in model.model_fields
        if not description(model, name)
    ]
    assert missing == []


def _demo_raw() -> dict[str, Any]:
    raw = YAML(typ="safe", pure=True).load(DEMO_YAML.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


def test_the_documented_example_is_valid_for_the_demo_site() -> None:
    text = (ROOT / "docs" / "energy.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(energy:\n.*?)```", text, re.S)
    assert block is not None
    section = YAML(typ="safe", pure=True).load(block.group(1))["energy"]
    energy = EnergyConfig.model_validate(section)
    assert energy.problems() == []
    assert cross_check_energy({**_demo_raw(), "energy": section}) == []
    assert energy.meter("lighting").wrap == pytest.approx(2**32 * 0.01)
    assert energy.meter("pv").wrap == 2**32


def test_cross_check_names_missing_devices_points_and_floor_area() -> None:
    raw = _demo_raw()
    raw["site"] = {key: value for key, value in raw["site"].items() if key != "floor_area_m2"}
    raw["energy"] = {
        "meters": [
            {"name": "grid", "device": "main_meter", "point": "import_energy", "role": "main"},
            {"name": "gas", "device": "gas_meter", "point": "volume", "role": "main",
             "energy_type": "gas"},
            {"name": "lights", "device": "lighting_meter", "point": "import_energy_total",
             "sub_item": "01A00"},
            {"name": "zone", "device": "hvac_controller", "point": "zone1_temperature",
             "sub_item": "01B00"},
        ],
        "quotas": [{"name": "year", "energy_type": "electricity", "unit": "kWh/m2a", "limit": 70}],
        "balance": [{"name": "b", "main": ["grid"], "parts": ["light"]}],
    }  # fmt: skip
    assert cross_check_energy(raw) == [
        (
            ("energy", "meters", 1, "device"),
            "no device is named 'gas_meter' (did you mean 'main_meter'?)",
        ),
        (
            ("energy", "meters", 2, "point"),
            "device 'lighting_meter' has no point 'import_energy_total' "
            "(did you mean 'import_energy'?)",
        ),
        (
            ("energy", "meters", 3, "point"),
            "hvac_controller.zone1_temperature is in degC, not kWh: "
            "a counter meter needs an energy point (or set the meter's unit)",
        ),
        (("energy", "quotas", 0, "unit"), "a quota per m2 needs the site's floor_area_m2"),
        (("energy", "balance", 0, "parts"), "no meter is named 'light'"),
    ]
    # A section with field errors is left to validation, which locates them.
    raw["energy"]["meters"][0]["role"] = "mains"
    assert cross_check_energy(raw) == []
    assert cross_check_energy({"site": {}}) == []


def test_the_engines_refuse_an_inconsistent_section() -> None:
    energy = _energy(*ELECTRICITY, silent={"meters": ["ghost"]})
    with pytest.raises(ValueError, match=r"energy\.silent\.meters: no meter is named 'ghost'"):
        energy.require_consistent()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "x"}, "an electricity sub-meter needs its sub_item code"),
        ({"name": "x", "sub_item": "02000", "role": "main"}, "its codes start with 01"),
        ({"name": "x", "sub_item": "01000"}, "give the meter role main"),
        ({"name": "x", "energy_type": "water", "role": "export"}, "meters electricity"),
        ({"name": "x", "role": "main", "kind": "power", "counter_bits": 32}, "counter_bits"),
        ({"name": "x", "role": "main", "power_scale": 0.001}, "power_scale applies"),
        ({"name": "x", "role": "main", "sub_item": "1A"}, "should match pattern"),
        ({"name": "X Y", "role": "main"}, "should match pattern"),
    ],
)
def test_meter_classification_is_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MeterConfig.model_validate(_meter(**fields))


def test_an_unquoted_yaml_code_gets_its_leading_zero_back() -> None:
    meter = MeterConfig.model_validate(
        _meter(name="water", energy_type="water", role="main", sub_item=2000)
    )
    assert meter.sub_item == "02000"
    assert meter.energy_unit == "m3"


def test_water_and_gas_sub_meters_carry_their_class_code() -> None:
    floor = MeterConfig.model_validate(_meter(name="floor3", energy_type="water"))
    assert (floor.role.value, floor.code) == ("sub", "02000")


def test_main_meters_carry_their_class_code() -> None:
    energy = _energy(*ELECTRICITY)
    assert energy.meter("grid").code == "01000"
    assert energy.meter("chiller").code == "01B1A"


@pytest.mark.parametrize(
    ("sections", "where", "message"),
    [
        ({"quotas": [{"name": "q", "meter": "nope", "limit": 1}]}, "quotas", "named 'nope'"),
        (
            {"quotas": [{"name": "q", "sub_item": "01D00", "limit": 1}]},
            "quotas",
            "no meter measures",
        ),
        (
            {"quotas": [{"name": "q", "meter": "grid", "limit": 1, "unit": "m3"}]},
            "quotas",
            "count kWh",
        ),
        ({"quotas": [{"name": "q", "limit": 1}]}, "quotas", "over all energy types is in tce"),
        (
            {"quotas": [{"name": "q", "energy_type": "gas", "limit": 1, "unit": "m3"}]},
            "quotas",
            "no main meter measures gas",
        ),
        ({"balance": [{"name": "b", "main": ["grid"], "parts": ["x"]}]}, "balance", "named 'x'"),
        ({"silent": {"meters": ["ghost"]}}, "silent", "no meter is named 'ghost'"),
        ({"off_hours": [{"name": "o", "meter": "ghost", "baseline": 1}]}, "off_hours", "'ghost'"),
    ],
)  # fmt: skip
def test_rules_are_checked_against_the_meters(
    sections: dict[str, Any], where: str, message: str
) -> None:
    ((loc, text),) = _energy(*ELECTRICITY, **sections).problems()
    assert loc[0] == where
    assert message in text


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"quotas": [{"name": "q", "meter": "grid", "limit": 1, "thresholds": [0]}]}, "percentage"),
        (
            {"off_hours": [{"name": "o", "meter": "grid", "baseline": 1, "open_from": "19:00"}]},
            "open_from must be before open_until",
        ),
        ({"off_hours": [{"name": "o", "baseline": 1}]}, "watches a meter"),
        (
            {"quotas": [{"name": "q", "meter": "grid", "sub_item": "01A00", "limit": 1}]},
            "not both",
        ),
    ],
)
def test_each_rule_is_checked_on_its_own(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _energy(*ELECTRICITY, **sections)


def test_meter_names_and_points_are_unique() -> None:
    twice = _energy(_meter(name="a", role="main"), _meter(name="a", role="main", point="q"))
    assert twice.problems() == [(("meters", 1, "name"), "meter name 'a' is used twice")]
    shared = _energy(
        _meter(name="a", role="main", point="p"), _meter(name="b", role="main", point="p")
    )
    assert shared.problems() == [(("meters", 1, "point"), "d.p is already meter 'a'")]


def test_a_quota_in_tce_needs_a_factor_for_every_type() -> None:
    water = _meter(name="water", energy_type="water", role="main")
    energy = _energy(*ELECTRICITY, water, quotas=[{"name": "q", "limit": 10, "unit": "tce"}])
    assert energy.problems() == [(("quotas", 0, "unit"), "a quota in tce needs a factor for water")]
    energy = _energy(
        *ELECTRICITY,
        _meter(name="gas", energy_type="gas", role="main"),
        quotas=[{"name": "q", "limit": 10, "unit": "tce"}],
    )
    assert energy.problems() == []
    assert [m.name for m in target_meters(energy.quotas[0], energy)] == ["grid", "gas"]


def test_sub_item_codes_nest() -> None:
    assert parent_codes("01B1A") == ["01B10", "01B00"]
    assert parent_codes("01A10") == ["01A00"]
    assert parent_codes("01A00") == []
    assert sub_item_covers("01B00", "01B1A")
    assert sub_item_covers("01B10", "01B1A")
    assert not sub_item_covers("01B10", "01B20")
    assert not sub_item_covers("01A00", "01B00")
    energy = _energy(*ELECTRICITY)
    rule = QuotaRule.model_validate({"name": "q", "sub_item": "01B00", "limit": 1})
    assert [m.name for m in target_meters(rule, energy)] == ["chiller", "pumps"]
    rule = QuotaRule.model_validate({"name": "q", "sub_item": "01000", "limit": 1})
    assert [m.name for m in target_meters(rule, energy)] == ["grid"]


def test_factors_default_to_the_cited_national_values() -> None:
    energy = _energy(*ELECTRICITY)
    coal = energy.factors.coal(energy.meter("grid").energy_type)
    assert coal == ELECTRICITY_CALORIFIC
    assert coal.value == 0.1229
    assert "GB/T 2589" in coal.label
    assert energy.factors.co2(energy.meter("grid").energy_type) == GRID_CO2_2023
    assert (GRID_CO2_2022.value, GRID_CO2_2022.year) == (0.5366, 2022)
    assert (GRID_CO2_2023.value, GRID_CO2_2023.year) == (0.5306, 2023)


def test_the_equivalent_basis_needs_the_years_figure() -> None:
    with pytest.raises(ValidationError, match="needs electricity_equivalent"):
        _energy(*ELECTRICITY, factors={"electricity_basis": "equivalent"})
    equivalent = {
        "name": "electricity equivalent value (等价值)",
        "value": 0.3,
        "unit": "kgce/kWh",
        "year": 2024,
        "source": "statistics bureau, 2024",
    }
    energy = _energy(
        *ELECTRICITY,
        factors={"electricity_basis": "equivalent", "electricity_equivalent": equivalent},
    )
    factor = energy.factors.coal(energy.meter("grid").energy_type)
    assert factor == Factor.model_validate(equivalent)


def test_a_factor_converts_to_what_its_slot_says() -> None:
    wrong = {**GRID_CO2_2022.model_dump(), "unit": "kgce/kWh"}
    with pytest.raises(ValidationError, match="grid_co2 converts to CO2"):
        _energy(*ELECTRICITY, factors={"grid_co2": wrong})
    with pytest.raises(ValidationError, match="should match pattern"):
        Factor.model_validate({**GRID_CO2_2022.model_dump(), "unit": "tCO2/MWh"})
