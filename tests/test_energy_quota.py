"""Quota rules and the alert state machine, on synthetic intervals; aligned periods."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.energy.alerts import AlertBook
from agent.energy.config import EnergyConfig, QuotaRule
from agent.energy.intervals import Interval
from agent.energy.periods import Size, bucket_start, buckets, next_start
from agent.energy.quota import QuotaMonitor, period_limit

TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3_600_000
QUARTER = HOUR // 4


def _ms(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: ZoneInfo = TZ
) -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=tz).timestamp() * 1000)


def _energy(quota: dict[str, Any], **sections: Any) -> EnergyConfig:
    return EnergyConfig.model_validate(
        {
            "meters": [{"name": "grid", "device": "m", "point": "import_energy", "role": "main"}],
            "quotas": [{"name": "q", "meter": "grid", **quota}],
            **sections,
        }
    )


def _quarters(start_ms: int, count: int, value: float) -> list[Interval]:
    return [
        Interval("grid", start_ms + n * QUARTER, start_ms + (n + 1) * QUARTER, value, "kWh")
        for n in range(count)
    ]


# ---- the alert book -----------------------------------------------------------------------------


def test_an_alert_is_raised_once_and_cleared_once() -> None:
    events: list[dict[str, Any]] = []
    book = AlertBook(events.append)
    assert book.raise_alert("k", ts_ms=0, kind="test", message="m", rule="r", target="t")
    assert not book.raise_alert("k", ts_ms=1000, kind="test", message="again")
    assert book.is_raised("k")
    assert book.clear_alert("k", ts_ms=2000, reason="done")
    assert not book.clear_alert("k", ts_ms=3000, reason="done")
    raised, cleared = events
    assert raised == {
        "type": "alert",
        "state": "raised",
        "key": "k",
        "kind": "test",
        "ts": "1970-01-01T00:00:00.000Z",
        "message": "m",
        "rule": "r",
        "target": "t",
    }
    assert cleared == {
        "type": "alert",
        "state": "cleared",
        "key": "k",
        "kind": "test",
        "rule": "r",
        "target": "t",
        "ts": "1970-01-01T00:00:02.000Z",
        "raised_at": "1970-01-01T00:00:00.000Z",
        "reason": "done",
    }


def test_raised_alerts_survive_a_restart_without_repeating() -> None:
    first: list[dict[str, Any]] = []
    energy = _energy({"limit": 10, "period": "day", "thresholds": [50]})
    monitor = QuotaMonitor(energy, tz=TZ, alerts=(book := AlertBook(first.append)))
    monitor.add(_quarters(_ms(2026, 7, 1, 8), 8, 1.0))
    assert [e["key"] for e in first] == ["quota:q:50"]
    saved = book.raised()

    again: list[dict[str, Any]] = []
    restarted = QuotaMonitor(energy, tz=TZ, alerts=AlertBook(again.append, raised=saved))
    restarted.add(_quarters(_ms(2026, 7, 1, 8), 10, 1.0))  # the same day, re-read from the store
    assert again == []
    restarted.evaluate(_ms(2026, 7, 2, 0))
    assert [(e["key"], e["state"], e["reason"]) for e in again] == [
        ("quota:q:50", "cleared", "the day ended")
    ]


# ---- quota rules --------------------------------------------------------------------------------


def test_thresholds_are_raised_in_the_interval_that_crosses_them() -> None:
    events: list[dict[str, Any]] = []
    monitor = QuotaMonitor(
        _energy({"limit": 10, "period": "day", "project": False}),
        tz=TZ,
        alerts=AlertBook(events.append),
    )
    start = _ms(2026, 7, 1, 8)
    monitor.add(_quarters(start, 12, 1.0))
    assert [(e["key"], e["ts"]) for e in events] == [
        ("quota:q:80", "2026-07-01T02:00:00.000Z"),  # 8 kWh after eight quarters
        ("quota:q:100", "2026-07-01T02:30:00.000Z"),
    ]
    assert events[1]["message"] == "Meter grid reached 100 % of its daily quota: 10.0 of 10.0 kWh"
    (status,) = monitor.status()
    assert (status.value, status.percent) == (12.0, 120.0)


def test_the_projection_follows_the_usual_profile_of_working_and_closed_days() -> None:
    # Two weeks of history: 2 kWh a quarter on working days, nothing at weekends.
    energy = _energy({"limit": 1000, "period": "month", "project_after": 0.0, "profile_days": 14})
    monitor = QuotaMonitor(energy, tz=TZ, alerts=AlertBook(lambda _e: None))
    day = _ms(2026, 6, 17)
    for n in range(14):
        start = day + n * 24 * HOUR
        weekday = datetime.fromtimestamp(start / 1000, TZ).weekday()
        monitor.add(_quarters(start, 96, 2.0 if weekday < 5 else 0.0))
    monitor.evaluate(_ms(2026, 7, 1))
    (status,) = monitor.status()
    # June 30 is history; July has 23 working days of 192 kWh and 8 weekend days of nothing.
    assert status.value == 0
    monitor.add(_quarters(_ms(2026, 7, 1), 1, 2.0))
    monitor.evaluate(_ms(2026, 7, 1, 0, 15))
    (status,) = monitor.status()
    assert status.projected == pytest.approx(2.0 + 95 * 2.0 + 22 * 192.0)


def test_a_holiday_counts_as_a_closed_day_and_a_make_up_workday_as_open() -> None:
    calendar = {"holidays": ["2026-10-01", "2026-10-02"], "workdays": ["2026-10-10"]}
    energy = _energy(
        {"limit": 1000, "period": "month", "project_after": 0.0, "profile_days": 7},
        calendar=calendar,
    )
    monitor = QuotaMonitor(energy, tz=TZ, alerts=AlertBook(lambda _e: None))
    for n in range(7):  # a week before: 1 kWh a quarter on working days
        start = _ms(2026, 9, 23) + n * 24 * HOUR
        weekday = datetime.fromtimestamp(start / 1000, TZ).weekday()
        monitor.add(_quarters(start, 96, 1.0 if weekday < 5 else 0.0))
    monitor.add(_quarters(_ms(2026, 10, 1), 96, 0.0))
    monitor.evaluate(_ms(2026, 10, 2))
    (status,) = monitor.status()
    # October from the 2nd: 31 - 1 days; weekdays 22 minus the 2nd (a holiday), plus the 10th.
    working = sum(
        1 for d in range(2, 32) if (date(2026, 10, d).weekday() < 5 and d != 2) or d == 10
    )
    assert status.projected == pytest.approx(working * 96.0)


def test_a_projection_warning_clears_when_the_projection_falls_back() -> None:
    events: list[dict[str, Any]] = []
    energy = _energy(
        {"limit": 150, "period": "day", "project_after": 0.0, "hysteresis": 5, "profile_days": 2}
    )
    monitor = QuotaMonitor(energy, tz=TZ, alerts=AlertBook(events.append))
    monitor.add(_quarters(_ms(2026, 7, 1), 96, 2.0))  # yesterday: 192 kWh
    monitor.add(_quarters(_ms(2026, 7, 2), 4, 2.0))
    monitor.evaluate(_ms(2026, 7, 2, 1))
    projections = [e for e in events if e["key"] == "quota:q:projected"]
    assert [e["state"] for e in projections] == ["raised"]
    # The building is switched off for the rest of the day: the profile learns it.
    monitor.add(_quarters(_ms(2026, 7, 2, 1), 60, 0.0))
    monitor.evaluate(_ms(2026, 7, 2, 16))
    projections = [e for e in events if e["key"] == "quota:q:projected"]
    assert [e["state"] for e in projections] == ["raised", "cleared"]
    assert projections[1]["reason"] == "the projection fell back under the quota"


def test_an_intensity_quota_is_the_floor_area_times_the_years_share() -> None:
    rule = QuotaRule.model_validate(
        {"name": "q", "energy_type": "electricity", "unit": "kWh/m2a", "limit": 73}
    )
    start = _ms(2026, 2, 1)
    end = next_start(start, Size.MONTH, TZ)
    assert period_limit(rule, start, end, tz=TZ, area=10_000) == pytest.approx(
        73 * 10_000 * 28 / 365
    )
    yearly = rule.model_copy(update={"period": "year"})
    assert period_limit(yearly, _ms(2026, 1, 1), _ms(2027, 1, 1), tz=TZ, area=10_000) == 730_000
    with pytest.raises(ValueError, match="floor_area_m2"):
        period_limit(rule, start, end, tz=TZ, area=None)


def test_a_tce_quota_converts_with_the_configured_factor() -> None:
    events: list[dict[str, Any]] = []
    energy = _energy({"limit": 0.1229, "unit": "tce", "period": "day", "project": False})
    monitor = QuotaMonitor(energy, tz=TZ, alerts=AlertBook(events.append))
    monitor.add(_quarters(_ms(2026, 7, 1), 4, 250.0))  # 1000 kWh = 0.1229 tce
    assert [e["key"] for e in events] == ["quota:q:80", "quota:q:100"]
    assert events[-1]["unit"] == "tce"


# ---- periods ------------------------------------------------------------------------------------


def test_buckets_follow_local_days_months_and_years() -> None:
    t = _ms(2026, 7, 15, 13, 7)
    assert bucket_start(t, Size.MIN15, TZ) == _ms(2026, 7, 15, 13, 0)
    assert bucket_start(t, Size.HOUR, TZ) == _ms(2026, 7, 15, 13)
    assert bucket_start(t, Size.DAY, TZ) == _ms(2026, 7, 15)
    assert bucket_start(t, Size.MONTH, TZ) == _ms(2026, 7, 1)
    assert bucket_start(t, Size.YEAR, TZ) == _ms(2026, 1, 1)
    assert next_start(_ms(2026, 12, 1), Size.MONTH, TZ) == _ms(2027, 1, 1)
    assert len(buckets(_ms(2026, 1, 1), _ms(2027, 1, 1), Size.DAY, TZ)) == 365


def test_quarter_hours_stay_aligned_across_a_daylight_saving_change() -> None:
    zone = ZoneInfo("Europe/Berlin")
    day = _ms(2026, 3, 29, tz=zone)
    quarters = buckets(day, next_start(day, Size.DAY, zone), Size.MIN15, zone)
    assert len(quarters) == 92
    after = datetime.fromtimestamp(quarters[12][0] / 1000, zone)
    assert (after.hour, after.minute) == (4, 0)  # 02:00-03:00 does not exist that night
