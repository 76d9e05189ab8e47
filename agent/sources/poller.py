"""The one interval poller, for every polled protocol (the coordinator pattern).

One poller per device: it reads the points that are due, hands the readings to the sink, and
keeps the device's health. A device that stops answering is marked unavailable (logged once),
its points become bad readings (never a stale value as good), it is retried less and less often
until it answers, and its return is logged once. The driver only reads: ``device.read(points)``.

Cadence: every point has its interval and stays on its grid (start + k x interval). Points due
within a tenth of the shortest interval ride along with the current cycle, so points with equal
intervals stay together despite timer jitter. A cycle that ends after the next tick was due
starts the next one at once and counts the overrun; ticks missed entirely (a cycle longer than
an interval) are counted as overruns and skipped, so a slow line degrades by reporting what it
could not keep, not by drifting or by queueing cycles without end. Overruns are counted in
ticks of the device's cycle (once per cycle, not once per point), with when the last one was
and the interval that could not be kept; `agent.sources.cadence` keeps them for `status`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from agent.core.backoff import Backoff
from agent.core.clock import Clock, system_clock
from agent.core.errors import DeviceUnavailableError
from agent.core.record import Quality, Reading
from agent.core.source import PolledDevice, Sink

__all__ = ["MAX_OFFLINE_RETRY", "DeviceHealth", "IntervalPoller"]

log = logging.getLogger(__name__)

# A device that stays down is retried after 2, 4, 8 ... x its shortest interval, capped here
# (seconds; or at the shortest interval itself when that is longer).
MAX_OFFLINE_RETRY = 60.0
# Points due within this fraction of the shortest interval ride along with the current cycle.
RIDE_ALONG = 0.1


@dataclass
class DeviceHealth:
    """What the live view, `status` and the tests see of a device."""

    online: bool | None = None  # None until the first poll
    last_ok_ms: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    cycles: int = 0
    overruns: int = 0  # ticks that could not be kept because the previous cycle ran late
    last_overrun_ms: int | None = None  # when the last one was (the injected clock)
    missed_interval: float | None = None  # the shortest interval the last late cycle missed
    cycle_s: float = 0.0  # how long the last cycle took, seconds


class IntervalPoller:
    """``await IntervalPoller(device, sink=...).run()`` polls until cancelled."""

    def __init__(self, device: PolledDevice, *, sink: Sink, clock: Clock | None = None) -> None:
        self.device = device
        self._sink = sink
        self._clock = clock if clock is not None else system_clock()
        self.health = DeviceHealth()
        self._intervals = {name: info.interval for name, info in device.points.items()}
        shortest = min(self._intervals.values(), default=1.0)
        cap = max(MAX_OFFLINE_RETRY, shortest)
        self._retry = Backoff(initial=min(2 * shortest, cap), cap=cap, jitter=0.0)

    @property
    def name(self) -> str:
        return self.device.name

    async def poll_once(self, names: Sequence[str] | None = None) -> list[Reading]:
        """Read the named points (all by default) once and keep the health; raises nothing
        a device can cause."""
        wanted = list(names) if names is not None else list(self._intervals)
        try:
            readings = await self.device.read(wanted)
        except DeviceUnavailableError as exc:
            self._mark_failure(exc.reason)
            got = {r.point: r for r in exc.readings}
            ts = self._clock.now_ms()
            return [
                got.get(n) or Reading(self.device.name, n, ts, None, self._unit(n), Quality.BAD)
                for n in wanted
            ]
        self._mark_ok()
        return readings

    def _unit(self, name: str) -> str:
        info = self.device.points.get(name)
        return info.unit if info is not None else ""

    def _mark_ok(self) -> None:
        if self.health.online is False:
            log.warning(
                "device %s answers again after %d failed polls",
                self.device.name,
                self.health.consecutive_failures,
            )
        self.health.online = True
        self.health.last_ok_ms = self._clock.now_ms()
        self.health.last_error = None
        self.health.consecutive_failures = 0
        self._retry.reset()

    def _mark_failure(self, reason: str) -> None:
        if self.health.online is not False:
            log.warning("device %s is unavailable: %s", self.device.name, reason)
        self.health.online = False
        self.health.last_error = reason
        self.health.consecutive_failures += 1

    def _overran(self, ticks: int, interval: float) -> None:
        health = self.health
        if health.overruns == 0:  # once per device (status keeps the counts)
            log.info(
                "device %s: a cycle took %.3g s, past its %g s interval; the next starts at "
                "once and the ticks missed are counted (edge-agent status)",
                self.device.name,
                health.cycle_s,
                interval,
            )
        health.overruns += ticks
        health.last_overrun_ms = self._clock.now_ms()
        health.missed_interval = interval

    async def run(self) -> None:
        """Poll forever on each point's interval (cancel to stop)."""
        if not self._intervals:
            return
        # Cadence paces real I/O, so it runs on the real monotonic clock; the injected clock
        # stamps readings and health (a test's manual clock must not stall or race the loop).
        monotonic = time.monotonic
        start = monotonic()
        next_due = dict.fromkeys(self._intervals, start)
        tolerance = RIDE_ALONG * min(self._intervals.values())
        while True:
            now = monotonic()
            due = [n for n, t in next_due.items() if t <= now + tolerance]
            if due:
                began = now
                readings = await self.poll_once(due)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Some libraries await replies with asyncio.wait_for, which on Python 3.11
                    # can swallow a cancel that lands as the reply arrives (CPython gh-86296):
                    # honour it here, or a stopping agent would poll on forever.
                    raise asyncio.CancelledError
                self.health.cycles += 1
                if readings:
                    await self._sink(readings)
                after = monotonic()
                self.health.cycle_s = after - began
                late_ticks, late_interval = 0, math.inf
                for name in due:
                    interval = self._intervals[name]
                    nxt = next_due[name] + interval
                    if nxt <= after:
                        # Late: the next cycle starts at once; ticks missed entirely are
                        # counted and skipped (staying on the grid), never queued.
                        missed = int((after - nxt) // interval)
                        late_ticks = max(late_ticks, missed + 1)
                        late_interval = min(late_interval, interval)
                        nxt += missed * interval
                    next_due[name] = nxt
                if late_ticks:
                    self._overran(late_ticks, late_interval)
                if self.health.online is False:
                    retry_at = after + self._retry.next_delay()
                    next_due = {n: max(t, retry_at) for n, t in next_due.items()}
            await asyncio.sleep(max(0.0, min(next_due.values()) - monotonic()))
