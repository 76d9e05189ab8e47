"""Store faults, measured on real files: readings appended vs stored vs counted lost, and what
``edge-agent status`` says, for a file-size limit (EFBIG: SQLite's "disk I/O error"), a database
deleted while the store runs, and a page damaged in the middle of the file.

    .venv/bin/python bench/store_faults.py

Uses only what the store offered before its fault handling (Store, read_stats, the status
command), so the same script measures an older checkout too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.core.record import Reading
from agent.store import Store, read_stats

ROOT = Path(__file__).resolve().parent.parent
N = 2000

EFBIG_CHILD = """
import asyncio, resource, sys
from pathlib import Path
from agent.core.record import Reading
from agent.store import Store

async def main(db):
    async with Store(db, batch_window=0.05) as store:
        rows = [Reading("m1", f"p{i % 20}", 1_700_000_000_000 + i, float(i), "W")
                for i in range(100)]
        await store.append(rows)
        await store.flush()
        size = db.stat().st_size + Path(f"{db}-wal").stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
        for start in range(100, 100 + int(sys.argv[2]), 100):
            await store.append([Reading("m1", f"p{i % 20}", 1_700_000_000_000 + i, float(i), "W")
                                for i in range(start, start + 100)])
            await asyncio.sleep(0.01)
        try:
            await store.add_event("hvac.command", {"id": "c1"})
            print("add_event during the fault: returned")
        except Exception as exc:
            print(f"add_event during the fault: raised {type(exc).__name__}")

asyncio.run(main(Path(sys.argv[1])))
"""


def readings(start: int, n: int) -> list[Reading]:
    return [
        Reading("m1", f"p{i % 20}", 1_700_000_000_000 + i, float(i), "W")
        for i in range(start, start + n)
    ]


def status_lines(db: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--db", str(db)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    keep = ("lost", "store:", "CANNOT")
    return " | ".join(
        line.strip()
        for line in (done.stdout + done.stderr).splitlines()
        if any(word in line for word in keep)
    )


def efbig(tmp: Path) -> None:
    db = tmp / "readings.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", EFBIG_CHILD, str(db), str(N)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    stats = read_stats(db)
    print(
        f"file-size limit: {N} appended after the limit, {stats.rows - 100} stored, "
        f"{stats.lost} counted lost, exit {done.returncode}; {done.stdout.strip()}\n"
        f"  status: {status_lines(db)}"
    )


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


async def deleted(tmp: Path) -> None:
    db = tmp / "readings.db"
    async with Store(db, batch_window=0.05) as store:
        await store.append(readings(0, N))
        await store.flush()
        _remove(db)
        await store.append(readings(N, N))
        await asyncio.sleep(1.0)
        # (a minute: the store's default check_every is 30 s)
        for _ in range(70):
            if db.exists():
                break
            await asyncio.sleep(1.0)
    if not db.exists():
        print(f"deleted while running: {2 * N} appended, no file at the path afterwards")
        return
    stats = read_stats(db)
    print(
        f"deleted while running: {2 * N} appended, {stats.rows} in the file at the path "
        f"({stats.unsynced} unsent), {stats.lost} counted lost\n  status: {status_lines(db)}"
    )


def _set_aside(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("*.damaged-*"))


async def damaged(tmp: Path) -> None:
    db = tmp / "readings.db"
    count = 20 * N
    async with Store(db, batch_window=0.05) as store:
        for start in range(0, count, 1000):
            await store.append(readings(start, 1000))
        await store.flush()
    pages = db.stat().st_size // 4096
    with db.open("r+b") as f:
        f.seek((pages // 2) * 4096)
        f.write(b"\xa5" * 4096)
    sent, failure = 0, ""
    async with Store(db, batch_window=0.05) as store:
        cursor = 0
        while True:
            try:
                batch = await store.unsynced(500, from_seq=cursor)
            except Exception as exc:  # measured, not handled
                failure = f" (the backlog read failed after {sent}: {exc})"
                break
            if not batch:
                break
            sent += len(batch)
            cursor = batch[-1].seq + 1
    stats = read_stats(db)
    aside = _set_aside(tmp)
    print(
        f"damaged page: {count} stored before, backlog readable {sent}{failure}, "
        f"{stats.lost} counted lost, set aside: {aside or 'nothing'}\n"
        f"  status: {status_lines(db)}"
    )


def main() -> None:
    for case in (efbig, deleted, damaged):
        with tempfile.TemporaryDirectory() as tmp:
            result = case(Path(tmp))
            if asyncio.iscoroutine(result):
                asyncio.run(result)


if __name__ == "__main__":
    main()
