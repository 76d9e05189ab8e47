"""The `energy` section of the site config: which points are meters, and the rules over them.

Classification follows the national guideline for sub-item energy data collection
(分项能耗数据采集技术导则, MOHURD 2008) and JGJ/T 285-2014 (公共建筑能耗远程监测系统技术规程):
electricity 01000 (lighting and sockets 01A00, HVAC 01B00, power 01C00, special 01D00, with
second- and third-level codes such as 01A10 or 01B1A), water 02000, natural gas 03A00, district
heat 04000, district cooling 05000. Quotas may be intensities in kWh/(m²·a), the form GB/T
51161-2016 gives office quotas in (a constraint value and a guide value).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import date, time
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from agent.core.configbase import ConfigModel
from agent.core.durations import Duration
from agent.core.suggest import did_you_mean
from agent.energy.factors import (
    ELECTRICITY_CALORIFIC,
    GRID_CO2_2023,
    NATURAL_GAS_TCE,
    Factor,
)
from agent.sources.registry import DEFAULT_PROTOCOL, config_model

__all__ = [
    "SUB_ITEM_NAMES",
    "TYPE_CODES",
    "BalanceRule",
    "CalendarConfig",
    "EnergyConfig",
    "EnergyType",
    "FactorsConfig",
    "MeterConfig",
    "MeterKind",
    "MeterRole",
    "OffHoursRule",
    "QuotaRule",
    "QuotaUnit",
    "SilentMeterRule",
    "cross_check_energy",
    "parent_codes",
    "sub_item_covers",
    "target_meters",
]

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
SUB_ITEM = r"^\d{2}[0-9A-Z]{3}$"


def _code(value: object) -> object:
    # YAML reads an unquoted 02000 as the integer 2000; every code has five characters.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 99_999:
        return f"{value:05d}"
    return value


SubItemCode = Annotated[str, BeforeValidator(_code), Field(pattern=SUB_ITEM)]
Loc = tuple[str | int, ...]


class EnergyType(enum.StrEnum):
    """Energy classes of the national guideline, each with its class code."""

    ELECTRICITY = "electricity"  # 01000
    WATER = "water"  # 02000
    GAS = "gas"  # 03A00 natural gas
    HEAT = "heat"  # 04000 district heat
    COOLING = "cooling"  # 05000 district cooling


TYPE_CODES: dict[EnergyType, str] = {
    EnergyType.ELECTRICITY: "01000",
    EnergyType.WATER: "02000",
    EnergyType.GAS: "03A00",
    EnergyType.HEAT: "04000",
    EnergyType.COOLING: "05000",
}
DEFAULT_UNITS: dict[EnergyType, str] = {
    EnergyType.ELECTRICITY: "kWh",
    EnergyType.WATER: "m3",
    EnergyType.GAS: "m3",
    EnergyType.HEAT: "kWh",
    EnergyType.COOLING: "kWh",
}


SUB_ITEM_NAMES: dict[str, str] = {
    "01000": "electricity",
    "01A00": "lighting and sockets (照明插座用电)",
    "01A10": "indoor lighting",
    "01A20": "corridor and emergency lighting",
    "01A30": "outdoor lighting",
    "01A40": "office sockets",
    "01B00": "HVAC (空调用电)",
    "01B10": "chiller and heating plant",
    "01B20": "HVAC terminal units",
    "01B30": "split and room air conditioning",
    "01C00": "power (动力用电)",
    "01C10": "lifts",
    "01C20": "pumps",
    "01C30": "fans",
    "01C40": "electric water boilers",
    "01D00": "special (特殊用电)",
    "01D10": "IT and data centre",
    "01D20": "kitchen",
    "01D30": "other special",
    "02000": "water",
    "03A00": "natural gas",
    "04000": "district heat",
    "05000": "district cooling",
}
"""Names of the codes listed in the MOHURD 2008 sub-item guideline, for reports."""


def parent_codes(code: str) -> list[str]:
    """Higher-level sub-item codes above `code`, nearest first, stopping below the class code.

    01B1A -> [01B10, 01B00]; 01A10 -> [01A00]; 01A00 -> [].
    """
    parents: list[str] = []
    for keep in (4, 3):
        if code[keep:].strip("0"):
            candidate = code[:keep] + "0" * (5 - keep)
            if candidate != code:
                parents.append(candidate)
    return parents


def sub_item_covers(code: str, other: str) -> bool:
    """Whether sub-item `code` includes `other` (01B00 covers 01B10 and 01B1A)."""
    stem = code.rstrip("0")
    return other.startswith(stem)


def _is_class_code(code: str) -> bool:
    return code in TYPE_CODES.values()


class MeterKind(enum.StrEnum):
    """How a meter's point gives energy."""

    COUNTER = "counter"  # a cumulative register (kWh, m³) that only grows, up to a wrap
    POWER = "power"  # an instantaneous power or flow, integrated over time


class MeterRole(enum.StrEnum):
    """What a meter measures in the site's balance."""

    MAIN = "main"  # supply from the grid or utility: the site total of its energy type
    SUB = "sub"  # one sub-item's consumption
    EXPORT = "export"  # energy fed back into the grid (a main meter's export register)
    GENERATION = "generation"  # on-site generation, e.g. the PV inverter's total yield


class MeterConfig(ConfigModel):
    """A point that measures energy, with its classification."""

    name: str = Field(pattern=SLUG, max_length=64)
    """Name of the meter in energy records and rules, e.g. main_import or lighting."""
    device: str
    """Device (under `devices`) that has the point."""
    point: str
    """The point: a cumulative counter such as import_energy, or a power for kind power."""
    kind: MeterKind = MeterKind.COUNTER
    """counter: a cumulative register; power: an instantaneous power or flow to integrate."""
    role: MeterRole = MeterRole.SUB
    """main (grid or utility supply), sub (a sub-item), export (to the grid) or generation (PV)."""
    energy_type: EnergyType = EnergyType.ELECTRICITY
    """Energy class: electricity, water, gas, heat or cooling."""
    sub_item: SubItemCode | None = None
    """National sub-item code, e.g. 01A00 lighting, 01B00 HVAC; electricity sub-meters need one."""
    unit: str | None = None
    """Unit of the energy: kWh for electricity, heat and cooling, m3 for water and gas."""
    counter_bits: Literal[16, 32, 64] | None = None
    """Width of an integer counter register, so a roll-over is told from a meter reset."""
    counter_scale: float = Field(default=1.0, gt=0)
    """Energy per count of the register (the point's scale), e.g. 0.01 kWh; also its resolution."""
    max_rate: float | None = Field(default=None, gt=0)
    """Highest plausible consumption per hour (rated kW, or m3/h): faster steps are spikes."""
    min_value: float | None = None
    """Readings below this are out of range and rejected (default 0 for counters)."""
    max_value: float | None = None
    """Readings above this are out of range and rejected (default the roll-over value)."""
    power_scale: float | None = Field(default=None, gt=0)
    """For kind power: energy per reading unit and hour; default 0.001 for W, 1 otherwise."""

    @model_validator(mode="after")
    def _check(self) -> MeterConfig:
        type_code = TYPE_CODES[self.energy_type]
        electricity = self.energy_type is EnergyType.ELECTRICITY
        # Only electricity has sub-items; a water or gas sub-meter carries its class code.
        if self.role is MeterRole.SUB and electricity and self.sub_item is None:
            raise ValueError("an electricity sub-meter needs its sub_item code, e.g. 01A00")
        if self.sub_item is not None and self.sub_item[:2] != type_code[:2]:
            raise ValueError(
                f"sub_item {self.sub_item} is not {self.energy_type.value}: "
                f"its codes start with {type_code[:2]}"
            )
        if self.role is MeterRole.SUB and electricity and self.sub_item == type_code:
            raise ValueError(
                f"{type_code} is the class code of the whole site: give the meter role main"
            )
        if self.role in (MeterRole.EXPORT, MeterRole.GENERATION) and (
            self.energy_type is not EnergyType.ELECTRICITY
        ):
            raise ValueError(f"a meter with role {self.role.value} meters electricity")
        if self.kind is MeterKind.POWER and self.counter_bits is not None:
            raise ValueError("counter_bits applies to counters, not to kind power")
        if self.kind is MeterKind.COUNTER and self.power_scale is not None:
            raise ValueError("power_scale applies to kind power, not to counters")
        return self

    @property
    def code(self) -> str:
        """The sub-item code; a meter without one carries its class code (01000, 02000, ...)."""
        return self.sub_item or TYPE_CODES[self.energy_type]

    @property
    def energy_unit(self) -> str:
        return self.unit or DEFAULT_UNITS[self.energy_type]

    @property
    def wrap(self) -> float | None:
        """The value at which the counter rolls over to zero, if it is an integer register."""
        if self.counter_bits is None:
            return None
        return float(2**self.counter_bits) * self.counter_scale

    @property
    def low(self) -> float | None:
        if self.min_value is not None:
            return self.min_value
        return 0.0 if self.kind is MeterKind.COUNTER else None

    @property
    def high(self) -> float | None:
        return self.max_value if self.max_value is not None else self.wrap


class FactorsConfig(ConfigModel):
    """Factors to tonnes of standard coal (tce) and CO2, each versioned and cited."""

    electricity_basis: Literal["calorific", "equivalent"] = "calorific"
    """calorific: 当量值 (0.1229 kgce/kWh); equivalent: 等价值, the year's coal per kWh supplied."""
    electricity_calorific: Factor = ELECTRICITY_CALORIFIC
    """Electricity by calorific equivalent (当量值), GB/T 2589-2020."""
    electricity_equivalent: Factor | None = None
    """Electricity by equivalent value (等价值): the year's published figure; no default."""
    gas: Factor | None = NATURAL_GAS_TCE
    """Natural gas to standard coal; prefer the supplier's calorific value when it is known."""
    water: Factor | None = None
    """Water to standard coal (some programmes count it as an energy-consuming medium)."""
    heat: Factor | None = None
    """District heat to standard coal."""
    cooling: Factor | None = None
    """District cooling to standard coal."""
    grid_co2: Factor = GRID_CO2_2023
    """Grid electricity CO2: the national average published by the ministry (default 2023)."""
    gas_co2: Factor | None = None
    """Natural gas combustion CO2, if the programme reports it; no default."""

    @model_validator(mode="after")
    def _check(self) -> FactorsConfig:
        if self.electricity_basis == "equivalent" and self.electricity_equivalent is None:
            raise ValueError(
                "electricity_basis equivalent needs electricity_equivalent: the year's "
                "published coal consumption per kWh supplied, with its year and source"
            )
        coal = (
            "electricity_calorific",
            "electricity_equivalent",
            "gas",
            "water",
            "heat",
            "cooling",
        )
        for name in coal:
            factor = getattr(self, name)
            if factor is not None and not factor.is_coal:
                raise ValueError(f"{name} converts to standard coal: its unit is kgce/...")
        for name in ("grid_co2", "gas_co2"):
            factor = getattr(self, name)
            if factor is not None and factor.is_coal:
                raise ValueError(f"{name} converts to CO2: its unit is kgCO2/...")
        return self

    def coal(self, energy_type: EnergyType) -> Factor | None:
        """The factor to kgce for an energy type, on the configured electricity basis."""
        if energy_type is EnergyType.ELECTRICITY:
            if self.electricity_basis == "equivalent":
                return self.electricity_equivalent
            return self.electricity_calorific
        return {
            EnergyType.GAS: self.gas,
            EnergyType.WATER: self.water,
            EnergyType.HEAT: self.heat,
            EnergyType.COOLING: self.cooling,
        }[energy_type]

    def co2(self, energy_type: EnergyType) -> Factor | None:
        """The factor to kgCO2 for an energy type, if one is configured."""
        if energy_type is EnergyType.ELECTRICITY:
            return self.grid_co2
        if energy_type is EnergyType.GAS:
            return self.gas_co2
        return None


class CalendarConfig(ConfigModel):
    """Which days the building is open, beyond the weekly pattern of each rule."""

    holidays: list[date] = Field(default_factory=list)
    """Public holidays: closed all day even on a weekday."""
    workdays: list[date] = Field(default_factory=list)
    """Make-up workdays (调休): open although they fall on a weekend."""

    def is_workday(self, day: date, open_days: Iterable[int] = (1, 2, 3, 4, 5)) -> bool:
        """Whether the building opens on `day`: its weekday is open, minus holidays, plus
        make-up workdays."""
        if day in self.workdays:
            return True
        return day.isoweekday() in open_days and day not in self.holidays


class _Target(ConfigModel):
    """What a rule watches: one meter, one sub-item, or the site."""

    meter: str | None = None
    """A meter by name; leave meter and sub_item empty for the whole site."""
    sub_item: SubItemCode | None = None
    """A sub-item code with everything under it (01B00 covers 01B10 and 01B1A)."""
    energy_type: EnergyType | None = None
    """For a site target: which energy type; empty means all types, in tce."""

    @model_validator(mode="after")
    def _one_target(self) -> _Target:
        if self.meter is not None and self.sub_item is not None:
            raise ValueError("give meter or sub_item, not both")
        if self.energy_type is not None and (self.meter or self.sub_item):
            raise ValueError("energy_type selects a site total: leave meter and sub_item empty")
        return self

    @property
    def target(self) -> str:
        if self.meter is not None:
            return f"meter:{self.meter}"
        if self.sub_item is not None:
            return f"sub_item:{self.sub_item}"
        return f"site:{self.energy_type.value if self.energy_type else 'all'}"


QuotaUnit = Literal["kWh", "m3", "tce", "kWh/m2a"]


class QuotaRule(_Target):
    """A consumption limit for a period, warned at thresholds and by projection."""

    name: str = Field(pattern=SLUG, max_length=64)
    """Name of the rule, used in alerts."""
    period: Literal["day", "month", "year"] = "month"
    """The period the limit applies to; alerts clear when the next period begins."""
    limit: float = Field(gt=0)
    """The limit, in `unit` (for kWh/m2a, the intensity per m² of floor area and year)."""
    unit: QuotaUnit = "kWh"
    """kWh, m3, tce, or kWh/m2a: an intensity (GB/T 51161) times the site's floor area."""
    level: Literal["constraint", "guide"] | None = None
    """Which GB/T 51161 value the limit is (约束值 constraint or 引导值 guide), for reports."""
    thresholds: tuple[float, ...] = (80.0, 100.0)
    """Percentages of the limit at which an alert is raised, once per period."""
    project: bool = True
    """Warn as soon as the projected end-of-period total exceeds the limit."""
    project_after: float = Field(default=0.15, ge=0, lt=1)
    """Share of the period that must have passed before projections are trusted."""
    hysteresis: float = Field(default=5.0, ge=0, lt=100)
    """A projection warning clears when the projection falls this many percent below the limit."""
    profile_days: int = Field(default=28, ge=1, le=366)
    """Days of history behind the usual profile that projects the rest of the period."""

    @model_validator(mode="after")
    def _check(self) -> QuotaRule:
        for value in self.thresholds:
            if not 0 < value <= 1000:
                raise ValueError(f"threshold {value:g} must be a percentage above 0")
        return self


class OffHoursRule(_Target):
    """Consumption outside opening hours above a baseline: lights or HVAC left on, a leak."""

    name: str = Field(pattern=SLUG, max_length=64)
    """Name of the rule, used in alerts."""
    open_from: time = time(8, 0)
    """Opening time (local), e.g. 08:00."""
    open_until: time = time(18, 0)
    """Closing time (local), e.g. 18:00."""
    open_days: tuple[int, ...] = (1, 2, 3, 4, 5)
    """Weekdays the building opens, 1 = Monday ... 7 = Sunday (holidays and workdays apply)."""
    baseline: float = Field(ge=0)
    """Consumption per hour allowed while closed (kW for kWh meters, m3/h for m3)."""
    sustained: Duration = 3600.0
    """How long consumption must stay above the baseline before the alert is raised."""

    @model_validator(mode="after")
    def _check(self) -> OffHoursRule:
        if not self.open_from < self.open_until:
            raise ValueError("open_from must be before open_until (same day)")
        if any(not 1 <= day <= 7 for day in self.open_days):
            raise ValueError("open_days are 1 (Monday) to 7 (Sunday)")
        if self.energy_type is None and not (self.meter or self.sub_item):
            raise ValueError("an off-hours rule watches a meter, a sub-item or one energy type")
        return self


class SilentMeterRule(ConfigModel):
    """A meter that sends no usable reading for too long."""

    intervals: int = Field(default=4, ge=1)
    """Base intervals without a good reading after which the meter counts as silent."""
    meters: list[str] = Field(default_factory=list)
    """Meters watched; empty means every meter."""


class BalanceRule(ConfigModel):
    """A main meter against the sum of its sub-meters (and generation), per period."""

    name: str = Field(pattern=SLUG, max_length=64)
    """Name of the check, used in quality reports and alerts."""
    main: list[str] = Field(min_length=1)
    """Import meters of the supply, e.g. [main_import]."""
    export: list[str] = Field(default_factory=list)
    """Export meters subtracted from the supply, e.g. [main_export]."""
    generation: list[str] = Field(default_factory=list)
    """On-site generation added to the supply, e.g. [pv]: loads = import - export + generation."""
    parts: list[str] = Field(min_length=1)
    """Sub-meters that together should account for the supply."""
    unmetered_percent: float = Field(default=0.0, ge=0, lt=100)
    """Expected share of the supply no sub-meter sees (e.g. an unmetered lift circuit)."""
    tolerance_percent: float = Field(default=5.0, gt=0, le=100)
    """Allowed difference between observed and expected unmetered share, in percent."""
    period: Literal["hour", "day"] = "day"
    """Period of each check."""
    min_energy: float = Field(default=1.0, ge=0)
    """Supply below this (kWh) skips the check: percentages of nearly nothing mean nothing."""


class EnergyConfig(ConfigModel):
    """Energy accounting: meters, conversions, quotas and data-quality rules."""

    interval_minutes: Literal[1, 5, 10, 15, 30, 60] = 15
    """Base interval of consumption records (the national guideline uploads every 15 minutes)."""
    max_step: Duration = 300.0
    """A longer step between two readings is a gap: its energy is spread and marked estimated."""
    meters: list[MeterConfig] = Field(default_factory=list)
    """Points that measure energy, with their classification."""
    factors: FactorsConfig = FactorsConfig()
    """Conversion factors to tce and CO2."""
    calendar: CalendarConfig = CalendarConfig()
    """Holidays and make-up workdays, for opening hours and profiles."""
    quotas: list[QuotaRule] = Field(default_factory=list)
    """Consumption limits with warnings."""
    off_hours: list[OffHoursRule] = Field(default_factory=list)
    """Consumption-while-closed rules."""
    silent: SilentMeterRule = SilentMeterRule()
    """When a meter counts as silent."""
    balance: list[BalanceRule] = Field(default_factory=list)
    """Main-meter balance checks."""

    def problems(self, *, floor_area_m2: float | None = None) -> list[tuple[Loc, str]]:
        """Problems between the section's parts (rules naming unknown meters, units that do not
        match, a tce quota without a factor), each located inside the section.

        Kept out of pydantic validators so each is reported at its own key; the site loader
        reports them through cross_check_energy, and the energy engines refuse a section that
        has any (`require_consistent`).
        """
        return _problems(self, floor_area_m2=floor_area_m2, check_area=floor_area_m2 is not None)

    def require_consistent(self) -> EnergyConfig:
        """This section, or ValueError listing its problems (a bug: the loader checks them)."""
        problems = self.problems()
        if problems:
            where = "; ".join(
                f"energy.{'.'.join(str(p) for p in loc)}: {message}" for loc, message in problems
            )
            raise ValueError(f"inconsistent energy config: {where}")
        return self

    def meter(self, name: str) -> MeterConfig:
        for meter in self.meters:
            if meter.name == name:
                return meter
        raise KeyError(name)


def target_meters(rule: _Target, energy: EnergyConfig) -> list[MeterConfig]:
    """The meters whose sum is a rule's target."""
    if rule.meter is not None:
        return [m for m in energy.meters if m.name == rule.meter]
    if rule.sub_item is not None:
        if _is_class_code(rule.sub_item):
            return [
                m for m in energy.meters if m.role is MeterRole.MAIN and m.code == rule.sub_item
            ]
        return [
            m
            for m in energy.meters
            if m.role is MeterRole.SUB and sub_item_covers(rule.sub_item, m.code)
        ]
    return [
        m
        for m in energy.meters
        if m.role is MeterRole.MAIN and rule.energy_type in (None, m.energy_type)
    ]


def _names(names: Iterable[str], known: set[str], where: Loc) -> list[tuple[Loc, str]]:
    return [(where, f"no meter is named {name!r}") for name in names if name not in known]


def _meter_problems(energy: EnergyConfig) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    names: dict[str, int] = {}
    points: dict[tuple[str, str], str] = {}
    for index, meter in enumerate(energy.meters):
        if meter.name in names:
            problems.append((("meters", index, "name"), f"meter name {meter.name!r} is used twice"))
        names.setdefault(meter.name, index)
        key = (meter.device, meter.point)
        if key in points:
            problems.append(
                (
                    ("meters", index, "point"),
                    f"{meter.device}.{meter.point} is already meter {points[key]!r}",
                )
            )
        points.setdefault(key, meter.name)
    return problems


def _quota_problems(
    rule: QuotaRule, energy: EnergyConfig, where: Loc, floor_area: float | None, check_area: bool
) -> list[tuple[Loc, str]]:
    meters = target_meters(rule, energy)
    if not meters:
        return []
    problems: list[tuple[Loc, str]] = []
    if rule.unit == "tce":
        missing = sorted(
            {m.energy_type.value for m in meters if energy.factors.coal(m.energy_type) is None}
        )
        problems += [
            ((*where, "unit"), f"a quota in tce needs a factor for {name}") for name in missing
        ]
    else:
        wanted = "kWh" if rule.unit == "kWh/m2a" else rule.unit
        units = {meter.energy_unit for meter in meters}
        if units != {wanted}:
            problems.append(
                (
                    (*where, "unit"),
                    f"the quota is in {rule.unit} but its meters count {', '.join(sorted(units))}",
                )
            )
        if rule.meter is None and rule.sub_item is None and rule.energy_type is None:
            problems.append(
                ((*where, "energy_type"), "a site quota over all energy types is in tce")
            )
    if check_area and rule.unit == "kWh/m2a" and floor_area is None:
        problems.append(((*where, "unit"), "a quota per m2 needs the site's floor_area_m2"))
    return problems


def _problems(
    energy: EnergyConfig, *, floor_area_m2: float | None, check_area: bool
) -> list[tuple[Loc, str]]:
    problems = _meter_problems(energy)
    known = {meter.name for meter in energy.meters}
    for index, rule in enumerate(energy.quotas):
        where: Loc = ("quotas", index)
        problems += _target_problems(rule, energy, known, where)
        problems += _quota_problems(rule, energy, where, floor_area_m2, check_area)
    for index, off in enumerate(energy.off_hours):
        problems += _target_problems(off, energy, known, ("off_hours", index))
        units = {m.energy_unit for m in target_meters(off, energy)}
        if len(units) > 1:
            problems.append(
                (("off_hours", index), f"the rule mixes units: {', '.join(sorted(units))}")
            )
    problems += _names(energy.silent.meters, known, ("silent", "meters"))
    for index, balance in enumerate(energy.balance):
        for field in ("main", "export", "generation", "parts"):
            problems += _names(getattr(balance, field), known, ("balance", index, field))
    return problems


def _target_problems(
    rule: _Target, energy: EnergyConfig, known: set[str], where: Loc
) -> list[tuple[Loc, str]]:
    if rule.meter is not None and rule.meter not in known:
        return [((*where, "meter"), f"no meter is named {rule.meter!r}")]
    if not target_meters(rule, energy):
        if rule.sub_item is not None:
            return [((*where, "sub_item"), f"no meter measures sub-item {rule.sub_item}")]
        return [(where, f"no main meter measures {rule.target.removeprefix('site:')}")]
    return []


def _device_points(device: Mapping[str, Any]) -> dict[str, str | None] | None:
    """Point name -> unit of a raw device entry, whatever its protocol (its profile's points
    included); None when unknowable (the device's own validation reports why)."""
    protocol = device.get("protocol", DEFAULT_PROTOCOL)
    try:
        model = config_model(str(protocol))
        units = model.model_validate(device).point_units()
    except (KeyError, ValidationError):
        return None
    return {name: unit or None for name, unit in units.items()}


def cross_check_energy(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems of the `energy` section against itself and the rest of the site, located.

    For agent.config.model.cross_check: works on the raw mapping, like it. Meters must name
    existing device points; rules must name existing meters with matching units; a quota per
    m² needs the site's floor area. A section with field errors is left to validation.
    """
    section = data.get("energy")
    if not isinstance(section, Mapping):
        return []
    try:
        energy = EnergyConfig.model_validate(section)
    except ValidationError:
        return []  # field errors: SiteConfig validation reports them, located
    problems: list[tuple[Loc, str]] = []
    devices = data.get("devices")
    by_name = {
        str(d.get("name")): d
        for d in (devices if isinstance(devices, list) else [])
        if isinstance(d, Mapping)
    }
    for index, meter in enumerate(energy.meters):
        device = by_name.get(meter.device)
        if device is None:
            hint = did_you_mean(meter.device, list(by_name))
            problems.append(
                (("meters", index, "device"), f"no device is named {meter.device!r}{hint}")
            )
            continue
        points = _device_points(device)
        if points is None:
            continue
        if meter.point not in points:
            hint = did_you_mean(meter.point, sorted(points))
            problems.append(
                (
                    ("meters", index, "point"),
                    f"device {meter.device!r} has no point {meter.point!r}{hint}",
                )
            )
            continue
        unit = points[meter.point]
        if meter.kind is MeterKind.COUNTER and unit and unit != meter.energy_unit:
            problems.append(
                (
                    ("meters", index, "point"),
                    f"{meter.device}.{meter.point} is in {unit}, not {meter.energy_unit}: "
                    "a counter meter needs an energy point (or set the meter's unit)",
                )
            )
    site = data.get("site")
    area = site.get("floor_area_m2") if isinstance(site, Mapping) else None
    problems += _problems(
        energy,
        floor_area_m2=area if isinstance(area, int | float) else None,
        check_area=True,
    )
    return [(("energy", *loc), message) for loc, message in problems]
