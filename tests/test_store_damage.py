"""Damaged store files, on real files: a page overwritten in the middle, a truncated file, a bad
header, a page damaged while the store runs. Each asserts that the damaged file is kept (set
aside), a fresh store starts at once with every reading that could be read (seqs kept, the
unsent ones queued for sync), the rest is counted as lost under ``damaged``, the backlog is never
stuck behind the bad page, and ``status`` and ``store check`` say so."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.core.record import StoredReading
from agent.store import Store, read_events, read_stats
from agent.store.ledger import ledger_path
from agent.store.lock import lock_path
from agent.store.maintenance import check_store
from tests.store_helpers import ENV, readings, status_text

WINDOW = 0.05
COUNT = 20_000
SENT = 5_000  # the oldest readings, marked synced


async def filled(db: Path) -> None:
    async with Store(db, batch_window=WINDOW) as store:
        for start in range(0, COUNT, 2000):
            await store.append(readings(start, 2000))
        await store.flush()
        await store.mark_synced(list(range(1, SENT + 1)))
        await store.add_event("hvac.write", {"zone": "z1"})
        await store.set_meta("quirks:m1", "kept")


def damage_page(db: Path, *, at: float = 0.5) -> int:
    """Overwrite one page in the file (at this fraction of it) with junk; its number."""
    page = 4096
    pages = db.stat().st_size // page
    number = int(pages * at)
    with db.open("r+b") as f:
        f.seek(number * page)
        f.write(b"\xa5" * page)
        f.flush()
        os.fsync(f.fileno())
    return number


def kept_aside(where: Path) -> list[Path]:
    return [
        p
        for p in sorted(where.glob("readings.db.damaged-*"))
        if not p.name.endswith(("-wal", "-shm"))
    ]


async def backlog(store: Store) -> list[StoredReading]:
    """Every unsent reading, read as the uplink does: batches from a cursor."""
    out: list[StoredReading] = []
    cursor = 0
    while batch := await store.unsynced(500, from_seq=cursor):
        out.extend(batch)
        cursor = batch[-1].seq + 1
    return out


def damaged_event(db: Path) -> dict[str, Any]:
    events = read_events(db, kinds=["store_damaged"])
    assert len(events) == 1
    return events[0].detail


async def test_a_bad_page_is_found_at_open_set_aside_and_the_rest_salvaged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "readings.db"
    await filled(db)
    page = damage_page(db)
    async with Store(db, batch_window=WINDOW) as store:
        assert store.writable
        unsent = await backlog(store)  # never stuck behind the bad page
        await store.append(readings(COUNT, 100))  # and polling goes on
        await store.flush()
        stats = await store.stats()
        assert await store.get_meta("quirks:m1") == "kept"
    detail = damaged_event(db)
    assert detail["problems"] != ["ok"]
    assert detail["problems"]
    # The damaged file is kept beside the fresh store, its bad page as it was.
    (aside,) = kept_aside(tmp_path)
    assert aside.read_bytes()[page * 4096 : (page + 1) * 4096] == b"\xa5" * 4096
    assert detail["moved_to"] == str(aside)
    # One page holds some 150 readings: they, and only they, are lost.
    lost = COUNT - detail["salvaged"]
    assert 0 < lost <= 400
    assert detail["unsent_salvaged"] == len(unsent)
    assert detail["lost"] == (COUNT - SENT) - len(unsent)
    assert stats.losses == ({"damaged": detail["lost"]} if detail["lost"] else {})
    assert [r.seq for r in unsent] == sorted({r.seq for r in unsent})
    # Seqs are kept: the readings salvaged are the same readings upstream knows.
    assert all(r.value == float(r.seq - 1) for r in unsent)
    assert stats.last_seq == COUNT + 100
    assert stats.rows == detail["salvaged"] + 100
    text = status_text(db)
    assert f"lost:          {stats.lost} readings" in text
    assert "store_damaged" in text


@pytest.mark.parametrize("how", ["truncated", "bad header", "garbage"])
async def test_a_truncated_file_or_a_bad_header_is_set_aside_and_a_fresh_store_starts(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "readings.db"
    await filled(db)
    size = db.stat().st_size
    with db.open("r+b") as f:
        if how == "truncated":
            f.truncate(size // 2)
        elif how == "bad header":
            f.write(b"\0" * 100)
        else:
            f.write(b"this is not a database" * (size // 22))
    async with Store(db, batch_window=WINDOW) as store:
        assert store.writable
        unsent = await backlog(store)
        await store.append(readings(COUNT, 10))
        await store.flush()
        stats = await store.stats()
    detail = damaged_event(db)
    assert len(kept_aside(tmp_path)) == 1
    assert detail["unsent_salvaged"] == len(unsent)
    if how == "truncated":
        # The first half of the file reads: the oldest readings come back.
        assert detail["salvaged"] > COUNT // 4
        assert stats.last_seq == COUNT + 10, "the sequence goes on"
    elif how == "bad header":
        # The header is rebuilt on a copy (page size found by trial): everything comes back.
        assert (detail["salvaged"], detail["lost"]) == (COUNT, 0)
        assert stats.last_seq == COUNT + 10
    else:
        assert detail["salvaged"] == 0
        assert detail["lost_count_known"] is False
        # Nothing of the old file could be read, not even its last seq: the fresh store's
        # seqs start above any it can have handed out.
        assert stats.last_seq > COUNT + 10
    assert stats.rows == detail["salvaged"] + 10


async def shrink_cache(store: Store) -> None:
    """Make the writer read pages from the file again (as after a while of other work)."""
    await store._call("dropping the page cache", lambda w: w.conn.execute("PRAGMA shrink_memory"))


async def test_a_page_damaged_while_running_never_blocks_the_backlog(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    await filled(db)
    async with Store(db, batch_window=WINDOW) as store:
        await shrink_cache(store)
        damage_page(db, at=0.6)
        unsent = await backlog(store)  # meets the page: the store rebuilds, the read goes on
        await store.append(readings(COUNT, 50))
        await store.flush()
        stats = await store.stats()
    detail = damaged_event(db)
    assert detail["unsent_salvaged"] == len(unsent)
    assert 0 < COUNT - detail["salvaged"] <= 400
    assert stats.losses == ({"damaged": detail["lost"]} if detail["lost"] else {})
    assert stats.rows == detail["salvaged"] + 50
    assert len(kept_aside(tmp_path)) == 1


async def test_the_scheduled_integrity_check_finds_damage_off_the_hot_path(
    tmp_path: Path,
) -> None:
    db = tmp_path / "readings.db"
    await filled(db)
    async with Store(db, batch_window=WINDOW, integrity_every=0.3) as store:
        await shrink_cache(store)
        damage_page(db)
        t0 = time.monotonic()
        appended = COUNT
        while time.monotonic() - t0 < 10 and not kept_aside(tmp_path):
            await store.append(readings(appended, 20))  # polling goes on meanwhile
            appended += 20
            await asyncio.sleep(0.05)
        await store.flush()
        stats = await store.stats()
    detail = damaged_event(db)
    assert detail["problems"]  # the check's own lines, for upstream
    # Readings appended meanwhile went into the damaged file's readable pages and came back
    # with the salvage, or into the fresh store: only the bad page's rows are gone.
    assert stats.last_seq == appended
    assert appended - 400 <= stats.rows <= appended - detail["lost"]
    assert stats.losses == ({"damaged": detail["lost"]} if detail["lost"] else {})


async def test_store_check_reports_and_repairs(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    await filled(db)
    out = io.StringIO()
    assert check_store(db, repair=False, out=out) == 0
    assert "integrity check ok" in out.getvalue()
    damage_page(db)
    out = io.StringIO()
    assert check_store(db, repair=False, out=out) == 1
    assert "damaged" in out.getvalue()
    assert kept_aside(tmp_path) == [], "a check alone changes nothing"
    out = io.StringIO()
    assert check_store(db, repair=True, out=out) == 0
    assert "set aside as" in out.getvalue()
    assert len(kept_aside(tmp_path)) == 1
    detail = damaged_event(db)
    assert read_stats(db).losses == ({"damaged": detail["lost"]} if detail["lost"] else {})
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent", "store", "check", "--db", str(db)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "integrity check ok" in done.stdout


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_database_files_are_made_0640_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "readings.db"
    old = os.umask(umask)
    try:
        async with Store(db, batch_window=WINDOW) as store:
            await store.append(readings(0, 10))
            await store.flush()
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), ledger_path(db), lock_path(db))
            }
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(modes, 0o640)


def test_salvage_reads_round_a_bad_page_row_by_row(tmp_path: Path) -> None:
    """The salvage itself, on plain connections: every row not on the bad page comes back."""
    from agent.store.salvage import salvage

    src_path = tmp_path / "src.db"
    asyncio.run(filled(src_path))
    damage_page(src_path)
    src = sqlite3.connect(src_path)
    dest_path = tmp_path / "readings.db"

    async def fresh() -> None:
        async with Store(dest_path):
            pass

    asyncio.run(fresh())
    dest = sqlite3.connect(dest_path, isolation_level=None)
    try:
        report = salvage(src, dest)
        seqs = [row[0] for row in dest.execute("SELECT seq FROM readings ORDER BY seq")]
    finally:
        src.close()
        dest.close()
    assert report.readings == len(seqs)
    missing = sorted(set(range(1, COUNT + 1)) - set(seqs))
    # What is missing is one run of consecutive seqs: the rows of the bad page.
    assert missing
    assert missing == list(range(missing[0], missing[-1] + 1))


async def test_export_reads_round_a_bad_page_and_says_how_many_it_skipped(
    tmp_path: Path,
) -> None:
    from agent.core.errors import AgentError
    from agent.export import export

    db = tmp_path / "readings.db"
    await filled(db)
    damage_page(db)
    out = io.StringIO()
    with pytest.raises(AgentError, match=r"(\d+) records could not be read") as caught:
        export(db, fmt="jsonl", since=None, until=None, device=None, out=out)
    skipped = int(caught.value.args[0].split()[0])
    records = out.getvalue().splitlines()
    # Every record past the bad page is there too, in seq order.
    assert 0 < skipped <= 400
    assert len(records) + skipped == COUNT
    seqs = [int(line.split('"seq": ')[1].split(",")[0]) for line in records]
    assert seqs == sorted(seqs)
    assert seqs[-1] == COUNT
