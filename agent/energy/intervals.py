"""Cumulative counters (and powers) to consumption per aligned base interval.

Rules, from the energy issue:
- wrap-around: an integer register rolls over at 2**bits x scale; a step down that is a plausible
  step up modulo that value is a roll-over (flag `wrap`, the value is exact);
- reset or replacement: any other step down is not negative consumption. One reading later the
  processor knows which it was: if the next reading continues from the low value, a new counter
  began (flag `reset`; the energy between the old counter's last reading and the new one's first
  is unknown, so the interval holds a lower bound and its quality is `partial`); if the next
  reading continues from the old counter, the low reading was a glitch (flag `spike`);
- spikes: a step faster than the meter's rated rate (max_rate x time, plus one count) is
  rejected and flagged `spike`, never summed; the same one-reading look-ahead tells a spike from
  a counter that jumped to a new base;
- range: readings outside [min_value, max_value] are rejected and flagged `range`;
- gaps: a step longer than `max_step` has its energy spread over the intervals it spans in
  proportion to time, with quality `estimated` and flag `gap`: the total is the counters'
  difference, never dropped, never invented;
- power-only meters are integrated by the trapezoid rule, quality `integrated`;
- a reading stamped before the gateway's clock was trusted (`clock_untrusted`: after a boot
  without a real-time clock, before time sync) is not used: its time is not real, so its
  energy would land in the wrong interval. The step across it is a gap like any other, its
  energy spread and `estimated` (the store corrects such readings' times later, and a report
  built from the store then sees them at their true time).

Steps shorter than `max_step` that straddle a boundary are split by linear interpolation of the
counter and count as measured: the error is bounded by the energy of one short step.

Quality is one label per interval, the worst that applies: measured < integrated < estimated <
partial. `flags` say why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from agent.core.record import ms_to_iso
from agent.energy.config import EnergyConfig, MeterConfig, MeterKind
from agent.energy.periods import Size, bucket_start, next_start

__all__ = [
    "QUALITY_ORDER",
    "CounterMeter",
    "Interval",
    "IntervalBuilder",
    "PowerMeter",
    "ReadingRow",
    "build_intervals",
    "is_good",
    "thin_rows",
    "worse",
]

QUALITY_ORDER = ("measured", "integrated", "estimated", "partial")
_RANK = {name: rank for rank, name in enumerate(QUALITY_ORDER)}
# Rated power is a nameplate figure; a meter may run a little above it before a step is absurd.
RATE_MARGIN = 0.10
# Without a rated rate, a step down counts as a roll-over only if the step up it implies is
# below this share of the register's range.
WRAP_SHARE_WITHOUT_RATE = 0.01
_MS_PER_HOUR = 3_600_000


def worse(a: str, b: str) -> str:
    """The worse of two quality labels."""
    return a if _RANK[a] >= _RANK[b] else b


@dataclass(frozen=True, slots=True)
class Interval:
    """Consumption of one meter over one aligned base interval [start, end)."""

    meter: str
    start_ms: int
    end_ms: int
    value: float
    unit: str
    quality: str = "measured"
    flags: frozenset[str] = frozenset()

    def to_record(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "start": ms_to_iso(self.start_ms),
            "end": ms_to_iso(self.end_ms),
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality,
            "flags": sorted(self.flags),
        }


class ReadingRow(Protocol):
    """What the energy code needs of a stored reading (agent.core.record.StoredReading has it)."""

    @property
    def device(self) -> str: ...

    @property
    def point(self) -> str: ...

    @property
    def ts_ms(self) -> int: ...

    @property
    def value(self) -> object: ...

    @property
    def unit(self) -> str: ...

    @property
    def quality(self) -> object: ...

    @property
    def clock_untrusted(self) -> bool: ...


def is_good(row: ReadingRow) -> bool:
    """A reading that is a measurement: good quality, a finite number, and a real time."""
    quality = row.quality
    good = quality == 0 or (isinstance(quality, str) and quality.lower() == "good")
    value = row.value
    return (
        good
        and not row.clock_untrusted
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


@dataclass
class _Bucket:
    value: float = 0.0
    quality: str = "measured"
    flags: set[str] = field(default_factory=set)


class _Accumulator:
    """Open buckets of one meter, filled by steps between accepted readings."""

    def __init__(self, meter: MeterConfig, *, minutes: int, tz: ZoneInfo, max_step_ms: int) -> None:
        self.meter = meter
        self._size = Size.of_minutes(minutes)
        self._tz = tz
        self._max_step_ms = max_step_ms
        self._buckets: dict[int, _Bucket] = {}
        self.last_ts: int | None = None  # time of the last accepted reading

    def _bucket(self, start: int) -> _Bucket:
        bucket = self._buckets.get(start)
        if bucket is None:
            bucket = self._buckets[start] = _Bucket()
        return bucket

    def _begin(self, ts: int) -> None:
        start = bucket_start(ts, self._size, self._tz)
        if start < ts:
            # Energy before the first reading is unknown.
            bucket = self._bucket(start)
            bucket.quality = worse(bucket.quality, "partial")
            bucket.flags.add("start")

    def _mark(self, ts: int, flag: str) -> None:
        if self.last_ts is None:
            return  # nothing counted yet: there is no interval to flag
        self._bucket(bucket_start(ts, self._size, self._tz)).flags.add(flag)

    def _spread(
        self,
        t0: int,
        t1: int,
        energy_between: Callable[[int, int], float],
        quality: str,
        flags: frozenset[str],
    ) -> None:
        """Add a step's energy to the buckets it overlaps, each its share of [t0, t1]."""
        if t1 <= t0:
            bucket = self._bucket(bucket_start(t0, self._size, self._tz))
            bucket.value += energy_between(t0, t0)
            bucket.quality = worse(bucket.quality, quality)
            bucket.flags |= flags
            return
        start = bucket_start(t0, self._size, self._tz)
        while start < t1:
            end = next_start(start, self._size, self._tz)
            u0, u1 = max(start, t0), min(end, t1)
            if u1 > u0:
                bucket = self._bucket(start)
                bucket.value += energy_between(u0, u1)
                bucket.quality = worse(bucket.quality, quality)
                bucket.flags |= flags
            start = end

    def _emit(self) -> list[Interval]:
        """Buckets that end at or before the last accepted reading: they are complete."""
        if self.last_ts is None:
            return []
        out: list[Interval] = []
        for start in sorted(self._buckets):
            end = next_start(start, self._size, self._tz)
            if end > self.last_ts:
                break
            bucket = self._buckets.pop(start)
            out.append(
                Interval(
                    meter=self.meter.name,
                    start_ms=start,
                    end_ms=end,
                    # Float sums of non-negative shares can only dip below zero by rounding.
                    value=max(bucket.value, 0.0),
                    unit=self.meter.energy_unit,
                    quality=bucket.quality,
                    flags=frozenset(bucket.flags),
                )
            )
        return out

    def _in_range(self, ts: int, value: float) -> bool:
        low, high = self.meter.low, self.meter.high
        if (low is not None and value < low) or (high is not None and value >= high):
            self._mark(ts, "range")
            return False
        return True


class CounterMeter(_Accumulator):
    """One cumulative counter: feed readings in time order, get completed intervals."""

    def __init__(self, meter: MeterConfig, *, minutes: int, tz: ZoneInfo, max_step_ms: int) -> None:
        super().__init__(meter, minutes=minutes, tz=tz, max_step_ms=max_step_ms)
        self._last_value = 0.0
        self._pending: tuple[int, float] | None = None  # a suspect reading awaiting the next

    @property
    def pending(self) -> tuple[int, float] | None:
        """A suspect reading (ts_ms, value) that the next reading will confirm or reject."""
        return self._pending

    def feed(self, ts_ms: int, value: float) -> list[Interval]:
        if self.last_ts is not None and ts_ms <= self.last_ts:
            return []  # out of order or repeated: the counter is already past this time
        if self._pending is not None and ts_ms <= self._pending[0]:
            self._pending = None  # the suspect's time was wrong; judge afresh against the last
        if not self._in_range(ts_ms, value):
            return []
        if self.last_ts is None:
            self._begin(ts_ms)
            self.last_ts, self._last_value = ts_ms, value
            return []
        step = self._classify(self.last_ts, self._last_value, ts_ms, value)
        if self._pending is None:
            if step is None:
                self._pending = (ts_ms, value)
                return []
            self._accept(ts_ms, value, *step)
            return self._emit()
        pending_ts, pending_value = self._pending
        if step is not None:
            self._mark(pending_ts, "spike")  # the suspect was a glitch
            self._pending = None
            self._accept(ts_ms, value, *step)
            return self._emit()
        from_pending = self._classify(pending_ts, pending_value, ts_ms, value)
        if from_pending is None:
            self._mark(pending_ts, "spike")
            self._pending = (ts_ms, value)
            return []
        # The suspect began a new counter: what happened between is unknown, not negative.
        self._pending = None
        self._spread(
            self.last_ts, pending_ts, lambda _u0, _u1: 0.0, "partial", frozenset({"reset"})
        )
        self.last_ts, self._last_value = pending_ts, pending_value
        self._accept(ts_ms, value, *from_pending)
        return self._emit()

    def _classify(
        self, t0: int, v0: float, t1: int, v1: float
    ) -> tuple[float, frozenset[str], float] | None:
        """(energy, flags, new reference value) of a plausible step; None for a suspect one."""
        meter = self.meter
        resolution = meter.counter_scale
        limit = math.inf
        if meter.max_rate is not None:
            limit = meter.max_rate * (1 + RATE_MARGIN) * (t1 - t0) / _MS_PER_HOUR + resolution
        delta = v1 - v0
        if delta >= 0:
            return (delta, frozenset(), v1) if delta <= limit else None
        if delta >= -resolution:
            # Read jitter of one count, not a reset: keep the higher value as the reference.
            return (0.0, frozenset(), v0)
        wrap = meter.wrap
        if wrap is not None:
            rolled = delta + wrap
            wrap_limit = limit if meter.max_rate is not None else wrap * WRAP_SHARE_WITHOUT_RATE
            if 0 <= rolled <= wrap_limit:
                return (rolled, frozenset({"wrap"}), v1)
        return None

    def _accept(
        self, ts: int, value: float, energy: float, flags: frozenset[str], ref: float
    ) -> None:
        assert self.last_ts is not None
        t0 = self.last_ts
        quality = "measured"
        if ts - t0 > self._max_step_ms:
            quality, flags = "estimated", flags | {"gap"}
        span = ts - t0

        def share(u0: int, u1: int) -> float:
            return energy if span <= 0 else energy * (u1 - u0) / span

        self._spread(t0, ts, share, quality, flags)
        self.last_ts, self._last_value = ts, ref


class PowerMeter(_Accumulator):
    """A power or flow reading integrated by the trapezoid rule."""

    def __init__(self, meter: MeterConfig, *, minutes: int, tz: ZoneInfo, max_step_ms: int) -> None:
        super().__init__(meter, minutes=minutes, tz=tz, max_step_ms=max_step_ms)
        self._last_rate = 0.0

    def feed(self, ts_ms: int, value: float, unit: str = "") -> list[Interval]:
        if self.last_ts is not None and ts_ms <= self.last_ts:
            return []
        if not self._in_range(ts_ms, value):
            return []
        scale = self.meter.power_scale or (0.001 if unit == "W" else 1.0)
        rate = value * scale  # energy unit per hour
        if self.meter.max_rate is not None and rate > self.meter.max_rate * (1 + RATE_MARGIN):
            self._mark(ts_ms, "spike")
            return []
        # A consumption meter's small negative readings are measurement noise around zero.
        rate = max(rate, 0.0)
        if self.last_ts is None:
            self._begin(ts_ms)
            self.last_ts, self._last_rate = ts_ms, rate
            return []
        t0, r0, r1 = self.last_ts, self._last_rate, rate
        span = ts_ms - t0
        quality, flags = "integrated", frozenset({"integrated"})
        if span > self._max_step_ms:
            quality, flags = "estimated", flags | {"gap"}

        def area(u0: int, u1: int) -> float:
            a = r0 + (r1 - r0) * (u0 - t0) / span
            b = r0 + (r1 - r0) * (u1 - t0) / span
            return (a + b) / 2 * (u1 - u0) / _MS_PER_HOUR

        self._spread(t0, ts_ms, area, quality, flags)
        self.last_ts, self._last_rate = ts_ms, rate
        return self._emit()


class IntervalBuilder:
    """Routes reading rows to each meter's processor: the seam to the store.

    Feed rows in commit order (each point's readings in time order, as the store returns
    them) and keep the builder between calls; each call returns the intervals completed by it.
    """

    def __init__(self, energy: EnergyConfig, *, tz: str | ZoneInfo) -> None:
        zone = ZoneInfo(tz) if isinstance(tz, str) else tz
        max_step_ms = round(energy.max_step * 1000)
        self._meters: dict[tuple[str, str], CounterMeter | PowerMeter] = {}
        for meter in energy.meters:
            kind = CounterMeter if meter.kind is MeterKind.COUNTER else PowerMeter
            self._meters[(meter.device, meter.point)] = kind(
                meter, minutes=energy.interval_minutes, tz=zone, max_step_ms=max_step_ms
            )
        self.last_seen: dict[str, int] = {}
        """Time of each meter's latest good reading (for the silent-meter rule)."""

    def feed(self, rows: Iterable[ReadingRow]) -> list[Interval]:
        out: list[Interval] = []
        for row in rows:
            processor = self._meters.get((row.device, row.point))
            if processor is None or not is_good(row):
                continue
            value = float(row.value)  # type: ignore[arg-type]  # checked by is_good
            name = processor.meter.name
            self.last_seen[name] = max(self.last_seen.get(name, row.ts_ms), row.ts_ms)
            if isinstance(processor, CounterMeter):
                out.extend(processor.feed(row.ts_ms, value))
            else:
                out.extend(processor.feed(row.ts_ms, value, row.unit))
        return out


R = TypeVar("R", bound=ReadingRow)


def thin_rows(rows: Iterable[R], every_ms: int) -> Iterator[R]:
    """At most one good reading per point every `every_ms` (the first one), plus the readings
    at the edges of what the accounting must see exactly.

    Energy needs no 2-second resolution, and a month of it is millions of rows. Keep `every_ms`
    at most half of `max_step`, so a rejected spike does not turn into a gap. Around a counter
    going backwards (a reset or a replaced meter) and around a gap in the readings, the last
    reading before and the first after are always kept: the live accounting sees every reading,
    and a report thinned any other way would widen the unknown step it has to flag.
    """
    kept: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], R] = {}  # the latest good row seen per point
    skipped: dict[tuple[str, str], bool] = {}  # whether that row was left out
    for row in rows:
        if not is_good(row):
            continue
        key = (row.device, row.point)
        previous = last.get(key)
        last[key] = row
        if previous is not None:
            edge = row.ts_ms - previous.ts_ms > every_ms or _went_down(previous.value, row.value)
            if edge and skipped.get(key):
                yield previous  # the edge's "before" side, left out a moment ago
                kept[key] = previous.ts_ms
            if not edge and row.ts_ms - kept[key] < every_ms:
                skipped[key] = True
                continue
        kept[key] = row.ts_ms
        skipped[key] = False
        yield row


def _went_down(before: object, after: object) -> bool:
    numbers = (int, float)
    return (
        isinstance(before, numbers)
        and isinstance(after, numbers)
        and not isinstance(before, bool)
        and after < before
    )


def build_intervals(
    rows: Iterable[ReadingRow], energy: EnergyConfig, *, tz: str | ZoneInfo
) -> list[Interval]:
    """Every completed base interval of every configured meter in `rows`."""
    return IntervalBuilder(energy, tz=tz).feed(rows)
