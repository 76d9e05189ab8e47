"""The ``hvac:`` section of the site config: zones, weekly programmes, season, calendar, policy.

Facts used:
- public buildings: summer indoor temperature not below 26 °C, winter not above 20 °C
  (公共建筑室内温度控制管理办法, 建科[2008]115号 Art. 3); hospitals and users with approved process
  temperatures are exempt and localities may be stricter (国务院办公厅关于严格执行公共建筑空调温度
  控制标准的通知, June 2007);
- public holidays and their make-up workdays (调休) are announced each November by the State
  Council General Office for the next year (its notice 关于YYYY年部分节假日安排的通知).
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, time, timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from agent.core.configbase import ConfigModel, DeviceConfigBase
from agent.core.durations import Duration
from agent.core.suggest import did_you_mean

__all__ = [
    "NATIONAL_COOLING_MIN_C",
    "NATIONAL_HEATING_MAX_C",
    "ROOM_POINT",
    "CalendarConfig",
    "DaySpan",
    "Exemption",
    "HvacConfig",
    "Level",
    "LevelSetpoints",
    "LocalChangeRule",
    "Mode",
    "ModeValues",
    "OfficialYear",
    "OutdoorSeasonRule",
    "Period",
    "PolicyConfig",
    "Programme",
    "Season",
    "SeasonConfig",
    "SeasonSpan",
    "SpecialDays",
    "ZoneConfig",
    "hvac_problems",
]

NATIONAL_COOLING_MIN_C = 26.0  # 建科[2008]115号 Art. 3: summer not below 26 °C
NATIONAL_HEATING_MAX_C = 20.0  # ... and winter not above 20 °C

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ROOM_POINT = "temperature"  # a room sensor's point when `room_sensor` names only the device
ROOM_SENSOR_PROTOCOLS = ("ble",)  # push sources that keep their latest measurement
_ROOM_SENSOR = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[A-Za-z0-9_]+)?$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class Mode(enum.StrEnum):
    """What a zone unit does."""

    COOL = "cool"
    HEAT = "heat"
    FAN = "fan"
    OFF = "off"


class Level(enum.StrEnum):
    """A period's comfort level; the season turns it into a mode and a setpoint."""

    COMFORT = "comfort"
    SETBACK = "setback"
    OFF = "off"


class Season(enum.StrEnum):
    """What the building's plant does this time of year."""

    COOLING = "cooling"
    HEATING = "heating"
    VENTILATION = "ventilation"
    OFF = "off"

    @property
    def mode(self) -> Mode:
        return {
            Season.COOLING: Mode.COOL,
            Season.HEATING: Mode.HEAT,
            Season.VENTILATION: Mode.FAN,
            Season.OFF: Mode.OFF,
        }[self]


class LocalChangeRule(enum.StrEnum):
    """What the controller does when someone changes a zone at its thermostat."""

    RESPECT = "respect_until_boundary"  # keep the local change until the next schedule boundary
    REASSERT = "reassert"  # write the schedule back at once


# --- programmes ----------------------------------------------------------------------------------


class Period(ConfigModel):
    """From `start` until the next period of the day: a level, or an explicit mode and setpoint."""

    start: time
    """Local time the period starts, e.g. "07:30". Before a day's first period the zone is off."""
    level: Level | None = None
    """comfort / setback / off: the setpoint comes from the season's level setpoints."""
    mode: Mode | None = None
    """cool / heat / fan / off, instead of the season's mode (e.g. a server room always cools)."""
    setpoint: float | None = Field(default=None, ge=0, le=50)
    """°C, instead of the level's setpoint. Policy limits still clamp it."""

    @field_validator("start")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("write the start as local time without an offset, e.g. 07:30")
        return value

    @model_validator(mode="after")
    def _meaningful(self) -> Period:
        if self.level is None and self.mode is None and self.setpoint is None:
            raise ValueError("a period needs a level (comfort, setback, off), a mode or a setpoint")
        off = self.level is Level.OFF or self.mode is Mode.OFF
        if off and (self.setpoint is not None or (self.mode not in (None, Mode.OFF))):
            raise ValueError("an off period takes no mode or setpoint")
        if self.mode is Mode.FAN and self.setpoint is not None:
            raise ValueError("a fan period takes no setpoint: fan mode neither heats nor cools")
        if self.mode in (Mode.COOL, Mode.HEAT) and self.level is None and self.setpoint is None:
            raise ValueError(f"a {self.mode.value} period needs a setpoint or a level")
        return self

    def label(self) -> str:
        parts = [self.start.strftime("%H:%M")]
        if self.level is not None:
            parts.append(self.level.value)
        if self.mode is not None and self.level is not Level.OFF:
            parts.append(self.mode.value)
        if self.setpoint is not None:
            parts.append(f"{self.setpoint:g} °C")
        return " ".join(parts)


DayProgramme = Annotated[list[Period], Field(max_length=48)]


def _check_day(periods: list[Period] | None) -> list[Period] | None:
    if periods:
        starts = [p.start for p in periods]
        for before, after in itertools.pairwise(starts):
            if after <= before:
                raise ValueError(
                    f"periods must start in order within a day: {after:%H:%M} comes after "
                    f"{before:%H:%M}"
                )
    return periods


class LevelSetpoints(ConfigModel):
    """Setpoints of the comfort and setback levels, per season (°C)."""

    cooling_comfort: float = Field(default=26.0, ge=0, le=50)
    """Cooling season, occupied."""
    cooling_setback: float = Field(default=28.0, ge=0, le=50)
    """Cooling season, setback (e.g. lunch break, early evening)."""
    heating_comfort: float = Field(default=20.0, ge=0, le=50)
    """Heating season, occupied."""
    heating_setback: float = Field(default=16.0, ge=0, le=50)
    """Heating season, setback (e.g. nights in a cold spell, to protect the building)."""


class Programme(ConfigModel):
    """A weekly programme: the periods of each kind of day.

    A day takes, in this order: its special day type's periods (calendar.special) if the
    programme has them; on a public holiday `holiday`, else `weekend`; on a working day (make-up
    workdays included) its weekday's periods (`mon`...) if given, else `workday`; on a weekend day
    its weekday's periods if given, else `weekend`. A day with no periods is off.
    """

    workday: DayProgramme = Field(default_factory=list)
    """Periods of a working day: Monday to Friday, and make-up workdays (调休)."""
    weekend: DayProgramme = Field(default_factory=list)
    """Periods of Saturdays and Sundays that are not make-up workdays."""
    holiday: DayProgramme | None = None
    """Periods of public holidays and site closed days; default: those of `weekend`."""
    mon: DayProgramme | None = None
    """Monday's periods, instead of `workday`."""
    tue: DayProgramme | None = None
    """Tuesday's periods, instead of `workday`."""
    wed: DayProgramme | None = None
    """Wednesday's periods, instead of `workday`."""
    thu: DayProgramme | None = None
    """Thursday's periods, instead of `workday`."""
    fri: DayProgramme | None = None
    """Friday's periods, instead of `workday` (e.g. an earlier close)."""
    sat: DayProgramme | None = None
    """Saturday's periods, instead of `weekend` (a make-up Saturday takes `workday`)."""
    sun: DayProgramme | None = None
    """Sunday's periods, instead of `weekend` (a make-up Sunday takes `workday`)."""
    special: dict[Annotated[str, Field(pattern=SLUG)], DayProgramme] = Field(default_factory=dict)
    """Periods of site day types from calendar.special, by name, e.g. exam."""
    setpoints: LevelSetpoints | None = None
    """Level setpoints of this programme; default: the hvac section's."""

    @field_validator("workday", "weekend", "holiday", *WEEKDAYS)
    @classmethod
    def _ordered(cls, value: list[Period] | None) -> list[Period] | None:
        return _check_day(value)

    @field_validator("special")
    @classmethod
    def _ordered_special(cls, value: dict[str, list[Period]]) -> dict[str, list[Period]]:
        for periods in value.values():
            _check_day(periods)
        return value

    def days(self) -> dict[str, list[Period]]:
        """Every day programme by its key (workday, weekend, mon, ..., special names)."""
        found: dict[str, list[Period]] = {"workday": self.workday, "weekend": self.weekend}
        for key in ("holiday", *WEEKDAYS):
            periods = getattr(self, key)
            if periods is not None:
                found[key] = periods
        found.update(self.special)
        return found


# --- zones and policy ----------------------------------------------------------------------------


class ModeValues(ConfigModel):
    """The numbers a zone controller's mode register uses for each mode."""

    cool: int = Field(default=1, ge=0, le=65535)
    """Value written for cooling."""
    heat: int = Field(default=2, ge=0, le=65535)
    """Value written for heating."""
    fan: int = Field(default=3, ge=0, le=65535)
    """Value written for fan only (ventilation)."""

    @model_validator(mode="after")
    def _distinct(self) -> ModeValues:
        if len({self.cool, self.heat, self.fan}) != 3:
            raise ValueError("cool, heat and fan need different values")
        return self

    def value(self, mode: Mode) -> int:
        return {Mode.COOL: self.cool, Mode.HEAT: self.heat, Mode.FAN: self.fan}[mode]

    def mode(self, value: float) -> Mode | None:
        for mode in (Mode.COOL, Mode.HEAT, Mode.FAN):
            if self.value(mode) == value:
                return mode
        return None


class Exemption(ConfigModel):
    """A zone allowed past the site's limits (e.g. an operating theatre); it must say why."""

    reason: str = Field(min_length=3, max_length=300)
    """Why, as it would be shown to an auditor, e.g. "operating theatre, GB 50333 22-25 °C"."""
    cooling_min: float | None = Field(default=None, ge=0, le=50)
    """Lowest cooling setpoint for this zone; default: only the zone's setpoint range."""
    heating_max: float | None = Field(default=None, ge=0, le=50)
    """Highest heating setpoint for this zone; default: only the zone's setpoint range."""

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if len(value.strip()) < 3:
            raise ValueError("an exemption needs a reason an auditor can read")
        return value.strip()


class ZoneConfig(ConfigModel):
    """One controlled zone: which device points hold its setpoint, mode and on/off; or, of
    `kind: switch`, one on/off output (a relay, a contactor's coil) run on the same schedule."""

    kind: Literal["hvac", "switch"] = "hvac"
    """hvac: a unit with a setpoint (and mode) run by the season; switch: an on/off output (a
    water heater, corridor lighting) that is on in every period that is not off, whatever the
    season, and off otherwise. An override with mode off switches it off, any other on."""
    device: str
    """Name of the device (under `devices`) that controls the zone."""
    setpoint: str | None = None
    """The device's setpoint point (°C, declared writable); required for kind hvac."""
    on: str
    """The device's on/off point (a coil, a 0/1 register or a relay, declared writable)."""
    min_interval: Duration | None = None
    """The on/off point is never switched more often than this (a contactor's life, a
    compressor's short-cycling): a switch asked sooner is deferred, and audited. Default: no
    minimum here (a relay device's own min_interval applies regardless)."""
    mode: str | None = None
    """The device's mode point; without it the unit's own mode stands and is not written."""
    mode_values: ModeValues = ModeValues()
    """The numbers the mode point uses for cool, heat and fan."""
    programme: str
    """Name of the weekly programme (under hvac.programmes) the zone follows."""
    setpoint_min: float = Field(default=5.0, ge=-50, le=100)
    """Lowest setpoint the unit accepts (its dial range); nothing below is ever written."""
    setpoint_max: float = Field(default=35.0, ge=-50, le=100)
    """Highest setpoint the unit accepts (its dial range); nothing above is ever written."""
    exemption: Exemption | None = None
    """Exemption from the site's policy limits, with its reason."""
    local_change: LocalChangeRule = LocalChangeRule.RESPECT
    """A change made at the thermostat: respect_until_boundary (keep it until the next schedule
    boundary) or reassert (write the schedule back at once). Policy limits apply to both."""
    temperature: str | None = None
    """The device's own room temperature point (°C), e.g. the thermostat's built-in sensor:
    the zone's room temperature when it has no room_sensor, or while that one is stale."""
    room_sensor: str | None = None
    """A room sensor that measures the zone (e.g. a BLE thermometer under `devices`): its name,
    or name.point (default point: temperature). Its latest reading is the zone's room
    temperature while it is fresh (heard within the sensor's timeout); audit events and the
    schedule preview name the source used."""

    @model_validator(mode="after")
    def _range(self) -> ZoneConfig:
        if self.setpoint_min >= self.setpoint_max:
            raise ValueError("setpoint_min must be below setpoint_max")
        if self.kind == "hvac" and self.setpoint is None:
            raise ValueError(
                "an hvac zone needs its `setpoint` point; an on/off output is `kind: switch`"
            )
        if self.kind == "switch":
            extra = [
                key
                for key in ("setpoint", "mode", "temperature", "room_sensor", "exemption")
                if getattr(self, key) is not None
            ]
            if extra:
                raise ValueError(
                    f"a switch zone is only on or off: remove {', '.join(extra)}"
                )
        return self

    @field_validator("room_sensor")
    @classmethod
    def _room_sensor(cls, value: str | None) -> str | None:
        if value is not None and not _ROOM_SENSOR.match(value):
            raise ValueError(
                f"{value!r} is not a device name or device.point, e.g. zone1_room or "
                "zone1_room.temperature"
            )
        return value

    def room_sensor_point(self) -> tuple[str, str] | None:
        """The room sensor's device and point, or None."""
        if self.room_sensor is None:
            return None
        device, _, point = self.room_sensor.partition(".")
        return device, point or ROOM_POINT


class PolicyConfig(ConfigModel):
    """Site-wide limits that clamp every setpoint, whatever its source."""

    cooling_min: float = Field(default=NATIONAL_COOLING_MIN_C, ge=0, le=50)
    """Lowest cooling setpoint (°C); the national rule is 26. A stricter (higher) value is fine."""
    heating_max: float = Field(default=NATIONAL_HEATING_MAX_C, ge=0, le=50)
    """Highest heating setpoint (°C); the national rule is 20. A stricter (lower) value is fine."""
    relaxed_reason: str | None = Field(default=None, min_length=3, max_length=300)
    """Required when the limits are laxer than 26/20 for the whole site (e.g. a hospital)."""

    @model_validator(mode="after")
    def _relaxed_needs_reason(self) -> PolicyConfig:
        relaxed = (
            self.cooling_min < NATIONAL_COOLING_MIN_C or self.heating_max > NATIONAL_HEATING_MAX_C
        )
        if relaxed and not (self.relaxed_reason or "").strip():
            raise ValueError(
                "limits laxer than the national 26 °C cooling / 20 °C heating need "
                "`relaxed_reason` (e.g. hospital); exempt single zones with `exemption` instead"
            )
        return self


# --- season --------------------------------------------------------------------------------------


def _month_day(value: str) -> tuple[int, int]:
    match = _MONTH_DAY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a month and day; write MM-DD, e.g. 06-01")
    month, day = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month - 1]:
        raise ValueError(f"{value!r} is not a day of the year")
    return month, day


class SeasonSpan(ConfigModel):
    """Days recurring every year, from MM-DD to MM-DD inclusive (may wrap the new year)."""

    first: str = Field(alias="from")
    """First day, MM-DD, e.g. 06-01."""
    last: str = Field(alias="to")
    """Last day, MM-DD, inclusive, e.g. 09-30 (or 02-28 for a span over the new year)."""

    @field_validator("first", "last")
    @classmethod
    def _valid(cls, value: str) -> str:
        _month_day(value)
        return value

    def contains(self, day: date) -> bool:
        first, last, here = _month_day(self.first), _month_day(self.last), (day.month, day.day)
        if first <= last:
            return first <= here <= last
        return here >= first or here <= last


class OutdoorSeasonRule(ConfigModel):
    """Decide the season from the outdoor temperature, with hysteresis."""

    device: str
    """Device that reads the outdoor temperature."""
    point: str
    """Its outdoor temperature point (°C)."""
    cooling_above: float = Field(default=24.0, ge=-50, le=60)
    """Cooling starts when the averaged outdoor temperature reaches this (°C)."""
    heating_below: float = Field(default=12.0, ge=-50, le=60)
    """Heating starts when the averaged outdoor temperature falls to this (°C)."""
    hysteresis: float = Field(default=2.0, ge=0, le=20)
    """A season ends only this far (°C) back past its threshold, so it does not flap."""
    averaging: Duration = 6 * 3600.0
    """Time constant of the moving average of the outdoor temperature (the daily swing is ±4 °C)."""

    @model_validator(mode="after")
    def _apart(self) -> OutdoorSeasonRule:
        if self.heating_below + self.hysteresis >= self.cooling_above - self.hysteresis:
            raise ValueError(
                "heating_below + hysteresis must stay below cooling_above - hysteresis"
            )
        return self


class SeasonConfig(ConfigModel):
    """Cooling, heating or ventilation: by date spans, or by outdoor temperature."""

    cooling: list[SeasonSpan] = Field(
        default_factory=lambda: [SeasonSpan.model_validate({"from": "06-01", "to": "09-30"})]
    )
    """Date spans of the cooling season (default 06-01 to 09-30)."""
    heating: list[SeasonSpan] = Field(
        default_factory=lambda: [SeasonSpan.model_validate({"from": "12-01", "to": "02-29"})]
    )
    """Date spans of the heating season (default 12-01 to the end of February)."""
    otherwise: Literal["ventilation", "off"] = "ventilation"
    """Days in neither span: ventilation (comfort periods run the fans) or off."""
    outdoor: OutdoorSeasonRule | None = None
    """When set, the outdoor temperature decides; the date spans are the fallback without a
    reading (and what the preview shows)."""

    def on(self, day: date) -> Season:
        """The season by date spans."""
        if any(span.contains(day) for span in self.cooling):
            return Season.COOLING
        if any(span.contains(day) for span in self.heating):
            return Season.HEATING
        return Season(self.otherwise)


# --- calendar ------------------------------------------------------------------------------------


class DaySpan(ConfigModel):
    """Consecutive days, from one date to another inclusive."""

    first: date = Field(alias="from")
    """First day, YYYY-MM-DD."""
    last: date | None = Field(default=None, alias="to")
    """Last day, inclusive; default: the first day only."""
    note: str = ""
    """What the days are, shown in the preview, e.g. 春节."""

    @model_validator(mode="after")
    def _order(self) -> DaySpan:
        if self.last is not None and self.last < self.first:
            raise ValueError("`to` must not be before `from`")
        if self.last is not None and (self.last - self.first).days > 366:
            raise ValueError("a span of days may be at most a year long")
        return self

    def dates(self) -> list[date]:
        last = self.last or self.first
        return [self.first + timedelta(days=n) for n in range((last - self.first).days + 1)]


Days = list[date | DaySpan]


def expand_days(days: Days) -> dict[date, str]:
    """Every date a list of dates and spans names, with its note ('' for a bare date)."""
    found: dict[date, str] = {}
    for item in days:
        if isinstance(item, DaySpan):
            for day in item.dates():
                found[day] = item.note
        else:
            found[item] = ""
    return found


class OfficialYear(ConfigModel):
    """One year's official holiday notice, typed in for a year the shipped calendar lacks."""

    closed: Days = Field(default_factory=list)
    """Days off: public holidays and the days moved next to them."""
    open: Days = Field(default_factory=list)
    """Make-up workdays (调休): weekend days that are working days."""

    @model_validator(mode="after")
    def _disjoint(self) -> OfficialYear:
        both = set(expand_days(self.closed)) & set(expand_days(self.open))
        if both:
            raise ValueError(f"{min(both)} is listed both closed and open")
        return self


class SpecialDays(ConfigModel):
    """Site day types (e.g. an exam week in a school) that follow their own programme."""

    name: str = Field(pattern=SLUG, max_length=32)
    """Day type name; a programme gives its periods under special.<name>."""
    days: Days
    """The dates and spans of this day type."""


class CalendarConfig(ConfigModel):
    """Working days, public holidays and make-up workdays."""

    country: Literal["china", "none"] = "china"
    """china: the `holidays` package's China calendar where it covers the year; none: weekdays."""
    years: dict[int, OfficialYear] = Field(default_factory=dict)
    """Official notices by year, for years the shipped calendar does not cover yet; a year
    listed here replaces the shipped calendar for that year."""
    closed: Days = Field(default_factory=list)
    """Site days off in any year (e.g. a building shutdown), on top of the public calendar."""
    open: Days = Field(default_factory=list)
    """Site working days in any year, on days the public calendar has off."""
    special: list[SpecialDays] = Field(default_factory=list)
    """Site day types with their own programme (e.g. an exam week)."""
    warn_days: int = Field(default=45, ge=0, le=366)
    """Warn this many days before the year ends when next year's calendar is missing."""

    @field_validator("years")
    @classmethod
    def _year_keys(cls, value: dict[int, OfficialYear]) -> dict[int, OfficialYear]:
        for year, notice in value.items():
            if not 2000 <= year <= 2100:
                raise ValueError(f"{year} is not a plausible calendar year")
            for day in (*expand_days(notice.closed), *expand_days(notice.open)):
                if day.year != year:
                    raise ValueError(f"{day} is listed under the year {year}")
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> CalendarConfig:
        both = set(expand_days(self.closed)) & set(expand_days(self.open))
        if both:
            raise ValueError(f"{min(both)} is listed both closed and open")
        names = [special.name for special in self.special]
        if len(names) != len(set(names)):
            raise ValueError("each special day type needs its own name")
        return self


# --- the section ---------------------------------------------------------------------------------


class HvacConfig(ConfigModel):
    """HVAC schedules: zones, weekly programmes, season, calendar and the policy limits."""

    zones: dict[Annotated[str, Field(pattern=SLUG, max_length=64)], ZoneConfig]
    """Controlled zones by stable name, e.g. floor3-east."""
    programmes: dict[Annotated[str, Field(pattern=SLUG, max_length=64)], Programme]
    """Weekly programmes by name, e.g. office."""
    setpoints: LevelSetpoints = LevelSetpoints()
    """Setpoints of the comfort and setback levels."""
    season: SeasonConfig = SeasonConfig()
    """Which season is when."""
    calendar: CalendarConfig = CalendarConfig()
    """Working days, public holidays and make-up workdays."""
    policy: PolicyConfig = PolicyConfig()
    """Limits that clamp every setpoint (default: cooling >= 26 °C, heating <= 20 °C)."""
    check_interval: Duration = 60.0
    """How often the controller reads the zones back to find local changes (boundaries are met
    on time regardless)."""
    writes_per_minute: int = Field(default=30, ge=1, le=600)
    """Most writes to one device per minute (a token bucket refilled at this rate)."""
    write_burst: int = Field(default=12, ge=1, le=100)
    """Writes one device may take at once, e.g. at a boundary that changes every zone."""
    verify_retries: int = Field(default=2, ge=0, le=10)
    """Extra attempts when a write does not read back; then a device-fault event."""
    override_max: Duration = 12 * 3600.0
    """Longest override a command or the CLI may set."""
    command_ttl_max: Duration = 600.0
    """Latest expiry a command may carry, from now: bounds the memory that refuses replays."""
    command_memory: int = Field(default=1024, ge=16, le=100_000)
    """Command ids remembered (until their expiry) to refuse replays."""
    trust_clock: bool = False
    """Act without systemd-timesyncd's sync flag: only for a gateway with a battery-backed RTC
    or another trusted time source."""
    clock_hold_max: Duration = 86400.0
    """After the clock steps back, the state applied last is held until the clock catches up,
    at most this long; a larger step restarts the schedule at the new time."""

    def zone_programme(self, zone: str) -> Programme:
        return self.programmes[self.zones[zone].programme]

    def level_setpoints(self, zone: str) -> LevelSetpoints:
        return self.zone_programme(zone).setpoints or self.setpoints

    @model_validator(mode="after")
    def _programmes_exist(self) -> HvacConfig:
        # Within the section, so that a preview of an hvac section alone is always consistent;
        # device and point names are checked against `devices` by hvac_problems().
        for name, zone in self.zones.items():
            if zone.programme not in self.programmes:
                hint = did_you_mean(zone.programme, self.programmes)
                raise ValueError(
                    f"zone {name!r}: there is no programme {zone.programme!r}{hint}; the "
                    f"programmes are: {', '.join(sorted(self.programmes)) or 'none'}"
                )
        known = {special.name for special in self.calendar.special}
        for pname, programme in self.programmes.items():
            for key in programme.special:
                if key not in known:
                    hint = did_you_mean(key, known)
                    raise ValueError(
                        f"programme {pname!r}: special day type {key!r} is not in "
                        f"calendar.special{hint}"
                    )
        return self


Loc = tuple[str | int, ...]


def hvac_problems(
    hvac: HvacConfig, devices: Sequence[DeviceConfigBase]
) -> list[tuple[Loc, str]]:
    """Problems between the hvac section and `devices`, located (for the config cross-check)."""
    by_name = {device.name: device for device in devices}
    problems: list[tuple[Loc, str]] = []

    def point_check(loc: Loc, device_name: str, point: str | None, *, write: bool) -> None:
        device = by_name.get(device_name)
        if point is None or device is None:
            return
        names = device.point_names()
        if point not in names:
            hint = did_you_mean(point, names)
            problems.append((loc, f"device {device_name!r} has no point {point!r}{hint}"))
        elif write and (problem := device.write_problem(point)) is not None:
            problems.append((loc, problem))

    for name, zone in hvac.zones.items():
        base: Loc = ("hvac", "zones", name)
        if zone.device not in by_name:
            hint = did_you_mean(zone.device, by_name)
            problems.append(((*base, "device"), f"no device is named {zone.device!r}{hint}"))
        for role in ("setpoint", "mode", "on"):
            point_check((*base, role), zone.device, getattr(zone, role), write=True)
        point_check((*base, "temperature"), zone.device, zone.temperature, write=False)
        problems.extend(_room_sensor_problems(name, zone, by_name, point_check))
        if zone.kind == "switch":
            continue  # on or off: no setpoint to fit the dial
        setpoints = hvac.level_setpoints(name)
        programme = hvac.zone_programme(name)
        values = [
            setpoints.cooling_comfort,
            setpoints.cooling_setback,
            setpoints.heating_comfort,
            setpoints.heating_setback,
        ]
        for periods in programme.days().values():
            values.extend(p.setpoint for p in periods if p.setpoint is not None)
        outside = sorted({v for v in values if not zone.setpoint_min <= v <= zone.setpoint_max})
        if outside:
            problems.append(
                (
                    (*base, "programme"),
                    f"programme {zone.programme!r} asks for {', '.join(f'{v:g}' for v in outside)}"
                    f" °C, outside the zone's setpoint range {zone.setpoint_min:g}-"
                    f"{zone.setpoint_max:g} °C",
                )
            )
    outdoor = hvac.season.outdoor
    if outdoor is not None:
        loc: Loc = ("hvac", "season", "outdoor")
        if outdoor.device not in by_name:
            hint = did_you_mean(outdoor.device, by_name)
            problems.append(((*loc, "device"), f"no device is named {outdoor.device!r}{hint}"))
        point_check((*loc, "point"), outdoor.device, outdoor.point, write=False)
    return problems


def _room_sensor_problems(
    name: str,
    zone: ZoneConfig,
    by_name: Mapping[str, DeviceConfigBase],
    point_check: Callable[..., None],
) -> list[tuple[Loc, str]]:
    """Problems of a zone's room_sensor: a BLE sensor of this zone with the point."""
    room = zone.room_sensor_point()
    if room is None:
        return []
    sensor, point = room
    base: Loc = ("hvac", "zones", name)
    problems: list[tuple[Loc, str]] = []
    if sensor not in by_name:
        hint = did_you_mean(sensor, by_name)
        problems.append(((*base, "room_sensor"), f"no device is named {sensor!r}{hint}"))
    elif by_name[sensor].protocol not in ROOM_SENSOR_PROTOCOLS:
        problems.append(
            (
                (*base, "room_sensor"),
                f"device {sensor!r} is not a room sensor that keeps its latest reading "
                f"(protocol {', '.join(ROOM_SENSOR_PROTOCOLS)}); a thermostat's own "
                "sensor goes under `temperature`",
            )
        )
    elif getattr(by_name[sensor], "zone", None) not in (None, name):
        problems.append(
            (
                (*base, "room_sensor"),
                f"device {sensor!r} says it measures zone "
                f"{getattr(by_name[sensor], 'zone', None)!r}, not {name!r}",
            )
        )
    else:
        point_check((*base, "room_sensor"), sensor, point, write=False)
    return problems
