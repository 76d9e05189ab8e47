"""A year (or more) of the simulated office's daily energy, with a retrofit switch.

The per-second physics of `hil.building` is right for live demos but far too slow to replay
years; M&V needs days. This model keeps the same building (Jingzhou, hot-summer cold-winter
zone, the monthly mean temperatures of `hil.building`) at a daily step:

- weather: the daily mean outdoor temperature follows the monthly means (interpolated between
  mid-month anchors) plus an AR(1) anomaly (persistence 0.7, spread 2 °C), which gives the
  spells of warm and cold days real weather has; the hourly temperature swings ±4 °C around it;
- HVAC (sub-item 01B00): cooling above 22 °C and heating below 12 °C in proportion to degree
  days, full on working days and a standby share on closed days, plus fans, pumps and controls
  that run whatever the weather;
- lighting and sockets (01A00) and other loads (01C00) by day type;
- every load with a few per cent of day-to-day noise (occupancy, weather beyond temperature).

`Retrofit` switches a measure on from a date: a chiller and heat-pump efficiency gain (a share
of HVAC energy removed) and/or a lighting retrofit (a share of lighting energy removed), so a
test knows exactly what a savings report should find. Working days come from the caller (the
agent's China calendar, with holidays and make-up workdays).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from hil.building import DAILY_SWING_C, MONTHLY_MEAN_C, OFFICE_CLOSE_HOUR, OFFICE_OPEN_HOUR

__all__ = [
    "Retrofit",
    "SimDay",
    "daily_temperatures",
    "hourly_shares",
    "hourly_temperature",
    "simulate_days",
]

COOLING_BASE_C = 22.0
HEATING_BASE_C = 12.0
COOLING_KWH_PER_K = 170.0  # per degree-day on a working day
HEATING_KWH_PER_K = 120.0
CLOSED_HVAC_SHARE = 0.12  # standby, server room, duty staff
HVAC_BASE_KWH = {True: 160.0, False: 25.0}  # fans, pumps and controls whatever the weather
LIGHTING_KWH = {True: 1800.0, False: 420.0}  # working day, closed day
OTHER_KWH = {True: 950.0, False: 620.0}
NOISE = 0.035  # relative day-to-day spread of each load
AR_PERSISTENCE = 0.7
AR_SPREAD_C = 2.0


@dataclass(frozen=True, slots=True)
class Retrofit:
    """An energy conservation measure switched on from `start`."""

    start: date
    hvac_saving: float = 0.0  # share of HVAC energy removed (a better chiller: 0.12)
    lighting_saving: float = 0.0  # share of lighting energy removed (LED retrofit)

    def active(self, day: date) -> bool:
        return day >= self.start


@dataclass(frozen=True, slots=True)
class SimDay:
    day: date
    mean_c: float
    working: bool
    hvac_kwh: float
    lighting_kwh: float
    other_kwh: float
    saved_kwh: float  # what the retrofit removed this day (0 before it)

    @property
    def total_kwh(self) -> float:
        return self.hvac_kwh + self.lighting_kwh + self.other_kwh


def _monthly_mean(day: date) -> float:
    """Monthly means as mid-month anchors, linearly interpolated between them."""
    position = day.timetuple().tm_yday / (366 if day.year % 4 == 0 else 365) * 12 - 0.5
    low = math.floor(position)
    share = position - low
    a = MONTHLY_MEAN_C[low % 12]
    b = MONTHLY_MEAN_C[(low + 1) % 12]
    return a + (b - a) * share


def daily_temperatures(first: date, days: int, *, seed: int) -> list[float]:
    rng = random.Random(seed)
    anomaly = 0.0
    spread = AR_SPREAD_C * math.sqrt(1 - AR_PERSISTENCE**2)
    out: list[float] = []
    for n in range(days):
        anomaly = AR_PERSISTENCE * anomaly + rng.gauss(0.0, spread)
        out.append(_monthly_mean(first + timedelta(days=n)) + anomaly)
    return out


def simulate_days(
    first: date,
    days: int,
    *,
    working: Callable[[date], bool],
    retrofit: Retrofit | None = None,
    seed: int = 1,
) -> list[SimDay]:
    """`days` days of the office from `first`; the same seed gives the same weather and noise
    with or without a retrofit, so a control run differs only by the measure."""
    temperatures = daily_temperatures(first, days, seed=seed)
    rng = random.Random(seed + 1)
    out: list[SimDay] = []
    for n, mean_c in enumerate(temperatures):
        day = first + timedelta(days=n)
        open_day = working(day)
        hvac = COOLING_KWH_PER_K * max(mean_c - COOLING_BASE_C, 0.0) + HEATING_KWH_PER_K * max(
            HEATING_BASE_C - mean_c, 0.0
        )
        hvac = hvac * (1.0 if open_day else CLOSED_HVAC_SHARE) + HVAC_BASE_KWH[open_day]
        hvac *= 1 + rng.gauss(0.0, NOISE)
        lighting = LIGHTING_KWH[open_day] * (1 + rng.gauss(0.0, NOISE))
        other = OTHER_KWH[open_day] * (1 + rng.gauss(0.0, NOISE))
        saved = 0.0
        if retrofit is not None and retrofit.active(day):
            saved = hvac * retrofit.hvac_saving + lighting * retrofit.lighting_saving
            hvac *= 1 - retrofit.hvac_saving
            lighting *= 1 - retrofit.lighting_saving
        out.append(SimDay(day, mean_c, open_day, hvac, lighting, other, saved))
    return out


def hourly_shares(working: bool) -> list[float]:
    """How a day's energy spreads over its 24 hours: mostly office hours on a working day."""
    if not working:
        return [1 / 24] * 24
    office = range(OFFICE_OPEN_HOUR, OFFICE_CLOSE_HOUR)
    weights = [4.0 if hour in office else 1.0 for hour in range(24)]
    total = sum(weights)
    return [w / total for w in weights]


def hourly_temperature(mean_c: float, hour: int) -> float:
    """A sine around the daily mean, coldest near dawn, warmest mid-afternoon."""
    return mean_c + DAILY_SWING_C * math.sin((hour - 8) / 24 * 2 * math.pi)
