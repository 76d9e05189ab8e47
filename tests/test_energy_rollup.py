"""Rollups per meter, sub-item, type, PV and site, with tce and CO2 naming their factors."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.energy.config import EnergyConfig
from agent.energy.intervals import Interval
from agent.energy.periods import Size
from agent.energy.rollup import Rollup, rollup

TZ = ZoneInfo("Asia/Shanghai")
QUARTER = 15 * 60_000
DAY0 = round(datetime(2026, 7, 1, tzinfo=TZ).timestamp() * 1000)


def _energy(*meters: dict[str, Any], **sections: Any) -> EnergyConfig:
    return EnergyConfig.model_validate(
        {"meters": [{"device": "d", "point": m["name"], **m} for m in meters], **sections}
    )


ENERGY = _energy(
    {"name": "grid", "role": "main"},
    {"name": "export", "role": "export"},
    {"name": "pv", "role": "generation"},
    {"name": "lights", "sub_item": "01A10"},
    {"name": "chiller", "sub_item": "01B1A"},
    {"name": "fans", "sub_item": "01B20"},
    {"name": "gas", "role": "main", "energy_type": "gas"},
    {"name": "tap", "role": "main", "energy_type": "water"},
)


def _day(meter: str, per_quarter: float, quarters: int = 96, **kw: Any) -> list[Interval]:
    unit = {"gas": "m3", "tap": "m3"}.get(meter, "kWh")
    return [
        Interval(meter, DAY0 + n * QUARTER, DAY0 + (n + 1) * QUARTER, per_quarter, unit, **kw)
        for n in range(quarters)
    ]


def _one(items: list[Rollup], scope: str, key: str, size: str = "day") -> Rollup:
    (found,) = [r for r in items if (r.scope, r.key, r.size) == (scope, key, size)]
    return found


def _all_meters() -> list[Interval]:
    return [
        *_day("grid", 2.0),
        *_day("export", 0.25),
        *_day("pv", 1.0),
        *_day("lights", 0.5),
        *_day("chiller", 1.0),
        *_day("fans", 0.75),
        *_day("gas", 0.1),
        *_day("tap", 0.05),
    ]


def test_sub_items_sum_at_their_own_level_and_every_level_above() -> None:
    items = rollup(_all_meters(), ENERGY, tz=TZ, sizes=[Size.DAY])
    assert _one(items, "sub_item", "01A10").value == pytest.approx(48)
    assert _one(items, "sub_item", "01A00").value == pytest.approx(48)
    assert _one(items, "sub_item", "01B1A").value == pytest.approx(96)
    assert _one(items, "sub_item", "01B10").value == pytest.approx(96)
    assert _one(items, "sub_item", "01B00").value == pytest.approx(96 + 72)
    assert _one(items, "sub_item", "01B00").expected == 2 * 96


def test_type_totals_come_from_main_meters_or_else_from_sub_meters() -> None:
    items = rollup(_all_meters(), ENERGY, tz=TZ, sizes=[Size.DAY])
    electricity = _one(items, "type", "electricity")
    assert electricity.value == pytest.approx(192)  # the grid meter, not the sub-meters
    assert electricity.complete
    assert "from_sub_meters" not in electricity.flags
    water = _one(items, "type", "water")
    assert water.value == pytest.approx(4.8)
    assert water.unit == "m3"
    # A site without a main electricity meter adds up its sub-meters, and says so.
    subs_only = _energy(
        {"name": "lights", "sub_item": "01A10"}, {"name": "fans", "sub_item": "01B20"}
    )
    items = rollup([*_day("lights", 0.5), *_day("fans", 0.75)], subs_only, tz=TZ, sizes=[Size.DAY])
    electricity = _one(items, "type", "electricity")
    assert electricity.value == pytest.approx(120)
    assert "from_sub_meters" in electricity.flags


def test_pv_generation_export_self_consumption_and_building() -> None:
    items = rollup(_all_meters(), ENERGY, tz=TZ, sizes=[Size.DAY])
    assert _one(items, "pv", "generation").value == pytest.approx(96)
    assert _one(items, "pv", "export").value == pytest.approx(24)
    assert _one(items, "pv", "self_consumption").value == pytest.approx(72)
    assert _one(items, "pv", "building").value == pytest.approx(192 + 72)


def test_self_consumption_is_never_negative() -> None:
    intervals = [*_day("pv", 1.0, 4), *_day("export", 1.2, 4), *_day("grid", 0.0, 4)]
    items = rollup(intervals, ENERGY, tz=TZ, sizes=[Size.HOUR])
    assert _one(items, "pv", "self_consumption", "hour").value == 0.0


def test_tce_and_co2_name_the_factor_that_made_them() -> None:
    items = rollup(_all_meters(), ENERGY, tz=TZ, sizes=[Size.DAY])
    electricity = _one(items, "type", "electricity")
    tce = electricity.figure("tce")
    co2 = electricity.figure("co2")
    assert tce is not None
    assert co2 is not None
    assert tce.value == pytest.approx(192 * 0.1229 / 1000)
    assert tce.factor.startswith("0.1229 kgce/kWh (electricity calorific equivalent (当量值), 2020")
    assert co2.value == pytest.approx(192 * 0.5306 / 1000)
    assert co2.unit == "tCO2"
    assert "2023" in co2.factor
    gas = _one(items, "type", "gas")
    gas_tce = gas.figure("tce")
    assert gas_tce is not None
    assert gas_tce.value == pytest.approx(9.6 * 1.2143 / 1000)
    assert gas.figure("co2") is None  # no gas CO2 factor by default
    assert _one(items, "type", "water").figures == ()

    site = _one(items, "site", "tce")
    assert site.value == pytest.approx(tce.value + gas_tce.value)
    assert "electricity: 0.1229 kgce/kWh" in site.basis
    assert "gas: 1.2143 kgce/m3" in site.basis
    assert site.to_record()["basis"] == site.basis


def test_the_equivalent_basis_changes_the_figure_and_says_so() -> None:
    energy = _energy(
        {"name": "grid", "role": "main"},
        factors={
            "electricity_basis": "equivalent",
            "electricity_equivalent": {
                "name": "electricity equivalent value (等价值)",
                "value": 0.3,
                "unit": "kgce/kWh",
                "year": 2024,
                "source": "test",
            },
        },
    )
    items = rollup(_day("grid", 1.0), energy, tz=TZ, sizes=[Size.DAY])
    figure = _one(items, "type", "electricity").figure("tce")
    assert figure is not None
    assert figure.value == pytest.approx(96 * 0.3 / 1000)
    assert "等价值" in figure.factor


def test_a_bucket_with_missing_intervals_is_partial() -> None:
    intervals = _day("grid", 1.0, 90)
    items = rollup(intervals, ENERGY, tz=TZ, sizes=[Size.DAY, Size.HOUR])
    day = _one(items, "meter", "grid")
    assert (day.count, day.expected) == (90, 96)
    assert day.quality == "partial"
    assert "incomplete" in day.flags
    hours = [r for r in items if (r.scope, r.key, r.size) == ("meter", "grid", "hour")]
    assert len(hours) == 23  # 90 quarters: 22 whole hours and a half one
    assert [h.quality for h in hours].count("measured") == 22


def test_the_worst_quality_and_every_flag_carry_up() -> None:
    intervals = _day("grid", 1.0, 4)
    intervals[1] = Interval(
        "grid", intervals[1].start_ms, intervals[1].end_ms, 1.0, "kWh", "estimated",
        frozenset({"gap"}),
    )  # fmt: skip
    (hour,) = [
        r
        for r in rollup(intervals, ENERGY, tz=TZ, sizes=[Size.HOUR])
        if (r.scope, r.key) == ("meter", "grid")
    ]
    assert hour.quality == "estimated"
    assert hour.flags == {"gap"}


def test_month_buckets_follow_the_calendar_and_records_are_plain() -> None:
    items = rollup(_day("grid", 1.0), ENERGY, tz=TZ, sizes=[Size.MONTH], include_base=True)
    month = _one(items, "meter", "grid", "month")
    assert month.end_ms - month.start_ms == 31 * 86_400_000
    assert month.expected == 31 * 96
    base = [r for r in items if r.size == "15min" and (r.scope, r.key) == ("meter", "grid")]
    assert len(base) == 96
    record = _one(items, "type", "electricity", "month").to_record()
    assert record["start"] == "2026-06-30T16:00:00.000Z"
    assert record["figures"][0]["name"] == "tce"
