"""Schedule time: the wall clock, never going back; steps found against the monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.core.clock import ManualClock
from agent.hvac.clock import ScheduleClock, timesyncd_synchronized

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HOUR = 3600.0


def test_normal_progress_is_the_wall_clock() -> None:
    schedule = ScheduleClock(hold_max=86400)
    assert schedule.advance(T0, 0.0) == (T0, None)
    later = T0 + timedelta(seconds=60)
    assert schedule.advance(later, 60.0) == (later, None)


def test_a_step_forward_catches_up_at_once() -> None:
    schedule = ScheduleClock(hold_max=86400)
    schedule.advance(T0, 0.0)
    now, step = schedule.advance(T0 + timedelta(hours=5, seconds=60), 60.0)
    assert now == T0 + timedelta(hours=5, seconds=60)
    assert step is not None
    assert (step.action, step.seconds) == ("catch_up", 5 * HOUR)


def test_a_step_back_holds_until_the_wall_clock_catches_up() -> None:
    schedule = ScheduleClock(hold_max=86400)
    schedule.advance(T0, 0.0)
    now, step = schedule.advance(T0 - timedelta(hours=6), 60.0)
    assert now == T0  # not 02:00: the morning is not replayed
    assert step is not None
    assert (step.action, step.hold_until) == ("hold", T0)
    assert schedule.holding
    now, step = schedule.advance(T0 - timedelta(hours=3), 3 * HOUR + 60)
    assert (now, step) == (T0, None)  # still held, reported once
    resumed = T0 + timedelta(minutes=1)
    assert schedule.advance(resumed, 6 * HOUR + 120) == (resumed, None)
    assert not schedule.holding


def test_a_step_back_beyond_the_limit_restarts() -> None:
    schedule = ScheduleClock(hold_max=86400)
    schedule.advance(T0, 0.0)
    far_back = T0 - timedelta(days=3)
    now, step = schedule.advance(far_back, 60.0)
    assert now == far_back
    assert step is not None
    assert step.action == "restart"


def test_a_small_wobble_is_not_a_step() -> None:
    schedule = ScheduleClock(hold_max=86400, tolerance=30)
    schedule.advance(T0, 0.0)
    assert schedule.advance(T0 + timedelta(seconds=65), 60.0)[1] is None


def test_the_sync_flag(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    assert not timesyncd_synchronized(flag)
    flag.touch()
    assert timesyncd_synchronized(flag)


async def test_the_manual_clock() -> None:
    clock = ManualClock(T0)
    await clock.sleep(30)
    assert clock.wall() == T0 + timedelta(seconds=30)
    mono = clock.monotonic()
    clock.step(-HOUR)
    assert clock.wall() == T0 - timedelta(seconds=HOUR - 30)
    assert clock.monotonic() == mono
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 1, 1))
