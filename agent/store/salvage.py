"""Salvage: copy what can still be read from one store file into a fresh one.

Used when the file at the store's path can no longer be the store: it is damaged (a bad page
after a brown-out, a truncated file, a bad header: found by ``PRAGMA quick_check`` at open, by
``integrity_check`` on a schedule, or by a query that meets a bad page), or it was deleted or
replaced while the agent ran (then the agent still holds the old file open and reads it from
there). Readings are read by ranges of seq, oldest first, and a range that fails is read again
row by row, so one bad page costs only the rows on it; each table is copied the same way. Seqs
are kept (a reading keeps its identity upstream, and the next seq stays above every seq handed
out), as are the synced flags, the events, the meta values and the counters, so the fresh store
goes on where the old one stopped, less what could not be read.

The functions take plain connections; the writer thread (``_Writer._rebuild``) decides when
to salvage and records what happened. Nothing here deletes or changes the source.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.store.schema import (
    _BUSY_TIMEOUT_S,
    _COUNTERS,
    _DROPPED,
    _EVICTED_SYNCED,
    _EVICTED_UNSYNCED,
    _FLOOR,
    _LAST_SYNC,
    _LOST_PREFIX,
    _ROWS,
    _UNSYNCED,
    _set_meta,
)

log = logging.getLogger("agent.store")

__all__ = ["SalvageReport", "check", "readable_rows", "salvage"]

_CHUNK = 2000  # rows per read, and per write transaction of the copy
_PROBLEMS_KEPT = 10  # lines of an integrity check kept in an event


@dataclass(slots=True)
class SalvageReport:
    """What a salvage copied, and what it could not read."""

    readings: int = 0
    """Readings copied (sent or not)."""
    unsent: int = 0
    """Of them, readings not yet sent: they are queued for sync in the fresh store."""
    unreadable: int = 0
    """Rows (readings, points, events) whose read failed."""
    lost_unsent: int = 0
    """Unsent readings the old file counted but the salvage could not read."""
    counted: bool = True
    """False when the old file's counters could not be read: then ``lost_unsent`` is only
    the rows whose read failed, and more may be gone."""
    events: int = 0
    intervals: int = 0
    last_seq: int = 0
    """The highest seq the old file handed out, as far as it could be read."""
    lost: dict[str, int] = field(default_factory=dict)
    """The old file's loss counters (by reason), carried over."""

    def detail(self) -> dict[str, int]:
        return {
            "salvaged": self.readings,
            "unsent_salvaged": self.unsent,
            "lost": self.lost_unsent,
            "unreadable_rows": self.unreadable,
            "lost_count_known": self.counted,
        }


def open_source(path: Path) -> sqlite3.Connection:
    """A connection that reads as much of a damaged file as SQLite can.

    ``writable_schema`` makes SQLite take a truncated file's real size instead of refusing the
    whole file because its header promises more pages (SQLite's btree.c, lockBtree); nothing
    is written through this connection.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    conn.execute("PRAGMA writable_schema = ON")
    return conn


def readable(conn: sqlite3.Connection) -> bool:
    return _scalar(conn, "SELECT count(*) FROM sqlite_master") is not None


# The database header's fixed fields (https://www.sqlite.org/fileformat2.html#the_database_header)
# with the page size left to fill in: magic, page size, write and read versions 2 (WAL),
# no reserved bytes, payload fractions 64/32/32; the database size 0 (SQLite then uses the
# file's size), schema format 4, UTF-8. The schema itself follows on page 1, and the rest of
# the header (counters, cookies) only matters to writers.
_MAGIC = b"SQLite format 3\0"


def _header(page_size: int) -> bytes:
    head = bytearray(100)
    head[0:16] = _MAGIC
    head[16:18] = (1 if page_size == 65536 else page_size).to_bytes(2, "big")
    head[18:24] = bytes([2, 2, 0, 64, 32, 32])
    head[40:44] = (1).to_bytes(4, "big")  # schema cookie
    head[44:48] = (4).to_bytes(4, "big")  # schema format
    head[56:60] = (1).to_bytes(4, "big")  # UTF-8
    return bytes(head)


def with_repaired_header(path: Path) -> Path | None:
    """A copy of ``path`` with a rebuilt 100-byte header, when a page size makes it readable
    (the file itself is kept as it is); None when none does."""
    copy = path.with_name(f"{path.name}.header-rebuilt")
    try:
        shutil.copyfile(path, copy)
    except OSError:
        return None
    size = copy.stat().st_size
    for page_size in (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512):
        if size % page_size:
            continue
        with copy.open("r+b") as f:
            f.write(_header(page_size))
        conn = open_source(copy)
        try:
            if readable(conn):
                return copy
        finally:
            conn.close()
    copy.unlink(missing_ok=True)
    return None


def check(conn: sqlite3.Connection, *, full: bool = False) -> list[str]:
    """SQLite's own check of the file: ``["ok"]``, or the problems it found (or the error that
    stopped it). ``full`` runs ``integrity_check`` (also compares indexes with their tables:
    for maintenance), else ``quick_check`` (every page and row format: at open)."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        return [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}({_PROBLEMS_KEPT})")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


def _scalar(src: sqlite3.Connection, sql: str, *params: Any) -> Any:
    """The first column of the first row, None when there is none or it cannot be read."""
    try:
        row = src.execute(sql, params).fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else row[0]


def _all(src: sqlite3.Connection, sql: str) -> list[Any]:
    try:
        return src.execute(sql).fetchall()
    except sqlite3.DatabaseError:
        return []


def _rows_by_key(
    src: sqlite3.Connection, table: str, key: str, columns: Sequence[str], stats: SalvageReport
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of a table with an integer key, in chunks by key (see :func:`readable_rows`)."""

    def unreadable() -> None:
        stats.unreadable += 1

    select = f"SELECT {', '.join(columns)} FROM {table} WHERE 1"
    yield from readable_rows(src, select, (), table=table, key=key, on_unreadable=unreadable)


def readable_rows(
    src: sqlite3.Connection,
    select: str,
    params: Sequence[Any],
    *,
    table: str,
    key: str,
    on_unreadable: Callable[[], None],
    alias: str = "",
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``select`` (a query ending in a WHERE clause, its first column ``key`` of
    ``table``, an integer key) in chunks by key. A chunk whose read fails (a bad page) is read
    again key by key, and ``on_unreadable`` is called for each key whose read fails too: so a
    bad page costs only its own rows, and the rows after it are still read."""
    qualified = f"{alias}.{key}" if alias else key
    high = _scalar(src, f"SELECT max({key}) FROM {table}")
    if high is None:  # empty, or the last page is damaged: ask the sequence
        high = _scalar(src, "SELECT seq FROM sqlite_sequence WHERE name = ?", table)
    if high is None:
        return
    start = _scalar(src, f"SELECT min({key}) FROM {table}") or 1
    while start <= high:
        try:
            chunk = src.execute(
                f"{select} AND {qualified} >= ? ORDER BY {qualified} LIMIT ?",
                (*params, start, _CHUNK),
            ).fetchall()
        except sqlite3.DatabaseError:
            chunk = []
            for k in range(start, min(start + _CHUNK, high + 1)):
                try:
                    row = src.execute(f"{select} AND {qualified} = ?", (*params, k)).fetchone()
                except sqlite3.DatabaseError:
                    on_unreadable()
                    continue
                if row is not None:
                    chunk.append(row)
            yield chunk
            start += _CHUNK
            continue
        if not chunk:
            return
        yield chunk
        start = int(chunk[-1][0]) + 1


def salvage(src: sqlite3.Connection, dest: sqlite3.Connection) -> SalvageReport:
    """Copy what can be read from ``src`` into ``dest``, a freshly made, empty store (its
    schema applied). Read errors are counted, never raised; a write error on ``dest`` (a full
    disk) is raised, with what was copied so far committed."""
    report = SalvageReport()
    meta = dict(_all(src, "SELECT key, value FROM meta"))
    counters = {k: int(v) for k, v in meta.items() if k in _COUNTERS}
    report.lost = {
        k[len(_LOST_PREFIX) :]: int(v) for k, v in meta.items() if k.startswith(_LOST_PREFIX)
    }
    report.last_seq = _scalar(src, "SELECT seq FROM sqlite_sequence WHERE name = 'readings'") or 0
    points: set[int] = set()
    with _tx(dest):
        for chunk in _rows_by_key(src, "points", "id", ("id", "device", "point", "unit"), report):
            dest.executemany(
                "INSERT INTO points (id, device, point, unit) VALUES (?, ?, ?, ?)", chunk
            )
            points.update(row[0] for row in chunk)
    latest: dict[int, int] = {}
    floor: int | None = None
    columns = ("seq", "point_id", "ts_ms", "value", "quality", "synced")
    for chunk in _rows_by_key(src, "readings", "seq", columns, report):
        with _tx(dest):
            for row in chunk:
                if row[1] not in points:  # its point's row was unreadable: keep the reading
                    dest.execute(
                        "INSERT INTO points (id, device, point, unit) VALUES (?, ?, ?, ?)",
                        (row[1], f"unknown-point-{row[1]}", "unknown", ""),
                    )
                    points.add(row[1])
                latest[row[1]] = row[0]
                if not row[5]:
                    report.unsent += 1
                    floor = row[0] if floor is None else floor
            dest.executemany(
                "INSERT INTO readings (seq, point_id, ts_ms, value, quality, synced)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                chunk,
            )
        report.readings += len(chunk)
        report.last_seq = max(report.last_seq, chunk[-1][0] if chunk else 0)
    _copy_events_and_ranges(src, dest, report)
    intervals = _all(src, "SELECT * FROM intervals")
    with _tx(dest):
        if intervals:
            marks = ", ".join("?" * len(intervals[0]))
            dest.executemany(f"INSERT OR REPLACE INTO intervals VALUES ({marks})", intervals)
        report.intervals = len(intervals)
        kept = (_LAST_SYNC, _DROPPED, _EVICTED_SYNCED, _EVICTED_UNSYNCED)
        for key, value in meta.items():
            # (ledger_gen too: which of the ledger's losses the counters carried over hold)
            if (key not in _COUNTERS or key in kept) and key != "max_bytes":
                _set_meta(dest, key, str(value))
        dest.executemany(
            "UPDATE points SET last_seq = ? WHERE id = ?", [(s, p) for p, s in latest.items()]
        )
        # Never hand out a seq again: the sequence goes on from the old file's.
        dest.execute("DELETE FROM sqlite_sequence WHERE name = 'readings'")
        dest.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('readings', ?)", (report.last_seq,)
        )
        _set_meta(dest, _ROWS, str(report.readings))
        _set_meta(dest, _UNSYNCED, str(report.unsent))
        _set_meta(dest, _FLOOR, str(floor if floor is not None else report.last_seq + 1))
    if _UNSYNCED in counters:
        report.lost_unsent = max(0, counters[_UNSYNCED] - report.unsent)
    else:  # the counters were unreadable: every row that failed may have been unsent
        report.lost_unsent = report.unreadable
        report.counted = False
    return report


def _copy_events_and_ranges(
    src: sqlite3.Connection, dest: sqlite3.Connection, report: SalvageReport
) -> None:
    event_columns = ("id", "ts_ms", "kind", "detail", "published")
    for chunk in _rows_by_key(src, "events", "id", event_columns, report):
        with _tx(dest):
            dest.executemany(
                "INSERT INTO events (id, ts_ms, kind, detail, published) VALUES (?, ?, ?, ?, ?)",
                chunk,
            )
        report.events += len(chunk)
    ranges = _all(src, "SELECT first_seq, last_seq, boot_id, offset_ms FROM clock_ranges")
    with _tx(dest):
        dest.executemany("INSERT INTO clock_ranges VALUES (?, ?, ?, ?)", ranges)


@contextlib.contextmanager
def _tx(conn: sqlite3.Connection) -> Iterator[None]:
    """One transaction on a connection in autocommit mode (as the store's are)."""
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
