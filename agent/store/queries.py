"""Read-only access to a store file for the CLI, and the statistics of a store.

Each ``read_*`` function (and :func:`export_readings`) opens its own read-only connection, so
``edge-agent status``, ``export`` and ``sync`` can look at the file while the agent writes it.
The queries on a connection (``_query_stats``, ``_query_latest``) are shared with the writer
thread, which runs them on its own connection for :meth:`Store.stats` and :meth:`Store.latest`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.core.errors import StoreError
from agent.core.record import StoredReading
from agent.store import health as reasons
from agent.store.events import StoreEvent
from agent.store.health import StoreHealth, read_only_mount
from agent.store.intervals import _query_intervals
from agent.store.ledger import read_ledger
from agent.store.salvage import readable_rows
from agent.store.schema import (
    _BUSY_TIMEOUT_S,
    _DROPPED,
    _EVICTED_SYNCED,
    _EVICTED_UNSYNCED,
    _FLOOR,
    _LAST_SYNC,
    _LEDGER_GEN,
    _MAX_SEQ,
    _ROWS,
    _SELECT_READING,
    _UNSYNCED,
    _counters,
    _file_bytes,
    _has_column,
    _has_table,
    _lost_counters,
    _sequence,
    _to_stored,
)


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What the buffer holds, for the status command and the live view."""

    rows: int
    """Committed readings in the file (synced or not)."""
    unsynced: int
    """Committed readings not yet acknowledged by the broker."""
    bytes: int
    """Size of the database file plus its WAL."""
    oldest_unsynced_ms: int | None
    """Timestamp of the oldest reading still waiting to be published."""
    last_seq: int
    """Highest seq ever handed out (0 for a new store); never goes down."""
    last_sync_ms: int | None
    """When the uplink last had readings acknowledged."""
    pending: int = 0
    """Readings appended but not yet committed (held in memory)."""
    dropped: int = 0
    """Readings never stored: the in-memory hold overflowed while the disk refused writes."""
    write_errors: int = 0
    """Batch commits that failed since the store was opened (e.g. disk full)."""
    max_bytes: int | None = None
    """The size budget (database plus WAL); None when the store has none."""
    used_bytes: int = 0
    """Bytes of the database file in use; the rest of the file is free pages, reused in place."""
    evicted_synced: int = 0
    """Readings deleted to stay within the budget after the broker had them (routine)."""
    evicted_unsynced: int = 0
    """Readings deleted to stay within the budget before the broker had them (each an alert)."""
    events_unpublished: int = 0
    """Alert events not yet published upstream."""
    lost_reasons: dict[str, int] = field(default_factory=dict)
    """Readings lost for the other reasons of agent.store.health (not ``hold_full``, which is
    ``dropped``, nor ``evicted_unsent``, which is ``evicted_unsynced``), by reason."""
    events_lost: int = 0
    """Events (audit, alerts) lost because their in-memory hold overflowed."""
    health: StoreHealth | None = None
    """Whether the store can write now (from the agent, or its ledger; None: unknown)."""
    clock_awaiting: int = 0
    """Readings stamped before the clock was trusted, to be corrected when it is (at most:
    counted by seq ranges)."""
    clock_uncorrected: int = 0
    """Readings stamped by an untrusted clock before a reboot: they keep the flag for good."""

    @property
    def losses(self) -> dict[str, int]:
        """Every reading that will never reach the broker, by reason (only reasons > 0)."""
        out = {reasons.HOLD_FULL: self.dropped, reasons.EVICTED_UNSENT: self.evicted_unsynced}
        out.update(self.lost_reasons)
        return {why: n for why, n in out.items() if n}

    @property
    def lost(self) -> int:
        """Readings that will never reach the broker, for any reason."""
        return sum(self.losses.values())


def _query_stats(conn: sqlite3.Connection, path: Path) -> StoreStats:
    counters = _counters(conn)
    if _ROWS in counters:
        rows, unsynced = counters[_ROWS], counters[_UNSYNCED]
        floor = counters.get(_FLOOR, 0)
    else:  # a file from before migration 0002 (read-only: nobody migrated it yet)
        (rows,) = conn.execute("SELECT count(*) FROM readings").fetchone()
        (unsynced,) = conn.execute("SELECT count(*) FROM readings WHERE synced = 0").fetchone()
        floor = 0
    oldest = conn.execute(
        "SELECT ts_ms FROM readings WHERE seq >= ? AND synced = 0 ORDER BY seq LIMIT 1", (floor,)
    ).fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    (page_count,) = conn.execute("PRAGMA page_count").fetchone()
    (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
    events = 0
    if _has_table(conn, "events"):
        (events,) = conn.execute("SELECT count(*) FROM events WHERE published = 0").fetchone()
    budget = conn.execute("SELECT value FROM meta WHERE key = 'max_bytes'").fetchone()
    lost = _lost_counters(conn)
    awaiting = 0
    if _has_table(conn, "clock_ranges"):
        (awaiting,) = conn.execute(
            "SELECT coalesce(sum(last_seq - first_seq + 1), 0) FROM clock_ranges"
        ).fetchone()
    uncorrected = conn.execute("SELECT value FROM meta WHERE key = 'clock_uncorrected'").fetchone()
    return StoreStats(
        rows=rows,
        unsynced=unsynced,
        bytes=_file_bytes(path),
        oldest_unsynced_ms=oldest[0] if oldest else None,
        last_seq=_sequence(conn),
        last_sync_ms=counters.get(_LAST_SYNC),
        dropped=counters.get(_DROPPED, 0),
        max_bytes=int(budget[0]) if budget else None,
        used_bytes=(page_count - free_pages) * page_size,
        evicted_synced=counters.get(_EVICTED_SYNCED, 0),
        evicted_unsynced=counters.get(_EVICTED_UNSYNCED, 0),
        events_unpublished=events,
        lost_reasons={k: v for k, v in lost.items() if k != reasons.EVENTS_HOLD_FULL},
        events_lost=lost.get(reasons.EVENTS_HOLD_FULL, 0),
        clock_awaiting=awaiting,
        clock_uncorrected=int(uncorrected[0]) if uncorrected else 0,
    )


# --- read-only access for the CLI (works while the agent runs) -------------------------------


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        conn.close()
        if not read_only_mount(path):
            raise
        # A WAL database on a read-only filesystem (an SD card remounted read-only): SQLite
        # cannot make the -shm it needs to read; nobody can write the file there, so it may
        # be read as immutable (https://www.sqlite.org/uri.html#uriimmutable).
        conn = sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=_BUSY_TIMEOUT_S)
    return conn


@contextlib.contextmanager
def _read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    path = Path(db_path)
    if not path.is_file():
        raise StoreError(f"there is no reading store at {path}")
    try:
        conn = _connect_read_only(path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the reading store {path}: {exc}") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the reading store {path}: {exc}") from exc
    finally:
        conn.close()


def export_readings(
    db_path: Path,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    device: str | None = None,
    on_unreadable: Callable[[], None] | None = None,
) -> Iterator[StoredReading]:
    """Committed readings ordered by seq, with ``since_ms <= ts_ms < until_ms`` and a device.

    Opens its own read-only connection: safe while the agent writes. A generator: errors
    (StoreError) surface on iteration. With ``on_unreadable``, a damaged file is read round
    its bad pages: each row that cannot be read is skipped with a call, and the rest follows.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if since_ms is not None:
        clauses.append("r.ts_ms >= ?")
        params.append(since_ms)
    if until_ms is not None:
        clauses.append("r.ts_ms < ?")
        params.append(until_ms)
    if device is not None:
        clauses.append("p.device = ?")
        params.append(device)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    with _read_only(db_path) as conn:
        if on_unreadable is None:
            for row in conn.execute(f"{_SELECT_READING}{where} ORDER BY r.seq", params):
                yield _to_stored(row)
            return
        select = f"{_SELECT_READING}{where or ' WHERE 1'}"
        for chunk in readable_rows(
            conn,
            select,
            params,
            table="readings",
            key="seq",
            alias="r",
            on_unreadable=on_unreadable,
        ):
            for row in chunk:
                yield _to_stored(row)


def read_intervals(
    db_path: Path,
    *,
    since_ms: int = 0,
    until_ms: int = _MAX_SEQ,
    meters: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Stored energy intervals (as ``Store.intervals``), read-only."""
    chosen = None if meters is None else sorted(set(meters))
    with _read_only(db_path) as conn:
        return _query_intervals(conn, since_ms, until_ms, chosen)


def _query_latest(conn: sqlite3.Connection) -> list[StoredReading]:
    if _has_column(conn, "points", "last_seq"):
        cur = conn.execute(
            "SELECT r.seq, p.device, p.point, r.ts_ms, r.value, p.unit, r.quality"
            " FROM points p JOIN readings r ON r.seq = p.last_seq"
            " ORDER BY p.device, p.point, p.unit"
        )
    else:  # a file from before migration 0002, read-only
        cur = conn.execute(
            f"{_SELECT_READING}"
            " WHERE r.seq = (SELECT max(seq) FROM readings WHERE point_id = p.id)"
            " ORDER BY p.device, p.point, p.unit"
        )
    return [_to_stored(row) for row in cur]


def read_latest(db_path: Path) -> list[StoredReading]:
    """The newest committed reading of every point, read-only (safe while the agent writes)."""
    with _read_only(db_path) as conn:
        return _query_latest(conn)


def read_stats(db_path: Path) -> StoreStats:
    """Statistics of a store file, read-only (safe while the agent writes).

    Losses the agent could not write into the file (it refused writes) but kept in its ledger
    are counted too, and the health comes from the ledger: so the figures never say "0 lost"
    when readings were lost.
    """
    with _read_only(db_path) as conn:
        stats = _query_stats(conn, Path(db_path))
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_LEDGER_GEN,)).fetchone()
    merged_gen = int(row[0]) if row else 0
    state = read_ledger(Path(db_path))
    if state is None:
        return stats
    unmerged = state.lost if state.gen >= merged_gen else {}
    error = state.error or {}
    health = StoreHealth(
        writable=not error,
        cause=error.get("cause"),
        cure=error.get("cure"),
        since_ms=error.get("since_ms"),
        held=state.held,
        lost=dict(unmerged),
    )
    other = dict(stats.lost_reasons)
    for why, count in unmerged.items():
        if why not in (reasons.HOLD_FULL, reasons.EVENTS_HOLD_FULL):
            other[why] = other.get(why, 0) + count
    return replace(
        stats,
        dropped=stats.dropped + unmerged.get(reasons.HOLD_FULL, 0),
        events_lost=stats.events_lost + unmerged.get(reasons.EVENTS_HOLD_FULL, 0),
        lost_reasons=other,
        health=health,
    )


def read_events(
    db_path: Path, *, limit: int = 20, kinds: Sequence[str] | None = None
) -> list[StoreEvent]:
    """The newest events (published or not), newest first, of the given kinds; read-only."""
    where, params = "", []
    if kinds is not None:
        where = f" WHERE kind IN ({', '.join('?' * len(kinds))})"
        params = list(kinds)
    with _read_only(db_path) as conn:
        if not _has_table(conn, "events"):
            return []
        return [
            StoreEvent(id=i, ts_ms=ts, kind=kind, detail=json.loads(detail))
            for i, ts, kind, detail in conn.execute(
                f"SELECT id, ts_ms, kind, detail FROM events{where} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            )
        ]


def read_meta(db_path: Path, key: str) -> str | None:
    """One value of the store's meta table, read-only (safe while the agent writes)."""
    with _read_only(db_path) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
