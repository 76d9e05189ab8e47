"""The energy pipeline in the running agent: committed readings in, interval and alert events out.

Every `interval` seconds `EnergyLive` reads the meters' readings committed since its cursor,
feeds them to the `EnergyPipeline`, evaluates the rules, and records each completed base interval
(`energy.interval`) and each alert transition (`energy.alert`) as store events, which the uplink
publishes; each interval also goes into the store's `intervals` table, which the event pruning
does not touch. The events, the intervals, the cursor and the raised alerts are written in one
transaction, so a crash loses nothing and repeats nothing that was committed.

When an hour, a day or a month of the site's time zone closes (every meter has an interval
ending at or after its end, or the clock is one base interval plus `max_step` past it), the
rollups of that period (agent.energy.rollup over its stored intervals) are recorded as one
`energy.rollup` event per period and size; when a day closes, its data quality per meter and
its balance checks as an `energy.quality` event (and the latest in meta `energy:quality`, for
`edge-agent status`).

The cursor is a replay point, not the last reading read: the pipeline's open intervals live in
memory, so after a restart the rows from about one base interval plus `max_step` before each
meter's last emitted interval are fed again and the intervals that end at or before it are
dropped (docs/energy.md, "how to wire restarts"). Quota totals of the current periods are rebuilt
from the `intervals` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError
from agent.core.record import StoredReading, ms_to_iso
from agent.energy.config import EnergyConfig
from agent.energy.intervals import Interval
from agent.energy.periods import Size, bucket_start, day_of, next_start
from agent.energy.pipeline import EnergyPipeline, Site
from agent.energy.quality import balance_checks, daily_quality
from agent.energy.rollup import DEFAULT_SIZES, rollup
from agent.store import Store

__all__ = ["ALERTS_KEY", "CURSOR_KEY", "QUALITY_KEY", "EnergyLive"]

log = logging.getLogger(__name__)

CURSOR_KEY = "energy:cursor"
"""Meta key: {"after": replay seq, "emitted": {meter: end_ms of its last emitted interval},
"rolled": {size: start of the next period of that size to roll up}}."""
QUALITY_KEY = "energy:quality"
"""Meta key: the detail of the latest `energy.quality` event (shown by `edge-agent status`)."""
ALERTS_KEY = "energy:alerts"
"""Meta key: the pipeline's raised alerts (AlertBook.raised()), so a restart repeats none."""
CHUNK = 2000  # rows per store read and per feed: keeps each step on the loop short
_RESTORE_PAGE = 5000
_DAY_MS = 86_400_000
_LOOKBACK_CAP_MS = 2 * _DAY_MS  # a dead meter must not pin the replay point forever


class EnergyLive:
    """``await EnergyLive(config.energy, site=..., store=...).run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        energy: EnergyConfig,
        *,
        site: Site,
        store: Store,
        interval: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.energy = energy
        self.site = site
        self.store = store
        self.interval = interval
        self._clock = clock if clock is not None else system_clock()
        self._points = {(m.device, m.point) for m in energy.meters}
        self._margin_ms = energy.interval_minutes * 60_000 + round(energy.max_step * 1000)
        self.pipeline: EnergyPipeline | None = None
        self._after = 0  # seq of the last reading fed
        self._emitted: dict[str, int] = {}
        self._first_seen: dict[str, int] = {}
        self._chunks: deque[tuple[int, int]] = deque()  # (seq before the chunk, its latest ts)
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self._rows_out: list[dict[str, Any]] = []  # rows of the intervals table, to commit
        self._rolled: dict[str, int] = {}  # size -> start of the next period to roll up
        self._quality: str | None = None  # QUALITY_KEY's new value, to commit
        self._failing = False
        self.cycles = 0
        self.intervals_recorded = 0
        self.alerts_recorded = 0
        self.rollups_recorded = 0

    async def run(self, stop: asyncio.Event) -> None:
        if not self.energy.meters:
            return
        while True:
            stopping = stop.is_set()
            try:
                await self.cycle()
            except _Disabled:
                return
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()

    async def cycle(self) -> None:
        """One pass: new readings to intervals, rules evaluated, events and cursor committed.

        A store failure is logged once and retried next cycle (nothing is lost: the pending
        events stay in memory and the cursor is not moved).
        """
        try:
            if self.pipeline is None:
                await self._start()
            await self._pass()
        except StoreError as exc:
            if not self._failing:
                log.warning("energy: %s; retrying every %g s", exc, self.interval)
                self._failing = True
            return
        if self._failing:
            log.info("energy: the store answers again")
            self._failing = False
        self.cycles += 1

    # ---- internals -----------------------------------------------------------------------

    async def _start(self) -> None:
        raised = _json_dict(await self.store.get_meta(ALERTS_KEY), ALERTS_KEY)
        cursor = _json_dict(await self.store.get_meta(CURSOR_KEY), CURSOR_KEY)
        try:
            pipeline = EnergyPipeline(self.energy, site=self.site, sink=self._alert, raised=raised)
        except ValueError as exc:  # the loader checks the section; say so once and stand aside
            log.error("energy: accounting disabled: %s", exc)  # noqa: TRY400 (a user sentence)
            raise _Disabled from exc
        after = cursor.get("after", 0)
        emitted = cursor.get("emitted", {})
        rolled = cursor.get("rolled", {})
        if isinstance(after, int) and isinstance(emitted, dict):
            self._after = after
            self._emitted = {str(k): int(v) for k, v in emitted.items()}
        if isinstance(rolled, dict):
            self._rolled = {str(k): int(v) for k, v in rolled.items() if isinstance(v, int)}
        await self._restore_quotas(pipeline)
        self.pipeline = pipeline

    async def _restore_quotas(self, pipeline: EnergyPipeline) -> None:
        """Feed the stored intervals of the current quota periods (and the profile's days)."""
        if not self.energy.quotas or not self._emitted:
            return
        tz = ZoneInfo(self.site.timezone)
        now = self._clock.now_ms()
        since = min(
            min(
                bucket_start(now, Size(rule.period), tz),
                now - rule.profile_days * _DAY_MS,
            )
            for rule in self.energy.quotas
        )
        restored = [
            i
            for i in await self._stored(since, now + _DAY_MS)
            if i.end_ms <= self._emitted.get(i.meter, -1)
        ]
        for first in range(0, len(restored), _RESTORE_PAGE):
            pipeline.quotas.add(restored[first : first + _RESTORE_PAGE])
            await asyncio.sleep(0)

    async def _stored(self, since_ms: int, until_ms: int) -> list[Interval]:
        """The stored intervals of the configured meters starting in [since_ms, until_ms)."""
        rows = await self.store.intervals(
            since_ms=since_ms, until_ms=until_ms, meters=[m.name for m in self.energy.meters]
        )
        return [i for i in map(_row_interval, rows) if i is not None]

    async def _pass(self) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        while True:
            rows = await self.store.readings_after(self._after, CHUNK, self._points)
            if rows:
                self._feed(pipeline, rows)
                await self._commit()
            if len(rows) < CHUNK:
                break
            await asyncio.sleep(0)
        now = self._clock.now_ms()
        await self._roll(now)  # every interval fed so far is committed
        pipeline.evaluate(now)
        await self._commit()

    def _feed(self, pipeline: EnergyPipeline, rows: list[StoredReading]) -> None:
        self._chunks.append((self._after, max(r.ts_ms for r in rows)))
        self._after = rows[-1].seq
        for row in rows:
            if not row.clock_untrusted:  # a time that is not real starts nothing
                self._first_seen.setdefault(f"{row.device}/{row.point}", row.ts_ms)
        # pipeline.feed() without the intervals a replay re-derives (already recorded)
        fresh = [
            i for i in pipeline.builder.feed(rows) if i.end_ms > self._emitted.get(i.meter, -1)
        ]
        pipeline.quotas.add(fresh)
        pipeline.off_hours.add(fresh)
        pipeline.balance.add(fresh)
        for interval in fresh:
            self._emitted[interval.meter] = max(
                self._emitted.get(interval.meter, -1), interval.end_ms
            )
            record = self._record(interval)
            self._outbox.append(("energy.interval", record))
            self._rows_out.append(
                {
                    **record,
                    "start_ms": interval.start_ms,
                    "end_ms": interval.end_ms,
                    "flags": sorted(interval.flags),
                }
            )
            for size in DEFAULT_SIZES:  # the first interval ever: rollups start with its period
                self._rolled.setdefault(size.value, bucket_start(interval.start_ms, size, self._tz))
        self.intervals_recorded += len(fresh)

    @property
    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.site.timezone)

    def _closed_until(self, now: int) -> int:
        """Every period ending at or before this instant is closed: no interval will join it."""
        lagging = now - self._margin_ms  # a silent meter holds no period open longer
        ends = [self._emitted.get(m.name) for m in self.energy.meters]
        if None in ends:
            return lagging
        return max(lagging, min(e for e in ends if e is not None))

    async def _roll(self, now: int) -> None:
        """Roll up each closed period not yet rolled up, and the quality of each closed day."""
        tz = self._tz
        closed = self._closed_until(now)
        for size in DEFAULT_SIZES:
            start = self._rolled.get(size.value)
            if start is None:
                continue
            end = bucket_start(closed, size, tz)  # the end of the last closed period
            if end <= start:
                continue
            intervals = await self._stored(start, end)
            by_start: dict[int, list[dict[str, Any]]] = {}
            for item in rollup(intervals, self.energy, tz=tz, sizes=(size,)):
                by_start.setdefault(item.start_ms, []).append(item.to_record())
            for period, records in sorted(by_start.items()):
                if not any(r["count"] for r in records):
                    continue  # nothing was measured in it (the agent was off): no record
                detail = {
                    "size": size.value,
                    "start": ms_to_iso(period),
                    "end": ms_to_iso(next_start(period, size, tz)),
                    "records": records,
                }
                self._outbox.append(("energy.rollup", detail))
                self.rollups_recorded += 1
            if size is Size.DAY:
                self._day_quality(intervals, start, end, now)
            self._rolled[size.value] = end
            await asyncio.sleep(0)

    def _day_quality(self, intervals: list[Interval], start: int, end: int, now: int) -> None:
        tz = self._tz
        days: dict[Any, list[Interval]] = {}
        for interval in intervals:
            days.setdefault(day_of(interval.start_ms, tz), []).append(interval)
        for day, items in sorted(days.items()):
            midnight = bucket_start(items[0].start_ms, Size.DAY, tz)
            detail = {
                "day": day.isoformat(),
                "start": ms_to_iso(midnight),
                "end": ms_to_iso(next_start(midnight, Size.DAY, tz)),
                "meters": [
                    q.to_record()
                    for q in daily_quality(items, self.energy, tz=tz, days=[day], until_ms=now)
                ],
                "balance": [b.to_record() for b in balance_checks(items, self.energy, tz=tz)],
            }
            self._outbox.append(("energy.quality", detail))
            self._quality = json.dumps(detail, separators=(",", ":"))

    def _record(self, interval: Interval) -> dict[str, Any]:
        meter = self.energy.meter(interval.meter)
        return {
            **interval.to_record(),
            "energy_type": meter.energy_type.value,
            "sub_item": meter.code,
            "role": meter.role.value,
        }

    def _alert(self, event: dict[str, Any]) -> None:
        self._outbox.append(("energy.alert", event))
        self.alerts_recorded += 1

    def _replay_after(self) -> int:
        """The seq to read from after a restart to rebuild every meter's open interval."""
        anchors = [self._emitted.get(m.name) for m in self.energy.meters]
        anchors += [
            self._first_seen[key]
            for m in self.energy.meters
            if m.name not in self._emitted and (key := f"{m.device}/{m.point}") in self._first_seen
        ]
        known = [a for a in anchors if a is not None]
        if not known or not self._chunks:
            return self._after
        latest = max(ts for _, ts in self._chunks)
        threshold = max(min(known) - self._margin_ms, latest - _LOOKBACK_CAP_MS)
        while len(self._chunks) > 1 and self._chunks[0][1] < threshold:
            self._chunks.popleft()
        return self._chunks[0][0] if self._chunks[0][1] >= threshold else self._after

    async def _commit(self) -> None:
        assert self.pipeline is not None
        cursor = {"after": self._replay_after(), "emitted": self._emitted, "rolled": self._rolled}
        meta = {
            CURSOR_KEY: json.dumps(cursor, separators=(",", ":")),
            ALERTS_KEY: json.dumps(
                self.pipeline.alerts.raised(), separators=(",", ":"), default=str
            ),
        }
        if self._quality is not None:
            meta[QUALITY_KEY] = self._quality
        outbox, rows = list(self._outbox), list(self._rows_out)
        await self.store.add_events(outbox, meta=meta, intervals=rows)
        del self._outbox[: len(outbox)]
        del self._rows_out[: len(rows)]


class _Disabled(Exception):
    """The energy section cannot run (logged once)."""


def _json_dict(text: str | None, key: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("energy: saved %s is unreadable; starting afresh", key)
        return {}
    return value


def _row_interval(row: dict[str, Any]) -> Interval | None:
    """An Interval from a row of the store's intervals table."""
    try:
        return Interval(
            meter=str(row["meter"]),
            start_ms=int(row["start_ms"]),
            end_ms=int(row["end_ms"]),
            value=float(row["value"]),
            unit=str(row["unit"]),
            quality=str(row["quality"]),
            flags=frozenset(_strings(row.get("flags") or [])),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _strings(items: Iterable[Any]) -> list[str]:
    return [str(item) for item in items]
