"""Store write faults of any errno: a real file-size limit (EFBIG, which SQLite reports as a
"disk I/O error", not as "full") in a subprocess, a database file deleted or replaced while the
store runs. Each test asserts that appending goes on, nothing is lost that the fault did not
make impossible to keep, and every loss is counted under its reason, in the file and through
``edge-agent status``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.core.errors import StoreError
from agent.core.record import Reading
from agent.store import DEFAULT_MAX_BYTES, Store, read_events, read_stats
from agent.store.ledger import read_ledger
from tests.store_helpers import ENV, status_text
from tests.store_helpers import readings as shared_readings

WINDOW = 0.05

# The child stores 100 readings, then limits the size of the files it may write to the largest
# the store has now (RLIMIT_FSIZE, as `ulimit -f` or systemd's LimitFSIZE= do; Python ignores
# SIGXFSZ, so a write past it fails with EFBIG), appends more, records an audit event and a meta
# value, and then either stops (mode "stop") or lifts the limit (mode "recover").
EFBIG_CHILD = """
import asyncio, json, resource, sys, time
from pathlib import Path
from agent.core.record import Reading
from agent.core.errors import StoreError
from agent.store import Store

def readings(start, n):
    return [Reading("m1", f"p{i % 10}", 1_700_000_000_000 + i, float(i), "W")
            for i in range(start, start + n)]

async def main(db, mode):
    shift = [0.0]
    async with Store(db, batch_window=0.05, monotonic=lambda: time.monotonic() + shift[0]) as store:
        await store.append(readings(0, 100))
        await store.flush()
        largest = max(Path(f"{db}{s}").stat().st_size for s in ("", "-wal"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest, resource.RLIM_INFINITY))
        appended = 100
        for _ in range(20):
            await store.append(readings(appended, 100))
            appended += 100
            await asyncio.sleep(0.02)
        # Until the writer has taken (and tried) every append: flush fails, the limit holds.
        try:
            await store.flush()
        except StoreError:
            pass
        out = {"writable": store.writable, "cause": store.health.cause,
               "cure": store.health.cure, "held": store.health.held}
        event = await store.add_event("hvac.command", {"id": "c1"})
        await store.set_meta("hvac:overrides", "kept")
        out["event_id"] = event.id
        out["meta"] = await store.get_meta("hvac:overrides")
        if mode == "recover":
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
            shift[0] += 3600.0  # past any backoff: the next job finds the retry due
            await store.append(readings(appended, 10))
            appended += 10
            await store.flush()
            out["writable_after"] = store.writable
        out["appended"] = appended
        print(json.dumps(out), flush=True)

asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
"""


def run_child(db: Path, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", EFBIG_CHILD, str(db), mode],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["log"] = done.stderr
    return out


def test_a_file_size_limit_is_recognised_and_what_it_held_at_stop_is_counted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "readings.db"
    out = run_child(db, "stop")
    # While the limit held: not writable, with the cause and cure named, readings held (what
    # still fitted under the limit was stored).
    assert out["writable"] is False
    assert "file-size limit" in out["cause"]
    assert "LimitFSIZE" in out["cure"]
    unstored = out["held"]
    assert unstored >= 1000
    assert unstored == out["appended"] - read_stats(db).rows
    assert out["event_id"] == 0, "the audit event was held, not raised"
    assert out["meta"] == "kept"
    # Said once, not once per retry.
    assert out["log"].count("cannot write to") == 1
    # At the stop: what could not be written is counted under its reason (from the ledger:
    # the file itself refused the count), and status says so.
    stats = read_stats(db)
    assert stats.losses == {"not_written_at_stop": unstored}
    assert stats.lost == unstored
    assert stats.events_lost == 1
    text = status_text(db)
    assert f"lost:          {unstored} readings ({unstored} not_written_at_stop)" in text
    assert "CANNOT WRITE" in text
    assert "file-size limit" in text
    # The next start (the limit gone) counts the ledger's losses in the file, once.
    asyncio.run(reopen_twice(db, unstored))
    lost_events = read_events(db, kinds=["readings_lost", "events_lost"])
    assert sorted((e.kind, e.detail["count"], e.detail["reason"]) for e in lost_events) == [
        ("events_lost", 1, "events_hold_full"),
        ("readings_lost", unstored, "not_written_at_stop"),
    ]
    state = read_ledger(db)
    assert state is not None
    assert state.lost == {}
    assert state.error is None
    text = status_text(db)
    assert "store:         writable" in text
    assert f"lost:          {unstored} readings ({unstored} not_written_at_stop)" in text


async def reopen_twice(db: Path, unstored: int) -> None:
    for _ in range(2):  # a second start must not count the same losses again
        async with Store(db, batch_window=WINDOW) as store:
            assert store.writable
            stats = await store.stats()
            assert stats.losses == {"not_written_at_stop": unstored}
        assert read_stats(db).losses == {"not_written_at_stop": unstored}


def test_a_lifted_limit_writes_everything_held_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    out = run_child(db, "recover")
    assert out["writable"] is False
    assert out["writable_after"] is True
    stats = read_stats(db)
    assert stats.rows == out["appended"]
    assert stats.lost == 0
    assert stats.losses == {}
    kinds = [e.kind for e in read_events(db, limit=10)]
    assert "hvac.command" in kinds, "the held audit event was committed"
    episode = read_events(db, kinds=["store_write_failed"])
    assert len(episode) == 1
    assert "file-size limit" in episode[0].detail["cause"]
    assert "lost:          0 readings\n" in status_text(db)


async def test_appends_beyond_the_hold_are_counted_lost_under_their_reason(
    tmp_path: Path,
) -> None:
    """The hold is bounded: its overflow is counted (hold_full), the rest kept."""
    db = tmp_path / "readings.db"
    async with Store(db, batch_window=WINDOW, batch_max=50, max_pending=200) as store:
        await store.append(readings(0, 10))
        await store.flush()

        def refuse(writer: Any) -> None:  # the file may not grow by a page: a full disk
            writer.conn.execute("PRAGMA max_page_count = 1").fetchall()

        await store._call("capping", refuse)
        for start in range(10, 510, 50):
            await store.append(readings(start, 50))
        await asyncio.sleep(0.1)
        assert not store.writable
        stats = await store.stats()
        overflow = 510 - 200 - stats.rows  # what fitted in the file's free pages was stored
        assert overflow >= 200
        assert (stats.pending, stats.losses) == (200, {"hold_full": overflow})
    # Closed with the disk still full: the held 200 are lost at the stop, and counted.
    after = read_stats(db)
    assert after.losses == {"hold_full": overflow, "not_written_at_stop": 200}
    assert after.rows + after.lost == 510


# 1000: the default; 5000: a slice alone needs more room than the budget's eviction leaves.
@pytest.mark.parametrize("batch_max", [1000, 5000])
async def test_a_backlog_larger_than_eviction_makes_room_for_is_written_after_the_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, batch_max: int
) -> None:
    """A store at its budget whose writes failed for a while holds more readings than one
    eviction makes room for. Once the fault is gone they must all be written: found by a soak
    (2 MiB budget, a fault of 20 s at eight times the demo's rate), where 69,000 held readings
    went back as one transaction, failed as full after every eviction, and were never written
    again."""
    db = tmp_path / "readings.db"
    shift = [0.0]
    async with Store(
        db,
        batch_window=WINDOW,
        batch_max=batch_max,
        max_bytes=2 * 1024**2,
        monotonic=lambda: time.monotonic() + shift[0],
    ) as store:
        appended = 0
        while (await store.stats()).evicted_synced == 0:  # full of readings already sent
            await store.append(readings(appended, 1000))
            appended += 1000
            await store.flush()
            await store.mark_synced(range(appended - 999, appended + 1))

        def refuse(writer: Any) -> None:  # every write fails, as under a file-size limit
            writer.conn.execute("PRAGMA query_only = 1").fetchall()

        def lift(writer: Any) -> None:
            writer.conn.execute("PRAGMA query_only = 0").fetchall()

        await store._call("refusing", refuse)
        held_from = appended
        for _ in range(12):
            await store.append(readings(appended, 1000))
            appended += 1000
        with pytest.raises(StoreError):
            await store.flush()
        assert not store.writable
        await store._call("lifting", lift)
        shift[0] += 3600.0  # past any backoff
        await store.append(readings(appended, 10))
        appended += 10
        await store.flush()
        assert store.writable
        stats = await store.stats()
        assert stats.last_seq == appended
        assert (stats.lost, stats.losses, stats.pending) == (0, {}, 0)
        assert stats.unsynced == appended - held_from, "only readings already sent made room"
        assert stats.bytes <= 2 * 1024**2
    # The budget refused the backlog, not the disk (it has room): no word of a full disk.
    assert "disk holding" not in caplog.text


def _started(t0: float) -> float:
    return time.monotonic() - t0


@pytest.mark.parametrize("how", ["deleted", "replaced", "directory deleted"])
async def test_a_database_file_removed_while_running_is_noticed_and_nothing_is_lost(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "data" / "readings.db"
    async with Store(db, batch_window=WINDOW, check_every=0.2) as store:
        await store.append(readings(0, 500))
        await store.flush()
        await store.mark_synced(list(range(1, 101)))
        remove_or_replace(db, how)
        t0 = time.monotonic()
        appended = 500
        # Asked through the store, never by a second connection in this process: the path's
        # files may belong to another database now, and SQLite, whose file locks cannot tell
        # two connections of one process apart, may truncate the -shm that the writer still
        # maps (SIGBUS: the whole test run crashed once in about 15). `status` reads from a
        # process of its own.
        while _started(t0) < 5 and not await store.events_after(0, 10, kind="store_file_gone"):
            await store.append(readings(appended, 20))  # polling goes on
            appended += 20
            await asyncio.sleep(0.05)
        await store.append(readings(appended, 20))
        appended += 20
        await store.flush()
        assert store.writable
        stats = await store.stats()
    gone = read_events(db, kinds=["store_file_gone"])
    assert len(gone) == 1
    detail = gone[0].detail
    assert detail["reason"] == ("file_replaced" if how == "replaced" else "file_deleted")
    # The 400 unsent, and those committed to the unlinked file before it was noticed.
    assert detail["unsent_salvaged"] >= 400
    assert detail["lost"] == 0
    on_disk = read_stats(db)
    # Every reading is in the file at the path: the 400 unsent from the unlinked file (the
    # 100 sent ones too), and all appended since; seqs went on, never reused.
    assert on_disk.rows == appended
    assert on_disk.unsynced == appended - 100
    assert on_disk.last_seq == appended == stats.last_seq
    assert on_disk.lost == 0
    assert on_disk.max_bytes == DEFAULT_MAX_BYTES, "the budget applies to the new file too"
    if how == "replaced":
        assert kept_aside(db.parent, "replaced") == [b"someone else's file"]


def remove_or_replace(db: Path, how: str) -> None:
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    elif how == "directory deleted":
        shutil.rmtree(db.parent)
    else:
        db.rename(db.with_name("moved.db"))
        db.write_bytes(b"someone else's file")


def kept_aside(where: Path, what: str) -> list[bytes]:
    return [
        p.read_bytes()
        for p in sorted(where.glob(f"readings.db.{what}-*"))
        if not p.name.endswith(("-wal", "-shm"))
    ]


async def test_a_really_full_disk_still_gets_its_losses_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a tmpfs filled to the last byte, the file refuses even the count of what the stop
    loses: the ledger, allocated when the store opened, takes it in place."""
    from tests.test_store import _mount_tmpfs

    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        db = disk / "readings.db"
        async with Store(db, batch_window=WINDOW, batch_max=100, max_bytes=None) as store:
            await store.append(readings(0, 10))
            await store.flush()
            await asyncio.to_thread(fill_disk, disk / "filler")
            for start in range(10, 1010, 100):
                await store.append(readings(start, 100))
            await asyncio.sleep(0.2)
            assert not store.writable
            assert "full" in (store.health.cause or "")
        assert "counted in the ledger" in caplog.text, "the file refused even the count"
        stats = read_stats(db)
        assert stats.rows + stats.lost == 1010
        assert stats.losses == {"not_written_at_stop": 1010 - stats.rows}
        assert "CANNOT WRITE" in status_text(db)
        await asyncio.to_thread((disk / "filler").unlink)
        async with Store(db, batch_window=WINDOW, max_bytes=None) as store:
            assert store.writable
        assert read_stats(db).losses == {"not_written_at_stop": 1010 - stats.rows}
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", str(disk)], check=False)


def fill_disk(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)


async def test_a_read_only_mount_is_named_as_the_cause_and_status_says_so(tmp_path: Path) -> None:
    """An SD card the kernel remounted read-only: a bind mount made read-only stands in (root
    only; a mount with files open for writing cannot be remounted, so the store is closed)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root")
    data = tmp_path / "data"
    db = data / "readings.db"
    async with Store(db, batch_window=WINDOW) as store:
        await store.append(readings(0, 10))
    mounted = subprocess.run(  # noqa: ASYNC221 - a few milliseconds, set-up only
        ["mount", "--bind", str(data), str(data)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(  # noqa: ASYNC221
            ["mount", "-o", "remount,bind,ro", str(data)], check=True, capture_output=True
        )
        from agent.store.health import diagnose

        cause, cure = diagnose(db, OSError("attempt to write a readonly database"))
        assert "read-only" in cause
        assert "remount" in cure
        text = await asyncio.to_thread(status_text, db)
        assert "CANNOT WRITE" in text
        assert "read-only" in text
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", str(data)], check=False)


def readings(start: int, n: int) -> list[Reading]:
    return shared_readings(start, n, points=10)
