"""The energy pipeline on the simulated building (hil.building), in accelerated time.

The building's counters are read every 15 minutes straight from its physics (no Modbus): a
month runs in a few seconds. Its identity main_import - main_export = lighting + hvac + other - pv
makes the balance exact when `other` (lifts and pumps, sub-item 01C00) is metered.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.core.record import Quality, StoredReading, ms_to_iso
from agent.energy.config import EnergyConfig
from agent.energy.intervals import build_intervals
from agent.energy.pipeline import EnergyPipeline
from agent.energy.quality import balance_checks
from agent.energy.report import energy_report, render_csv, render_text, report_window
from hil.building import Building, EnergyCounters

TZ = ZoneInfo("Asia/Shanghai")
QUARTER_S = 900

# Counter -> (device, point) as the demo config names them; `other` has no meter in the demo,
# so the tests give it one.
POINTS: dict[str, tuple[str, str]] = {
    "main_import": ("main_meter", "import_energy"),
    "main_export": ("main_meter", "export_energy"),
    "lighting": ("lighting_meter", "import_energy"),
    "hvac": ("hvac_meter", "import_energy"),
    "other": ("other_meter", "import_energy"),
    "pv_total": ("pv_inverter", "total_yield"),
}


def _energy(**sections: Any) -> EnergyConfig:
    meters = [
        {"name": "main_import", "device": "main_meter", "point": "import_energy", "role": "main"},
        {"name": "main_export", "device": "main_meter", "point": "export_energy", "role": "export"},
        {
            "name": "lighting",
            "device": "lighting_meter",
            "point": "import_energy",
            "sub_item": "01A00",
        },
        {"name": "hvac", "device": "hvac_meter", "point": "import_energy", "sub_item": "01B00"},
        {"name": "other", "device": "other_meter", "point": "import_energy", "sub_item": "01C00"},
        {"name": "pv", "device": "pv_inverter", "point": "total_yield", "role": "generation"},
    ]
    # Readings every 15 minutes: a step of 15 minutes is not a gap here.
    return EnergyConfig.model_validate({"max_step": "16m", "meters": meters, **sections})


@dataclass
class Site:
    id: str = "jz-test"
    name: str = "荆州市测试办公楼"
    timezone: str = "Asia/Shanghai"
    floor_area_m2: float | None = 12_000.0


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


@dataclass
class Simulation:
    """The building on a stepped clock, read every 15 minutes into store-shaped rows."""

    start: datetime
    seed: int = 1
    tamper: Callable[[str, float], float] = lambda _name, value: value
    skip: Callable[[str, int], bool] = lambda _name, _ts: False
    clock: list[float] = field(default_factory=list)
    seq: int = 0

    def __post_init__(self) -> None:
        self.clock = [self.start.timestamp()]
        self.building = Building(clock=lambda: self.clock[0], seed=self.seed)

    @property
    def now_ms(self) -> int:
        return round(self.clock[0] * 1000)

    def counters(self) -> EnergyCounters:
        return self.building.energy()

    def read(self) -> list[StoredReading]:
        energy = self.building.energy()
        rows = []
        for name, (device, point) in POINTS.items():
            if self.skip(name, self.now_ms):
                continue
            self.seq += 1
            value = self.tamper(name, getattr(energy, name))
            rows.append(
                StoredReading(self.seq, device, point, self.now_ms, value, "kWh", Quality.GOOD)
            )
        return rows

    def step(self) -> list[StoredReading]:
        self.clock[0] += QUARTER_S
        self.building.update()
        return self.read()

    def run(self, quarters: int) -> list[StoredReading]:
        rows = self.read()
        for _ in range(quarters):
            rows += self.step()
        return rows


def _keys(events: list[dict[str, Any]], state: str, prefix: str = "") -> list[str]:
    return [e["key"] for e in events if e["state"] == state and e["key"].startswith(prefix)]


# ---- quotas over a simulated month -----------------------------------------------------------


def test_a_simulated_month_warns_before_the_quota_is_crossed_alerts_once_and_clears() -> None:
    # The building's month, once: rows and the true import counter every 15 minutes.
    sim = Simulation(datetime(2026, 7, 1, tzinfo=TZ))
    first_rows, first = sim.read(), sim.counters().main_import
    ticks = []
    for _ in range(33 * 96):  # July and two days of August
        rows = sim.step()
        ticks.append((sim.now_ms, rows, sim.counters().main_import - first))
    august_ms = _ms(datetime(2026, 8, 1, tzinfo=TZ))
    july = next(used for now, _rows, used in ticks if now == august_ms)
    limit = round(0.93 * july)  # crossed late in the month
    crossed_at = next(now for now, _rows, used in ticks if used >= limit)

    energy = _energy(
        quotas=[
            {
                "name": "site-month",
                "energy_type": "electricity",
                "period": "month",
                "limit": limit,
                "thresholds": [80, 100],
            }
        ]
    )
    events: list[dict[str, Any]] = []
    pipeline = EnergyPipeline(energy, site=Site(), sink=events.append)
    pipeline.feed(first_rows)
    for now, rows, _used in ticks:
        pipeline.feed(rows)
        pipeline.evaluate(now)

    raised = {e["key"]: e for e in events if e["state"] == "raised"}
    # Once each, never repeated while raised, the projection first.
    assert _keys(events, "raised") == [
        "quota:site-month:projected",
        "quota:site-month:80",
        "quota:site-month:100",
    ]
    projected, hundred = raised["quota:site-month:projected"], raised["quota:site-month:100"]
    assert hundred["ts"] == ms_to_iso(crossed_at)  # raised in the very interval that crossed
    # The warning came well before the quota was blown: days, not minutes.
    warned = datetime.fromisoformat(projected["ts"].replace("Z", "+00:00"))
    crossed = datetime.fromisoformat(hundred["ts"].replace("Z", "+00:00"))
    assert (crossed - warned).days >= 7
    assert projected["projected"] > limit > projected["value"]
    assert hundred["value"] >= limit
    assert hundred["limit"] == pytest.approx(limit)
    assert hundred["kind"] == "quota_threshold"
    assert projected["kind"] == "quota_projected"
    assert projected["message"].startswith("The site's electricity is on course to exceed")

    # Cleared once each when August began, and not raised again in its first two days.
    cleared = [e for e in events if e["state"] == "cleared"]
    assert sorted(e["key"] for e in cleared) == sorted(raised)
    assert {e["ts"] for e in cleared} == {ms_to_iso(august_ms)}
    assert all(e["reason"] == "the month ended" for e in cleared)
    assert pipeline.alerts.raised() == {}
    (july_status,) = pipeline.quotas.history
    assert july_status.value == pytest.approx(july, rel=1e-9)
    assert july_status.percent > 100


# ---- the balance ---------------------------------------------------------------------------------

BALANCE = {
    "name": "main",
    "main": ["main_import"],
    "export": ["main_export"],
    "generation": ["pv"],
    "parts": ["lighting", "hvac", "other"],
    "tolerance_percent": 2,
}


def test_the_main_meter_balances_against_its_sub_meters_and_pv() -> None:
    rows = Simulation(datetime(2026, 7, 4, tzinfo=TZ)).run(3 * 96)  # Saturday to Monday
    energy = _energy(balance=[BALANCE])
    results = balance_checks(build_intervals(rows, energy, tz=TZ), energy, tz=TZ)
    assert len(results) == 3
    assert all(r.ok for r in results), results
    assert all(abs(r.unmetered_percent or 0) < 0.01 for r in results)
    assert all(r.supply > 100 for r in results)


def test_an_unmetered_load_is_allowed_for_when_its_share_is_configured() -> None:
    rows = Simulation(datetime(2026, 7, 6, tzinfo=TZ)).run(2 * 96)
    rule = {
        **BALANCE,
        "parts": ["lighting", "hvac"],
        "unmetered_percent": 25,
        "tolerance_percent": 8,
    }
    energy = _energy(balance=[rule])
    results = balance_checks(build_intervals(rows, energy, tz=TZ), energy, tz=TZ)
    assert all(r.ok for r in results), results


def test_a_broken_sub_meter_fails_the_balance_and_raises_one_alert() -> None:
    # A lighting meter with the wrong CT ratio: it counts 12 % too much.
    def wrong_ratio(name: str, value: float) -> float:
        return value * 1.12 if name == "lighting" else value

    sim = Simulation(datetime(2026, 7, 6, tzinfo=TZ), tamper=wrong_ratio)
    energy = _energy(balance=[BALANCE])
    events: list[dict[str, Any]] = []
    pipeline = EnergyPipeline(energy, site=Site(), sink=events.append)
    pipeline.feed(sim.read())
    for _ in range(2 * 96):
        pipeline.feed(sim.step())
        pipeline.evaluate(sim.now_ms)
    results = pipeline.balance.results
    assert [r.ok for r in results] == [False, False]
    assert results[0].unmetered_percent is not None
    assert results[0].unmetered_percent < -2  # the sub-meters see more than the supply
    assert "more than expected" in results[0].reason
    assert _keys(events, "raised") == ["balance:main"]
    assert events[0]["kind"] == "balance"


# ---- off-hours and silent meters -----------------------------------------------------------------


def test_hvac_left_on_overnight_raises_once_and_clears_when_the_building_opens() -> None:
    energy = _energy(
        off_hours=[
            {"name": "hvac-night", "meter": "hvac", "baseline": 1, "sustained": "1h"},
            {"name": "lighting-night", "sub_item": "01A00", "baseline": 4, "sustained": "1h"},
        ]
    )
    sim = Simulation(datetime(2026, 7, 1, tzinfo=TZ))  # a Wednesday
    events: list[dict[str, Any]] = []
    pipeline = EnergyPipeline(energy, site=Site(), sink=events.append)
    pipeline.feed(sim.read())
    left_on = _ms(datetime(2026, 7, 1, 19, 0, tzinfo=TZ))
    for _ in range(2 * 96):
        pipeline.feed(sim.step())
        pipeline.evaluate(sim.now_ms)
        if sim.now_ms == left_on:
            for zone in ("zone1", "zone2", "zone3"):
                sim.building.set_on(zone, True)  # the caretaker forgot the HVAC
    assert [(e["key"], e["state"]) for e in events] == [
        ("off_hours:hvac-night", "raised"),
        ("off_hours:hvac-night", "cleared"),
    ]
    raised, cleared = events
    assert raised["ts"] == ms_to_iso(left_on + 3600_000)  # after an hour above the baseline
    assert raised["rate"] > 1
    assert cleared["ts"] == ms_to_iso(_ms(datetime(2026, 7, 2, 8, 0, tzinfo=TZ)))
    assert cleared["reason"] == "opening hours began"


def test_a_silent_meter_raises_after_n_intervals_and_clears_when_it_speaks_again() -> None:
    quiet_from = _ms(datetime(2026, 7, 1, 12, 0, tzinfo=TZ))
    quiet_until = _ms(datetime(2026, 7, 1, 15, 0, tzinfo=TZ))

    def silent(name: str, ts: int) -> bool:
        return name == "hvac" and quiet_from <= ts < quiet_until

    sim = Simulation(datetime(2026, 7, 1, 6, 0, tzinfo=TZ), skip=silent)
    events: list[dict[str, Any]] = []
    pipeline = EnergyPipeline(_energy(silent={"intervals": 4}), site=Site(), sink=events.append)
    pipeline.feed(sim.read())
    for _ in range(12 * 4):
        pipeline.feed(sim.step())
        pipeline.evaluate(sim.now_ms)
    assert [(e["key"], e["state"], e["ts"]) for e in events] == [
        ("silent:hvac", "raised", ms_to_iso(quiet_from - 900_000 + 4 * 900_000)),
        ("silent:hvac", "cleared", ms_to_iso(quiet_until)),
    ]
    assert events[0]["last_seen"] == ms_to_iso(quiet_from - 900_000)


# ---- the report ----------------------------------------------------------------------------------


def test_the_report_shows_consumption_pv_tce_co2_quota_and_completeness() -> None:
    rows = Simulation(datetime(2026, 7, 1, tzinfo=TZ)).run(2 * 96)
    energy = _energy(
        quotas=[
            {
                "name": "site-year",
                "unit": "kWh/m2a",
                "limit": 70,
                "period": "year",
                "level": "guide",
            }
            | {"energy_type": "electricity"}
        ]
    )
    report = energy_report(rows, energy, site=Site(), period="day")
    text = render_text(report)
    assert "Energy report: 荆州市测试办公楼 (jz-test), by day, 2026-07-01 to 2026-07-02" in text
    for fragment in (
        "Consumption",
        "01A00 lighting and sockets",
        "self_consumption",
        "Standard coal",
        "CO2",
        "site-year [site:electricity]",
        "of 840000.0 kWh (guide value)",  # 70 kWh/(m2·a) x 12 000 m2
        "96 of 96 received",
        "0.1229 kgce/kWh",
        "0.5306 kgCO2/kWh",
    ):
        assert fragment in text, fragment

    table = list(csv.DictReader(io.StringIO(render_csv(report))))
    by = {(r["period"], r["section"], r["key"]): r for r in table}
    tce = by[("2026-07-01", "tce", "electricity")]
    grid = float(by[("2026-07-01", "consumption", "electricity")]["value"])
    assert float(tce["value"]) == pytest.approx(grid * 0.1229 / 1000, rel=1e-6)
    assert tce["factor"].startswith("0.1229 kgce/kWh (electricity calorific equivalent")
    co2 = by[("2026-07-01", "co2", "electricity")]
    assert float(co2["value"]) == pytest.approx(grid * 0.5306 / 1000, rel=1e-6)
    assert "2023" in co2["factor"]
    assert all(float(r["value"]) == 100 for r in table if r["section"] == "completeness"), (
        "every meter complete"
    )
    pv = {
        r["key"]: float(r["value"])
        for r in table
        if r["section"] == "pv" and r["period"] == "2026-07-01"
    }
    assert pv["self_consumption"] == pytest.approx(pv["generation"] - pv["export"], abs=0.5)
    assert pv["building"] == pytest.approx(grid + pv["self_consumption"], rel=1e-9)


def test_the_monthly_report_sums_the_days() -> None:
    rows = Simulation(datetime(2026, 7, 1, tzinfo=TZ)).run(2 * 96)
    energy = _energy()
    daily = energy_report(rows, energy, site=Site(), period="day")
    monthly = energy_report(rows, energy, site=Site(), period="month")
    days = sum(
        line.value or 0
        for line in daily.lines
        if line.section == "consumption" and line.key == "electricity"
    )
    (month,) = [
        line
        for line in monthly.lines
        if line.section == "consumption" and line.key == "electricity"
    ]
    assert month.period == "2026-07"
    assert month.value == pytest.approx(days)
    assert "partial" in month.note  # two days of a 31-day month


def test_a_day_report_counts_quota_use_from_the_start_of_the_quota_period() -> None:
    rows = Simulation(datetime(2026, 7, 1, tzinfo=TZ)).run(3 * 96)
    energy = _energy(quotas=[{"name": "site-month", "energy_type": "electricity", "limit": 9000}])
    start, end, read_from, read_until = report_window(
        energy, tz=TZ, period="day", start_ms=_ms(datetime(2026, 7, 2, 15, tzinfo=TZ))
    )
    assert (start, end) == (
        _ms(datetime(2026, 7, 2, tzinfo=TZ)),
        _ms(datetime(2026, 7, 3, tzinfo=TZ)),
    )
    assert read_from < _ms(datetime(2026, 7, 1, tzinfo=TZ))
    window = [r for r in rows if read_from <= r.ts_ms < read_until]
    report = energy_report(window, energy, site=Site(), start_ms=start, end_ms=end)
    (quota,) = [line for line in report.lines if line.section == "quota"]
    days = [line for line in report.lines if line.section == "consumption"]
    assert [line.period for line in days] == ["2026-07-02"]
    # The quota line counts July 1 and 2, not the report's one day.
    assert quota.value is not None
    assert days[0].value is not None
    assert quota.value > 1.5 * days[0].value
