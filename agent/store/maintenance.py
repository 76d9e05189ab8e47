"""``edge-agent store check [--repair]``: SQLite's full integrity check of the store file, and
the same repair the agent makes when it finds a damaged file (set aside, rebuilt from what it
still holds: :meth:`agent.store.writer._Writer._rebuild`).

The check opens the file read-only, so it is safe while the agent runs; the repair writes, so
it refuses while the agent runs (it holds the store's lock: agent/store/lock.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TextIO

from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError
from agent.store.lock import StoreLock
from agent.store.salvage import check
from agent.store.schema import _BUSY_TIMEOUT_S
from agent.store.writer import repair_file

__all__ = ["check_store", "integrity_problems"]


def integrity_problems(db: Path) -> list[str]:
    """``["ok"]``, or what ``PRAGMA integrity_check`` found in the file (read-only)."""
    try:
        conn = sqlite3.connect(
            f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S
        )
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        return check(conn, full=True)
    finally:
        conn.close()


def check_store(db: Path, *, repair: bool, out: TextIO, clock: Clock | None = None) -> int:
    """Check (and with ``repair``, rebuild) the store file; 0 when it is (now) sound."""
    if not db.is_file():
        raise StoreError(
            f"there is no reading store at {db}: give the agent's --data-dir (or --db)"
        )
    problems = integrity_problems(db)
    if problems == ["ok"]:
        out.write(f"{db}: integrity check ok\n")
        return 0
    out.write(f"{db}: damaged:\n")
    for line in problems:
        out.write(f"  {line}\n")
    if not repair:
        out.write(
            "the agent sets a damaged store aside and rebuilds it when it next opens it (or at "
            "its daily check); to do it now, stop the agent and run "
            "`edge-agent store check --repair`\n"
        )
        return 1
    lock = StoreLock(db)
    lock.acquire(instead="let the agent repair the file itself at its next check")
    try:
        detail = repair_file(db, problems, clock=clock if clock is not None else system_clock())
    finally:
        lock.release()
    out.write(
        f"{db}: set aside as {detail['moved_to']}; a fresh store holds the "
        f"{detail['salvaged']} readings salvaged ({detail['unsent_salvaged']} not yet sent, "
        f"queued for sync); {detail['lost']} unsent readings could not be read\n"
    )
    return 0
