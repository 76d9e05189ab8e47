"""Data sufficiency of a baseline period: is there enough data, spread over the whole year?

Rules (thresholds in the M&V plan, agent.savings.plan): CalTRACK's daily data sufficiency (a
baseline of 365 days, at least 90 % of its days with both meter and temperature data), and
two rules a yearly coverage figure alone lets through: no calendar month with less than half
its days (a missing month is a season the model never saw), and no run of missing days longer
than two weeks. Intervals the energy accounting estimated (gap-filled, `estimated`/`partial`
quality) are counted and limited. A day is usable when all its base intervals are stored and
its temperature is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from agent.savings.daily import DayEnergy
from agent.savings.plan import Thresholds

__all__ = ["Check", "check_sufficiency", "usable_days"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    sentence: str


def usable_days(
    energy: dict[date, DayEnergy], temperature: dict[date, float], first: date, last: date
) -> list[date]:
    return [
        d for d in _days(first, last) if d in temperature and d in energy and energy[d].complete
    ]


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def check_sufficiency(
    energy: dict[date, DayEnergy],
    temperature: dict[date, float],
    *,
    first: date,
    last: date,
    limits: Thresholds,
) -> list[Check]:
    """Every rule's verdict over the baseline period [first, last], each as one sentence."""
    days = _days(first, last)
    usable = set(usable_days(energy, temperature, first, last))
    checks: list[Check] = []
    span = len(days)
    checks.append(
        Check(
            "period",
            span >= limits.min_days,
            f"baseline period {first} to {last}: {span} days (at least {limits.min_days})",
        )
    )
    share = len(usable) / span
    no_energy = sum(1 for d in days if d not in energy)
    incomplete = sum(1 for d in days if d in energy and not energy[d].complete)
    no_temp = sum(1 for d in days if d not in temperature)
    checks.append(
        Check(
            "coverage",
            share >= limits.coverage,
            f"{len(usable)} of {span} days usable ({100 * share:.1f} %, at least "
            f"{100 * limits.coverage:.0f} %): {no_energy} without energy data, {incomplete} "
            f"with missing intervals, {no_temp} without outdoor temperature",
        )
    )
    months: dict[tuple[int, int], list[date]] = {}
    for d in days:
        months.setdefault((d.year, d.month), []).append(d)
    thin = [
        f"{year}-{month:02d} ({sum(d in usable for d in month_days)} of {len(month_days)} days)"
        for (year, month), month_days in months.items()
        if sum(d in usable for d in month_days) < limits.month_coverage * len(month_days)
    ]
    checks.append(
        Check(
            "months",
            not thin,
            "every month has data"
            if not thin
            else f"months with less than {100 * limits.month_coverage:.0f} % of their days: "
            + ", ".join(thin),
        )
    )
    run, longest, longest_end = 0, 0, first
    for d in days:
        run = 0 if d in usable else run + 1
        if run > longest:
            longest, longest_end = run, d
    gap_text = (
        f"longest run of unusable days: {longest}"
        + (f" (to {longest_end})" if longest else "")
        + f", at most {limits.max_gap_days}"
    )
    checks.append(Check("gaps", longest <= limits.max_gap_days, gap_text))
    received = sum(energy[d].received for d in days if d in energy)
    estimated = sum(energy[d].estimated for d in days if d in energy)
    est_share = estimated / received if received else 0.0
    checks.append(
        Check(
            "estimated",
            est_share <= limits.estimated,
            f"{estimated} of {received} intervals estimated by the energy accounting "
            f"({100 * est_share:.1f} %, at most {100 * limits.estimated:.0f} %)",
        )
    )
    return checks
