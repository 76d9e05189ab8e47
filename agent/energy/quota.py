"""Quota rules, evaluated incrementally: thresholds, and a projection of the period's total.

A rule sums its target's base intervals over the current period (day, month or year in site
time). Each threshold (80 %, 100 % ...) raises an alert once, when the sum reaches it. Before the
limit is reached, the rule projects the end-of-period total as the consumption so far plus the
usual profile for the rest of the period, and warns as soon as the projection exceeds the limit
(超限额预警 before the fact, not after).

The usual profile is the mean consumption of each base slot of the day (e.g. 10:15-10:30) over
the last `profile_days` days, kept apart for working days and closed days (weekends and the
configured holidays; make-up workdays count as working days), and includes the current period so
far: an office's Monday morning predicts the coming Monday mornings, its Sunday the Sundays.

Threshold alerts clear when the next period begins. A projection warning clears when the
projection falls `hysteresis` percent below the limit, or when the period ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.record import ms_to_iso
from agent.energy.alerts import AlertBook
from agent.energy.config import CalendarConfig, EnergyConfig, QuotaRule, target_meters
from agent.energy.intervals import Interval
from agent.energy.periods import Size, bucket_start, local, next_start

__all__ = ["QuotaMonitor", "QuotaStatus", "period_limit"]


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """Where a quota rule stands in one period."""

    rule: str
    target: str
    period: str
    start_ms: int
    end_ms: int
    value: float
    limit: float
    unit: str
    projected: float | None
    level: str | None

    @property
    def percent(self) -> float:
        return 100.0 * self.value / self.limit

    def to_record(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "target": self.target,
            "period": self.period,
            "start": ms_to_iso(self.start_ms),
            "end": ms_to_iso(self.end_ms),
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "percent": self.percent,
            "projected": self.projected,
            "level": self.level,
        }


def period_limit(
    rule: QuotaRule, start_ms: int, end_ms: int, *, tz: ZoneInfo, area: float | None
) -> float:
    """The limit of one period in the rule's unit (an intensity becomes kWh for the floor area).

    GB/T 51161 intensities are per year; a month or day takes its share of the year by length.
    """
    if rule.unit != "kWh/m2a":
        return rule.limit
    if area is None:
        raise ValueError(f"quota {rule.name} is per m2 but the site has no floor_area_m2")
    annual = rule.limit * area
    if rule.period == "year":
        return annual
    year_start = bucket_start(start_ms, Size.YEAR, tz)
    year_ms = next_start(year_start, Size.YEAR, tz) - year_start
    return annual * (end_ms - start_ms) / year_ms


class _Profile:
    """Mean consumption per slot of the day, for working days and closed days apart."""

    def __init__(self, *, minutes: int, tz: ZoneInfo, calendar: CalendarConfig, days: int) -> None:
        self._minutes = minutes
        self._tz = tz
        self._calendar = calendar
        self._keep = days
        self._n = 1440 // minutes
        self._days: dict[date, dict[int, float]] = {}
        self._sums = {True: [0.0] * self._n, False: [0.0] * self._n}
        self._counts = {True: [0] * self._n, False: [0] * self._n}

    def _slot(self, ts_ms: int) -> tuple[date, int]:
        dt = local(ts_ms, self._tz)
        return dt.date(), min((dt.hour * 60 + dt.minute) // self._minutes, self._n - 1)

    def add(self, start_ms: int, value: float) -> None:
        day, slot = self._slot(start_ms)
        newest = max(self._days, default=day)
        if day <= newest - timedelta(days=self._keep):
            return
        workday = self._calendar.is_workday(day)
        slots = self._days.setdefault(day, {})
        if slot not in slots:
            slots[slot] = 0.0
            self._counts[workday][slot] += 1
        slots[slot] += value
        self._sums[workday][slot] += value
        for old in [d for d in self._days if d <= max(newest, day) - timedelta(days=self._keep)]:
            old_workday = self._calendar.is_workday(old)
            for old_slot, old_value in self._days.pop(old).items():
                self._sums[old_workday][old_slot] -= old_value
                self._counts[old_workday][old_slot] -= 1

    def _means(self) -> dict[bool, list[float]] | None:
        known = [
            self._sums[w][s] / self._counts[w][s]
            for w in (True, False)
            for s in range(self._n)
            if self._counts[w][s]
        ]
        if not known:
            return None
        overall = sum(known) / len(known)
        means: dict[bool, list[float]] = {}
        for workday in (True, False):
            row = []
            for slot in range(self._n):
                if self._counts[workday][slot]:
                    row.append(self._sums[workday][slot] / self._counts[workday][slot])
                elif self._counts[not workday][slot]:
                    other = not workday
                    row.append(self._sums[other][slot] / self._counts[other][slot])
                else:
                    row.append(overall)
            means[workday] = row
        return means

    def expected(self, from_ms: int, to_ms: int) -> float | None:
        """Usual consumption from `from_ms` to `to_ms` (a local midnight)."""
        if to_ms <= from_ms:
            return 0.0
        means = self._means()
        if means is None:
            return None
        totals = {w: sum(row) for w, row in means.items()}
        first_day, first_slot = self._slot(from_ms)
        last_day = local(to_ms - 1, self._tz).date()
        rest = sum(means[self._calendar.is_workday(first_day)][first_slot:])
        day = first_day + timedelta(days=1)
        while day <= last_day:
            rest += totals[self._calendar.is_workday(day)]
            day += timedelta(days=1)
        return rest


class _RuleState:
    def __init__(self, rule: QuotaRule, energy: EnergyConfig, tz: ZoneInfo) -> None:
        self.rule = rule
        self.size = Size(rule.period)
        self.weights: dict[str, float] = {}
        for meter in target_meters(rule, energy):
            weight = 1.0
            if rule.unit == "tce":
                factor = energy.factors.coal(meter.energy_type)
                assert factor is not None  # checked by EnergyConfig
                weight = factor.value / 1000
            self.weights[meter.name] = weight
        self.unit = "kWh" if rule.unit == "kWh/m2a" else rule.unit
        self.start: int | None = None
        self.end: int | None = None
        self.total = 0.0
        self.latest: dict[str, int] = {}
        self.projected: float | None = None
        self.profile = _Profile(
            minutes=energy.interval_minutes,
            tz=tz,
            calendar=energy.calendar,
            days=rule.profile_days,
        )


class QuotaMonitor:
    """Feeds base intervals to every quota rule and raises and clears their alerts.

    `add()` takes intervals as they complete (thresholds are checked at once); `evaluate(now)`
    rolls periods over and updates projections. Past periods are kept in `history`.
    """

    def __init__(
        self,
        energy: EnergyConfig,
        *,
        tz: str | ZoneInfo,
        alerts: AlertBook,
        floor_area_m2: float | None = None,
    ) -> None:
        self._tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._alerts = alerts
        self._area = floor_area_m2
        self._states = [_RuleState(rule, energy, self._tz) for rule in energy.quotas]
        self.history: list[QuotaStatus] = []
        """Status of every period that has ended, oldest first."""

    def add(self, intervals: Iterable[Interval]) -> None:
        for interval in sorted(intervals, key=lambda i: i.start_ms):
            for state in self._states:
                weight = state.weights.get(interval.meter)
                if weight is None:
                    continue
                value = interval.value * weight
                state.profile.add(interval.start_ms, value)
                if state.start is None or interval.start_ms >= (state.end or 0):
                    self._roll(state, interval.start_ms)
                assert state.start is not None
                if interval.start_ms < state.start:
                    continue  # a late interval of a closed period: only the profile learns it
                state.total += value
                state.latest[interval.meter] = max(
                    state.latest.get(interval.meter, 0), interval.end_ms
                )
                self._thresholds(state, interval.end_ms)

    def evaluate(self, now_ms: int) -> None:
        """Roll periods over at `now_ms` and update projections from the data so far."""
        for state in self._states:
            if state.start is not None and state.end is not None and now_ms >= state.end:
                self._roll(state, now_ms)
            self._project(state, now_ms)

    def status(self) -> list[QuotaStatus]:
        """The current period of every rule that has seen data."""
        return [self._status(state) for state in self._states if state.start is not None]

    # ---- internals -----------------------------------------------------------------------

    def _status(self, state: _RuleState) -> QuotaStatus:
        assert state.start is not None
        assert state.end is not None
        return QuotaStatus(
            rule=state.rule.name,
            target=state.rule.target,
            period=state.rule.period,
            start_ms=state.start,
            end_ms=state.end,
            value=state.total,
            limit=self._limit(state),
            unit=state.unit,
            projected=state.projected,
            level=state.rule.level,
        )

    def _limit(self, state: _RuleState) -> float:
        assert state.start is not None
        assert state.end is not None
        return period_limit(state.rule, state.start, state.end, tz=self._tz, area=self._area)

    def _roll(self, state: _RuleState, ts_ms: int) -> None:
        if state.start is not None and state.end is not None:
            self.history.append(self._status(state))
            self._alerts.clear_prefix(
                f"quota:{state.rule.name}:",
                ts_ms=state.end,
                reason=f"the {state.rule.period} ended",
            )
        state.start = bucket_start(ts_ms, state.size, self._tz)
        state.end = next_start(state.start, state.size, self._tz)
        state.total = 0.0
        state.latest = {}
        state.projected = None

    def _details(self, state: _RuleState) -> dict[str, Any]:
        assert state.start is not None
        assert state.end is not None
        return {
            "rule": state.rule.name,
            "target": state.rule.target,
            "period_start": ms_to_iso(state.start),
            "period_end": ms_to_iso(state.end),
            "value": state.total,
            "limit": self._limit(state),
            "unit": state.unit,
            "level": state.rule.level,
        }

    def _thresholds(self, state: _RuleState, ts_ms: int) -> None:
        limit = self._limit(state)
        for threshold in state.rule.thresholds:
            key = f"quota:{state.rule.name}:{threshold:g}"
            if state.total >= limit * threshold / 100 and not self._alerts.is_raised(key):
                self._alerts.raise_alert(
                    key,
                    ts_ms=ts_ms,
                    kind="quota_threshold",
                    message=(
                        f"{_describe(state.rule.target)} reached {threshold:g} % of its "
                        f"{_ADJECTIVE[state.rule.period]} quota: {state.total:.1f} of {limit:.1f} "
                        f"{state.unit}"
                    ),
                    threshold_percent=threshold,
                    **self._details(state),
                )

    def _project(self, state: _RuleState, now_ms: int) -> None:
        rule = state.rule
        if not rule.project or state.start is None or state.end is None or not state.latest:
            return
        # Project from where every meter of the target has reported, not from the clock.
        covered = min(state.latest.values())
        if covered <= state.start:
            return
        elapsed = (covered - state.start) / (state.end - state.start)
        rest = state.profile.expected(covered, state.end)
        if rest is None:
            return
        state.projected = state.total + rest
        limit = self._limit(state)
        key = f"quota:{rule.name}:projected"
        if self._alerts.is_raised(key):
            if state.projected < limit * (1 - rule.hysteresis / 100) and state.total < limit:
                self._alerts.clear_alert(
                    key,
                    ts_ms=covered,
                    reason="the projection fell back under the quota",
                    projected=state.projected,
                )
            return
        if elapsed >= rule.project_after and state.projected > limit and state.total < limit:
            self._alerts.raise_alert(
                key,
                ts_ms=covered,
                kind="quota_projected",
                message=(
                    f"{_describe(rule.target)} is on course to exceed its "
                    f"{_ADJECTIVE[rule.period]} quota: {state.projected:.1f} {state.unit} "
                    f"projected against {limit:.1f}"
                ),
                projected=state.projected,
                **self._details(state),
            )


_ADJECTIVE = {"day": "daily", "month": "monthly", "year": "yearly"}


def _describe(target: str) -> str:
    kind, _, name = target.partition(":")
    if kind == "meter":
        return f"Meter {name}"
    if kind == "sub_item":
        return f"Sub-item {name}"
    return "The site" if name == "all" else f"The site's {name}"
