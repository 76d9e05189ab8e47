"""Readings taken before the clock is trusted (a cold boot without a real-time clock): flagged,
then given their true time when trust arrives on the same boot, or flagged for good across a
reboot. A real store file, a ManualClock whose wall clock steps as NTP would step it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from agent.core.clock import ManualClock
from agent.core.record import Reading
from agent.export import export
from agent.status import print_status
from agent.store import Store, read_events, read_stats

WINDOW = 0.05
# What NTP finds: the gateway booted believing it was 1970; it is 2026.
STEP_S = (
    datetime(2026, 11, 26, 8, 0, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
).total_seconds()


def at(clock: ManualClock, value: float) -> Reading:
    return Reading("m1", "p", clock.now_ms(), value, "W")


async def test_untrusted_readings_are_flagged_then_corrected_when_trust_arrives(
    tmp_path: Path,
) -> None:
    db = tmp_path / "readings.db"
    clock = ManualClock(datetime(1970, 1, 1, 0, 5, tzinfo=UTC))
    trusted = [False]
    first_ts = clock.now_ms()
    async with Store(
        db,
        batch_window=WINDOW,
        clock=clock,
        clock_trusted=lambda: trusted[0],
        boot_id=lambda: "boot-a",
    ) as store:
        await store.append([at(clock, 1.0)])
        clock.advance(10)
        await store.append([at(clock, 2.0)])
        await store.flush()
        early = await store.unsynced(10)
        assert [r.clock_untrusted for r in early] == [True, True]
        assert early[0].to_record()["clock"] == "untrusted"
        await store.mark_synced([early[0].seq])  # already sent, flagged
        assert (await store.stats()).clock_awaiting == 2
        # NTP steps the wall clock (the monotonic clock goes on), and the clock is trusted.
        clock.step(STEP_S)
        trusted[0] = True
        clock.advance(2)
        await store.append([at(clock, 3.0)])
        await store.flush()
        after = await store.unsynced(10)
        stats = await store.stats()
    step_ms = round(STEP_S * 1000)
    # Both early readings go out again (the one sent flagged, too) with their true time.
    assert [(r.value, r.ts_ms, r.clock_untrusted) for r in after] == [
        (1.0, first_ts + step_ms, False),
        (2.0, first_ts + 10_000 + step_ms, False),
        (3.0, first_ts + 12_000 + step_ms, False),
    ]
    assert "clock" not in after[0].to_record()
    assert (stats.clock_awaiting, stats.clock_uncorrected, stats.unsynced) == (0, 0, 3)
    (event,) = read_events(db, kinds=["clock_corrected"])
    assert event.detail == {"readings": 2, "shift_ms": [step_ms]}


async def test_readings_of_an_earlier_boot_keep_the_flag_and_are_counted(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    clock = ManualClock(datetime(1970, 1, 1, 0, 5, tzinfo=UTC))
    async with Store(
        db, batch_window=WINDOW, clock=clock, clock_trusted=lambda: False, boot_id=lambda: "a"
    ) as store:
        await store.append([at(clock, 1.0), at(clock, 2.0)])
    # A reboot (a new boot id, the monotonic clock restarted), and a trusted clock at once.
    clock = ManualClock(datetime(2026, 11, 26, 8, 0, tzinfo=UTC))
    async with Store(
        db, batch_window=WINDOW, clock=clock, clock_trusted=lambda: True, boot_id=lambda: "b"
    ) as store:
        await store.append([at(clock, 3.0)])
        await store.flush()
        rows = await store.unsynced(10)
    assert [(r.value, r.clock_untrusted) for r in rows] == [(1.0, True), (2.0, True), (3.0, False)]
    assert rows[0].ts_ms < 86_400_000, "the 1970 stamp is kept, and flagged, never passed as real"
    stats = read_stats(db)
    assert (stats.clock_awaiting, stats.clock_uncorrected) == (0, 2)
    (event,) = read_events(db, kinds=["clock_uncorrectable"])
    assert event.detail["readings"] == 2
    out = io.StringIO()
    print_status(db, as_json=False, out=out, clock=clock)
    assert "0 readings stamped before the clock was trusted await correction; 2 keep" in (
        out.getvalue()
    )
    out = io.StringIO()
    export(db, fmt="csv", since=None, until=None, device=None, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(",quality,clock")
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["untrusted", "untrusted", ""]


async def test_a_store_without_a_trust_decision_flags_nothing(tmp_path: Path) -> None:
    clock = ManualClock(datetime(1970, 1, 1, 0, 5, tzinfo=UTC))
    async with Store(tmp_path / "r.db", batch_window=WINDOW, clock=clock) as store:
        await store.append([at(clock, 1.0)])
        await store.flush()
        (row,) = await store.unsynced(10)
    assert not row.clock_untrusted


def test_the_trust_decision_comes_from_the_config() -> None:
    import pytest
    from pydantic import ValidationError

    from agent.config.model import StoreConfig
    from agent.store.clocktrust import trust

    assert StoreConfig().clock_trust == "always"
    assert trust(StoreConfig().clock_trust) is None  # no flag, as before
    for source in ("timesyncd", "kernel"):
        decide = trust(StoreConfig(clock_trust=source).clock_trust)
        assert decide is not None
        assert isinstance(decide(), bool)  # asks the machine: never raises
    with pytest.raises(ValidationError):
        StoreConfig(clock_trust="sometimes")  # type: ignore[arg-type]
