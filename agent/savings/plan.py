"""The M&V plan: which meters, which drivers, which thresholds, which prices, which adjustments.

IPMVP asks for an M&V plan written before the reporting period (the measurement boundary, the
baseline period, the independent variables, the adjustments); this file is its machine-readable
part, a YAML file next to the site config (docs/savings.md shows one).

Threshold defaults and their sources:
- CV(RMSE) of the baseline at most 25 %: ASHRAE Guideline 14-2014, whole-building approach
  (section 4.3 / 5.2.11: 20 % with less than 12 months of reporting data, 25 % with 12 to 60);
- |NMBE| at most 0.5 %: G14 asks a net determination bias of 0.005 % of an ordinary
  least-squares baseline, which is unbiased by construction; OpenDSM fits with a robust loss,
  so its bias is small but not zero, and 0.5 % is the tolerance this project uses (configurable);
- R² at least 0.75: a common screening value; G14 sets no R² pass criterion, so it is reported
  and, by default, only warned about (``r2_required``);
- fractional savings uncertainty: G14 compliance asks savings uncertainty below 50 % of the
  reported savings at 68 % confidence; this report prints it at 90 % as IPMVP programmes do.
- data sufficiency: CalTRACK daily methods ask a 365-day baseline with at least 90 % of days
  carrying both meter and temperature data.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from agent.core.configbase import ConfigModel
from agent.energy.config import EnergyType

__all__ = [
    "Adjustment",
    "MvPlan",
    "Tariff",
    "TemperatureSource",
    "Thresholds",
    "TouPeriod",
]


class TemperatureSource(ConfigModel):
    """Where daily mean outdoor temperature comes from: a stored point, or a CSV file."""

    device: str | None = None
    """Device with an outdoor temperature point (the HVAC controller's sensor, a BLE sensor)."""
    point: str | None = None
    """Its point, in °C."""
    csv: Path | None = None
    """A CSV of daily means, columns `date,temperature_c` (relative paths: to the plan file)."""
    min_hours: int = Field(default=20, ge=1, le=24)
    """Hours of a day that need a reading for its mean to count (CalTRACK asks most of a day)."""

    @model_validator(mode="after")
    def _one_source(self) -> TemperatureSource:
        point = self.device is not None and self.point is not None
        if point == (self.csv is not None):
            raise ValueError("give device and point, or csv: exactly one temperature source")
        return self

    @property
    def label(self) -> str:
        return f"{self.device}.{self.point}" if self.csv is None else str(self.csv)


class Thresholds(ConfigModel):
    """Pass criteria of a baseline (module docstring: sources)."""

    cvrmse: float = Field(default=0.25, gt=0)
    """Highest CV(RMSE) of the baseline fit (fraction: 0.25 is 25 %)."""
    nmbe: float = Field(default=0.005, gt=0)
    """Highest |NMBE| of the baseline fit (fraction)."""
    r2: float = Field(default=0.75, ge=0, le=1)
    """Lowest R² (reported; a failure only when r2_required)."""
    r2_required: bool = False
    """Whether an R² below the threshold refuses the baseline (G14 does not require it)."""
    fsu: float = Field(default=0.5, gt=0)
    """Highest fractional savings uncertainty at 68 % confidence, per reporting period."""
    coverage: float = Field(default=0.9, gt=0, le=1)
    """Least share of baseline days with both energy and temperature."""
    month_coverage: float = Field(default=0.5, gt=0, le=1)
    """Least share of each calendar month of the baseline: every season must be seen."""
    max_gap_days: int = Field(default=14, ge=1)
    """Longest run of days without data in the baseline."""
    estimated: float = Field(default=0.1, ge=0, le=1)
    """Highest share of estimated (gap-filled) intervals in the baseline."""
    min_days: int = Field(default=365, ge=30)
    """Shortest baseline period, in days (CalTRACK: 365)."""


class TouPeriod(ConfigModel):
    """One time-of-use period (尖 / 峰 / 平 / 谷) and its price."""

    name: str = Field(min_length=1)
    """peak, flat, valley, sharp (尖峰), ..."""
    price: float = Field(ge=0)
    """Price per unit (kWh) in the plan's currency."""
    hours: list[tuple[time, time]] = Field(default_factory=list)
    """Local clock ranges [from, until) of the period, e.g. [["08:00", "11:00"]]; 00:00 as
    `until` means midnight."""
    meter: str | None = None
    """A meter (in the energy section) that counts this period's energy: a tariff register."""


class Tariff(ConfigModel):
    """The price of one energy type: flat, or by time of use."""

    price: float | None = Field(default=None, ge=0)
    """Flat price per unit (kWh, m3)."""
    time_of_use: list[TouPeriod] = Field(default_factory=list)
    """Time-of-use periods; the avoided energy is priced at the reporting period's
    consumption-weighted mix of them (from tariff registers, else from the intervals by hour)."""
    source: str = ""
    """Where the prices come from (the utility's tariff notice and its date)."""

    @model_validator(mode="after")
    def _one_kind(self) -> Tariff:
        if (self.price is None) == (not self.time_of_use):
            raise ValueError("give a flat price or time_of_use periods, exactly one")
        registers = [p.meter for p in self.time_of_use if p.meter]
        if registers and len(registers) != len(self.time_of_use):
            raise ValueError("give every time-of-use period its register meter, or none")
        return self


class Adjustment(ConfigModel):
    """A non-routine adjustment of the baseline (IPMVP): a change the baseline model cannot know
    of, such as a floor-area change or a new load, applied from a date with a reason."""

    meter: str | None = None
    """The meter adjusted; empty: every meter of the plan."""
    start: date
    """First day it applies to."""
    end: date | None = None
    """Last day it applies to (empty: to the end of the report)."""
    add_per_day: float = 0.0
    """Energy added to the adjusted baseline per day (a new load: positive)."""
    factor: float = Field(default=1.0, gt=0)
    """Factor on the adjusted baseline (a floor area grown by 10 %: 1.1)."""
    reason: str = Field(min_length=3)
    """Why, for the report: e.g. "new server room, 40 kW from 2026-03-01"."""

    @model_validator(mode="after")
    def _does_something(self) -> Adjustment:
        if self.add_per_day == 0.0 and self.factor == 1.0:
            raise ValueError("an adjustment needs add_per_day or factor")
        if self.end is not None and self.end < self.start:
            raise ValueError("end is before start")
        return self

    def applies(self, meter: str, day: date) -> bool:
        return (self.meter in (None, meter)) and self.start <= day <= (self.end or date.max)


class MvPlan(ConfigModel):
    """The savings report's settings."""

    meters: list[str] = Field(default_factory=list)
    """Meters (energy section names) to baseline; empty: every main meter."""
    temperature: TemperatureSource
    """The outdoor temperature driver."""
    model: Literal["daily", "legacy"] = "daily"
    """OpenDSM daily model: daily (current, splits working and closed days) or legacy
    (CalTRACK 2.0 HDD/CDD, one model for all days)."""
    thresholds: Thresholds = Thresholds()
    """Pass criteria of the baselines and the data."""
    currency: str = "CNY"
    """Currency of the tariffs."""
    tariffs: dict[EnergyType, Tariff] = Field(default_factory=dict)
    """Price per energy type."""
    adjustments: list[Adjustment] = Field(default_factory=list)
    """Non-routine adjustments, each with a reason."""
