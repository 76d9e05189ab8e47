"""Reports for the platform, built from the stored energy intervals, and the delivery ledger.

One report per closed period (15 minutes by default, aligned to the site's local midnight): each
configured meter's consumption in the period and its cumulative consumption at the period's end,
and the sub-item totals, each marked with the profile's estimated code where an interval of the
accounting was estimated or partial (a gap spread, a reset). Everything comes from the store's
``intervals`` table, never from memory, so a report built again after a restart is the same.

The ledger (store meta ``platform:ledger``) says which periods are settled: delivered (the
platform acknowledged them) or empty (no meter had an interval in them: the agent was off). It
holds a frontier before which every period is settled, the periods settled after it, the
cumulative totals of each meter up to the frontier, and the periods delivered per local day
(the reporting rate the programme is scored on: delivered / due). It is saved in the same
transaction as the ``platform.rate`` events, so a crash neither repeats nor loses either.

The cumulative figure is the meter's consumption since the platform link was commissioned (the
ledger's origin), summed from stored intervals: the meter's own register is not kept with the
intervals. docs/platform.md says so for the platform operator.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.energy.config import EnergyConfig, MeterRole, sub_item_covers
from agent.energy.periods import Size, bucket_start, day_of, local, next_start
from agent.platform.config import PlatformConfig
from agent.platform.messages import ReportFunction, ReportMeter, build_report

__all__ = [
    "LEDGER_KEY",
    "BuiltReport",
    "DayRate",
    "Ledger",
    "ReportBuilder",
    "day_rate",
    "period_start",
]

LEDGER_KEY = "platform:ledger"
DELIVERED = "delivered"
EMPTY = "empty"
_GOOD = frozenset({"measured", "integrated"})
DAYS_KEPT = 40


def period_start(ts_ms: int, period_ms: int, tz: ZoneInfo) -> int:
    """Start of the period holding ``ts_ms``; periods divide the local day from midnight."""
    midnight = bucket_start(ts_ms, Size.DAY, tz)
    return midnight + (ts_ms - midnight) // period_ms * period_ms


@dataclass
class Ledger:
    """Which periods are settled; see the module docstring."""

    origin: int
    frontier: int
    period_ms: int = 900_000
    settled: dict[int, str] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)
    announced: dict[str, int] = field(default_factory=dict)
    meters_missing: int = 0

    def is_settled(self, start: int) -> bool:
        return start < self.frontier or start in self.settled

    def to_json(self) -> str:
        return json.dumps(
            {
                "origin": self.origin,
                "frontier": self.frontier,
                "period_ms": self.period_ms,
                "settled": {str(k): v for k, v in sorted(self.settled.items())},
                "totals": self.totals,
                "days": self.days,
                "announced": self.announced,
                "meters_missing": self.meters_missing,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        """The saved ledger, or ValueError if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the saved platform ledger is not an object")  # noqa: TRY004
        try:
            return cls(
                origin=int(data["origin"]),
                frontier=int(data["frontier"]),
                period_ms=int(data.get("period_ms", 900_000)),
                settled={int(k): str(v) for k, v in dict(data.get("settled", {})).items()},
                totals={str(k): float(v) for k, v in dict(data.get("totals", {})).items()},
                days={str(k): int(v) for k, v in dict(data.get("days", {})).items()},
                announced={str(k): int(v) for k, v in dict(data.get("announced", {})).items()},
                meters_missing=int(data.get("meters_missing", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the saved platform ledger is unreadable: {exc}") from None


@dataclass(frozen=True)
class DayRate:
    day: str
    delivered: int
    due: int

    @property
    def percent(self) -> float | None:
        return None if not self.due else 100.0 * self.delivered / self.due

    def to_record(self) -> dict[str, Any]:
        pct = self.percent
        return {
            "day": self.day,
            "delivered": self.delivered,
            "due": self.due,
            "rate_percent": None if pct is None else round(pct, 2),
        }


def day_rate(ledger: Ledger, day: date, *, now_ms: int, period_ms: int, tz: ZoneInfo) -> DayRate:
    """Periods of ``day`` delivered, and due (ended by ``now_ms``, at or after the origin)."""
    midnight = round(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)
    end = next_start(midnight, Size.DAY, tz)
    first = max(midnight, ledger.origin)
    last = min(end, period_start(now_ms, period_ms, tz))
    due = max(0, (last - first) // period_ms)
    return DayRate(day.isoformat(), ledger.days.get(day.isoformat(), 0), due)


@dataclass(frozen=True)
class BuiltReport:
    start: int
    time: str
    operation: str
    payload: bytes
    meters: int
    missing: tuple[str, ...]


class ReportBuilder:
    """Reports of one platform config over one energy config."""

    def __init__(self, config: PlatformConfig, energy: EnergyConfig, *, tz: ZoneInfo) -> None:
        self.config = config
        self.energy = energy
        self.tz = tz
        self.names = [m.meter for m in config.meters]
        self.base_ms = energy.interval_minutes * 60_000
        codes = {m.meter: m.coding or energy.meter(m.meter).code for m in config.meters}
        self.codes = codes
        self.items = config.sub_items or sorted(
            {
                codes[m.meter]
                for m in config.meters
                if energy.meter(m.meter).role in (MeterRole.MAIN, MeterRole.SUB)
            }
        )

    def time_of(self, start: int) -> str:
        moment = start if self.config.report_time == "start" else start + self.config.period_ms
        return local(moment, self.tz).strftime("%Y%m%d%H%M%S")

    def is_complete(self, rows: Iterable[Mapping[str, Any]], end: int) -> bool:
        """Every meter has its period's last base interval stored: nothing more will come."""
        last = {str(r["meter"]) for r in rows if int(r["start_ms"]) >= end - self.base_ms}
        return all(name in last for name in self.names)

    def build(
        self,
        start: int,
        rows: Iterable[Mapping[str, Any]],
        *,
        before: Mapping[str, float],
        operation: str,
        sequence: int,
    ) -> BuiltReport | None:
        """The report of the period at ``start`` from its interval rows, or None if none of its
        meters has one. ``before`` is each meter's cumulative total at the period's start."""
        profile = self.config.profile_settings
        end = start + self.config.period_ms
        sums: dict[str, float] = {}
        estimated: set[str] = set()
        for row in rows:
            name = str(row["meter"])
            if name not in self.codes or not start <= int(row["start_ms"]) < end:
                continue
            sums[name] = sums.get(name, 0.0) + float(row["value"])
            if str(row["quality"]) not in _GOOD:
                estimated.add(name)
        if not sums:
            return None

        def mark(flagged: bool) -> str:
            return profile.error_estimated if flagged else profile.error_measured

        meters = [
            ReportMeter(
                id=m.id,
                name=m.name or m.meter,
                addr=m.addr or f"{m.id:012d}",
                functions=(
                    ReportFunction(
                        m.cumulative_function,
                        self.codes[m.meter],
                        before.get(m.meter, 0.0) + sums[m.meter],
                        mark(m.meter in estimated),
                    ),
                    ReportFunction(
                        m.interval_function,
                        self.codes[m.meter],
                        sums[m.meter],
                        mark(m.meter in estimated),
                    ),
                ),
            )
            for m in self.config.meters
            if m.meter in sums
        ]
        items = []
        for code in self.items:
            chosen = self._item_meters(code, sums)
            if chosen:
                flagged = any(n in estimated for n in chosen)
                items.append((code, sum(sums[n] for n in chosen), mark(flagged)))
        time = self.time_of(start)
        payload = build_report(
            self.config.building_id,
            self.config.gateway_id,
            operation=operation,
            sequence=sequence,
            time=time,
            items=items,
            meters=meters,
            encoding=profile.encoding,
        )
        missing = tuple(n for n in self.names if n not in sums)
        return BuiltReport(start, time, operation, payload, len(meters), missing)

    def _item_meters(self, code: str, sums: Mapping[str, float]) -> list[str]:
        """The meters whose sum is the sub-item total ``code``: main meters carrying the code
        itself (01000 from the main meter), else the sub-meters the code covers."""
        roles = {n: self.energy.meter(n).role for n in sums}
        main = [n for n in sums if roles[n] is MeterRole.MAIN and self.codes[n] == code]
        if main:
            return main
        return [
            n for n in sums if roles[n] is MeterRole.SUB and sub_item_covers(code, self.codes[n])
        ]

    def day_of(self, start: int) -> str:
        return day_of(start, self.tz).isoformat()
