"""The platform uplink: the gateway as the energy-monitoring platform's data collector.

``await PlatformUplink(config.platform, energy=..., tz=..., store=...).run()`` runs until it is
cancelled, beside the MQTT uplink in the supervisor's TaskGroup. It connects, passes the identity
check, then loops: a heartbeat every ``heartbeat`` seconds (the reply's time gives the clock
offset, shown by ``edge-agent status`` and offered to the clock-trust logic through ``on_time``
when ``trust_time`` is set); the newest closed period as a ``report`` as soon as its intervals
are stored; and every older period not yet settled, oldest first, as a ``continuous`` report, at
most one per ``continuous_gap`` seconds (断点续传), so a backlog never holds the current period
back. A report is delivered only when acknowledged; the ledger (agent.platform.reports) is then
saved, so a restart neither repeats nor loses a report.

Every network await is bounded by the config's timeout; any failure drops the connection and
reconnects after a capped exponential backoff with jitter (agent.core.backoff). The uplink only
reads the store, so an unreachable platform never slows polling or the MQTT uplink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.backoff import Backoff
from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError
from agent.core.record import ms_to_iso
from agent.energy.config import EnergyConfig
from agent.energy.periods import day_of
from agent.platform.config import PlatformConfig
from agent.platform.errors import AuthRefusedError, PlatformError
from agent.platform.reports import (
    DAYS_KEPT,
    DELIVERED,
    EMPTY,
    LEDGER_KEY,
    BuiltReport,
    Ledger,
    ReportBuilder,
    day_rate,
    period_start,
)
from agent.platform.session import PlatformSession, PlatformTime
from agent.platform.summary import STATE_KEY
from agent.store import Store

__all__ = ["RATE_EVENT", "STATE_KEY", "PlatformUplink"]

log = logging.getLogger(__name__)

RATE_EVENT = "platform.rate"
IDLE_S = 5.0  # longest sleep while nothing is due: how soon a stored interval is noticed
_LIVE_LAG_MS = 120_000  # the energy accounting stores intervals on a 60 s cycle


class PlatformUplink:
    """The platform link; see the module docstring."""

    def __init__(
        self,
        config: PlatformConfig,
        *,
        energy: EnergyConfig,
        tz: str,
        store: Store,
        clock: Clock | None = None,
        on_time: Callable[[PlatformTime], None] | None = None,
        backoff: Backoff | None = None,
        idle: float = IDLE_S,
    ) -> None:
        self.config = config
        self.tz = ZoneInfo(tz)
        self._tz_name = tz
        self.store = store
        self._clock = clock if clock is not None else system_clock()
        self._on_time = on_time
        self._backoff = backoff if backoff is not None else Backoff(initial=2.0, cap=300.0)
        self._idle = idle
        self.builder = ReportBuilder(config, energy, tz=self.tz)
        self.period_ms = config.period_ms
        # A period with a meter still silent is reported once this long has passed its end.
        self.settle_ms = self.builder.base_ms + round(energy.max_step * 1000) + _LIVE_LAG_MS
        self.ledger: Ledger | None = None
        self.state: dict[str, Any] = {"state": "starting", "period_ms": self.period_ms, "tz": tz}
        self._challenges: set[str] = set()
        self._sequence = 0
        self._failing: str | None = None
        self._last_empty: int | None = None
        self.reports_sent = 0
        self.continuous_sent = 0

    # ---- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            # A clean stop: say so in the store (bounded; the store may be closing).
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._set_state("stopped"))
            raise

    async def _run(self) -> None:
        while True:
            try:
                if self.ledger is None:
                    self.ledger = await self._load_ledger()
                async with PlatformSession(
                    self.config, tz=self._tz_name, clock=self._clock, challenges=self._challenges
                ) as session:
                    await session.login()
                    self._backoff.reset()
                    if self._failing is not None:
                        log.info("platform: link back after: %s", self._failing)
                    else:
                        log.info("platform: connected to %s", self._where)
                    self._failing = None
                    await self._set_state("online")
                    await self._serve(session)
            except (PlatformError, OSError, StoreError) as exc:
                await self._failed(exc)
            await self._clock.sleep(self._backoff.next_delay())

    @property
    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    async def _failed(self, exc: Exception) -> None:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, StoreError):
            log.warning("platform: the store failed: %s; retrying", reason)
        elif self._failing is None:
            log.warning("platform: link to %s lost: %s; reconnecting", self._where, reason)
        elif reason != self._failing:
            log.warning("platform: still down: %s", reason)
        self._failing = reason
        state = "refused" if isinstance(exc, AuthRefusedError) else "offline"
        with contextlib.suppress(StoreError):  # the store's own failure is already logged
            await self._set_state(state, reason=reason)

    async def _serve(self, session: PlatformSession) -> None:
        next_beat = self._clock.monotonic()
        last_continuous = -math.inf
        while True:
            if self._clock.monotonic() >= next_beat:
                await self._heartbeat(session)
                next_beat = self._clock.monotonic() + self.config.heartbeat
            now = self._clock.now_ms()
            await self._announce(now)
            gap_left = last_continuous + self.config.continuous_gap - self._clock.monotonic()
            job = await self._next_report(now, backlog=gap_left <= 0)
            if job is None:
                wait = next_beat - self._clock.monotonic()
                if gap_left > 0:
                    wait = min(wait, gap_left)
                await self._clock.sleep(max(0.0, min(wait, self._idle)))
                continue
            await self._exchange(session, job)
            if job.operation == "continuous":
                last_continuous = self._clock.monotonic()

    async def _exchange(self, session: PlatformSession, job: BuiltReport) -> None:
        """Send a report and record its ack. A stop (cancellation) lets an exchange under way
        finish, bounded by the timeout: the platform may already hold the report, and recording
        its ack is what keeps a restart from sending it twice."""

        async def exchange() -> None:
            await session.send_report(job.payload, time=job.time)
            await self._delivered(job)

        task = asyncio.ensure_future(exchange())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Its failure is the link's, logged by the next connection: the stop goes on.
            with contextlib.suppress(PlatformError, OSError, StoreError, TimeoutError):
                async with asyncio.timeout(self.config.timeout * 2):
                    await task
            raise

    async def _heartbeat(self, session: PlatformSession) -> None:
        reading = await session.heartbeat()
        self.state["offset_s"] = round(reading.offset_s, 1)
        self.state["heartbeat_ms"] = self._clock.now_ms()
        await self._save_state()
        if self.config.trust_time and self._on_time is not None:
            self._on_time(reading)

    # ---- what to send -------------------------------------------------------------------

    async def _next_report(self, now: int, *, backlog: bool) -> BuiltReport | None:
        ledger = self._ledger
        newest = period_start(now, self.period_ms, self.tz) - self.period_ms
        if newest < ledger.origin:
            return None
        if not ledger.is_settled(newest):
            built = await self._build(newest, "report", now)
            if built is not None:
                return built
        if not backlog:
            return None
        start = ledger.frontier
        while start < newest:
            if not ledger.is_settled(start):
                built = await self._build(start, "continuous", now)
                if built is not None:
                    return built
            start += self.period_ms
        return None

    async def _build(self, start: int, operation: str, now: int) -> BuiltReport | None:
        """The report of a period, or None: not complete yet, or empty (then settled as such)."""
        ledger = self._ledger
        end = start + self.period_ms
        rows = await self.store.intervals(since_ms=start, until_ms=end, meters=self.builder.names)
        if not self.builder.is_complete(rows, end) and now < end + self.settle_ms:
            return None
        before = await self._totals_at(start)
        self._sequence += 1
        built = self.builder.build(
            start, rows, before=before, operation=operation, sequence=self._sequence
        )
        if built is None:
            ledger.settled[start] = EMPTY
            await self._advance()
            if self._last_empty != start - self.period_ms:  # once per run of empty periods
                log.warning(
                    "platform: no meter has data from %s on; such periods are not reported",
                    ms_to_iso(start),
                )
            self._last_empty = start
        return built

    async def _totals_at(self, start: int) -> dict[str, float]:
        ledger = self._ledger
        totals = dict(ledger.totals)
        if start > ledger.frontier:
            rows = await self.store.intervals(
                since_ms=ledger.frontier, until_ms=start, meters=self.builder.names
            )
            for row in rows:
                name = str(row["meter"])
                totals[name] = totals.get(name, 0.0) + float(row["value"])
        return totals

    # ---- the ledger ---------------------------------------------------------------------

    @property
    def _ledger(self) -> Ledger:
        assert self.ledger is not None, "run() loads the ledger first"
        return self.ledger

    async def _load_ledger(self) -> Ledger:
        text = await self.store.get_meta(LEDGER_KEY)
        saved: Ledger | None = None
        if text is not None:
            try:
                saved = Ledger.from_json(text)
            except ValueError as exc:
                log.error("platform: %s; starting a new ledger", exc)  # noqa: TRY400
        if saved is not None and saved.period_ms == self.period_ms:
            return saved
        if saved is not None:
            # Periods of another length do not line up with the settled ones: go on from the
            # first new period that starts after everything settled, keeping the totals.
            origin = period_start(saved.frontier - 1, self.period_ms, self.tz) + self.period_ms
            self.ledger = Ledger(
                origin=origin,
                frontier=saved.frontier,
                period_ms=self.period_ms,
                totals=saved.totals,
                days=saved.days,
                announced=saved.announced,
            )
            log.warning(
                "platform: the report period changed from %d to %d min; reporting from %s",
                saved.period_ms // 60_000,
                self.period_ms // 60_000,
                ms_to_iso(origin),
            )
            await self._advance(to=origin)
            return self.ledger
        since = self._clock.now_ms() - round((self.config.backfill or 0) * 1000)
        origin = period_start(since, self.period_ms, self.tz)
        log.info("platform: reporting periods from %s", ms_to_iso(origin))
        self.ledger = Ledger(origin=origin, frontier=origin, period_ms=self.period_ms)
        await self._save()  # the origin is kept: a restart does not move the periods due
        return self.ledger

    async def _delivered(self, job: BuiltReport) -> None:
        ledger = self._ledger
        ledger.settled[job.start] = DELIVERED
        day = self.builder.day_of(job.start)
        ledger.days[day] = ledger.days.get(day, 0) + 1
        ledger.meters_missing += len(job.missing)
        if job.operation == "continuous":
            self.continuous_sent += 1
        else:
            self.reports_sent += 1
        self.state["last_ack_ms"] = self._clock.now_ms()
        self.state["last_period"] = ms_to_iso(job.start)
        await self._advance()

    async def _advance(self, *, to: int | None = None) -> None:
        """Move the frontier over settled periods (or ``to``), adding their consumption to the
        totals, then save the ledger."""
        ledger = self._ledger
        new = ledger.frontier if to is None else to
        while new in ledger.settled:
            del ledger.settled[new]
            new += self.period_ms
        if new > ledger.frontier:
            rows = await self.store.intervals(
                since_ms=ledger.frontier, until_ms=new, meters=self.builder.names
            )
            for row in rows:
                name = str(row["meter"])
                ledger.totals[name] = ledger.totals.get(name, 0.0) + float(row["value"])
            ledger.frontier = new
        await self._save()

    async def _announce(self, now: int) -> None:
        """A ``platform.rate`` event for each ended day whose figure is new (at the day's end,
        then again as the backlog fills it in)."""
        ledger = self._ledger
        today = day_of(now, self.tz)
        first = day_of(ledger.origin, self.tz)
        days = {date.fromisoformat(d) for d in ledger.days} | {today - timedelta(days=1)}
        events = []
        for day in sorted(d for d in days if first <= d < today):
            rate = day_rate(ledger, day, now_ms=now, period_ms=self.period_ms, tz=self.tz)
            if ledger.announced.get(rate.day) != rate.delivered:
                ledger.announced[rate.day] = rate.delivered
                events.append((RATE_EVENT, rate.to_record()))
        if events:
            cutoff = (today - timedelta(days=DAYS_KEPT)).isoformat()
            for book in (ledger.days, ledger.announced):
                for old in [d for d in book if d < cutoff]:
                    del book[old]
            await self._save(events)

    async def _save(self, events: list[tuple[str, dict[str, Any]]] | None = None) -> None:
        self.state["backlog"] = self.backlog(self._clock.now_ms())
        meta = {LEDGER_KEY: self._ledger.to_json(), STATE_KEY: self._state_json()}
        await self.store.add_events(events or [], meta=meta)

    def backlog(self, now: int) -> int:
        """Ended periods not yet settled."""
        ledger = self._ledger
        newest = period_start(now, self.period_ms, self.tz)
        total = max(0, (newest - ledger.frontier) // self.period_ms)
        return total - sum(1 for s in ledger.settled if s < newest)

    # ---- the state shown by `edge-agent status` --------------------------------------------

    def _state_json(self) -> str:
        return json.dumps(self.state, separators=(",", ":"), default=str)

    async def _set_state(self, state: str, *, reason: str | None = None) -> None:
        if self.state.get("state") != state or self.state.get("reason") != reason:
            self.state.update(state=state, since_ms=self._clock.now_ms(), reason=reason)
            await self._save_state()

    async def _save_state(self) -> None:
        await self.store.set_meta(STATE_KEY, self._state_json())
