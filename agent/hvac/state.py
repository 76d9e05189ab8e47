"""A zone's wanted state at a moment, and when it can next change. Pure: no I/O, no clock.

    wanted_state(zone, at, context) -> Wanted(mode, setpoint, on, reasons)
    next_boundary(zone, at, context) -> the next moment after `at` the wanted state can change

The wanted state comes from, in order: the calendar (what kind of day), the zone's programme
(which period), the season (which mode, which level setpoint), an override in force, and the
policy clamp last, whatever the source. Levels by season: comfort runs the season's mode at the
level's setpoint; setback does the same at the setback setpoint, except in the ventilation season
where it is off; off is off. A day's periods start at their start times; before the day's first
period the zone is off. A zone of kind switch (a relay, a coil) ignores the season: it is on in
every period that is not off; an override with mode off switches it off, any other on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from agent.hvac.calendar import DayInfo, DayKind, HolidayCalendar
from agent.hvac.overrides import Override
from agent.hvac.policy import Clamp, apply_policy, zone_limits
from agent.hvac.program import (
    HvacConfig,
    Level,
    LevelSetpoints,
    Mode,
    OutdoorSeasonRule,
    Period,
    Programme,
    Season,
)

__all__ = [
    "SWITCH_ON",
    "ScheduleContext",
    "Wanted",
    "level_setpoint",
    "mode_shown",
    "next_boundary",
    "season_from_outdoor",
    "select_day",
    "wanted_state",
]


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a zone should be doing, and why."""

    mode: Mode
    setpoint: float | None  # None when off or fan only (the setpoint is then left as it is)
    on: bool
    reasons: list[str]
    clamp: Clamp | None = None
    source: str = "schedule"  # schedule / override
    override_id: str | None = None

    def same_state(self, other: Wanted | None) -> bool:
        return other is not None and (self.mode, self.setpoint, self.on) == (
            other.mode,
            other.setpoint,
            other.on,
        )


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """Everything besides the zone and the time that the wanted state depends on."""

    hvac: HvacConfig
    tz: ZoneInfo
    calendar: HolidayCalendar
    overrides: Mapping[str, Override] = field(default_factory=dict)
    season: Season | None = None  # the live season (outdoor rule); None: by the date spans
    season_reason: str = ""

    @classmethod
    def for_site(cls, hvac: HvacConfig, tz: str) -> ScheduleContext:
        return cls(hvac=hvac, tz=ZoneInfo(tz), calendar=HolidayCalendar(hvac.calendar))

    def season_on(self, day: date) -> tuple[Season, str]:
        if self.season is not None:
            return self.season, self.season_reason or f"season: {self.season.value}"
        season = self.hvac.season.on(day)
        how = "by dates" if self.hvac.season.outdoor is None else "by dates; on site by outdoor"
        return season, f"season: {season.value} ({how})"


def select_day(programme: Programme, info: DayInfo) -> tuple[str, list[Period]]:
    """The key and the periods of the day programme that applies on ``info.day``."""
    days = programme.days()
    if info.special is not None and info.special in days:
        return info.special, days[info.special]
    if info.kind is DayKind.HOLIDAY:
        if "holiday" in days:
            return "holiday", days["holiday"]
        return "weekend", days["weekend"]
    if info.kind is DayKind.WORKDAY:
        if not info.makeup and info.weekday_key in days:
            return info.weekday_key, days[info.weekday_key]
        return "workday", days["workday"]
    if info.weekday_key in days:
        return info.weekday_key, days[info.weekday_key]
    return "weekend", days["weekend"]


def level_setpoint(setpoints: LevelSetpoints, mode: Mode, level: Level) -> float:
    if mode is Mode.COOL:
        return setpoints.cooling_setback if level is Level.SETBACK else setpoints.cooling_comfort
    return setpoints.heating_setback if level is Level.SETBACK else setpoints.heating_comfort


def _period_at(periods: list[Period], clock: time) -> Period | None:
    current = None
    for period in periods:
        if period.start <= clock:
            current = period
        else:
            break
    return current


def _scheduled(
    period: Period | None, season: Season, setpoints: LevelSetpoints
) -> tuple[Mode, float | None, bool]:
    """Mode and setpoint of a period; the flag says whether the season chose the mode."""
    if period is None or period.level is Level.OFF or period.mode is Mode.OFF:
        return Mode.OFF, None, False
    mode: Mode
    if period.mode is not None:
        mode, from_season = period.mode, False
    else:
        mode, from_season = season.mode, True
        if season is Season.VENTILATION and period.level is Level.SETBACK:
            return Mode.OFF, None, True
    if mode in (Mode.OFF, Mode.FAN):
        return mode, None, from_season
    setpoint = period.setpoint
    if setpoint is None:
        setpoint = level_setpoint(setpoints, mode, period.level or Level.COMFORT)
    return mode, setpoint, from_season


def wanted_state(zone: str, at: datetime, context: ScheduleContext) -> Wanted:
    """The state ``zone`` should be in at ``at`` (an aware datetime), with the reasons."""
    if at.tzinfo is None:
        raise ValueError("wanted_state needs an aware datetime")
    hvac = context.hvac
    local = at.astimezone(context.tz)
    info = context.calendar.day(local.date())
    key, periods = select_day(hvac.zone_programme(zone), info)
    period = _period_at(periods, local.time())
    if hvac.zones[zone].kind == "switch":
        return _switch_state(
            zone, at, context, key=key, periods=periods, period=period, day_reason=info.reason
        )
    season, season_reason = context.season_on(local.date())
    mode, setpoint, from_season = _scheduled(period, season, hvac.level_setpoints(zone))

    reasons = _day_reasons(info.reason, key, periods, period)
    if from_season:
        reasons.append(season_reason)

    source, override_id = "schedule", None
    override = context.overrides.get(zone)
    if override is not None and override.active(at):
        source, override_id = "override", override.id
        mode, setpoint = _overridden(override, mode, setpoint, season, hvac.level_setpoints(zone))
        reasons.append(
            f"override {override.id} until {override.until.astimezone(context.tz):%Y-%m-%d %H:%M}"
        )

    if mode is Mode.OFF:
        return Wanted(Mode.OFF, None, False, reasons, None, source, override_id)
    if mode is Mode.FAN or setpoint is None:
        return Wanted(mode, None, True, reasons, None, source, override_id)
    applied, clamp = apply_policy(mode, setpoint, zone_limits(hvac, zone))
    if clamp is not None:
        reasons.append(clamp.reason)
    return Wanted(mode, applied, True, reasons, clamp, source, override_id)


def _day_reasons(
    day_reason: str, key: str, periods: list[Period], period: Period | None
) -> list[str]:
    reasons = [day_reason]
    if period is not None:
        reasons.append(f"period: {key} {period.label()}")
    elif periods:
        reasons.append(f"period: {key} before its first period (off)")
    else:
        reasons.append(f"period: {key} has no periods (off)")
    return reasons


def _switch_state(
    zone: str,
    at: datetime,
    context: ScheduleContext,
    *,
    key: str,
    periods: list[Period],
    period: Period | None,
    day_reason: str,
) -> Wanted:
    """A switch zone: on in every period that is not off, whatever the season; an override
    with mode off switches it off, any other override on."""
    on = period is not None and period.level is not Level.OFF and period.mode is not Mode.OFF
    reasons = _day_reasons(day_reason, key, periods, period)
    source, override_id = "schedule", None
    override = context.overrides.get(zone)
    if override is not None and override.active(at):
        source, override_id = "override", override.id
        on = override.mode is not Mode.OFF
        reasons.append(
            f"override {override.id} until {override.until.astimezone(context.tz):%Y-%m-%d %H:%M}"
        )
    # FAN stands for "running without a setpoint": the controller then writes only `on`. A
    # person is never told so: see mode_shown.
    return Wanted(Mode.FAN if on else Mode.OFF, None, on, reasons, None, source, override_id)


SWITCH_ON = "on"
"""What a person says and is told for a switch zone that runs (its Mode is FAN)."""


def mode_shown(hvac: HvacConfig, zone: str, wanted: Wanted) -> str:
    """The zone's wanted mode as a person reads it (a command's reply and its audit event, the
    schedule preview): a switch zone is ``on`` or ``off``, since it has no mode (its FAN only
    means "running without a setpoint"); any other zone, the mode's name."""
    if hvac.zones[zone].kind == "switch":
        return SWITCH_ON if wanted.on else Mode.OFF.value
    return wanted.mode.value


def _overridden(
    override: Override,
    mode: Mode,
    setpoint: float | None,
    season: Season,
    setpoints: LevelSetpoints,
) -> tuple[Mode, float | None]:
    """An override runs the zone: its mode, else the scheduled mode if running, else the
    season's; its setpoint, else the scheduled one in the same mode, else the comfort level."""
    new_mode = override.mode
    if new_mode is None:
        new_mode = mode if mode is not Mode.OFF else season.mode
    if new_mode in (Mode.OFF, Mode.FAN):
        return new_mode, None
    if override.setpoint is not None:
        return new_mode, override.setpoint
    if new_mode is mode and setpoint is not None:
        return new_mode, setpoint
    return new_mode, level_setpoint(setpoints, new_mode, Level.COMFORT)


def next_boundary(zone: str, at: datetime, context: ScheduleContext) -> datetime:
    """The first moment after ``at`` at which the wanted state can change: the next period
    start of the day, the next local midnight (a new day, maybe of another kind or season), or
    the end of the zone's override."""
    local = at.astimezone(context.tz)
    info = context.calendar.day(local.date())
    _, periods = select_day(context.hvac.zone_programme(zone), info)
    candidates = [
        start
        for period in periods
        if (start := datetime.combine(local.date(), period.start, tzinfo=context.tz)) > at
    ]
    tomorrow = local.date() + timedelta(days=1)
    candidates.append(datetime.combine(tomorrow, time(0), tzinfo=context.tz))
    override = context.overrides.get(zone)
    if override is not None and override.active(at):
        candidates.append(override.until)
    return min(candidates)


def season_from_outdoor(
    previous: Season | None, temperature: float, rule: OutdoorSeasonRule, otherwise: Season
) -> Season:
    """The season for an (averaged) outdoor temperature: cooling from `cooling_above`, heating
    from `heating_below`; a season ends only `hysteresis` back past its threshold."""
    if previous is Season.COOLING and temperature > rule.cooling_above - rule.hysteresis:
        return Season.COOLING
    if previous is Season.HEATING and temperature < rule.heating_below + rule.hysteresis:
        return Season.HEATING
    if temperature >= rule.cooling_above:
        return Season.COOLING
    if temperature <= rule.heating_below:
        return Season.HEATING
    return otherwise
