"""The other alert rules: consumption while closed, silent meters, and the main-meter balance.

Each watch is fed completed base intervals (`add`) and evaluated (`evaluate`); it judges a
period only once every meter of its rule has reported past it, so a meter that lags does not
count as zero consumption.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

from agent.core.record import ms_to_iso
from agent.energy.alerts import AlertBook
from agent.energy.config import EnergyConfig, OffHoursRule, target_meters
from agent.energy.intervals import Interval
from agent.energy.periods import Size, bucket_start, local, next_start
from agent.energy.quality import BalanceResult, check_balance

__all__ = ["BalanceWatch", "OffHoursWatch", "SilenceWatch"]

_MS_PER_HOUR = 3_600_000


class _OffHoursState:
    def __init__(self, rule: OffHoursRule, energy: EnergyConfig) -> None:
        self.rule = rule
        meters = target_meters(rule, energy)
        self.meters = {m.name for m in meters}
        self.unit = meters[0].energy_unit if meters else ""
        self.slots: dict[int, float] = defaultdict(float)
        self.latest: dict[str, int] = {}
        self.run_ms = 0  # how long consumption has stayed above the baseline while closed


class OffHoursWatch:
    """Raises when consumption stays above the baseline outside opening hours for `sustained`.

    Clears when a closed interval is back at or under the baseline, or when the building opens.
    """

    def __init__(self, energy: EnergyConfig, *, tz: str | ZoneInfo, alerts: AlertBook) -> None:
        self._energy = energy
        self._tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._alerts = alerts
        self._states = [_OffHoursState(rule, energy) for rule in energy.off_hours]

    def add(self, intervals: Iterable[Interval]) -> None:
        for interval in intervals:
            for state in self._states:
                if interval.meter in state.meters:
                    state.slots[interval.start_ms] += interval.value
                    state.latest[interval.meter] = max(
                        state.latest.get(interval.meter, 0), interval.end_ms
                    )

    def is_open(self, rule: OffHoursRule, start_ms: int) -> bool:
        dt = local(start_ms, self._tz)
        workday = self._energy.calendar.is_workday(dt.date(), rule.open_days)
        return workday and rule.open_from <= dt.time() < rule.open_until

    def evaluate(self) -> None:
        base_ms = self._energy.interval_minutes * 60_000
        for state in self._states:
            if not state.latest:
                continue
            # Judge a slot once every meter that reports has passed it (a dead meter is the
            # silent-meter rule's business, and must not stop this one).
            covered = min(state.latest.values())
            for start in sorted(s for s in state.slots if s + base_ms <= covered):
                self._judge(state, start, state.slots.pop(start), base_ms)

    def _judge(self, state: _OffHoursState, start: int, value: float, base_ms: int) -> None:
        rule = state.rule
        key = f"off_hours:{rule.name}"
        end = start + base_ms
        if self.is_open(rule, start):
            state.run_ms = 0
            self._alerts.clear_alert(key, ts_ms=start, reason="opening hours began")
            return
        rate = value / (base_ms / _MS_PER_HOUR)
        if rate <= rule.baseline:
            state.run_ms = 0
            self._alerts.clear_alert(
                key, ts_ms=end, reason="consumption is back under the baseline", rate=rate
            )
            return
        state.run_ms += base_ms
        if state.run_ms >= rule.sustained * 1000:
            self._alerts.raise_alert(
                key,
                ts_ms=end,
                kind="off_hours",
                message=(
                    f"{rule.target} uses {rate:.2f} {state.unit}/h outside opening hours, "
                    f"above its baseline of {rule.baseline:g} {state.unit}/h"
                ),
                rule=rule.name,
                target=rule.target,
                rate=rate,
                baseline=rule.baseline,
                unit=f"{state.unit}/h",
                since=ms_to_iso(end - state.run_ms),
            )


class SilenceWatch:
    """Raises for a meter without a good reading for `intervals` base intervals."""

    def __init__(self, energy: EnergyConfig, *, alerts: AlertBook) -> None:
        self._alerts = alerts
        self._after_ms = energy.silent.intervals * energy.interval_minutes * 60_000
        self._meters = list(energy.silent.meters or (m.name for m in energy.meters))
        self._since: dict[str, int] = {}

    def evaluate(self, now_ms: int, last_seen: Mapping[str, int]) -> None:
        """`last_seen`: each meter's latest good reading (IntervalBuilder.last_seen)."""
        for name in self._meters:
            seen = last_seen.get(name)
            reference = seen if seen is not None else self._since.setdefault(name, now_ms)
            key = f"silent:{name}"
            if now_ms - reference >= self._after_ms:
                minutes = (now_ms - reference) // 60_000
                self._alerts.raise_alert(
                    key,
                    ts_ms=now_ms,
                    kind="silent_meter",
                    message=f"Meter {name} has sent no usable reading for {minutes} minutes",
                    meter=name,
                    last_seen=ms_to_iso(seen) if seen is not None else None,
                )
            else:
                self._alerts.clear_alert(key, ts_ms=now_ms, reason="readings resumed")


class BalanceWatch:
    """Checks each balance rule once per completed period; raises while it fails."""

    def __init__(self, energy: EnergyConfig, *, tz: str | ZoneInfo, alerts: AlertBook) -> None:
        self._energy = energy
        self._tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._alerts = alerts
        self._totals: dict[str, dict[int, dict[str, float]]] = {}
        self._counts: dict[str, dict[int, dict[str, int]]] = {}
        self._latest: dict[str, int] = {}
        self.results: list[BalanceResult] = []
        """Every check made, oldest first."""

    def add(self, intervals: Iterable[Interval]) -> None:
        for interval in intervals:
            self._latest[interval.meter] = max(self._latest.get(interval.meter, 0), interval.end_ms)
            for rule in self._energy.balance:
                if interval.meter not in {*rule.main, *rule.export, *rule.generation, *rule.parts}:
                    continue
                start = bucket_start(interval.start_ms, Size(rule.period), self._tz)
                totals = self._totals.setdefault(rule.name, {})
                counts = self._counts.setdefault(rule.name, {})
                totals.setdefault(start, defaultdict(float))[interval.meter] += interval.value
                counts.setdefault(start, defaultdict(int))[interval.meter] += 1

    def evaluate(self) -> None:
        base_ms = self._energy.interval_minutes * 60_000
        for rule in self._energy.balance:
            names = {*rule.main, *rule.export, *rule.generation, *rule.parts}
            if any(name not in self._latest for name in names):
                continue
            covered = min(self._latest[name] for name in names)
            totals = self._totals.get(rule.name, {})
            counts = self._counts.get(rule.name, {})
            for start in sorted(totals):
                end = next_start(start, Size(rule.period), self._tz)
                if end > covered:
                    break
                slots = (end - start) // base_ms
                complete = all(counts[start].get(name, 0) >= slots for name in names)
                result = check_balance(
                    rule, totals.pop(start), start_ms=start, end_ms=end, complete=complete
                )
                counts.pop(start)
                self.results.append(result)
                key = f"balance:{rule.name}"
                if result.ok is False:
                    self._alerts.raise_alert(
                        key,
                        ts_ms=end,
                        kind="balance",
                        message=f"Balance {rule.name} failed: {result.reason}",
                        rule=rule.name,
                        target=rule.name,
                        **{k: v for k, v in result.to_record().items() if k != "rule"},
                    )
                elif result.ok:
                    self._alerts.clear_alert(key, ts_ms=end, reason="balanced again")
