"""Completeness and accuracy per meter and day, and the balance check's edges."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from agent.energy.config import BalanceRule, EnergyConfig
from agent.energy.intervals import Interval
from agent.energy.quality import check_balance, daily_quality

TZ = ZoneInfo("Asia/Shanghai")
QUARTER = 15 * 60_000
DAY0 = round(datetime(2026, 7, 1, tzinfo=TZ).timestamp() * 1000)
ENERGY = EnergyConfig.model_validate(
    {
        "meters": [
            {"name": "grid", "device": "m", "point": "import_energy", "role": "main"},
            {"name": "lights", "device": "l", "point": "import_energy", "sub_item": "01A00"},
        ]
    }
)


def _interval(n: int, quality: str = "measured", *flags: str) -> Interval:
    start = DAY0 + n * QUARTER
    return Interval("grid", start, start + QUARTER, 1.0, "kWh", quality, frozenset(flags))


def test_completeness_is_received_over_expected() -> None:
    intervals = [_interval(n) for n in range(80)]
    intervals += [_interval(n, "estimated", "gap") for n in range(80, 88)]
    intervals += [_interval(88, "partial", "reset"), _interval(89, "measured", "spike")]
    intervals += [_interval(90, "measured", "wrap"), _interval(91, "measured", "range")]
    grid, lights = daily_quality(intervals, ENERGY, tz=TZ)
    assert grid.day == date(2026, 7, 1)
    assert (grid.expected, grid.received, grid.estimated, grid.partial) == (96, 83, 8, 1)
    assert grid.missing == 4
    assert grid.completeness == pytest.approx(83 / 96)
    assert grid.completeness_with_estimates == pytest.approx(91 / 96)
    assert (grid.spikes, grid.resets, grid.wraps, grid.out_of_range) == (1, 1, 1, 1)
    assert grid.accuracy == pytest.approx(1 - 3 / 92)
    # A meter without any data that day is reported, at zero.
    assert (lights.meter, lights.received, lights.missing, lights.accuracy) == (
        "lights",
        0,
        96,
        None,
    )
    assert grid.to_record()["completeness"] == grid.completeness


def test_intervals_not_yet_due_are_not_missing() -> None:
    intervals = [_interval(n) for n in range(40)]
    (grid, _lights) = daily_quality(intervals, ENERGY, tz=TZ, until_ms=DAY0 + 40 * QUARTER)
    assert (grid.expected, grid.completeness) == (40, 1.0)


def test_a_daylight_saving_day_expects_its_real_number_of_intervals() -> None:
    zone = ZoneInfo("Europe/Berlin")
    day = date(2026, 3, 29)  # clocks go forward: a 23-hour day
    (grid, _lights) = daily_quality([], ENERGY, tz=zone, days=[day])
    assert grid.expected == 92


def test_the_balance_is_not_judged_on_incomplete_or_tiny_periods() -> None:
    rule = BalanceRule.model_validate(
        {"name": "b", "main": ["grid"], "parts": ["lights"], "min_energy": 5}
    )
    totals = {"grid": 10.0, "lights": 9.8}
    assert check_balance(rule, totals, start_ms=0, end_ms=1).ok is True
    incomplete = check_balance(rule, totals, start_ms=0, end_ms=1, complete=False)
    assert incomplete.ok is None
    assert "no data" in incomplete.reason
    tiny = check_balance(rule, {"grid": 1.0, "lights": 0.1}, start_ms=0, end_ms=1)
    assert tiny.ok is None
    low = check_balance(rule, {"grid": 10.0, "lights": 8.0}, start_ms=0, end_ms=1)
    assert low.ok is False
    assert low.unmetered_percent == pytest.approx(20)
    assert "less than expected" in low.reason
