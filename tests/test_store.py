"""The SQLite buffer: real files in tmp_path, the real writer thread, a real SIGKILL."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

import agent
from agent.core.errors import StoreError
from agent.core.record import Quality, Reading, StoredReading
from agent.store import (
    MIGRATIONS,
    Store,
    StoreEvent,
    StoreStats,
    apply_migrations,
    export_readings,
    read_events,
    read_stats,
)

WINDOW = 0.05  # a short batch window keeps the tests fast


def reading(
    value: object,
    *,
    device: str = "m1",
    point: str = "p",
    ts_ms: int = 1_000,
    unit: str = "W",
    quality: Quality = Quality.GOOD,
) -> Reading:
    return Reading(
        device=device,
        point=point,
        ts_ms=ts_ms,
        value=value,  # type: ignore[arg-type]
        unit=unit,
        quality=quality,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "readings.db"


def test_constructor_does_no_io(db_path: Path) -> None:
    Store(db_path)
    assert not db_path.parent.exists()


async def test_closing_a_store_that_never_opened_is_harmless(db_path: Path) -> None:
    store = Store(db_path)
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreError, match="not open"):
        await store.append([reading(1)])


async def test_round_trip_keeps_types_and_quality(db_path: Path) -> None:
    given = [
        reading(42, point="int", quality=Quality.GOOD),
        reading(-(2**63), point="int_min"),
        reading(230.5, point="float", unit="V"),
        reading("on", point="text", unit=""),
        reading(None, point="none", quality=Quality.BAD),
        reading(True, point="bool", quality=Quality.STALE),
        reading("12", point="numeric-looking text"),
    ]
    async with Store(db_path, batch_window=WINDOW) as store:
        await store.append(given)
        await store.flush()
        got = await store.unsynced(100)
    expected = [
        StoredReading(
            seq=i,
            device=r.device,
            point=r.point,
            ts_ms=r.ts_ms,
            value=int(r.value) if isinstance(r.value, bool) else r.value,
            unit=r.unit,
            quality=r.quality,
        )
        for i, r in enumerate(given, start=1)
    ]
    assert got == expected
    assert [type(r.value) for r in got] == [int, int, float, str, type(None), int, str]


async def test_batches_commit_on_size_or_window(db_path: Path) -> None:
    async with Store(db_path, batch_window=30.0, batch_max=3) as store:
        await store.append([reading(1), reading(2)])
        assert not await store.wait_for_new(0, 0.2), "committed before the window or batch_max"
        await store.append([reading(3)])  # batch_max reached: commit now, not in 30 s
        assert await store.wait_for_new(0, 2.0)
        assert [r.value for r in await store.unsynced(10)] == [1, 2, 3]
        await store.append([reading(4)])
        await store.flush()  # flush does not wait for the window
        assert store.last_seq == 4
    async with Store(db_path, batch_window=0.1, batch_max=1000) as store:
        started = time.monotonic()
        await store.append([reading(5)])
        assert await store.wait_for_new(4, 2.0)
        assert time.monotonic() - started < 1.0


async def test_a_waiting_uplink_gets_readings_within_the_publish_window(db_path: Path) -> None:
    """Someone waits (the uplink, caught up): commit after the publish window, not the batch
    window; no one waits: the batch window holds (fewest writes to the card)."""
    async with Store(db_path, batch_window=30.0, publish_window=0.05) as store:
        await store.append([reading(1)])
        assert not await store.wait_for_new(0, 0), "committed with no one waiting"
        waiter = asyncio.create_task(store.wait_for_new(0, 10.0))
        await store.append([reading(2)])
        assert await asyncio.wait_for(waiter, 10.0) is True, "held for the 30 s batch window"
        assert store.last_seq == 2
        await asyncio.sleep(0.05)  # the waiter has gone: the writer goes back to the window
        await store.append([reading(3)])
        await asyncio.sleep(0.3)
        assert store.last_seq == 2, "committed within the batch window with no one waiting"


async def test_wait_for_new_wakes_a_waiter(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW) as store:
        waiter = asyncio.create_task(store.wait_for_new(0, 5.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await store.append([reading(1)])
        assert await asyncio.wait_for(waiter, 2.0) is True
        assert await store.wait_for_new(0, 0)  # already there: returns at once
        assert not await store.wait_for_new(1, 0.05)


async def test_seq_strictly_increases_and_is_never_reused(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW) as store:
        for value in range(5):
            await store.append([reading(value)])
        await store.flush()
        assert [r.seq for r in await store.unsynced(10)] == [1, 2, 3, 4, 5]
    # Delete the newest rows behind the store's back, as a later eviction might.
    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM readings WHERE seq >= 4")
    conn.close()
    async with Store(db_path, batch_window=WINDOW) as store:
        assert store.last_seq == 5
        await store.append([reading(99)])
        await store.flush()
        assert [r.seq for r in await store.unsynced(10)] == [1, 2, 3, 6]
    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM readings")
    conn.close()
    async with Store(db_path, batch_window=WINDOW) as store:
        await store.append([reading(100)])
        await store.flush()
        assert [r.seq for r in await store.unsynced(10)] == [7]
        assert (await store.stats()).last_seq == 7


async def test_mark_synced(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW) as store:
        await store.append([reading(v, ts_ms=1000 + v) for v in range(6)])
        await store.flush()
        before = await store.stats()
        assert (before.rows, before.unsynced, before.oldest_unsynced_ms) == (6, 6, 1000)
        assert before.last_sync_ms is None
        await store.mark_synced([1, 2, 4])
        await store.mark_synced([])
        assert [r.seq for r in await store.unsynced(10)] == [3, 5, 6]
        assert [r.seq for r in await store.unsynced(2)] == [3, 5]
        after = await store.stats()
        assert (after.rows, after.unsynced, after.oldest_unsynced_ms) == (6, 3, 1002)
        assert after.last_sync_ms is not None
        assert after.last_seq == 6
        assert after.bytes > 0
        # The CLI's read-only view agrees, while the store is open, once the marks are in
        # the file (the next commit, a flush, or a batch window later).
        assert read_stats(db_path).unsynced == 6
        await store.flush()
        ro = read_stats(db_path)
        assert (ro.rows, ro.unsynced, ro.last_seq, ro.last_sync_ms) == (6, 3, 6, after.last_sync_ms)


async def test_latest_gives_one_reading_per_point(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW) as store:
        assert await store.latest() == []
        await store.append([reading(1, point="a"), reading(2, point="b"), reading(3, point="a")])
        await store.append([reading(4, device="m0", point="a")])
        await store.flush()
        latest = await store.latest()
    assert [(r.device, r.point, r.value, r.seq) for r in latest] == [
        ("m0", "a", 4, 4),
        ("m1", "a", 3, 3),
        ("m1", "b", 2, 2),
    ]


async def test_export_filters_and_works_while_the_agent_writes(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW) as store:
        await store.append([reading(i, device=f"m{i % 2}", ts_ms=1000 * i) for i in range(10)])
        await store.flush()
        everything = list(export_readings(db_path))
        assert [r.seq for r in everything] == list(range(1, 11))
        window = export_readings(db_path, since_ms=3000, until_ms=6000)
        assert [r.value for r in window] == [3, 4, 5]
        assert [r.value for r in export_readings(db_path, device="m1")] == [1, 3, 5, 7, 9]
        await store.append([reading(10, ts_ms=10_000)])
        await store.flush()
        assert len(list(export_readings(db_path))) == 11


def test_read_only_helpers_explain_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no reading store"):
        read_stats(tmp_path / "nope.db")
    with pytest.raises(StoreError, match="no reading store"):
        list(export_readings(tmp_path / "nope.db"))


async def test_close_commits_pending_and_is_idempotent(db_path: Path) -> None:
    store = Store(db_path, batch_window=60.0)
    await store.open()
    await store.append([reading(1), reading(2)])
    await store.aclose()  # no flush: close commits what is pending
    await store.aclose()
    with pytest.raises(StoreError, match="not open"):
        await store.append([reading(3)])
    with pytest.raises(StoreError, match="already opened"):
        await store.open()
    assert [r.value for r in export_readings(db_path)] == [1, 2]


async def test_a_bad_value_is_refused_in_the_caller(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW) as store:
        with pytest.raises(TypeError, match=r"m1\.p"):
            await store.append([reading([1, 2])])
        with pytest.raises(ValueError, match="64 bits"):
            await store.append([reading(2**63)])
        await store.append([reading(1)])
        await store.flush()  # the batch was not poisoned
        assert [r.value for r in await store.unsynced(10)] == [1]


async def test_open_failure_is_a_store_error(tmp_path: Path) -> None:
    # (A file that is not a database is set aside and a fresh store starts: test_store_damage.)
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the reading store"):
        async with Store(not_a_db / "sub" / "r.db"):  # a file where a directory should be
            pass


# --- migrations ------------------------------------------------------------------------------


async def test_reopening_applies_no_migration_twice(db_path: Path) -> None:
    for _ in range(3):
        async with Store(db_path, batch_window=WINDOW) as store:
            await store.append([reading(1)])
    with sqlite3.connect(db_path) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY name")]
    conn.close()
    assert names == [name for name, _ in MIGRATIONS]


def test_migration_runner_applies_in_order_once_and_atomically(tmp_path: Path) -> None:
    calls: list[str] = []

    def first(db: sqlite_utils.Database) -> None:
        calls.append("first")
        db["t"].create({"id": int}, pk="id")  # type: ignore[union-attr]

    def second(db: sqlite_utils.Database) -> None:
        calls.append("second")
        db["t"].add_column("x", str)  # type: ignore[union-attr]

    def broken(db: sqlite_utils.Database) -> None:
        calls.append("broken")
        db["u"].create({"id": int}, pk="id")  # type: ignore[union-attr]
        raise RuntimeError("bug in a migration")

    db = sqlite_utils.Database(tmp_path / "m.db")
    try:
        assert apply_migrations(db, [("a_first", first)]) == ["a_first"]
        assert apply_migrations(db, [("a_first", first), ("b_second", second)]) == ["b_second"]
        assert apply_migrations(db, [("a_first", first), ("b_second", second)]) == []
        assert calls == ["first", "second"]
        with pytest.raises(RuntimeError, match="bug in a migration"):
            apply_migrations(db, [("a_first", first), ("c_broken", broken)])
        assert not db["u"].exists(), "a failed migration must leave nothing behind"
        assert [row["name"] for row in db["migrations"].rows] == ["a_first", "b_second"]
    finally:
        db.close()


# --- faults ----------------------------------------------------------------------------------


async def set_max_pages(store: Store, pages: int | None) -> None:
    """Cap the file's size in pages (None: its current size), on the writer's own connection:
    SQLite then fails writes with SQLITE_FULL exactly as on a full disk."""

    def cap(writer: Any) -> None:
        limit = pages or writer.conn.execute("PRAGMA page_count").fetchone()[0]
        writer.conn.execute(f"PRAGMA max_page_count = {int(limit)}").fetchall()

    await store._call("capping the file size", cap)


async def test_disk_full_keeps_readings_in_memory_and_recovers(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.store")
    async with Store(db_path, batch_window=0.1, batch_max=50, max_pending=500) as store:
        await store.append([reading(0)])
        await store.flush()
        # Simulate a full disk: the file may not grow by a single page.
        await set_max_pages(store, None)
        payload = "x" * 2000
        for i in range(1, 301):
            await store.append([reading(payload, ts_ms=i)])
        with pytest.raises(StoreError, match="held in memory"):
            await store.flush()
        await asyncio.sleep(0.5)
        stats = await store.stats()
        assert stats.pending == 300
        assert stats.rows == 1
        # Retries happen once per window, not in a busy loop (and not once per append).
        assert 1 <= stats.write_errors <= 10
        full_warnings = [r for r in caplog.records if "is full" in r.getMessage()]
        assert len(full_warnings) == 1
        # Beyond max_pending the oldest readings are dropped, and counted.
        await store.append([reading(payload, ts_ms=1000 + i) for i in range(300)])
        await asyncio.sleep(0.05)
        stats = await store.stats()
        assert (stats.pending, stats.dropped) == (500, 100)
        # Space comes back: the next window commits everything held.
        await set_max_pages(store, 1_073_741_823)
        assert await store.wait_for_new(1, 3.0)
        await store.flush()
        stats = await store.stats()
        assert (stats.pending, stats.rows) == (0, 501)
        # The readings dropped from memory are counted in the file, with an alert event.
        events = await store.unpublished_events()
        assert [(e.kind, e.detail.get("count"), e.detail.get("reason")) for e in events] == [
            ("readings_lost", 100, "hold_full"),
            ("store_write_failed", None, None),  # the episode, with its cause, for upstream
        ]
        assert "is full" in events[1].detail["cause"]
        assert store.last_event_id == events[-1].id
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert read_stats(db_path).dropped == 100


CRASH_CHILD = """
import asyncio, sys
from pathlib import Path
from agent.core.record import Reading
from agent.store import Store

async def main():
    async with Store(Path(sys.argv[1]), batch_window=0.01) as store:
        i = 0
        while True:
            await store.append([Reading("m1", "p", i, i, "W") for i in range(i, i + 20)])
            i += 20
            if i % 100 == 0:
                await store.flush()
                print(i, flush=True)  # every value below i is committed
            await asyncio.sleep(0)

asyncio.run(main())
"""


def test_sigkill_loses_nothing_that_was_flushed(db_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(agent.__file__).resolve().parent.parent)}
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    flushed = 0
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 15
        while flushed < 5000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            flushed = int(line)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        _, err = child.communicate(timeout=10)
    assert flushed >= 5000, f"the child did not get far: {err}"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        values = {row[0] for row in conn.execute("SELECT value FROM readings")}
        seqs = [row[0] for row in conn.execute("SELECT seq FROM readings ORDER BY seq")]
    conn.close()
    assert set(range(flushed)) <= values
    assert seqs == list(range(1, len(seqs) + 1))
    assert read_stats(db_path).rows == len(seqs)


# --- the size budget -------------------------------------------------------------------------

BUDGET = 1024 * 1024  # the smallest budget a Store takes: about 29,000 readings


async def fill(store: Store, count: int, *, start: int = 0, points: int = 55) -> None:
    """Append ``count`` readings like a polled site (``points`` per round), then commit."""
    for first in range(start, start + count, points):
        await store.append(
            [
                reading(float(i) * 1.5, point=f"p{i % points}", ts_ms=1_700_000_000_000 + i)
                for i in range(first, min(first + points, start + count))
            ]
        )
    await store.flush()


async def all_unsynced(store: Store) -> list[StoredReading]:
    return await store.unsynced(10_000_000)


def seqs_on_disk(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM readings ORDER BY seq")]
    conn.close()
    return seqs


async def test_budget_evicts_synced_readings_first_then_unsent_ones_with_an_event(
    db_path: Path,
) -> None:
    events: list[StoreEvent] = []
    async with Store(db_path, batch_window=WINDOW, max_bytes=BUDGET, on_event=events.append) as s:
        await fill(s, 20_000)
        await s.mark_synced([r.seq for r in await all_unsynced(s)])
        largest = 0
        for start in range(20_000, 60_000, 2_000):  # an outage: nothing is synced any more
            await fill(s, 2_000, start=start)
            stats = await s.stats()
            largest = max(largest, stats.bytes)
            assert stats.bytes <= BUDGET, "the file and its WAL stay within the budget"
            if stats.evicted_unsynced:
                assert stats.evicted_synced == 20_000, "unsent readings went while synced ones lay"
        stats = await s.stats()
        published = await s.unpublished_events()
    assert largest > BUDGET * 0.8, "the budget is used, not just respected"
    # Every synced reading went before any unsent one; what is left is the newest, unbroken.
    kept = seqs_on_disk(db_path)
    assert kept == list(range(kept[0], 60_001))
    assert stats.evicted_synced == 20_000
    assert stats.evicted_unsynced == kept[0] - 20_001 > 0
    assert (stats.rows, stats.unsynced) == (len(kept), len(kept))
    # The drops are announced with their ranges, which together are exactly the gap.
    assert events == published
    assert {e.kind for e in events} == {"readings_dropped"}
    assert {e.detail["reason"] for e in events} == {"budget"}
    ranges = sorted((e.detail["first_seq"], e.detail["last_seq"]) for e in events)
    assert ranges[0][0] == 20_001
    assert ranges[-1][1] == kept[0] - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    assert sum(e.detail["count"] for e in events) == stats.evicted_unsynced
    # The counters are in the file: the read-only view (the status command) agrees.
    ro = read_stats(db_path)
    assert (ro.rows, ro.unsynced, ro.evicted_synced, ro.evicted_unsynced, ro.max_bytes) == (
        stats.rows,
        stats.unsynced,
        20_000,
        stats.evicted_unsynced,
        BUDGET,
    )
    assert ro.events_unpublished == len(events)
    assert [e.id for e in read_events(db_path)] == sorted((e.id for e in events), reverse=True)


async def test_synced_live_readings_go_before_an_older_unsent_backlog(db_path: Path) -> None:
    # After an outage the uplink sends live readings (newer) before it is through the backlog
    # (older): those synced newer readings are evicted before any of the unsent older ones.
    async with Store(db_path, batch_window=WINDOW, max_bytes=BUDGET) as store:
        await fill(store, 15_000)  # the backlog, unsent
        await fill(store, 10_000, start=15_000)
        live = [r.seq for r in await all_unsynced(store) if r.seq > 15_000]
        await store.mark_synced(live)
        await fill(store, 15_000, start=25_000)  # more than the budget holds
        stats = await store.stats()
    kept = set(seqs_on_disk(db_path))
    assert stats.evicted_synced == 10_000
    assert kept.isdisjoint(live), "the synced live readings went first"
    backlog_left = sorted(seq for seq in kept if seq <= 15_000)
    assert backlog_left == list(range(15_001 - len(backlog_left), 15_001)), "then the oldest"
    assert stats.evicted_unsynced == 15_000 - len(backlog_left)


async def test_counters_and_unsynced_ranges_survive_a_restart(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW) as store:
        await fill(store, 100, points=10)
        await store.mark_synced([*range(1, 41), 50, 51])
    async with Store(db_path, batch_window=WINDOW) as store:
        stats = await store.stats()
        assert (stats.rows, stats.unsynced, stats.last_seq) == (100, 58, 100)
        assert stats.oldest_unsynced_ms == 1_700_000_000_000 + 40
        assert [r.seq for r in await store.unsynced(3)] == [41, 42, 43]
        assert [r.seq for r in await store.unsynced(3, from_seq=49)] == [49, 52, 53]
        got = await store.unsynced(100, from_seq=45, below_seq=55)
        assert [r.seq for r in got] == [45, 46, 47, 48, 49, 52, 53, 54]
        await store.mark_synced([41, 41, 42])  # repeated and already-synced seqs count once
        await store.mark_synced([42])
        assert (await store.stats()).unsynced == 56
    assert read_stats(db_path).unsynced == 56


async def test_a_lowered_budget_shrinks_the_file_when_the_store_opens(db_path: Path) -> None:
    async with Store(db_path, batch_window=WINDOW, max_bytes=4 * BUDGET) as store:
        await fill(store, 100_000)
        await store.mark_synced(list(range(1, 100_001)))
    assert read_stats(db_path).bytes > 2 * BUDGET
    async with Store(db_path, batch_window=WINDOW, max_bytes=BUDGET) as store:
        stats = await store.stats()
        assert stats.bytes <= BUDGET
        assert stats.evicted_unsynced == 0
        assert stats.rows == 100_000 - stats.evicted_synced > 10_000
        await fill(store, 1000, start=100_000)  # and it keeps working
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


async def page_count(store: Store) -> int:
    return int(await store._call("counting pages", lambda w: w._pages()[0]))


async def test_a_full_disk_is_lived_with_like_the_budget(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.store")
    async with Store(db_path, batch_window=WINDOW, max_bytes=None) as store:
        await fill(store, 20_000)
        await store.mark_synced(list(range(1, 20_001)))
        await set_max_pages(store, None)  # the disk is full: the file cannot grow any more
        pages = await page_count(store)
        await fill(store, 10_000, start=20_000)  # fits once old synced readings make room
        stats = await store.stats()
        assert stats.last_seq == 30_000
        assert stats.pending == 0
        assert 0 < stats.evicted_synced < 20_000
        assert stats.evicted_unsynced == 0
        await fill(store, 30_000, start=30_000)  # now unsent readings must go too
        stats = await store.stats()
        events = await store.unpublished_events()
        assert await page_count(store) == pages
    assert stats.last_seq == 60_000
    assert stats.evicted_synced == 20_000
    assert stats.evicted_unsynced > 0
    assert {e.detail["reason"] for e in events} == {"disk_full"}
    full = [r for r in caplog.records if "disk holding" in r.getMessage()]
    assert len(full) == 1, "the full disk is reported once"


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs, which only root can mount")
    where.mkdir()
    done = subprocess.run(  # noqa: PLW1510 - the return code is checked
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


async def test_a_really_full_disk_keeps_the_store_going(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        path = disk / "readings.db"
        # A budget larger than the disk: the disk is the limit.
        async with Store(path, batch_window=WINDOW, batch_max=500, max_bytes=8 * BUDGET) as store:
            for start in range(0, 150_000, 5_000):
                await fill(store, 5_000, start=start)
                synced = await store.unsynced(5_000)
                if start < 100_000:  # the uplink keeps up at first, then the link goes
                    await store.mark_synced([r.seq for r in synced])
            stats = await store.stats()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
        assert stats.last_seq == 150_000, "every reading was stored, the disk full or not"
        assert stats.pending == 0
        assert stats.write_errors == 0, "the store stopped growing before the disk was full"
        assert stats.evicted_synced == 100_000
        assert stats.evicted_unsynced > 0
        kept = seqs_on_disk(path)
        assert kept == list(range(kept[0], 150_001))
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", str(disk)], check=False)


async def test_migrating_a_first_schema_file_keeps_everything(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite_utils.Database(db_path)
    apply_migrations(db, MIGRATIONS[:1])
    db["points"].insert_all(
        [  # type: ignore[union-attr]
            {"id": 1, "device": "m1", "point": "a", "unit": "W"},
            {"id": 2, "device": "m1", "point": "b", "unit": "V"},
        ]
    )
    db["readings"].insert_all(
        [  # type: ignore[union-attr]
            {
                "point_id": 1 + i % 2,
                "ts_ms": 1000 + i,
                "value": i,
                "quality": 0,
                "synced": int(i < 3),
            }
            for i in range(8)
        ]
    )
    db.close()
    async with Store(db_path, batch_window=WINDOW) as store:
        stats = await store.stats()
        assert (stats.rows, stats.unsynced, stats.last_seq) == (8, 5, 8)
        assert [r.seq for r in await store.unsynced(10)] == [4, 5, 6, 7, 8]
        assert [(r.point, r.seq) for r in await store.latest()] == [("a", 7), ("b", 8)]
        await store.append([reading(1, point="a"), reading(2, device="m0", point="c")])
        await store.flush()
        latest = [(r.device, r.point, r.seq) for r in await store.latest()]
        assert latest == [("m0", "c", 10), ("m1", "a", 9), ("m1", "b", 8)]
    with sqlite3.connect(db_path) as conn:
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
    conn.close()
    assert indexes == {"points_key"}, "only the primary keys and the point names are indexed"


def test_rows_stay_compact(tmp_path: Path) -> None:
    """Bytes per reading on disk: the figure docs/store.md sizes cards with (about 27)."""

    async def run() -> StoreStats:
        async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
            await fill(store, 55_000)
            return await store.stats()

    stats = asyncio.run(run())
    assert stats.used_bytes / stats.rows < 30


async def test_events_from_other_parts_are_kept_until_published(db_path: Path) -> None:
    seen: list[StoreEvent] = []
    async with Store(db_path, batch_window=WINDOW, on_event=seen.append) as store:
        first = await store.add_event("hvac.write", {"zone": "z1", "setpoint": 26.0})
        assert store.last_event_id == first.id
        second = await store.add_event("hvac.refused", {"at": Path("/x")})  # not JSON: as text
        assert second.detail == {"at": "/x"}
        assert await store.unpublished_events() == [first, second]
        await store.mark_events_published([first.id])
        assert await store.unpublished_events() == [second]
    assert seen == [first, second]
    assert [e.kind for e in read_events(db_path)] == ["hvac.refused", "hvac.write"]
    assert read_stats(db_path).events_unpublished == 1


def test_the_store_default_budget_is_the_config_default() -> None:
    from agent.config.model import StoreConfig
    from agent.store import DEFAULT_MAX_BYTES

    assert StoreConfig().max_bytes == DEFAULT_MAX_BYTES
