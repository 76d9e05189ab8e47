"""systemd's watchdog: ``WATCHDOG=1`` only while the agent really makes progress.

With ``WatchdogSec=`` in the unit, systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) and
restarts the service when no ``WATCHDOG=1`` arrives for that long (sd_watchdog_enabled(3),
systemd.service(5)). The agent pings every half of it, and only when every watched part is
making progress:

- the event loop: the pings are sent from a task on it, so a blocked loop (a call that never
  returns, a CPU-bound loop) sends none. A thread beside it notices the loop has not run and
  logs where it is stuck, so the journal says why systemd restarted the agent;
- every source task (a poller or a push source) is still running: a task that ended while the
  agent is not stopping means readings stopped for good;
- every poller completes cycles: a device that does not answer is not a stall (its read times
  out, the poller ticks on and records the fault), but a cycle that never ends (a driver
  awaiting without a timeout) is;
- the store's writer thread answers a small query (a writer stuck in I/O on a dying SD card
  would otherwise leave readings piling up in memory).

When a ping is withheld the reasons are logged once (and again only when they change), at
error level: that is the line the journal shows before systemd's "Watchdog timeout".
Judgements use the injected clock; the pings' cadence is the clock's sleep (real time in the
service, a test's clock in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError
from agent.sdnotify import notify
from agent.sources.poller import MAX_OFFLINE_RETRY, IntervalPoller

__all__ = [
    "POLLER_GRACE_S",
    "STORE_STALL_S",
    "Part",
    "PollerProgress",
    "StoreProbe",
    "TaskAlive",
    "Watchdog",
    "watchdog_interval",
]

log = logging.getLogger(__name__)

# A poller may take this long beyond twice its own period (its shortest interval, or the offline
# retry cap while its device is down) to complete a cycle: a slow RS-485 line at 2400 bit/s reads
# a 27-point DL/T 645 meter in about 6 s, a dead device costs its timeouts.
POLLER_GRACE_S = 60.0
# The store's writer may take this long to answer (an eviction round on a large card, a retried
# commit); longer, and it is stuck.
STORE_STALL_S = 60.0


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None when systemd's watchdog is not
    on for this process (as sd_watchdog_enabled(3): ``WATCHDOG_PID``, when set, must be ours)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog pings", usec)
        return None
    return value / 2e6 if value > 0 else None


class Part(Protocol):
    """Something the watchdog watches: ``stalled(now)`` is None while it makes progress, else
    a sentence saying what stalled."""

    def stalled(self, now: float) -> str | None: ...


class TaskAlive:
    """A task that must run until the agent stops (a poller, a push source)."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task

    def stalled(self, now: float) -> str | None:
        if not self.task.done():
            return None
        if self.task.cancelled():
            return f"task {self.task.get_name()} was cancelled"
        exc = self.task.exception()
        if exc is not None:
            return f"task {self.task.get_name()} failed: {exc!r}"
        return f"task {self.task.get_name()} ended"


class PollerProgress:
    """A poller completes a cycle within twice its period plus `POLLER_GRACE_S`."""

    def __init__(self, poller: IntervalPoller, *, now: float) -> None:
        self.poller = poller
        self._cycles = poller.health.cycles
        self._since = now
        intervals = [info.interval for info in poller.device.points.values()]
        self._period = min(intervals, default=0.0)

    def limit(self) -> float:
        period = self._period
        if self.poller.health.online is False:  # retried less often while down
            period = max(MAX_OFFLINE_RETRY, period)
        return 2 * period + POLLER_GRACE_S

    def stalled(self, now: float) -> str | None:
        if not self._period:  # no points: the poller has nothing to do
            return None
        cycles = self.poller.health.cycles
        if cycles != self._cycles:
            self._cycles, self._since = cycles, now
            return None
        idle = now - self._since
        if idle <= self.limit():
            return None
        return (
            f"device {self.poller.name}'s poller has not completed a cycle for {idle:.0f} s "
            f"(at most {self.limit():.0f} s expected)"
        )


class _Queryable(Protocol):
    async def get_meta(self, key: str) -> str | None: ...


class StoreProbe:
    """The store's writer thread answers a small query every ``every`` seconds (`run`); a
    query outstanding for more than `STORE_STALL_S` is a stall."""

    KEY = "watchdog:probe"

    def __init__(self, store: _Queryable, *, clock: Clock, every: float) -> None:
        self.store = store
        self._clock = clock
        self._every = every
        self._asked_at: float | None = None

    async def run(self) -> None:
        while True:
            self._asked_at = self._clock.monotonic()
            # An error is an answer too: the writer is alive (the store reports its own faults).
            with contextlib.suppress(StoreError):
                await self.store.get_meta(self.KEY)
            self._asked_at = None
            await self._clock.sleep(self._every)

    def stalled(self, now: float) -> str | None:
        if self._asked_at is None or now - self._asked_at <= STORE_STALL_S:
            return None
        return f"the store's writer has not answered for {now - self._asked_at:.0f} s"


class Watchdog:
    """``async with Watchdog(interval, clock=...) as dog: await dog.run()`` pings every
    ``interval`` seconds while `watch`'s parts make progress; the context runs the thread that
    reports a blocked event loop."""

    def __init__(
        self,
        interval: float,
        *,
        clock: Clock | None = None,
        send: Callable[[str], bool] = notify,
    ) -> None:
        self.interval = interval
        self._clock = clock if clock is not None else system_clock()
        self._send = send
        self._parts: list[Part] = []
        self._withheld: tuple[str, ...] = ()
        self._beat = self._clock.monotonic()
        self._monitor: _LoopMonitor | None = None
        self.pings = 0

    @classmethod
    def from_environment(cls, *, clock: Clock | None = None) -> Watchdog | None:
        """The watchdog systemd asked for (``WATCHDOG_USEC``), or None."""
        interval = watchdog_interval()
        return cls(interval, clock=clock) if interval is not None else None

    async def __aenter__(self) -> Watchdog:
        # The loop's thread is this one: the monitor reports where it is stuck.
        self._monitor = _LoopMonitor(self, threading.get_ident())
        self._monitor.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()
            await asyncio.to_thread(monitor.join, 5.0)

    def watch(self, parts: Sequence[Part]) -> None:
        """Watch these parts from now on (the running agent's), replacing any before."""
        self._parts = list(parts)

    def unwatch(self) -> None:
        """Watch only the loop (while the agent stops, starts or reloads)."""
        self._parts = []

    @property
    def beat(self) -> float:
        """When the loop last ran the watchdog (the injected clock's monotonic seconds)."""
        return self._beat

    @property
    def clock(self) -> Clock:
        return self._clock

    def stalls(self) -> list[str]:
        """What is not making progress now (empty: all is well)."""
        now = self._clock.monotonic()
        return [reason for part in self._parts if (reason := part.stalled(now)) is not None]

    def tick(self) -> bool:
        """One judgement: ping when nothing stalled, else log why not (once per change)."""
        self._beat = self._clock.monotonic()
        reasons = tuple(self.stalls())
        if reasons:
            if reasons != self._withheld:
                log.error(
                    "watchdog: not telling systemd the agent is alive, so it restarts the "
                    "service after WatchdogSec: %s",
                    "; ".join(reasons),
                )
            self._withheld = reasons
            return False
        if self._withheld:
            log.warning("watchdog: every part makes progress again; pings resume")
            self._withheld = ()
        if self._send("WATCHDOG=1"):
            self.pings += 1
        return True

    async def run(self) -> None:
        """Tick every `interval` until cancelled."""
        while True:
            self.tick()
            await self._clock.sleep(self.interval)


class _LoopMonitor(threading.Thread):
    """Logs, from outside the event loop, that the loop has not run the watchdog for longer than
    three ping intervals, and the code it is stuck in (once per stall)."""

    def __init__(self, watchdog: Watchdog, loop_thread: int) -> None:
        super().__init__(name="edge-agent-watchdog-monitor", daemon=True)
        self._watchdog = watchdog
        self._loop_thread = loop_thread
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        dog = self._watchdog
        limit = 3 * dog.interval
        reported = False
        while not self._stopped.wait(dog.interval / 2):
            age = dog.clock.monotonic() - dog.beat
            if age <= limit:
                reported = False
            elif not reported:
                reported = True
                log.error(
                    "watchdog: the event loop has not run for %.1f s (nothing is polled, stored "
                    "or sent), so systemd restarts the service after WatchdogSec; it is stuck "
                    "in %s",
                    age,
                    self._where(),
                )

    def _where(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "an unknown place"
        stack = traceback.extract_stack(frame)[-3:]
        return " <- ".join(
            f"{entry.name} ({entry.filename}:{entry.lineno})" for entry in reversed(stack)
        )
