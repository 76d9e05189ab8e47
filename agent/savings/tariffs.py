"""The price of avoided energy: a flat price, or the time-of-use mix (尖峰平谷) of the period.

Avoided energy is what the building did not draw, so it has no hours of its own; it is priced
at the consumption-weighted mean price of the reporting period, i.e. as if the savings were
spread over the hours like the consumption. The mix comes from the meter's tariff registers
(one register meter per period, as DL/T 645 meters count them) when the plan names them, else
from the meter's stored base intervals by local time of day. The report says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.errors import AgentError
from agent.savings.plan import Tariff, TouPeriod

__all__ = ["period_at", "price_of"]


def _inside(at: time, span: tuple[time, time]) -> bool:
    start, until = span
    if until == time(0, 0):  # midnight as the end of the day
        return at >= start
    if until <= start:  # a range across midnight, e.g. 23:00-07:00
        return at >= start or at < until
    return start <= at < until


def period_at(periods: Iterable[TouPeriod], at: time) -> TouPeriod | None:
    for period in periods:
        if any(_inside(at, span) for span in period.hours):
            return period
    return None


def price_of(
    tariff: Tariff,
    *,
    currency: str,
    unit: str,
    intervals: Iterable[Mapping[str, Any]] = (),
    registers: Mapping[str, float] | None = None,
    zone: ZoneInfo,
) -> tuple[float, str]:
    """(price per unit, how it was found) for one reporting period.

    `intervals`: the meter's base intervals in the period (for the mix by time of day);
    `registers`: energy per time-of-use period name from the register meters, if any.
    """
    if tariff.price is not None:
        return tariff.price, f"flat {tariff.price:g} {currency}/{unit}"
    energy: dict[str, float] = dict.fromkeys((p.name for p in tariff.time_of_use), 0.0)
    if registers is not None:
        for name in energy:
            energy[name] = registers.get(name, 0.0)
        how = "tariff registers"
    else:
        for row in intervals:
            at = datetime.fromtimestamp(row["start_ms"] / 1000, zone).time()
            period = period_at(tariff.time_of_use, at)
            if period is None:
                raise AgentError(
                    f"the time-of-use tariff has no period at {at:%H:%M}: its periods' hours "
                    "must cover the whole day"
                )
            energy[period.name] += float(row["value"])
        how = "intervals by time of day"
    total = sum(energy.values())
    if total <= 0:
        mean = sum(p.price for p in tariff.time_of_use) / len(tariff.time_of_use)
        return mean, f"time-of-use, no consumption to weigh: plain mean {mean:.4f} {currency}"
    price = sum(energy[p.name] * p.price for p in tariff.time_of_use) / total
    mix = ", ".join(f"{p.name} {100 * energy[p.name] / total:.0f} %" for p in tariff.time_of_use)
    return price, f"time-of-use mix ({how}): {mix}; {price:.4f} {currency}/{unit}"
