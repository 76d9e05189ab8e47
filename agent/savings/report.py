"""Baselines and savings by reporting period, as text and CSV.

Savings = adjusted baseline - reporting-period energy (IPMVP; GB/T 28750 节能量测量和验证技术
通则 uses the same identity): the baseline model's prediction for the reporting day's weather
and day type, times and plus the plan's non-routine adjustments. Savings are counted on days
with a complete measured day and a temperature, like CalTRACK does; the days left out are
stated per period.

A baseline is used only when its data are sufficient (agent.savings.sufficiency), OpenDSM did
not disqualify it, and its fit meets the plan's Guideline 14 thresholds; otherwise its savings
are refused, with the reasons, and no figure is printed for them.
"""

from __future__ import annotations

import csv
import io
import math
from calendar import isleap, monthrange
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.energy.config import EnergyConfig, EnergyType, MeterConfig, MeterRole
from agent.hvac.calendar import HolidayCalendar
from agent.savings.daily import DayType, day_types, read_daily_energy, read_temperature
from agent.savings.model import BaselineFit, fit_baseline
from agent.savings.plan import MvPlan
from agent.savings.stats import FitStats, fit_stats, savings_uncertainty
from agent.savings.sufficiency import Check, check_sufficiency, usable_days
from agent.savings.tariffs import price_of

__all__ = [
    "DayRow",
    "MeterResult",
    "PeriodSavings",
    "SavingsReport",
    "period_label",
    "render_csv",
    "render_text",
    "savings_report",
]

PERIODS = ("month", "quarter", "year")
TOTAL = "total"


@dataclass(frozen=True, slots=True)
class DayRow:
    """One day of one meter, for tables and charts."""

    day: date
    temperature: float | None
    working: bool
    observed: float | None  # None: not a usable day
    baseline: float | None  # the adjusted baseline (reporting) or the fit (baseline period)
    low: float | None = None  # the 90 % band of the daily baseline
    high: float | None = None
    reporting: bool = False


@dataclass(frozen=True, slots=True)
class PeriodSavings:
    meter: str
    label: str
    days: int  # days counted
    calendar_days: int  # days in the period (within the report)
    baseline: float  # adjusted baseline energy over the counted days
    adjustment: float  # of which non-routine adjustments
    actual: float
    savings: float
    unit: str
    uncertainty90: float
    uncertainty68: float
    cost: float | None
    price_note: str
    tce: float | None
    co2: float | None
    notes: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        return self.savings / self.baseline if self.baseline else math.nan

    @property
    def fsu90(self) -> float:
        return self.uncertainty90 / abs(self.savings) if self.savings else math.inf

    @property
    def fsu68(self) -> float:
        return self.uncertainty68 / abs(self.savings) if self.savings else math.inf

    @property
    def significant(self) -> bool:
        return abs(self.savings) > self.uncertainty90


@dataclass
class MeterResult:
    meter: MeterConfig
    sufficiency: list[Check]
    criteria: list[Check] = field(default_factory=list)
    fit: BaselineFit | None = None
    stats: FitStats | None = None
    refused: list[str] = field(default_factory=list)
    days: list[DayRow] = field(default_factory=list)
    periods: list[PeriodSavings] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.refused


@dataclass
class SavingsReport:
    site: str
    tz: str
    baseline: tuple[date, date]
    reporting: tuple[date, date]
    period: str
    plan: MvPlan
    meters: list[MeterResult]
    site_periods: list[PeriodSavings]
    factors: list[str]
    method: str
    adjustments: list[str]


def period_days(day: date, period: str) -> int:
    """Days in the calendar month, quarter or year that holds `day`."""
    if period == "month":
        return monthrange(day.year, day.month)[1]
    if period == "quarter":
        first = (day.month - 1) // 3 * 3 + 1
        return sum(monthrange(day.year, m)[1] for m in range(first, first + 3))
    return 366 if isleap(day.year) else 365


def period_label(day: date, period: str) -> str:
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    if period == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return str(day.year)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _ms(day: date, zone: ZoneInfo) -> int:
    return round(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def _criteria(stats: FitStats, plan: MvPlan) -> list[Check]:
    limits = plan.thresholds
    return [
        Check(
            "cvrmse",
            stats.cvrmse <= limits.cvrmse,
            f"CV(RMSE) {100 * stats.cvrmse:.1f} % (at most {100 * limits.cvrmse:.0f} %)",
        ),
        Check(
            "nmbe",
            abs(stats.nmbe) <= limits.nmbe,
            f"NMBE {100 * stats.nmbe:+.3f} % (within ±{100 * limits.nmbe:g} %)",
        ),
        Check(
            "r2",
            stats.r2 >= limits.r2 or not limits.r2_required,
            f"R² {stats.r2:.3f} (at least {limits.r2:g}"
            + ("" if limits.r2_required else ", advisory")
            + ")"
            + ("" if stats.r2 >= limits.r2 else ": below"),
        ),
    ]


def _figures(
    energy: EnergyConfig, meter: MeterConfig, savings: float
) -> tuple[float | None, float | None, list[str]]:
    coal = energy.factors.coal(meter.energy_type)
    co2 = energy.factors.co2(meter.energy_type)
    labels = [f.label for f in (coal, co2) if f is not None]
    tce = savings * coal.value / 1000 if coal is not None else None
    tco2 = savings * co2.value / 1000 if co2 is not None else None
    return tce, tco2, labels


def savings_report(
    *,
    db: Path,
    site_name: str,
    tz: str,
    energy: EnergyConfig,
    calendar: HolidayCalendar,
    plan: MvPlan,
    plan_dir: Path,
    baseline: tuple[date, date],
    period: str,
    until: date | None = None,
) -> SavingsReport:
    """Fit each meter's baseline and count its savings after the baseline period, by period."""
    zone = ZoneInfo(tz)
    first, last = baseline
    names = plan.meters or [m.name for m in energy.meters if m.role is MeterRole.MAIN]
    meters = [energy.meter(name) for name in names]
    per_meter = {
        m.name: read_daily_energy(
            db, m.name, first=first, last=until or date(9999, 12, 30), zone=zone,
            interval_minutes=energy.interval_minutes,
        )
        for m in meters
    }  # fmt: skip
    data_end = max((max(d) for d in per_meter.values() if d), default=last)
    report_end = until or data_end
    report_first = last + timedelta(days=1)
    temperature = read_temperature(
        plan.temperature, db=db, first=first, last=report_end, zone=zone, base=plan_dir
    )
    types = day_types(calendar, first, report_end)
    working = {d: t.working for d, t in types.items()}
    results: list[MeterResult] = []
    factors: list[str] = []
    method = ""
    for meter in meters:
        result = _meter_result(
            meter,
            per_meter[meter.name],
            temperature,
            types,
            working,
            plan=plan,
            energy=energy,
            db=db,
            zone=zone,
            baseline=baseline,
            reporting=(report_first, report_end),
            period=period,
            factors=factors,
        )
        if result.fit is not None:
            method = result.fit.method
        results.append(result)
    return SavingsReport(
        site=site_name,
        tz=tz,
        baseline=baseline,
        reporting=(report_first, report_end),
        period=period,
        plan=plan,
        meters=results,
        site_periods=_site_periods(results),
        factors=factors,
        method=method,
        adjustments=[
            f"{a.meter or 'all meters'} from {a.start}"
            + (f" to {a.end}" if a.end else "")
            + (f": x{a.factor:g}" if a.factor != 1.0 else "")
            + (f" {a.add_per_day:+g}/day" if a.add_per_day else "")
            + f" ({a.reason})"
            for a in plan.adjustments
        ],
    )


def _meter_result(
    meter: MeterConfig,
    days: Mapping[date, Any],
    temperature: Mapping[date, float],
    types: Mapping[date, DayType],
    working: Mapping[date, bool],
    *,
    plan: MvPlan,
    energy: EnergyConfig,
    db: Path,
    zone: ZoneInfo,
    baseline: tuple[date, date],
    reporting: tuple[date, date],
    period: str,
    factors: list[str],
) -> MeterResult:
    first, last = baseline
    all_days = dict(days)
    temps = dict(temperature)
    sufficiency = check_sufficiency(
        {d: v for d, v in all_days.items() if first <= d <= last},
        {d: t for d, t in temps.items() if first <= d <= last},
        first=first,
        last=last,
        limits=plan.thresholds,
    )
    result = MeterResult(meter, sufficiency)
    failed = [c.sentence for c in sufficiency if not c.ok]
    if failed:
        result.refused = [f"data sufficiency: {s}" for s in failed]
        return result
    base_days = usable_days(all_days, temps, first, last)
    fit = fit_baseline(
        meter.name,
        {d: all_days[d].value for d in base_days},
        temps,
        working,
        tz=str(zone),
        electricity=meter.energy_type is EnergyType.ELECTRICITY,
        method=plan.model,
    )
    result.fit = fit
    stats = fit_stats(fit.observed, fit.predicted, fit.parameters)
    result.stats = stats
    result.criteria = _criteria(stats, plan)
    result.refused = [f"OpenDSM disqualified the baseline: {p}" for p in fit.problems]
    result.refused += [f"fit: {c.sentence}" for c in result.criteria if not c.ok]
    fitted = dict(zip(fit.days, fit.predicted, strict=True))
    rep_first, rep_last = reporting
    rep_days = usable_days(all_days, temps, rep_first, rep_last) if rep_first <= rep_last else []
    predicted = fit.predict(rep_days, temps, working)
    # The daily band: the uncertainty of one day's baseline, as a share of it.
    band = savings_uncertainty(stats, m=1, baseline_energy=1.0, confidence=0.9)
    for d in _days(first, rep_last if rep_first <= rep_last else last):
        reporting_day = d >= rep_first
        observed = all_days[d].value if d in all_days and all_days[d].complete else None
        base = _adjusted(plan, meter.name, d, predicted.get(d)) if reporting_day else fitted.get(d)
        result.days.append(
            DayRow(
                d,
                temps.get(d),
                working.get(d, True),
                observed if d in temps else None,
                base,
                None if base is None else base * (1 - band),
                None if base is None else base * (1 + band),
                reporting_day,
            )
        )
    if not result.usable:
        return result
    result.periods = _periods(
        result,
        predicted,
        plan=plan,
        energy=energy,
        db=db,
        zone=zone,
        period=period,
        factors=factors,
    )
    return result


def _adjusted(plan: MvPlan, meter: str, day: date, predicted: float | None) -> float | None:
    if predicted is None:
        return None
    value = predicted
    for adjustment in plan.adjustments:
        if adjustment.applies(meter, day):
            value = value * adjustment.factor + adjustment.add_per_day
    return value


def _price(
    plan: MvPlan, meter: MeterConfig, *, db: Path, zone: ZoneInfo, first: date, last: date
) -> tuple[float | None, str]:
    """The price of the meter's energy over [first, last], and how it was found."""
    from agent.store import read_intervals

    tariff = plan.tariffs.get(meter.energy_type)
    if tariff is None:
        return None, "no tariff in the plan"
    start, end = _ms(first, zone), _ms(last + timedelta(days=1), zone)

    def energy_of(name: str) -> list[dict[str, Any]]:
        return read_intervals(db, since_ms=start, until_ms=end, meters=[name])

    registers = None
    if tariff.time_of_use and tariff.time_of_use[0].meter:
        registers = {
            p.name: sum(float(r["value"]) for r in energy_of(p.meter or ""))
            for p in tariff.time_of_use
        }
    price, note = price_of(
        tariff,
        currency=plan.currency,
        unit=meter.energy_unit,
        intervals=energy_of(meter.name) if tariff.time_of_use and registers is None else [],
        registers=registers,
        zone=zone,
    )
    return price, note + (f"; {tariff.source}" if tariff.source else "")


def _periods(
    result: MeterResult,
    predicted: Mapping[date, float],
    *,
    plan: MvPlan,
    energy: EnergyConfig,
    db: Path,
    zone: ZoneInfo,
    period: str,
    factors: list[str],
) -> list[PeriodSavings]:
    assert result.stats is not None
    meter = result.meter
    rows = [r for r in result.days if r.reporting]
    groups: dict[str, list[DayRow]] = {}
    for row in rows:
        groups.setdefault(period_label(row.day, period), []).append(row)
    if rows:
        # The whole reporting period as one more line: its uncertainty is not the sum of the
        # periods' (savings uncertainty grows with the square root of the days).
        groups[TOTAL] = rows
    out: list[PeriodSavings] = []
    for label, group in groups.items():
        counted = [r for r in group if r.observed is not None and r.baseline is not None]
        base = sum(r.baseline for r in counted if r.baseline is not None)
        unadjusted = sum(predicted[r.day] for r in counted)
        actual = sum(r.observed for r in counted if r.observed is not None)
        savings = base - actual
        u90 = savings_uncertainty(
            result.stats, m=len(counted), baseline_energy=base, confidence=0.9
        )
        u68 = savings_uncertainty(
            result.stats, m=len(counted), baseline_energy=base, confidence=0.68
        )
        price, note = _price(plan, meter, db=db, zone=zone, first=group[0].day, last=group[-1].day)
        cost = None if price is None else savings * price
        tce, co2, labels = _figures(energy, meter, savings)
        for label_text in labels:
            if label_text not in factors:
                factors.append(label_text)
        notes = []
        if label != TOTAL and len(group) < period_days(group[0].day, period):
            notes.append(
                f"part of the {period}: {len(group)} of {period_days(group[0].day, period)} days"
            )
        if len(counted) < len(group):
            notes.append(f"{len(group) - len(counted)} days without complete data left out")
        out.append(
            PeriodSavings(
                meter=meter.name,
                label=label,
                days=len(counted),
                calendar_days=len(group),
                baseline=base,
                adjustment=base - unadjusted,
                actual=actual,
                savings=savings,
                unit=meter.energy_unit,
                uncertainty90=u90,
                uncertainty68=u68,
                cost=cost,
                price_note=note,
                tce=tce,
                co2=co2,
                notes=tuple(notes),
            )
        )
    return out


def _site_periods(results: list[MeterResult]) -> list[PeriodSavings]:
    """Main meters' savings added per energy type; uncertainties added in quadrature (the
    meters' errors taken as independent)."""
    groups: dict[tuple[str, str], list[PeriodSavings]] = {}
    for result in results:
        if result.meter.role is not MeterRole.MAIN or not result.usable:
            continue
        for item in result.periods:
            key = (item.label, result.meter.energy_type.value)
            groups.setdefault(key, []).append(item)
    out: list[PeriodSavings] = []
    for (label, kind), items in sorted(groups.items()):
        if len(items) < 2:
            continue

        def total(values: list[float | None]) -> float | None:
            return None if any(v is None for v in values) else sum(v or 0.0 for v in values)

        out.append(
            PeriodSavings(
                meter=f"site {kind}",
                label=label,
                days=min(i.days for i in items),
                calendar_days=max(i.calendar_days for i in items),
                baseline=sum(i.baseline for i in items),
                adjustment=sum(i.adjustment for i in items),
                actual=sum(i.actual for i in items),
                savings=sum(i.savings for i in items),
                unit=items[0].unit,
                uncertainty90=math.sqrt(sum(i.uncertainty90**2 for i in items)),
                uncertainty68=math.sqrt(sum(i.uncertainty68**2 for i in items)),
                cost=total([i.cost for i in items]),
                price_note="sum of the meters",
                tce=total([i.tce for i in items]),
                co2=total([i.co2 for i in items]),
            )
        )
    return out


# --- text and CSV ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def verdict(item: PeriodSavings, fsu_limit: float) -> str:
    """Whether the savings stand out of their uncertainty, and G14's compliance criterion."""
    if item.significant:
        text = f"savings ±{100 * item.fsu90:.0f} % at 90 % confidence"
    else:
        text = "not distinguishable from zero at 90 % confidence"
    if item.fsu68 <= fsu_limit:
        return f"{text}; meets G14 (±{100 * item.fsu68:.0f} % at 68 %)"
    return f"{text}; fails G14 (uncertainty at 68 % above {100 * fsu_limit:.0f} % of savings)"


def render_text(report: SavingsReport) -> str:
    out = [
        f"Savings report: {report.site} ({report.tz})",
        f"Baseline period {report.baseline[0]} to {report.baseline[1]}; reporting period "
        f"{report.reporting[0]} to {report.reporting[1]}, by {report.period}",
        f"Outdoor temperature: {report.plan.temperature.label}",
    ]
    if report.method:
        out.append(f"Method: {report.method}")
    for result in report.meters:
        meter = result.meter
        out += ["", f"Meter {meter.name} ({meter.energy_type.value}, {meter.energy_unit})"]
        out.append("  Data sufficiency:")
        out += [f"    {'ok  ' if c.ok else 'FAIL'} {c.sentence}" for c in result.sufficiency]
        if result.fit is not None and result.stats is not None:
            s = result.stats
            out.append(
                f"  Baseline fit ({s.n} days, {s.p} parameters, residual autocorrelation "
                f"{s.rho:.2f}, n' {s.n_eff:.0f}):"
            )
            out += [f"    {'ok  ' if c.ok else 'FAIL'} {c.sentence}" for c in result.criteria]
            out += [f"    model: {line}" for line in result.fit.splits]
            out += [f"    note (OpenDSM): {n}" for n in result.fit.notes]
        if result.refused:
            out.append("  REFUSED for the contract report:")
            out += [f"    {reason}" for reason in result.refused]
            continue
        if not result.periods:
            out.append("  no usable day after the baseline period yet")
        out += _period_lines(result.periods, report) if result.periods else []
    if report.site_periods:
        out += ["", "Site (main meters added)"]
        out += _period_lines(report.site_periods, report)
    if report.adjustments:
        out += ["", "Non-routine adjustments:"] + [f"  {a}" for a in report.adjustments]
    if report.factors:
        out += ["", "Factors:"] + [f"  {f}" for f in report.factors]
    return "\n".join(out) + "\n"


def _period_lines(items: list[PeriodSavings], report: SavingsReport) -> list[str]:
    out = [
        f"  {'period':<9} {'days':>7} {'baseline':>12} {'actual':>12} {'savings':>11} "
        f"{'±90 %':>9} {'%':>6} {'cost':>11} {'tce':>8} {'tCO2':>8}"
    ]
    for item in items:
        out.append(
            f"  {item.label:<9} {item.days:>3}/{item.calendar_days:<3} {_num(item.baseline):>12} "
            f"{_num(item.actual):>12} {_num(item.savings):>11} {_num(item.uncertainty90):>9} "
            f"{_num(100 * item.fraction):>6} {_num(item.cost, 0):>11} {_num(item.tce, 2):>8} "
            f"{_num(item.co2, 2):>8}"
        )
        out.append(f"    {verdict(item, report.plan.thresholds.fsu)}")
        if item.adjustment:
            out.append(f"    non-routine adjustments: {_num(item.adjustment)} {item.unit}")
        out += [f"    {note}" for note in item.notes]
        if item.cost is not None:
            out.append(f"    price: {item.price_note}")
    return out


def render_csv(report: SavingsReport) -> str:
    """One row per meter and period; refused meters have one row with the reasons."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "meter", "period", "days", "baseline", "adjustment", "actual", "savings", "unit",
            "uncertainty_90", "fsu_90", "significant_90", "cost", "currency", "tce", "tco2",
            "cvrmse", "nmbe", "r2", "status", "note",
        ]
    )  # fmt: skip

    def g(value: float | None) -> str:
        return "" if value is None or not math.isfinite(value) else f"{value:.6g}"

    for result in report.meters:
        s = result.stats
        fit = [g(s.cvrmse), g(s.nmbe), g(s.r2)] if s is not None else ["", "", ""]
        if result.refused:
            writer.writerow(
                [result.meter.name, "", "", "", "", "", "", result.meter.energy_unit, "", "",
                 "", "", "", "", "", *fit, "refused", "; ".join(result.refused)]
            )  # fmt: skip
            continue
        rows = [(item, fit) for item in result.periods]
        _write_periods(writer, rows, report, g)
    _write_periods(writer, [(item, ["", "", ""]) for item in report.site_periods], report, g)
    return buffer.getvalue()


def _write_periods(
    writer: Any, rows: list[tuple[PeriodSavings, list[str]]], report: Any, g: Any
) -> None:
    for item, fit in rows:
        writer.writerow(
            [
                item.meter, item.label, item.days, g(item.baseline), g(item.adjustment),
                g(item.actual), g(item.savings), item.unit, g(item.uncertainty90),
                g(item.fsu90), "yes" if item.significant else "no", g(item.cost),
                report.plan.currency, g(item.tce), g(item.co2), *fit, "ok",
                "; ".join([verdict(item, report.plan.thresholds.fsu), *item.notes]),
            ]
        )  # fmt: skip
