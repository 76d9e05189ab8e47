"""Data quality per meter and day, and the main-meter balance.

Completeness is the figure the national platform calls the reporting rate: base intervals
received against intervals expected (96 a day at 15 minutes). An interval counts as received
when readings bound it (quality measured or integrated); intervals estimated across a gap, or
partial (the meter's first interval, a counter reset), are counted apart.

Accuracy checks:
- range: readings outside the meter's valid range (rejected, flag `range`);
- rate of change: steps beyond the meter's rated rate (rejected, flag `spike`);
- counter resets (flag `reset`: the interval's value is a lower bound);
- balance: the supply (import - export + generation) against the sum of the sub-meters, within
  a tolerance around the expected unmetered share.

`accuracy` is the share of present intervals with none of `range`, `spike` or `reset`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.record import ms_to_iso
from agent.energy.config import BalanceRule, EnergyConfig
from agent.energy.intervals import Interval
from agent.energy.periods import Size, bucket_start, day_of, next_start

__all__ = [
    "BalanceResult",
    "MeterDayQuality",
    "balance_checks",
    "check_balance",
    "daily_quality",
    "days_between",
]

_ACCURACY_FLAGS = frozenset({"range", "spike", "reset"})


@dataclass(frozen=True, slots=True)
class MeterDayQuality:
    """Completeness and accuracy of one meter over one local day."""

    meter: str
    day: date
    expected: int
    received: int
    estimated: int
    partial: int
    spikes: int
    resets: int
    wraps: int
    out_of_range: int
    flagged: int  # present intervals with range, spike or reset

    @property
    def present(self) -> int:
        return self.received + self.estimated + self.partial

    @property
    def missing(self) -> int:
        return max(self.expected - self.present, 0)

    @property
    def completeness(self) -> float:
        """Received / expected: the platform's reporting rate."""
        return self.received / self.expected if self.expected else 0.0

    @property
    def completeness_with_estimates(self) -> float:
        return (self.received + self.estimated) / self.expected if self.expected else 0.0

    @property
    def accuracy(self) -> float | None:
        return 1 - self.flagged / self.present if self.present else None

    def to_record(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "day": self.day.isoformat(),
            "expected": self.expected,
            "received": self.received,
            "estimated": self.estimated,
            "partial": self.partial,
            "missing": self.missing,
            "completeness": self.completeness,
            "completeness_with_estimates": self.completeness_with_estimates,
            "spikes": self.spikes,
            "resets": self.resets,
            "wraps": self.wraps,
            "out_of_range": self.out_of_range,
            "accuracy": self.accuracy,
        }


def _expected(day: date, tz: ZoneInfo, base_ms: int, until_ms: int | None) -> int:
    # From local noon, so that a day with a DST change (92 or 100 quarter hours) counts right.
    noon = round(datetime(day.year, day.month, day.day, 12, tzinfo=tz).timestamp() * 1000)
    start = bucket_start(noon, Size.DAY, tz)
    end = next_start(start, Size.DAY, tz)
    if until_ms is not None:
        end = max(min(end, until_ms), start)
    return (end - start) // base_ms


def daily_quality(
    intervals: Iterable[Interval],
    energy: EnergyConfig,
    *,
    tz: str | ZoneInfo,
    days: Iterable[date] | None = None,
    until_ms: int | None = None,
) -> list[MeterDayQuality]:
    """Quality of every configured meter for each day (default: every day with data).

    `until_ms` (e.g. now) caps what is expected: today's intervals not yet due are not missing.
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    base_ms = energy.interval_minutes * 60_000
    counts: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen_days: set[date] = set()
    for interval in intervals:
        day = day_of(interval.start_ms, zone)
        seen_days.add(day)
        c = counts[(interval.meter, day)]
        c[interval.quality] += 1
        flags = interval.flags
        c["spike"] += "spike" in flags
        c["reset"] += "reset" in flags
        c["wrap"] += "wrap" in flags
        c["range"] += "range" in flags
        c["flagged"] += bool(flags & _ACCURACY_FLAGS)
    wanted = sorted(set(days) if days is not None else seen_days)
    out: list[MeterDayQuality] = []
    for day in wanted:
        expected = _expected(day, zone, base_ms, until_ms)
        for meter in energy.meters:
            c = counts.get((meter.name, day), {})
            out.append(
                MeterDayQuality(
                    meter=meter.name,
                    day=day,
                    expected=expected,
                    received=c.get("measured", 0) + c.get("integrated", 0),
                    estimated=c.get("estimated", 0),
                    partial=c.get("partial", 0),
                    spikes=c.get("spike", 0),
                    resets=c.get("reset", 0),
                    wraps=c.get("wrap", 0),
                    out_of_range=c.get("range", 0),
                    flagged=c.get("flagged", 0),
                )
            )
    return out


def days_between(first: date, last: date) -> list[date]:
    """Every day from `first` to `last` inclusive."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass(frozen=True, slots=True)
class BalanceResult:
    """One balance check over one period."""

    rule: str
    start_ms: int
    end_ms: int
    supply: float  # import - export + generation: what the loads used
    parts: float  # sum of the sub-meters
    unmetered_percent: float | None  # observed share of the supply no sub-meter saw
    expected_unmetered_percent: float
    tolerance_percent: float
    ok: bool | None  # None: not checked (incomplete data, or too little energy)
    reason: str

    def to_record(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "start": ms_to_iso(self.start_ms),
            "end": ms_to_iso(self.end_ms),
            "supply": self.supply,
            "parts": self.parts,
            "unmetered_percent": self.unmetered_percent,
            "expected_unmetered_percent": self.expected_unmetered_percent,
            "tolerance_percent": self.tolerance_percent,
            "ok": self.ok,
            "reason": self.reason,
        }


def check_balance(
    rule: BalanceRule,
    totals: Mapping[str, float],
    *,
    start_ms: int,
    end_ms: int,
    complete: bool = True,
) -> BalanceResult:
    """Check one period from each meter's total over it."""
    supply = (
        sum(totals.get(name, 0.0) for name in rule.main)
        - sum(totals.get(name, 0.0) for name in rule.export)
        + sum(totals.get(name, 0.0) for name in rule.generation)
    )
    parts = sum(totals.get(name, 0.0) for name in rule.parts)

    def result(unmetered: float | None, ok: bool | None, reason: str) -> BalanceResult:
        return BalanceResult(
            rule=rule.name,
            start_ms=start_ms,
            end_ms=end_ms,
            supply=supply,
            parts=parts,
            unmetered_percent=unmetered,
            expected_unmetered_percent=rule.unmetered_percent,
            tolerance_percent=rule.tolerance_percent,
            ok=ok,
            reason=reason,
        )

    if not complete:
        return result(None, None, "not checked: some meters have no data for the whole period")
    if supply < rule.min_energy:
        return result(None, None, f"not checked: supply {supply:.2f} below {rule.min_energy:g}")
    unmetered = 100.0 * (supply - parts) / supply
    off = unmetered - rule.unmetered_percent
    if abs(off) <= rule.tolerance_percent:
        return result(unmetered, True, "balanced")
    side = "more" if off < 0 else "less"
    return result(
        unmetered,
        False,
        f"the sub-meters saw {abs(off):.1f} % of the supply {side} than expected "
        f"(tolerance {rule.tolerance_percent:g} %)",
    )


def balance_checks(
    intervals: Iterable[Interval], energy: EnergyConfig, *, tz: str | ZoneInfo
) -> list[BalanceResult]:
    """Every balance rule over every period (hour or day) that the intervals touch."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    base_ms = energy.interval_minutes * 60_000
    items = list(intervals)
    out: list[BalanceResult] = []
    for rule in energy.balance:
        size = Size(rule.period)
        names = {*rule.main, *rule.export, *rule.generation, *rule.parts}
        totals: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for interval in items:
            if interval.meter in names:
                start = bucket_start(interval.start_ms, size, zone)
                totals[start][interval.meter] += interval.value
                counts[start][interval.meter] += 1
        for start in sorted(totals):
            end = next_start(start, size, zone)
            slots = (end - start) // base_ms
            complete = all(counts[start].get(name, 0) >= slots for name in names)
            out.append(
                check_balance(rule, totals[start], start_ms=start, end_ms=end, complete=complete)
            )
    return out
