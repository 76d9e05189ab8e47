"""Working days, public holidays and make-up workdays (调休) of a site.

Facts used: Chinese public holidays move each year and come with make-up workdays on weekends,
announced by the State Council in November for the next year (for 2026: 国务院办公厅关于2026年
部分节假日安排的通知, 2025-11-04, in the State Council gazette on gov.cn). The `holidays`
package's China calendar (pinned, 0.109) holds the announced schedules through 2026: its
`weekend_workdays` are the make-up workdays, e.g. 2026-01-04, a Sunday.

Where a year's schedule comes from, in order:
1. the site config's `calendar.years[YEAR]` (the official notice typed in by hand);
2. the `holidays` package, when it holds that year's announced schedule ("covered": the year has
   make-up workdays in the package; every year since 2001 has some);
3. otherwise an estimate: the statutory holidays (fixed by law, lunar dates computed by the
   package) without the yearly moved days and make-up workdays, and a warning.
Site-wide `closed` and `open` days apply on top in every year; `special` day types on top of all.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version

from agent.hvac import china_days
from agent.hvac.program import CalendarConfig, expand_days

__all__ = ["DayInfo", "DayKind", "HolidayCalendar", "YearSource", "package_covers"]


class DayKind(enum.StrEnum):
    WORKDAY = "workday"
    WEEKEND = "weekend"
    HOLIDAY = "holiday"


class YearSource(enum.StrEnum):
    """Where a year's public calendar comes from."""

    CONFIG = "config"  # calendar.years in the site config
    PACKAGE = "package"  # the holidays package's announced schedule
    ESTIMATED = "estimated"  # statutory days only: no announced schedule yet
    NONE = "none"  # calendar.country: none


@dataclass(frozen=True, slots=True)
class DayInfo:
    """What kind of day a date is, and why."""

    day: date
    kind: DayKind
    reason: str  # e.g. "holiday: 春节", "make-up workday (调休)", "workday"
    makeup: bool = False  # a weekend day that is a working day
    special: str | None = None  # a site day type from calendar.special
    source: YearSource = YearSource.NONE

    @property
    def weekday_key(self) -> str:
        return ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[self.day.weekday()]


def _china(year: int, *, observed: bool) -> tuple[dict[date, str], frozenset[date]]:
    # Read in a child process (agent.hvac.china_days): importing the package here would cost
    # the agent about 10 MB for as long as it runs.
    return china_days.table(year, observed=observed)


def package_covers(year: int) -> bool:
    """Whether the installed `holidays` package holds the announced schedule of ``year``."""
    return bool(_china(year, observed=True)[1])


@dataclass(frozen=True, slots=True)
class _Year:
    source: YearSource
    closed: dict[date, str]
    open: dict[date, str]


class HolidayCalendar:
    """The site's calendar. Pure apart from a per-year cache; safe to share."""

    def __init__(self, config: CalendarConfig | None = None) -> None:
        self.config = config if config is not None else CalendarConfig()
        self._years: dict[int, _Year] = {}
        self._site_closed = expand_days(self.config.closed)
        self._site_open = expand_days(self.config.open)
        self._special: dict[date, str] = {}
        for special in self.config.special:
            for day in expand_days(special.days):
                self._special.setdefault(day, special.name)

    def prefetch(self, years: Iterable[int]) -> None:
        """Start reading the public calendar of ``years`` that come from the package, without
        waiting (agent.hvac.china_days), so that it is ready when first asked for."""
        config = self.config
        wanted = [y for y in years if y not in config.years and y not in self._years]
        if config.country != "none" and wanted:
            china_days.start(wanted)

    def load(self, years: Iterable[int]) -> None:
        """Have the calendar of ``years`` ready, waiting for the child reading it if need be
        (blocking: the controller calls it in a thread)."""
        for year in years:
            self._year(year)

    def source(self, year: int) -> YearSource:
        return self._year(year).source

    def _year(self, year: int) -> _Year:
        cached = self._years.get(year)
        if cached is not None:
            return cached
        notice = self.config.years.get(year)
        if notice is not None:
            found = _Year(YearSource.CONFIG, expand_days(notice.closed), expand_days(notice.open))
        elif self.config.country == "none":
            found = _Year(YearSource.NONE, {}, {})
        elif package_covers(year):
            closed, makeup = _china(year, observed=True)
            found = _Year(YearSource.PACKAGE, dict(closed), _makeup_notes(closed, makeup))
        else:
            closed, _ = _china(year, observed=False)
            found = _Year(YearSource.ESTIMATED, dict(closed), {})
        self._years[year] = found
        return found

    def day(self, day: date) -> DayInfo:
        """The kind of ``day`` and the reason, from the sources in the module's order."""
        year = self._year(day.year)
        special = self._special.get(day)
        weekend = day.weekday() >= 5
        info: DayInfo
        if day in self._site_open:
            note = self._site_open[day]
            info = DayInfo(day, DayKind.WORKDAY, _join("site working day", note), makeup=weekend)
        elif day in self._site_closed:
            info = DayInfo(day, DayKind.HOLIDAY, _join("site closed day", self._site_closed[day]))
        elif day in year.open:
            info = DayInfo(
                day, DayKind.WORKDAY, _join("make-up workday (调休)", year.open[day]), makeup=True
            )
        elif day in year.closed:
            what = "holiday (estimated)" if year.source is YearSource.ESTIMATED else "holiday"
            info = DayInfo(day, DayKind.HOLIDAY, _join(what, year.closed[day]))
        elif weekend:
            info = DayInfo(day, DayKind.WEEKEND, "weekend")
        else:
            info = DayInfo(day, DayKind.WORKDAY, "workday")
        return DayInfo(
            info.day,
            info.kind,
            info.reason if special is None else f"{info.reason}; site day type {special}",
            makeup=info.makeup,
            special=special,
            source=year.source,
        )

    def warnings(self, today: date) -> list[str]:
        """Missing calendars: this year's at once, next year's within `warn_days` of year end."""
        found: list[str] = []
        if self._year(today.year).source is YearSource.ESTIMATED:
            found.append(_missing(today.year))
        remaining = (date(today.year, 12, 31) - today).days
        if remaining < self.config.warn_days and (
            self._year(today.year + 1).source is YearSource.ESTIMATED
        ):
            found.append(_missing(today.year + 1))
        return found


def _makeup_notes(closed: dict[date, str], makeup: frozenset[date]) -> dict[date, str]:
    """Name each make-up workday by the day off it pays for: the package's zh_CN names read
    "休息日(由 2026-01-04 调休)" (full-width brackets) for the day moved from 2026-01-04."""
    notes = dict.fromkeys(makeup, "")
    for day in makeup:
        moved = [off for off, name in closed.items() if day.isoformat() in name]
        if moved:
            notes[day] = f"for the day off on {moved[0].isoformat()}"
    return notes


def _join(what: str, note: str) -> str:
    return f"{what}: {note}" if note else what


def _missing(year: int) -> str:
    return (
        f"the holiday calendar for {year} is missing: the installed holidays package "
        f"({version('holidays')}) has no announced schedule for it, so only the statutory "
        f"holidays are used, without make-up workdays; add the State Council's notice under "
        f"hvac.calendar.years.{year} or update the package"
    )
