"""Wanted states, boundaries and the technician's preview: per zone and time, with reasons."""

from __future__ import annotations

import io
import itertools
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ruamel.yaml import YAML

from agent.hvac.overrides import Override
from agent.hvac.preview import format_rows, preview_rows, to_json
from agent.hvac.program import HvacConfig, Mode, OutdoorSeasonRule, Season
from agent.hvac.state import ScheduleContext, next_boundary, season_from_outdoor, wanted_state
from agent.schedule_cli import run_preview
from tests.helpers import DEMO_YAML

SHANGHAI = ZoneInfo("Asia/Shanghai")

HVAC = """
zones:
  zone1: {device: hvac_controller, setpoint: zone1_setpoint, mode: zone1_mode, on: zone1_on,
          programme: office}
  zone2: {device: hvac_controller, setpoint: zone2_setpoint, mode: zone2_mode, on: zone2_on,
          programme: school}
programmes:
  office:
    workday:
      - {start: "07:30", level: comfort}
      - {start: "12:00", level: setback}
      - {start: "13:30", level: comfort}
      - {start: "18:00", level: off}
  school:
    workday:
      - {start: "08:00", mode: heat, setpoint: 23}
      - {start: "17:00", level: off}
    special:
      exam:
        - {start: "07:00", level: comfort}
        - {start: "19:00", level: off}
calendar:
  special:
    - {name: exam, days: [{from: 2026-06-06, to: 2026-06-07}]}
"""


def hvac() -> HvacConfig:
    return HvacConfig.model_validate(YAML(typ="safe", pure=True).load(HVAC))


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def context(**changes: Any) -> ScheduleContext:
    base = ScheduleContext.for_site(hvac(), "Asia/Shanghai")
    return ScheduleContext(hvac=base.hvac, tz=base.tz, calendar=base.calendar, **changes)


def test_wanted_state_follows_periods_calendar_and_season() -> None:
    ctx = context()
    morning = wanted_state("zone1", at(2025, 12, 29, 9), ctx)
    assert (morning.mode, morning.setpoint, morning.on) == (Mode.HEAT, 20.0, True)
    assert morning.reasons == [
        "workday",
        "period: workday 07:30 comfort",
        "season: heating (by dates)",
    ]
    lunch = wanted_state("zone1", at(2025, 12, 29, 12, 30), ctx)
    assert lunch.setpoint == 16.0
    early = wanted_state("zone1", at(2025, 12, 29, 6), ctx)
    assert (early.mode, early.on) == (Mode.OFF, False)
    holiday = wanted_state("zone1", at(2026, 1, 1, 9), ctx)
    assert not holiday.on
    assert holiday.reasons[0] == "holiday: 元旦"
    makeup = wanted_state("zone1", at(2026, 1, 4, 9), ctx)  # Sunday, 调休
    assert (makeup.mode, makeup.setpoint, makeup.on) == (Mode.HEAT, 20.0, True)
    summer = wanted_state("zone1", at(2026, 7, 15, 9), ctx)
    assert (summer.mode, summer.setpoint) == (Mode.COOL, 26.0)
    spring = wanted_state("zone1", at(2026, 4, 15, 9), ctx)
    assert (spring.mode, spring.setpoint, spring.on) == (Mode.FAN, None, True)
    spring_lunch = wanted_state("zone1", at(2026, 4, 15, 12, 30), ctx)
    assert not spring_lunch.on  # setback in the ventilation season is off


def test_a_special_day_type_runs_its_own_periods() -> None:
    ctx = context()
    exam_sunday = wanted_state("zone2", at(2026, 6, 7, 18), ctx)
    assert (exam_sunday.mode, exam_sunday.setpoint) == (Mode.COOL, 26.0)
    assert "site day type exam" in exam_sunday.reasons[0]
    assert not wanted_state("zone1", at(2026, 6, 7, 18), ctx).on  # zone1 has no exam periods


def test_boundaries() -> None:
    ctx = context()
    assert next_boundary("zone1", at(2025, 12, 29, 9), ctx) == at(2025, 12, 29, 12)
    assert next_boundary("zone1", at(2025, 12, 29, 12), ctx) == at(2025, 12, 29, 13, 30)
    assert next_boundary("zone1", at(2025, 12, 29, 19), ctx) == at(2025, 12, 30)
    override = Override(zone="zone1", id="c1", until=at(2025, 12, 29, 10, 15), setpoint=18)
    with_override = context(overrides={"zone1": override})
    assert next_boundary("zone1", at(2025, 12, 29, 9), with_override) == at(2025, 12, 29, 10, 15)


def test_the_outdoor_season_has_hysteresis() -> None:
    rule = OutdoorSeasonRule(
        device="d", point="p", cooling_above=24, heating_below=12, hysteresis=2
    )
    otherwise = Season.VENTILATION
    assert season_from_outdoor(None, 25, rule, otherwise) is Season.COOLING
    assert season_from_outdoor(Season.COOLING, 22.5, rule, otherwise) is Season.COOLING
    assert season_from_outdoor(Season.COOLING, 21.5, rule, otherwise) is Season.VENTILATION
    assert season_from_outdoor(None, 23, rule, otherwise) is Season.VENTILATION
    assert season_from_outdoor(None, 11, rule, otherwise) is Season.HEATING
    assert season_from_outdoor(Season.HEATING, 13.5, rule, otherwise) is Season.HEATING
    assert season_from_outdoor(Season.HEATING, 14.5, rule, otherwise) is Season.VENTILATION
    live = context(season=Season.COOLING, season_reason="season: cooling (outdoor)")
    assert wanted_state("zone1", at(2026, 1, 5, 9), live).mode is Mode.COOL


def test_preview_rows_through_new_year_with_a_make_up_sunday() -> None:
    rows = [
        r
        for r in preview_rows(hvac(), "Asia/Shanghai", start=date(2025, 12, 29), days=7)
        if r.zone == "zone1"
    ]
    spans = [(r.start, r.end, r.mode, r.setpoint) for r in rows if r.on]
    # Mon-Wed and the make-up Sunday each run 07:30-12:00 comfort, 12:00-13:30 setback,
    # 13:30-18:00 comfort; Thursday (New Year), Friday (day off) and Saturday stay off.
    days = [date(2025, 12, 29), date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 4)]
    expected = []
    for day in days:
        y, m, d = day.year, day.month, day.day
        expected += [
            (at(y, m, d, 7, 30), at(y, m, d, 12), "heat", 20.0),
            (at(y, m, d, 12), at(y, m, d, 13, 30), "heat", 16.0),
            (at(y, m, d, 13, 30), at(y, m, d, 18), "heat", 20.0),
        ]
    assert spans == expected
    new_year = next(r for r in rows if r.start == at(2026, 1, 1))
    assert (new_year.end, new_year.on) == (at(2026, 1, 2), False)
    assert new_year.reasons[0] == "holiday: 元旦"
    sunday = next(r for r in rows if r.start == at(2026, 1, 4, 7, 30))
    assert sunday.reasons[0].startswith("make-up workday (调休)")
    assert rows[0].start == at(2025, 12, 29)
    assert rows[-1].end == at(2026, 1, 5)
    assert all(a.end == b.start for a, b in itertools.pairwise(rows))


def test_preview_shows_clamps_and_overrides() -> None:
    override = Override(
        zone="zone1", id="c9", until=at(2026, 7, 15, 21), mode=Mode.COOL, setpoint=23
    )
    rows = preview_rows(
        hvac(), "Asia/Shanghai", start=date(2026, 7, 15), days=1, overrides={"zone1": override}
    )
    evening = next(r for r in rows if r.zone == "zone1" and r.start == at(2026, 7, 15, 18))
    assert (evening.end, evening.mode, evening.setpoint) == (at(2026, 7, 15, 21), "cool", 26.0)
    assert any(reason.startswith("override c9 until") for reason in evening.reasons)
    assert "clamp: 23 → 26 °C (cooling minimum 26 °C)" in evening.reasons
    school = next(r for r in rows if r.zone == "zone2" and r.on)
    assert school.setpoint == 20.0  # a 23 °C heating period in summer: heat, clamped to 20
    assert "clamp: 23 → 20 °C (heating maximum 20 °C)" in school.reasons


def test_text_and_json_output() -> None:
    rows = preview_rows(hvac(), "Asia/Shanghai", start=date(2026, 1, 1), days=4)
    text = format_rows(rows, ["the holiday calendar for 2027 is missing"])
    assert text.startswith("warning: the holiday calendar for 2027 is missing\nzone1:\n")
    assert "Thu 2026-01-01 00:00 - 24:00" in text
    assert "Sun 2026-01-04 07:30 - 12:00" in text
    assert "heat 20 °C" in text
    data = json.loads(to_json(rows, []))
    assert data["warnings"] == []
    first = data["rows"][0]
    assert first == {
        "zone": "zone1",
        "start": "2026-01-01T00:00:00+08:00",
        "end": "2026-01-02T00:00:00+08:00",
        "mode": "off",
        "setpoint": None,
        "on": False,
        "reasons": ["holiday: 元旦", "period: weekend has no periods (off)"],
    }


def test_preview_refuses_a_silly_length() -> None:
    with pytest.raises(ValueError, match="days"):
        preview_rows(hvac(), "Asia/Shanghai", start=date(2026, 1, 1), days=0)


def test_run_preview_on_a_site_config(tmp_path: Path) -> None:
    site = (
        # The demo's devices with this test's own hvac section in place of the demo's.
        DEMO_YAML.read_text(encoding="utf-8").split("\nhvac:\n")[0]
        + "\nhvac:\n"
        + "".join(f"  {line}\n" for line in HVAC.strip().splitlines())
    )
    path = tmp_path / "site.yaml"
    path.write_text(site, encoding="utf-8")
    out = io.StringIO()
    assert run_preview(path, start=date(2026, 1, 1), days=2, as_json=True, out=out) == 0
    assert json.loads(out.getvalue())["rows"][0]["reasons"][0] == "holiday: 元旦"
