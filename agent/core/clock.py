"""Time for every part of the agent, from one injectable clock pair.

Nothing in the agent reads the time on its own: every part that needs the time takes a `Clock`
from its caller (the service hands its clock down), so that the code and its tests behave the
same at any hour, date and time zone. The clock pair:

- `wall()` / `time()` / `now_ms()`: the wall clock (UTC), which stamps readings and finds
  schedule and accounting boundaries. It can be wrong (a Raspberry Pi has no RTC) and can step.
- `monotonic()` / `sleep()`: seconds from an arbitrary origin, never stepped: for intervals,
  timeouts and cadence.

`SystemClock` is the real pair, optionally shifted by a fixed offset. The offset exists so that a
whole test run, subprocesses included, can be started at a chosen moment (a Sunday night in
Beijing, a Spring Festival holiday, the last seconds of a year): the test suite computes the
offset once and exports it as ``EDGE_AGENT_CLOCK_OFFSET`` (seconds), and `system_clock()` in every
process of the run reads it. It is never set on a gateway. `ManualClock` moves only when told:
for unit tests and for running a schedule faster than real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = [
    "CLOCK_OFFSET_ENV",
    "Clock",
    "ManualClock",
    "SystemClock",
    "VirtualClock",
    "system_clock",
]

CLOCK_OFFSET_ENV = "EDGE_AGENT_CLOCK_OFFSET"


class Clock(Protocol):
    """The clock pair every time-dependent part takes from its caller."""

    def wall(self) -> datetime:
        """The wall clock, an aware UTC datetime."""
        ...

    def time(self) -> float:
        """The wall clock in epoch seconds."""
        ...

    def now_ms(self) -> int:
        """The wall clock in integer epoch milliseconds (the store's timestamp unit)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never stepped."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of monotonic time."""
        ...


class SystemClock:
    """The machine's clocks; the wall clock shifted by ``offset`` seconds (0 on a gateway)."""

    def __init__(self, *, offset: float = 0.0) -> None:
        if not math.isfinite(offset):
            raise ValueError(f"clock offset must be a finite number of seconds, not {offset}")
        self.offset = offset

    def __repr__(self) -> str:
        return f"SystemClock(offset={self.offset})" if self.offset else "SystemClock()"

    def time(self) -> float:
        return time.time() + self.offset

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def now_ms(self) -> int:
        return int(self.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def system_clock() -> SystemClock:
    """The real clock pair, shifted by ``EDGE_AGENT_CLOCK_OFFSET`` seconds when that is set
    (test runs at a chosen moment; see the module docstring)."""
    raw = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not raw:
        return SystemClock()
    try:
        offset = float(raw)
    except ValueError:
        raise ValueError(
            f"{CLOCK_OFFSET_ENV}={raw!r} is not a number of seconds"
        ) from None
    return SystemClock(offset=offset)


class ManualClock:
    """A clock pair that moves only when told: `sleep` and `advance` move both clocks; `step`
    moves the wall clock alone (an NTP step)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        self._wall = start.timestamp()
        self._mono = 1000.0

    @classmethod
    def at_ms(cls, ts_ms: int) -> ManualClock:
        """A clock standing at ``ts_ms`` epoch milliseconds."""
        return cls(datetime.fromtimestamp(ts_ms / 1000, UTC))

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self._wall, UTC)

    def time(self) -> float:
        return self._wall

    def now_ms(self) -> int:
        return int(self._wall * 1000)

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        if seconds < 0:
            raise ValueError("time does not pass backwards; use step() for a clock step")
        self._wall += seconds
        self._mono += seconds

    def step(self, seconds: float) -> None:
        """The wall clock is stepped (forward or back); the monotonic clock is not."""
        self._wall += seconds


class VirtualClock:
    """A clock pair that moves only in `advance`, for several tasks that sleep on it at once
    (ManualClock's `sleep` moves time itself, which suits one sleeper only): sleepers wake in
    deadline order, each with the clock standing at its deadline, and each runs until it waits
    again (``yields`` turns of the loop) before the next wakes."""

    def __init__(self, start: datetime, *, yields: int = 1) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        self._epoch = start.timestamp()
        self._mono = 0.0
        self._yields = yields
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def sleepers(self) -> int:
        """Tasks waiting on the clock now."""
        return len(self._sleepers)

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._epoch + self._mono

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def now_ms(self) -> int:
        return round(self.time() * 1000)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Time passes: each sleeper due wakes, and runs, before the next."""
        target = self._mono + seconds
        await self._settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, deadline)
            if not future.done():
                future.set_result(None)
            await self._settle()
        self._mono = target
        await self._settle()

    async def _settle(self) -> None:
        for _ in range(self._yields):
            await asyncio.sleep(0)
