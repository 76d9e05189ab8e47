"""The baseline model: OpenDSM's CalTRACK daily model, fed the China calendar's day types.

The only module of the agent that imports OpenDSM (and pandas, numpy): they come with the
optional `savings` extra and are imported when a report is made, never by the service.

OpenDSM (LF Energy, successor of OpenEEmeter's `eemeter`; Apache-2.0) implements the CalTRACK
methods. Its daily model ("current", the OpenEEmeter 4 daily model) fits, per split of the year
into seasons and of the week into weekday and weekend, a change-point model of daily energy on
daily mean temperature: intercept, heating and cooling slopes, and their balance points fitted
(HDD and CDD with fitted balance points, optionally smoothed), and picks the splits by a
penalised criterion. `legacy` is the CalTRACK 2.0 daily method (one HDD/CDD model, grid-searched
balance points, no day split).

The week split is what carries working days against closed days; a Chinese public building's
closed days are not Saturdays and Sundays but the State Council's calendar (holidays, and
weekend days worked in exchange, 调休). OpenDSM marks a day by its weekday number in
`_initialize_data`; the subclass below replaces that mark with the calendar's day type (a
working day as Monday, a closed day as Sunday), so the model's weekday/weekend split becomes
working/closed day, for fitting and prediction alike, and nothing else of the method changes.
OpenDSM works in °F: temperatures are converted in, balance points back out.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from agent.core.errors import AgentError

__all__ = ["BaselineFit", "fit_baseline", "opendsm_version"]

_WORKING_MARK = 1  # Monday in OpenDSM's day numbering (1 = Monday ... 7 = Sunday)
_CLOSED_MARK = 7  # Sunday
_INSTALL = (
    "the savings report needs the optional `savings` extra (OpenDSM): "
    "pip install 'building-edge-agent[savings]' (docs/savings.md: about 1.2 GB; "
    "run it on a laptop from a copy of the data directory if the gateway cannot hold it)"
)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise AgentError(f"{_INSTALL} ({exc})") from None


def opendsm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("opendsm")
    except PackageNotFoundError:
        return "not installed"


def _f(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def _c(fahrenheit: float) -> float:
    return (fahrenheit - 32) * 5 / 9


@dataclass
class BaselineFit:
    """A fitted baseline of one meter, and how to predict with it."""

    meter: str
    method: str
    days: list[date]
    observed: list[float]
    predicted: list[float]
    parameters: int
    splits: list[str]  # one line per fitted split: model type, balance points, slopes
    problems: list[str] = field(default_factory=list)  # OpenDSM's own disqualifications
    notes: list[str] = field(default_factory=list)  # OpenDSM's warnings
    _model: Any = None
    _tz: str = "UTC"
    _electricity: bool = True

    def predict(
        self, days: Sequence[date], temperature: Mapping[date, float], working: Mapping[date, bool]
    ) -> dict[date, float]:
        """Adjusted-baseline energy per day (days without temperature are left out)."""
        pd = _import("pandas")
        daily = _import("opendsm.eemeter.models.daily")
        with_temp = [d for d in days if d in temperature]
        if not with_temp:
            return {}
        if hasattr(self._model, "working"):  # the calendar model: tell it the new days' types
            self._model.working.update(working)
        index = pd.DatetimeIndex([pd.Timestamp(d) for d in with_temp]).tz_localize(self._tz)
        temps = pd.Series([_f(temperature[d]) for d in with_temp], index=index)
        meter = pd.Series([math.nan] * len(with_temp), index=index)
        data = daily.DailyReportingData.from_series(
            meter, temps, is_electricity_data=self._electricity
        )
        frame = self._model.predict(data, ignore_disqualification=True)
        out: dict[date, float] = {}
        for stamp, value in frame["predicted"].items():
            if not math.isnan(value):
                out[stamp.date()] = float(value)
        return out


def _describe(params: Any) -> list[str]:
    lines: list[str] = []
    for key, sub in params.submodels.items():
        c = sub.coefficients
        days, _, seasons = key.partition("-")
        label = {"fw": "all days", "wd": "working days", "we": "closed days"}.get(days, days)
        parts = [f"{label}, {seasons.replace('_', '+')}: {c.model_type.value}"]
        parts.append(f"base {c.intercept:.1f}/day")
        if c.hdd_bp is not None and c.hdd_beta:
            parts.append(f"heating below {_c(c.hdd_bp):.1f} °C, {c.hdd_beta * 9 / 5:.2f}/K·day")
        if c.cdd_bp is not None and c.cdd_beta:
            parts.append(f"cooling above {_c(c.cdd_bp):.1f} °C, {c.cdd_beta * 9 / 5:.2f}/K·day")
        lines.append("; ".join(parts))
    return lines


def _calendar_model(daily: Any) -> Any:
    """OpenDSM's DailyModel with the calendar's day types in place of weekday numbers."""

    class CalendarDailyModel(daily.DailyModel):  # type: ignore[misc]
        working: dict[date, bool]

        def _initialize_data(self, meter_data: Any) -> Any:
            frame, dropped = super()._initialize_data(meter_data)
            marks = [
                _WORKING_MARK if self.working.get(stamp.date(), True) else _CLOSED_MARK
                for stamp in frame.index
            ]
            frame["day_of_week"] = marks
            return frame, dropped

    return CalendarDailyModel


def fit_baseline(
    meter: str,
    energy: Mapping[date, float],
    temperature: Mapping[date, float],
    working: Mapping[date, bool],
    *,
    tz: str,
    electricity: bool,
    method: str = "daily",
) -> BaselineFit:
    """Fit the baseline of one meter on the days of `energy` (the baseline period's days with
    complete data); days without a temperature are left out by the method."""
    pd = _import("pandas")
    daily = _import("opendsm.eemeter.models.daily")
    # OpenDSM reports through the "eemeter" logger; its notes go into the report instead.
    logging.getLogger("eemeter").setLevel(logging.ERROR)
    days = sorted(energy)
    index = pd.DatetimeIndex([pd.Timestamp(d) for d in days]).tz_localize(tz)
    observed = pd.Series([energy[d] for d in days], index=index)
    first, last = days[0], days[-1]
    temp_days = [d for d in sorted(temperature) if first <= d <= last]
    temp_index = pd.DatetimeIndex([pd.Timestamp(d) for d in temp_days]).tz_localize(tz)
    temps = pd.Series([_f(temperature[d]) for d in temp_days], index=temp_index)
    full = pd.date_range(index[0], index[-1], freq="D")
    data = daily.DailyBaselineData.from_series(
        observed.reindex(full), temps.reindex(full), is_electricity_data=electricity
    )
    if method == "legacy":
        model = daily.DailyModel(model="legacy")
        name = f"OpenDSM {opendsm_version()} DailyModel legacy (CalTRACK 2.0 daily, HDD/CDD)"
    else:
        model = _calendar_model(daily)()
        model.working = dict(working)
        name = (
            f"OpenDSM {opendsm_version()} DailyModel (CalTRACK daily, OpenEEmeter 4), "
            "split by working/closed day from the China calendar"
        )
    model.fit(data, ignore_disqualification=True)
    frame = model.predict(data, ignore_disqualification=True)
    fitted_days: list[date] = []
    obs: list[float] = []
    pred: list[float] = []
    for stamp, row in frame.iterrows():
        o, p = row["observed"], row["predicted"]
        if not (math.isnan(o) or math.isnan(p)):
            fitted_days.append(stamp.date())
            obs.append(float(o))
            pred.append(float(p))
    fit = BaselineFit(
        meter=meter,
        method=name,
        days=fitted_days,
        observed=obs,
        predicted=pred,
        parameters=int(model.baseline_metrics.num_model_params),
        splits=_describe(model.params),
        problems=[w.description for w in model.disqualification],
        notes=sorted({w.description for w in model.warnings}),
        _model=model,
        _tz=tz,
        _electricity=electricity,
    )
    return fit
