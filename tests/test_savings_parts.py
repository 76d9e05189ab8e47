"""The savings report's parts that need no model: statistics, sufficiency, tariffs, the plan,
and the service's footprint (it never imports the savings package or OpenDSM)."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent.core.errors import AgentError, ConfigError
from agent.energy.config import MeterConfig
from agent.savings.command import load_plan, parse_baseline
from agent.savings.daily import DayEnergy, read_temperature
from agent.savings.plan import Adjustment, MvPlan, Tariff, TemperatureSource, Thresholds
from agent.savings.report import (
    MeterResult,
    PeriodSavings,
    _site_periods,
    period_days,
    period_label,
)
from agent.savings.stats import fit_stats, savings_uncertainty, t_quantile
from agent.savings.sufficiency import check_sufficiency
from agent.savings.tariffs import price_of
from tests.helpers import ROOT

TZ = ZoneInfo("Asia/Shanghai")


def test_the_service_never_imports_the_savings_package_or_opendsm() -> None:
    code = (
        "import sys, agent.service, agent.cli, agent.uplink, agent.energy.command\n"
        "from agent.cli import _parser\n"
        "_parser()\n"
        # numpy and parts of pandas are left out: sqlite-utils imports them whenever they are
        # installed (the extra brings them), which is why docs/savings.md installs the extra
        # in a venv of its own; a gateway without the extra has neither.
        "heavy = ('opendsm', 'scipy', 'numba', 'sklearn', 'statsmodels')\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in heavy or m.startswith('agent.savings.')\n"
        "             or m == 'agent.savings'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "[]"


def test_t_quantiles_match_the_tables() -> None:
    # Student t, two-sided 90 %: 2.015 (5 dof), 1.812 (10), 1.697 (30), 1.645 (infinite).
    assert t_quantile(0.9, 5) == pytest.approx(2.015, abs=2e-3)
    assert t_quantile(0.9, 10) == pytest.approx(1.812, abs=1e-3)
    assert t_quantile(0.9, 30) == pytest.approx(1.697, abs=1e-3)
    assert t_quantile(0.9, math.inf) == pytest.approx(1.645, abs=1e-3)
    assert t_quantile(0.68, 1000) == pytest.approx(0.994, abs=2e-3)


def test_fit_statistics_follow_guideline_14() -> None:
    observed = [10.0, 12.0, 14.0, 16.0, 18.0, 20.0]
    predicted = [11.0, 11.0, 15.0, 15.0, 19.0, 19.0]  # residuals -1, +1, -1, +1, -1, +1
    stats = fit_stats(observed, predicted, p=2)
    assert stats.mean == 15.0
    assert stats.cvrmse == pytest.approx(math.sqrt(6 / 4) / 15)
    assert stats.nmbe == pytest.approx(0.0)
    assert stats.r2 == pytest.approx(1 - 6 / 70)
    assert stats.rho == 0.0  # alternating residuals: negative autocorrelation, taken as 0
    assert stats.n_eff == 6


def test_savings_uncertainty_shrinks_with_more_days_and_grows_with_autocorrelation() -> None:
    stats = fit_stats([float(v % 7 + 10) for v in range(365)], [13.0] * 365, p=4)
    one = savings_uncertainty(stats, m=30, baseline_energy=30 * 13, confidence=0.9)
    # ΔS = 1.26 t CV sqrt((n/n')(1 + 2/n)/m) E, here with rho > 0 (a weekly pattern).
    t = t_quantile(0.9, stats.n_eff - 4)
    expected = 1.26 * t * stats.cvrmse * math.sqrt(stats.n / stats.n_eff * (1 + 2 / 365) / 30) * 390
    assert one == pytest.approx(expected)
    year = savings_uncertainty(stats, m=360, baseline_energy=360 * 13, confidence=0.9)
    assert year / (360 * 13) < one / (30 * 13)  # relatively smaller over a longer period
    assert stats.rho > 0
    assert stats.n_eff < 365


def _days(first: date, count: int, *, skip: set[date] = frozenset(), est: int = 0) -> dict:  # type: ignore[type-arg]
    out = {}
    for n in range(count):
        day = first + timedelta(days=n)
        if day not in skip:
            out[day] = DayEnergy(day, 100.0, 96, 96, est)
    return out


def test_a_month_missing_from_the_baseline_is_flagged() -> None:
    first = date(2025, 1, 1)
    march = {date(2025, 3, 1) + timedelta(days=n) for n in range(31)}
    energy = _days(first, 365, skip=march)
    temps = {first + timedelta(days=n): 15.0 for n in range(365)}
    checks = {
        c.name: c
        for c in check_sufficiency(
            energy, temps, first=first, last=date(2025, 12, 31), limits=Thresholds()
        )
    }
    assert checks["period"].ok
    # 334 of 365 days is 91.5 %: the yearly coverage rule alone would let it through.
    assert checks["coverage"].ok
    assert not checks["months"].ok
    assert "2025-03 (0 of 31 days)" in checks["months"].sentence
    assert not checks["gaps"].ok
    assert "longest run of unusable days: 31 (to 2025-03-31)" in checks["gaps"].sentence


def test_estimated_intervals_and_short_periods_are_flagged() -> None:
    first = date(2025, 1, 1)
    energy = _days(first, 200, est=20)
    temps = {first + timedelta(days=n): 15.0 for n in range(200)}
    checks = {
        c.name: c
        for c in check_sufficiency(
            energy, temps, first=first, last=first + timedelta(days=199), limits=Thresholds()
        )
    }
    assert not checks["period"].ok
    assert not checks["estimated"].ok
    assert "4000 of 19200 intervals estimated" in checks["estimated"].sentence


def _interval(start: datetime, value: float) -> dict:  # type: ignore[type-arg]
    return {"start_ms": round(start.timestamp() * 1000), "value": value}


def test_time_of_use_prices_weigh_the_periods_by_consumption() -> None:
    tariff = Tariff.model_validate(
        {
            "time_of_use": [
                {"name": "peak", "price": 1.0, "hours": [["08:00", "12:00"], ["17:00", "21:00"]]},
                {"name": "flat", "price": 0.6, "hours": [["12:00", "17:00"], ["21:00", "23:00"]]},
                {"name": "valley", "price": 0.3, "hours": [["23:00", "08:00"]]},
            ],
            "source": "test tariff",
        }
    )
    day = datetime(2026, 7, 1, tzinfo=TZ)
    rows = [_interval(day + timedelta(hours=h), 10.0 if 8 <= h < 12 else 0.0) for h in range(24)]
    rows.append(_interval(day + timedelta(hours=2), 30.0))  # valley
    price, note = price_of(tariff, currency="CNY", unit="kWh", intervals=rows, zone=TZ)
    assert price == pytest.approx((40 * 1.0 + 30 * 0.3) / 70)
    assert "peak 57 %, flat 0 %, valley 43 %" in note
    price, note = price_of(
        tariff, currency="CNY", unit="kWh", registers={"peak": 1, "flat": 1, "valley": 2}, zone=TZ
    )
    assert price == pytest.approx((1.0 + 0.6 + 0.6) / 4)
    assert "tariff registers" in note


def test_a_tariff_with_a_hole_in_the_day_is_a_sentence() -> None:
    tariff = Tariff(time_of_use=[{"name": "peak", "price": 1.0, "hours": [(time(8), time(12))]}])  # type: ignore[list-item]
    rows = [_interval(datetime(2026, 7, 1, 13, tzinfo=TZ), 1.0)]
    with pytest.raises(AgentError, match="no period at 13:00"):
        price_of(tariff, currency="CNY", unit="kWh", intervals=rows, zone=TZ)


def test_the_plan_rejects_what_cannot_be_used() -> None:
    with pytest.raises(ValidationError, match="exactly one temperature source"):
        TemperatureSource(device="hvac_controller")
    with pytest.raises(ValidationError, match="flat price or time_of_use"):
        Tariff()
    with pytest.raises(ValidationError, match="add_per_day or factor"):
        Adjustment(start=date(2026, 1, 1), reason="nothing")
    with pytest.raises(ValidationError, match="reason"):
        Adjustment(start=date(2026, 1, 1), factor=1.1, reason="")
    plan = MvPlan.model_validate(
        {
            "temperature": {"csv": "outdoor.csv"},
            "adjustments": [
                {"meter": "main_import", "start": "2026-03-01", "add_per_day": 40,
                 "reason": "new server room"},
            ],
        }
    )  # fmt: skip
    assert plan.adjustments[0].applies("main_import", date(2026, 3, 1))
    assert not plan.adjustments[0].applies("hvac", date(2026, 3, 1))
    assert not plan.adjustments[0].applies("main_import", date(2026, 2, 28))


def test_the_baseline_argument_reads_from_to() -> None:
    assert parse_baseline("2025-01-01..2025-12-31") == (date(2025, 1, 1), date(2025, 12, 31))
    with pytest.raises(AgentError, match=r"FROM\.\.TO"):
        parse_baseline("2025-01-01")
    with pytest.raises(AgentError, match="ends before it starts"):
        parse_baseline("2025-12-31..2025-01-01")


def test_period_lengths_and_labels() -> None:
    assert [period_days(date(2026, 2, 10), p) for p in ("month", "quarter", "year")] == [
        28,
        90,
        365,
    ]
    assert period_days(date(2028, 2, 10), "month") == 29
    assert period_label(date(2026, 8, 31), "quarter") == "2026-Q3"
    assert period_label(date(2026, 8, 31), "month") == "2026-08"


def test_daily_temperatures_come_from_a_csv(tmp_path: Path) -> None:
    (tmp_path / "outdoor.csv").write_text(
        "date,temperature_c\n2026-07-01,29.5\n2026-07-02, 30.25\n2026-07-03,nan\n",
        encoding="utf-8",
    )
    source = TemperatureSource(csv=Path("outdoor.csv"))
    read = read_temperature(
        source, db=tmp_path / "none.db", first=date(2026, 7, 1), last=date(2026, 7, 3),
        zone=TZ, base=tmp_path,
    )  # fmt: skip
    assert read == {date(2026, 7, 1): 29.5, date(2026, 7, 2): 30.25}
    (tmp_path / "bad.csv").write_text("day,t\n2026-07-01,29.5\n", encoding="utf-8")
    with pytest.raises(AgentError, match=r"bad.csv:2: expected columns date,temperature_c"):
        read_temperature(
            TemperatureSource(csv=tmp_path / "bad.csv"), db=tmp_path / "none.db",
            first=date(2026, 7, 1), last=date(2026, 7, 3), zone=TZ, base=tmp_path,
        )  # fmt: skip


def _period(meter: str, savings: float, u90: float) -> PeriodSavings:
    return PeriodSavings(
        meter=meter, label="2026-07", days=31, calendar_days=31, baseline=1000.0 + savings,
        adjustment=0.0, actual=1000.0, savings=savings, unit="kWh", uncertainty90=u90,
        uncertainty68=u90 / 2, cost=savings * 0.7, price_note="", tce=None, co2=1.0,
    )  # fmt: skip


def test_the_site_adds_its_main_meters_and_their_uncertainties_in_quadrature() -> None:
    def result(name: str, role: str, savings: float, u90: float, refused: bool = False) -> Any:
        sub_item = "01B00" if role == "sub" else None
        meter = MeterConfig.model_validate(
            {"name": name, "device": "d", "point": name, "role": role, "sub_item": sub_item}
        )
        return MeterResult(
            meter, [], periods=[_period(name, savings, u90)], refused=["x"] if refused else []
        )

    site = _site_periods(
        [
            result("a", "main", 300.0, 30.0),
            result("b", "main", 100.0, 40.0),
            result("hvac", "sub", 250.0, 20.0),  # inside a: not added again
            result("c", "main", 999.0, 1.0, refused=True),  # refused: never used
        ]
    )
    assert len(site) == 1
    assert site[0].meter == "site electricity"
    assert site[0].savings == 400.0
    assert site[0].uncertainty90 == pytest.approx(50.0)
    assert site[0].cost == pytest.approx(280.0)
    assert site[0].tce is None  # a meter without the figure leaves the sum empty
    assert site[0].co2 == 2.0


def test_a_bad_plan_is_one_located_sentence_per_problem(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "temperature: {device: a, point: b}\nthresholds: {cvrmse: -1, cvrmsee: 2}\nmodel: fancy\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_plan(plan)
    assert [str(i) for i in caught.value.issues] == [
        f"{plan}: model: 'fancy' is not one of: daily, legacy",
        f"{plan}: thresholds.cvrmse: must be more than 0, not -1",
        f"{plan}: thresholds.cvrmsee: unknown key 'cvrmsee' (did you mean 'cvrmse'?)",
    ]
