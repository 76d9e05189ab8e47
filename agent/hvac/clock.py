"""Time for the controller: the wall clock for boundaries, the monotonic clock for intervals.

The clock pair itself is `agent.core.clock.Clock`, injected by the service.

A Raspberry Pi has no real-time clock: after a cold boot the wall clock is wrong until NTP
syncs, and systemd-timesyncd signals the sync by creating /run/systemd/timesync/synchronized
(systemd-timesyncd.service(8)). The rules:

1. **No action on untrusted time.** Until `time_trusted()` is true (the sync flag exists, or the
   config says `trust_clock: true`), the controller writes nothing and accepts no command; it
   reports once that it is waiting. Once trusted, it stays trusted until the process restarts:
   later steps are handled by rule 2.
2. **Schedule time never goes back.** The controller runs the schedule on a *schedule time*:
   the wall clock, except that it never goes below the latest schedule time already acted on.
   - A step forward (the clock was late): the schedule moves to the new time at once; the
     wanted state *at the new time* is written once, and the boundaries stepped over are not
     replayed one after another (their states are already superseded).
   - A step back (the clock was early): the state applied last is held, nothing is re-written,
     until the wall clock passes the latest time acted on; then the schedule continues. So a
     day of writes is never replayed. A step back larger than `clock_hold_max` (default a day)
     is taken as the correction of a clock that was badly wrong: the schedule restarts at the
     new time, as at start-up.
   Steps are found by comparing the wall clock's progress with the monotonic clock's, and each
   is reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

__all__ = [
    "TIMESYNC_FLAG",
    "ClockStep",
    "ScheduleClock",
    "timesyncd_synchronized",
]

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def timesyncd_synchronized(flag: Path = TIMESYNC_FLAG) -> bool:
    """Whether systemd-timesyncd has synchronised the clock since boot (the flag is in /run,
    a tmpfs, so it cannot survive a reboot)."""
    return flag.exists()


@dataclass(frozen=True, slots=True)
class ClockStep:
    """A step of the wall clock found between two readings."""

    seconds: float  # + forward, - back
    # catch_up (forward), hold (back, behind the schedule, within the limit), restart (back,
    # beyond the limit), continue (back, but not behind what the schedule acted on)
    action: str
    hold_until: datetime | None = None  # with "hold": when the schedule resumes


class ScheduleClock:
    """Turns wall and monotonic readings into a schedule time that never goes back."""

    def __init__(self, *, hold_max: float, tolerance: float = 30.0) -> None:
        self._hold_max = timedelta(seconds=hold_max)
        self._tolerance = tolerance
        self._wall: datetime | None = None
        self._mono = 0.0
        self._high: datetime | None = None
        self._holding = False

    @property
    def holding(self) -> bool:
        """Whether the schedule is held after a step back."""
        return self._holding

    @property
    def latest(self) -> datetime | None:
        """The latest schedule time handed out."""
        return self._high

    def advance(self, wall: datetime, mono: float) -> tuple[datetime, ClockStep | None]:
        """The schedule time for this reading of both clocks, and the step found, if any."""
        step: ClockStep | None = None
        drift = 0.0
        if self._wall is not None:
            expected = self._wall + timedelta(seconds=mono - self._mono)
            drift = (wall - expected).total_seconds()
        self._wall, self._mono = wall, mono
        high = self._high
        if high is None or wall >= high:
            if abs(drift) > self._tolerance:
                # Back, but not behind the schedule: nothing was acted on yet, nothing to hold.
                step = ClockStep(drift, "catch_up" if drift > 0 else "continue")
            self._high, self._holding = wall, False
            return wall, step
        # The wall clock is behind what the schedule has already acted on.
        if high - wall > self._hold_max:
            self._high, self._holding = wall, False
            return wall, ClockStep(drift, "restart")
        if abs(drift) > self._tolerance:
            step = ClockStep(drift, "hold", hold_until=high)
        self._holding = True
        return high, step
