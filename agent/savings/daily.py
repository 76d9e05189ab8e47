"""Daily energy, outdoor temperature and day types, read from a copy of the data directory.

Read-only (the store's own read-only queries): the report runs on a gateway while the agent
writes, or on a laptop from a copied `readings.db`. Days are local calendar days of the site.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.core.errors import AgentError
from agent.energy.intervals import is_good
from agent.hvac.calendar import DayKind, HolidayCalendar
from agent.savings.plan import TemperatureSource

__all__ = ["DayEnergy", "DayType", "day_types", "read_daily_energy", "read_temperature"]

_ESTIMATED = frozenset({"estimated", "partial"})


@dataclass(frozen=True, slots=True)
class DayEnergy:
    """One meter's energy of one local day, with what stands behind it."""

    day: date
    value: float
    expected: int  # base intervals a whole day has
    received: int  # intervals stored
    estimated: int  # of those, gap-filled or partial (the energy accounting's quality)

    @property
    def complete(self) -> bool:
        return self.received >= self.expected


@dataclass(frozen=True, slots=True)
class DayType:
    day: date
    working: bool
    reason: str  # the calendar's: "holiday: 春节", "make-up workday (调休)", "weekend", ...


def _midnight_ms(day: date, zone: ZoneInfo) -> int:
    return round(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def read_daily_energy(
    db: Path,
    meter: str,
    *,
    first: date,
    last: date,
    zone: ZoneInfo,
    interval_minutes: int,
) -> dict[date, DayEnergy]:
    """The stored base intervals of `meter` summed per local day over [first, last]."""
    from agent.store import read_intervals

    rows = read_intervals(
        db,
        since_ms=_midnight_ms(first, zone),
        until_ms=_midnight_ms(last + timedelta(days=1), zone),
        meters=[meter],
    )
    value: dict[date, float] = defaultdict(float)
    received: dict[date, int] = defaultdict(int)
    estimated: dict[date, int] = defaultdict(int)
    for row in rows:
        day = datetime.fromtimestamp(row["start_ms"] / 1000, zone).date()
        value[day] += float(row["value"])
        received[day] += 1
        if row["quality"] in _ESTIMATED:
            estimated[day] += 1
    expected = 24 * 60 // interval_minutes
    return {
        day: DayEnergy(day, value[day], expected, received[day], estimated[day])
        for day in sorted(value)
    }


def read_temperature(
    source: TemperatureSource,
    *,
    db: Path,
    first: date,
    last: date,
    zone: ZoneInfo,
    base: Path,
) -> dict[date, float]:
    """Daily mean outdoor temperature (°C) over [first, last]: the mean of the hourly means of
    good readings, for days with at least `min_hours` hours read; or the CSV's daily means."""
    if source.csv is not None:
        return _read_csv(source.csv if source.csv.is_absolute() else base / source.csv)
    from agent.store import export_readings

    hourly: dict[tuple[date, int], list[float]] = defaultdict(list)
    for row in export_readings(
        db,
        since_ms=_midnight_ms(first, zone),
        until_ms=_midnight_ms(last + timedelta(days=1), zone),
        device=source.device,
    ):
        if row.point != source.point or not is_good(row):
            continue
        when = datetime.fromtimestamp(row.ts_ms / 1000, zone)
        hourly[(when.date(), when.hour)].append(float(row.value))  # type: ignore[arg-type]
    by_day: dict[date, list[float]] = defaultdict(list)
    for (day, _hour), values in hourly.items():
        by_day[day].append(sum(values) / len(values))
    return {
        day: sum(means) / len(means)
        for day, means in sorted(by_day.items())
        if len(means) >= source.min_hours
    }


def _read_csv(path: Path) -> dict[date, float]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise AgentError(f"cannot read the temperature file {path}: {exc.strerror}") from None
    out: dict[date, float] = {}
    for line, row in enumerate(rows, start=2):
        try:
            day = date.fromisoformat(row["date"].strip())
            value = float(row["temperature_c"])
        except (KeyError, AttributeError, ValueError):
            raise AgentError(
                f"{path}:{line}: expected columns date,temperature_c with a date such as "
                "2026-07-01 and a number in °C"
            ) from None
        if math.isfinite(value):
            out[day] = value
    return out


def day_types(calendar: HolidayCalendar, first: date, last: date) -> dict[date, DayType]:
    """Working day or closed day for every day in [first, last], from the China calendar
    (public holidays, make-up workdays 调休, the site's own closed and open days)."""
    out: dict[date, DayType] = {}
    day = first
    while day <= last:
        info = calendar.day(day)
        out[day] = DayType(day, info.kind is DayKind.WORKDAY, info.reason)
        day += timedelta(days=1)
    return out
