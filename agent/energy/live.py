"""The energy pipeline in the running agent: committed readings in, interval and alert events out.

Every `interval` seconds `EnergyLive` reads the meters' readings committed since its cursor,
feeds them to the `EnergyPipeline`, evaluates the rules, and records each completed base interval
(`energy.interval`) and each alert transition (`energy.alert`) as store events, which the uplink
publishes. The events, the cursor and the raised alerts are written in one transaction, so a
crash loses nothing and repeats nothing that was committed.

The cursor is a replay point, not the last reading read: the pipeline's open intervals live in
memory, so after a restart the rows from about one base interval plus `max_step` before each
meter's last emitted interval are fed again and the intervals that end at or before it are
dropped (docs/energy.md, "how to wire restarts"). Quota totals of the current periods are rebuilt
from the stored `energy.interval` events, as far as the store still keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from agent.config.model import SiteInfo
from agent.energy.config import EnergyConfig
from agent.energy.intervals import Interval
from agent.energy.periods import Size, bucket_start
from agent.energy.pipeline import EnergyPipeline
from agent.errors import StoreError
from agent.record import StoredReading, iso_to_ms, now_ms
from agent.store import Store

__all__ = ["ALERTS_KEY", "CURSOR_KEY", "EnergyLive"]

log = logging.getLogger(__name__)

CURSOR_KEY = "energy:cursor"
"""Meta key: {"after": replay seq, "emitted": {meter: end_ms of its last emitted interval}}."""
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
        site: SiteInfo,
        store: Store,
        interval: float = 60.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.energy = energy
        self.site = site
        self.store = store
        self.interval = interval
        self._clock = clock or now_ms  # ms; injected by tests
        self._points = {(m.device, m.point) for m in energy.meters}
        self._margin_ms = energy.interval_minutes * 60_000 + round(energy.max_step * 1000)
        self.pipeline: EnergyPipeline | None = None
        self._after = 0  # seq of the last reading fed
        self._emitted: dict[str, int] = {}
        self._first_seen: dict[str, int] = {}
        self._chunks: deque[tuple[int, int]] = deque()  # (seq before the chunk, its latest ts)
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self._failing = False
        self.cycles = 0
        self.intervals_recorded = 0
        self.alerts_recorded = 0

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
        if isinstance(after, int) and isinstance(emitted, dict):
            self._after = after
            self._emitted = {str(k): int(v) for k, v in emitted.items()}
        await self._restore_quotas(pipeline)
        self.pipeline = pipeline

    async def _restore_quotas(self, pipeline: EnergyPipeline) -> None:
        """Feed the stored intervals of the current quota periods (and the profile's days)."""
        if not self.energy.quotas or not self._emitted:
            return
        tz = ZoneInfo(self.site.timezone)
        now = self._clock()
        since = min(
            min(
                bucket_start(now, Size(rule.period), tz),
                now - rule.profile_days * _DAY_MS,
            )
            for rule in self.energy.quotas
        )
        last_id = 0
        while True:
            events = await self.store.events_after(last_id, _RESTORE_PAGE, kind="energy.interval")
            if not events:
                return
            last_id = events[-1].id
            restored = [
                i
                for i in (_interval(e.detail) for e in events)
                if i is not None
                and i.start_ms >= since
                and i.end_ms <= self._emitted.get(i.meter, -1)
            ]
            pipeline.quotas.add(restored)
            await asyncio.sleep(0)

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
        pipeline.evaluate(self._clock())
        await self._commit()

    def _feed(self, pipeline: EnergyPipeline, rows: list[StoredReading]) -> None:
        self._chunks.append((self._after, max(r.ts_ms for r in rows)))
        self._after = rows[-1].seq
        for row in rows:
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
            self._outbox.append(("energy.interval", self._record(interval)))
        self.intervals_recorded += len(fresh)

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
        cursor = {"after": self._replay_after(), "emitted": self._emitted}
        meta = {
            CURSOR_KEY: json.dumps(cursor, separators=(",", ":")),
            ALERTS_KEY: json.dumps(
                self.pipeline.alerts.raised(), separators=(",", ":"), default=str
            ),
        }
        outbox = list(self._outbox)
        await self.store.add_events(outbox, meta=meta)
        del self._outbox[: len(outbox)]


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


def _interval(detail: dict[str, Any]) -> Interval | None:
    try:
        return Interval(
            meter=str(detail["meter"]),
            start_ms=iso_to_ms(detail["start"]),
            end_ms=iso_to_ms(detail["end"]),
            value=float(detail["value"]),
            unit=str(detail["unit"]),
            quality=str(detail["quality"]),
            flags=frozenset(_strings(detail.get("flags", []))),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _strings(items: Iterable[Any]) -> list[str]:
    return [str(item) for item in items]
