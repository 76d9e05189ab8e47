"""The live hand-off (issue #14): the uplink takes each commit's readings from memory instead of
reading them back, and the acknowledged readings are marked synced in the writer's next
transaction instead of one of their own. Real parts: SQLite files on disk, the real Mosquitto
broker of the fixtures, a child process for the power cut."""

from __future__ import annotations

import asyncio
import enum
import math
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.core.clock import ManualClock
from agent.core.record import Quality, Reading, StoredReading
from agent.store import Store, read_events
from agent.uplink import encode_readings
from tests.store_helpers import ENV
from tests.store_helpers import readings as plain_readings
from tests.test_store_clock import STEP_S, at
from tests.test_uplink import config_for, eventually, make_uplink, readings, records, running, seqs

WINDOW = 0.05


def count_reads(store: Store) -> list[tuple[int, int]]:
    """Spy on the store reads of unsynced readings: (from_seq, readings returned) of each."""
    calls: list[tuple[int, int]] = []
    real: Callable[..., Awaitable[list[StoredReading]]] = store.unsynced

    async def spy(limit: int, *, from_seq: int = 0, below_seq: int | None = None) -> Any:
        got = await real(limit, from_seq=from_seq, below_seq=below_seq)
        calls.append((from_seq, len(got)))
        return got

    store.unsynced = spy  # type: ignore[method-assign]
    return calls


def synced_in_file(db: Path) -> tuple[int, int]:
    """(rows marked synced, rows) as another process reading the file sees them."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        synced, rows = conn.execute("SELECT total(synced), count(*) FROM readings").fetchone()
    finally:
        conn.close()
    return int(synced), int(rows)


def writer_counts(store: Store) -> tuple[int, int]:
    """(transactions, transactions that stored readings) the writer committed so far."""
    writer = store._writer
    assert writer is not None
    return writer.transactions, writer.commits


async def produce(store: Store, commits: int, per_commit: int, gap: float) -> None:
    """``commits`` commits of ``per_commit`` readings of every value type, one after another."""
    for i in range(commits):
        await store.append(readings(i * per_commit, per_commit))
        await store.flush()
        await asyncio.sleep(gap)


async def test_live_readings_go_out_from_memory_once_each_in_order(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto, batch_size=10)
    commits, per_commit = 40, 25
    total = commits * per_commit
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        uplink = make_uplink(config, store)
        topic = uplink.readings_topic
        reads = count_reads(store)
        async with mqtt_subscribe(mosquitto, topic) as sub, running(uplink):
            await eventually(lambda: uplink.connected, 5, "the uplink connected")
            await produce(store, commits, per_commit, 0.01)
            await sub.wait_for(lambda m: len(seqs(m, topic)) >= total, within=10)
        stored = {r.seq: r for r in await store.readings_after(0, total + 10)}
    got = records(sub.messages, topic)
    # Every reading once, in seq order, with the value the file holds.
    assert [r["seq"] for r in got] == list(range(1, total + 1))
    assert got == [stored[r["seq"]].to_record() for r in got]
    # None was read back from the file: the store reads found nothing (the connection's
    # first look, and the empty backlog).
    assert sum(n for _, n in reads) == 0, reads


async def test_a_window_too_small_for_a_commit_falls_back_to_the_store_without_a_gap(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    # 20 readings kept, 25 committed at a time: the window never holds a whole commit, so every
    # live read must come from the file; a window that answered anyway would skip 5 a commit.
    config = config_for(mosquitto, batch_size=10)
    commits, per_commit = 12, 25
    total = commits * per_commit
    async with Store(tmp_path / "r.db", batch_window=WINDOW, live_window=20) as store:
        uplink = make_uplink(config, store)
        topic = uplink.readings_topic
        reads = count_reads(store)
        async with mqtt_subscribe(mosquitto, topic) as sub, running(uplink):
            await eventually(lambda: uplink.connected, 5, "the uplink connected")
            await produce(store, commits, per_commit, 0.03)
            await sub.wait_for(lambda m: len(seqs(m, topic)) >= total, within=10)
    assert seqs(sub.messages, topic) == list(range(1, total + 1))
    assert sum(n for _, n in reads) == total


async def test_a_reconnect_mid_stream_reads_the_store_and_delivers_everything(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto, batch_size=7, timeout=0.5)
    async with Store(tmp_path / "r.db", batch_window=WINDOW, live_window=50) as store:
        uplink = make_uplink(config, store)
        topic = uplink.readings_topic
        reads = count_reads(store)
        async with mqtt_subscribe(mosquitto, topic) as sub, running(uplink):
            await eventually(lambda: uplink.connected, 5, "the uplink connected")
            await produce(store, 4, 5, 0.02)
            await eventually(lambda: uplink.sent >= 20, 5, "the first 20 acknowledged")
            before_outage = list(reads)
            mosquitto.freeze()
            try:
                # Taken from memory and published, never acknowledged: the link times out.
                await produce(store, 1, 5, 0)
                await eventually(lambda: not uplink.connected, 3, "the publish timed out")
                # Committed while the link is down: more than the window keeps (50).
                for i in range(8):
                    await store.append(readings(25 + i * 10, 10))
                    await store.flush()
            finally:
                mosquitto.thaw()
            for i in range(3):  # and live again after the reconnect
                await store.append(readings(105 + i * 5, 5))
                await asyncio.sleep(0.05)
            await sub.wait_for(lambda m: set(seqs(m, topic)) >= set(range(1, 121)), within=10)
            await eventually(lambda: uplink.connected, 3, "reconnected")
            await eventually(lambda: uplink.sent >= 120, 3, "all acknowledged")
            stats = await store.stats()
    assert stats.unsynced == 0
    got = seqs(sub.messages, topic)
    assert set(got) == set(range(1, 121))
    # Live readings came from memory; the batch lost in flight and what came during the
    # outage were read from the file.
    assert sum(n for _, n in before_outage) == 0, before_outage
    assert sum(n for _, n in reads) >= 85, reads


async def test_marks_ride_on_the_next_commit_then_on_a_timer_when_idle(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    db = tmp_path / "r.db"
    window = 0.2
    config = config_for(mosquitto, batch_size=50)
    async with Store(db, batch_window=window) as store:
        uplink = make_uplink(config, store)
        topic = uplink.readings_topic
        async with mqtt_subscribe(mosquitto, topic) as sub, running(uplink):
            await eventually(lambda: uplink.connected, 5, "the uplink connected")
            await store.append(readings(0, 5))  # the start: its first transactions
            await sub.wait_for(lambda m: len(seqs(m, topic)) >= 5, within=5)
            await asyncio.sleep(2 * window)
            before = writer_counts(store)
            # Readings flow (a device cycle every 20 ms) for 1.5 s: each commit carries the
            # marks of the batch acknowledged before it, and no transaction marks alone.
            for i in range(75):
                await store.append(readings(5 + i * 4, 4))
                await asyncio.sleep(0.02)
            flowing = writer_counts(store)
            transactions, commits = flowing[0] - before[0], flowing[1] - before[1]
            assert commits >= 4
            # (One spare: a loop stalled a whole window by a loaded machine marks alone once.
            # Marks with transactions of their own would add one per commit.)
            assert commits <= transactions <= commits + 1, (transactions, commits)
            total = 5 + 75 * 4
            await sub.wait_for(lambda m: len(set(seqs(m, topic))) >= total, within=5)
            await eventually(lambda: uplink.sent >= total, 2, "all acknowledged")
            # Acknowledged: `stats` counts them as sent at once, whatever the file says yet.
            assert (await store.stats()).unsynced == 0
            # Idle now: the last marks reach the file within about a window, in one
            # transaction, with no flush asked.
            idle = writer_counts(store)
            async with asyncio.timeout(4 * window + 1):
                while synced_in_file(db) != (total, total):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            done = writer_counts(store)
            assert (done[0] - idle[0], done[1] - idle[1]) == (1, 0)
            await asyncio.sleep(2 * window)
            assert writer_counts(store) == done  # and nothing more while nothing comes


POWER_CUT = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from agent.store import Store
    from tests.store_helpers import readings

    async def main():
        # A long window: no commit comes after the acknowledgement.
        store = Store(Path(sys.argv[1]), batch_window=30)
        await store.open()
        await store.append(readings(0, 50))
        await store.flush()
        sent = await store.unsynced(100)
        await store.mark_synced([r.seq for r in sent[:30]])  # the broker acknowledged 30
        assert [r.seq for r in await store.unsynced(100)] == list(range(31, 51))
        assert (await store.stats()).unsynced == 20
        if sys.argv[2] == "flush":
            await store.flush()
        print("acknowledged", flush=True)
        os._exit(0)  # the power goes: no close, no later transaction

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("flush", [False, True])
async def test_a_power_cut_between_ack_and_mark_sends_again_and_loses_nothing(
    tmp_path: Path, flush: bool
) -> None:
    db = tmp_path / "r.db"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", POWER_CUT, str(db), "flush" if flush else "cut"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "acknowledged" in done.stdout
    async with Store(db, batch_window=WINDOW) as store:
        left = [r.seq for r in await store.unsynced(100)]
        stats = await store.stats()
    # Without the mark in the file, the 30 acknowledged readings are unsent again (sent twice:
    # a duplicate, never a loss); a flush puts the mark in the file.
    assert left == (list(range(31, 51)) if flush else list(range(1, 51)))
    assert (stats.rows, stats.unsynced) == (50, len(left))


async def test_readings_evicted_unsent_are_never_handed_out_from_memory(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Store(db, batch_window=WINDOW, max_bytes=1024 * 1024, live_window=10**6) as store:
        store.uplink_connected(1)  # an uplink that connected, then fell silent
        start = 0
        while (await store.stats()).evicted_unsynced == 0:
            await store.append(plain_readings(start, 1000))
            await store.flush()
            start += 1000
            assert start < 200_000, "the budget never evicted"
        handed = store.committed_after(1, 10**6)
        live = handed if handed is not None else await store.unsynced(10**6, from_seq=1)
        in_file = {r.seq for r in await store.readings_after(0, 10**6)}
    dropped = read_events(db, kinds=["readings_dropped"])
    assert dropped
    gone = {s for e in dropped for s in range(e.detail["first_seq"], e.detail["last_seq"] + 1)}
    assert live, "the live read found the readings kept"
    assert not {r.seq for r in live} & gone
    assert {r.seq for r in live} <= in_file


class _Level(enum.IntEnum):
    HIGH = 3


async def test_a_reading_from_memory_is_the_reading_the_file_gives_back(tmp_path: Path) -> None:
    values: list[Any] = [
        1.5, math.nan, math.inf, -0.0, True, False, 2**62, "text", None, _Level.HIGH, 7,
    ]  # fmt: skip
    batch = [
        Reading("m1", f"p{i}", 1_700_000_000_000 + i, v, "W", Quality(i % 3))
        for i, v in enumerate(values)
    ]
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        store.uplink_connected(1)
        await store.append(batch)
        await store.flush()
        from_memory = store.committed_after(1, 100)
        from_file = await store.unsynced(100)
    assert from_memory is not None
    assert [(r.seq, type(r.value), r.value) for r in from_memory] == [
        (r.seq, type(r.value), r.value) for r in from_file
    ]
    assert from_memory == from_file
    assert encode_readings("s", "g", from_memory) == encode_readings("s", "g", from_file)


async def test_a_clock_correction_leaves_no_stale_copy_in_memory(tmp_path: Path) -> None:
    clock = ManualClock(datetime(1970, 1, 1, 0, 5, tzinfo=UTC))
    trusted = [False]
    async with Store(
        tmp_path / "r.db",
        batch_window=WINDOW,
        clock=clock,
        clock_trusted=lambda: trusted[0],
        boot_id=lambda: "boot-a",
    ) as store:
        store.uplink_connected(1)
        await store.append([at(clock, 1.0), at(clock, 2.0)])
        await store.flush()
        clock.step(STEP_S)
        trusted[0] = True
        clock.advance(2)  # trust is asked again at most once a second
        await store.append([at(clock, 3.0)])  # trust arrives: the first two are corrected
        await store.flush()
        handed = store.committed_after(1, 10)
        live = handed if handed is not None else await store.unsynced(10, from_seq=1)
    assert [(r.value, r.clock_untrusted) for r in live] == [
        (1.0, False),
        (2.0, False),
        (3.0, False),
    ]
    assert live[0].ts_ms > STEP_S * 1000  # the true time, not 1970's


async def test_readings_acknowledged_but_not_yet_marked_are_evicted_as_sent(
    tmp_path: Path,
) -> None:
    # A long window: the marks wait, and the eviction meets them first.
    async with Store(tmp_path / "r.db", batch_window=30) as store:
        await store.append(plain_readings(0, 100))
        await store.flush()
        await store.mark_synced(list(range(1, 41)))  # the broker has the first 40
        await store._call("evicting", lambda w: w.evict(0, reason="budget"))
        stats = await store.stats()
    # Everything went; the 40 the broker has are not counted as unsent readings lost.
    assert (stats.rows, stats.unsynced) == (0, 0)
    assert (stats.evicted_synced, stats.evicted_unsynced) == (40, 60)
