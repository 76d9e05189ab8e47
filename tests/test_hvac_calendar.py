"""The site calendar: the holidays package's China calendar where it covers the year, the
config's official notice where it does not, site days on top."""

from __future__ import annotations

from datetime import date

import pytest

from agent.hvac.calendar import DayKind, HolidayCalendar, YearSource, package_covers
from agent.hvac.program import CalendarConfig


def calendar(**config: object) -> HolidayCalendar:
    return HolidayCalendar(CalendarConfig.model_validate(config))


def test_a_make_up_sunday_is_a_working_day() -> None:
    info = HolidayCalendar().day(date(2026, 1, 4))  # a Sunday, 调休 for Friday 2026-01-02
    assert info.kind is DayKind.WORKDAY
    assert info.makeup
    assert info.source is YearSource.PACKAGE
    assert "make-up workday" in info.reason
    assert "2026-01-02" in info.reason


@pytest.mark.parametrize(
    "day",
    [date(2026, 2, 16), date(2026, 2, 17), date(2026, 2, 18), date(2026, 2, 19), date(2026, 2, 23)],
)
def test_the_2026_spring_festival_is_closed(day: date) -> None:
    info = HolidayCalendar().day(day)
    assert info.kind is DayKind.HOLIDAY, info


def test_the_spring_festival_make_up_saturday_is_open() -> None:
    assert HolidayCalendar().day(date(2026, 2, 14)).kind is DayKind.WORKDAY  # a Saturday


def test_plain_weekdays_and_weekends() -> None:
    cal = HolidayCalendar()
    assert cal.day(date(2026, 3, 10)).kind is DayKind.WORKDAY
    assert cal.day(date(2026, 3, 14)).kind is DayKind.WEEKEND


def test_the_shipped_package_covers_2026_but_not_2027() -> None:
    # holidays 0.109 (pinned in pyproject.toml) holds the announced schedules through 2026.
    assert package_covers(2026)
    assert not package_covers(2027)


def test_an_uncovered_year_uses_the_statutory_days_and_warns() -> None:
    cal = HolidayCalendar()
    assert cal.source(2027) is YearSource.ESTIMATED
    new_year = cal.day(date(2027, 1, 1))
    assert new_year.kind is DayKind.HOLIDAY
    assert "estimated" in new_year.reason
    assert any("2027" in w for w in cal.warnings(date(2026, 12, 1)))  # within 45 days of year end
    assert cal.warnings(date(2026, 6, 1)) == []  # too early to expect next year's notice
    assert any("2027" in w for w in cal.warnings(date(2027, 3, 1)))  # the year itself is missing


def test_a_config_listed_year_replaces_the_estimate() -> None:
    cal = calendar(
        years={
            2027: {
                "closed": [{"from": "2027-02-05", "to": "2027-02-11", "note": "春节"}],
                "open": ["2027-02-14"],
            }
        }
    )
    assert cal.source(2027) is YearSource.CONFIG
    assert cal.day(date(2027, 2, 8)).kind is DayKind.HOLIDAY
    assert cal.day(date(2027, 2, 8)).reason == "holiday: 春节"
    sunday = cal.day(date(2027, 2, 14))
    assert (sunday.kind, sunday.makeup) == (DayKind.WORKDAY, True)
    # The listed year replaces the package's estimate: a statutory day not listed is a workday.
    assert cal.day(date(2027, 1, 1)).kind is DayKind.WORKDAY
    assert cal.warnings(date(2026, 12, 20)) == []


def test_site_days_and_special_day_types() -> None:
    cal = calendar(
        closed=[{"from": "2026-08-03", "to": "2026-08-07", "note": "summer shutdown"}],
        open=["2026-10-03"],
        special=[{"name": "exam", "days": [{"from": "2026-06-07", "to": "2026-06-08"}]}],
    )
    assert cal.day(date(2026, 8, 4)).kind is DayKind.HOLIDAY
    assert "summer shutdown" in cal.day(date(2026, 8, 4)).reason
    assert cal.day(date(2026, 10, 3)).kind is DayKind.WORKDAY  # National Day, opened by the site
    exam = cal.day(date(2026, 6, 7))  # a Sunday
    assert (exam.kind, exam.special) == (DayKind.WEEKEND, "exam")


def test_country_none_knows_only_weekdays() -> None:
    cal = calendar(country="none")
    assert cal.day(date(2026, 2, 17)).kind is DayKind.WORKDAY
    assert cal.day(date(2026, 1, 4)).kind is DayKind.WEEKEND
    assert cal.warnings(date(2026, 12, 31)) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"closed": ["2026-05-06"], "open": ["2026-05-06"]}, "both closed and open"),
        ({"years": {2027: {"closed": ["2026-12-31"]}}}, "listed under the year 2027"),
        ({"closed": [{"from": "2026-05-06", "to": "2026-05-01"}]}, "must not be before"),
    ],
)
def test_contradictory_calendars_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CalendarConfig.model_validate(config)
