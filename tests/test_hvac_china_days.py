"""The public calendar read in a child process is the `holidays` package's, day for day."""

from __future__ import annotations

import logging
import sys
from datetime import date

import pytest

from agent.hvac import china_days
from agent.hvac.calendar import DayKind, HolidayCalendar


@pytest.mark.parametrize("observed", [True, False])
def test_the_childs_tables_are_the_packages(observed: bool) -> None:
    tables = china_days._Tables()
    tables.start([2025, 2026, 2027])
    for year in (2025, 2026, 2027):
        closed, makeup = tables.table(year, observed=observed)
        assert (closed, makeup) == china_days.compute(year, observed=observed)
        assert closed  # statutory days every year
    assert tables.table(2026, observed=True)[1]  # 2026 has announced make-up workdays
    assert not tables.running  # every child reaped


def test_a_year_not_started_is_read_when_asked_for() -> None:
    tables = china_days._Tables()
    closed, makeup = tables.table(2026, observed=True)
    assert closed[date(2026, 10, 1)]  # National Day
    assert date(2026, 1, 4) in makeup  # the make-up Sunday for 2026-01-02


def test_a_failing_reader_falls_back_to_the_package_here(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tables = china_days._Tables()
    # An interpreter that cannot run the reader: it exits with an error at once.
    monkeypatch.setattr(china_days.sys, "executable", sys.executable + "-missing")
    with caplog.at_level(logging.WARNING, logger="agent.hvac.china_days"):
        table = tables.table(2026, observed=True)
    assert table == china_days.compute(2026, observed=True)
    assert "reading it here" in caplog.text


def test_the_calendar_prefetches_only_what_the_package_gives() -> None:
    cal = HolidayCalendar()
    cal.prefetch([2026, 2027])
    assert cal.day(date(2026, 1, 4)).kind is DayKind.WORKDAY  # make-up Sunday
    none = HolidayCalendar(type(cal.config)(country="none"))
    before = list(china_days._TABLES.running)
    none.prefetch([1999])
    assert china_days._TABLES.running == before  # no child for a calendar without country
