"""The local buffer of readings: one SQLite file, one writer thread, batched commits, a budget.

Every reading the agent takes goes through here before it is published, so that a power cut or
an uplink outage loses nothing that was committed. The event loop never touches SQLite: all
statements of a :class:`Store` run on its own writer thread, and the loop talks to that thread
through a queue of jobs and ``concurrent.futures`` results. Commit notifications come back to the
loop through ``loop.call_soon_threadsafe``.

Durability choice: WAL with ``synchronous=FULL``. With ``NORMAL`` a committed transaction survives
a crash of the process but not a power cut: the WAL is only fsynced at checkpoints, so a cut can
roll back every commit since the last checkpoint (possibly minutes of readings), including ones
the uplink has already published. Their seqs would then be handed out again to new readings,
and a consumer that drops duplicates by seq would drop real data. ``FULL`` fsyncs the WAL on every
commit; batching keeps that to about one fsync per ``batch_window``, cheap even on an SD card. So
"stored" means "its transaction has committed", and at most one batch window of readings (those
appended but not yet committed) is at risk in a power cut, as ``StoreConfig.batch_window`` says.

Size budget (``max_bytes``, docs/store.md): the database file may not grow past the budget minus
an allowance for the WAL (SQLite's ``max_page_count`` enforces it). Before it gets there the
writer deletes the oldest readings that the broker already has; only when none is left does it
delete the oldest unsent ones, counting them and recording an alert event that the uplink
publishes. Freed pages are reused in place, so routine eviction never rewrites the file (no
VACUUM on an SD card). A full disk is handled the same way, with the file's current size as the
limit. Rows are kept small: no index besides the primary key (the oldest unsent reading is found
from a "sync floor" kept in ``meta``, the latest reading per point from ``points.last_seq``), and
the row and unsent counts are counters in ``meta`` kept in the same transactions as the rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import queue
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError
from agent.core.record import Quality, Reading, StoredReading, ms_to_iso

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MIGRATIONS",
    "Migration",
    "Store",
    "StoreEvent",
    "StoreStats",
    "apply_migrations",
    "export_readings",
    "read_events",
    "read_intervals",
    "read_latest",
    "read_meta",
    "read_stats",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The config's default budget (StoreConfig.max_bytes; a test keeps the two equal).
DEFAULT_MAX_BYTES = 3 * 1024**3
"""The budget of a Store given none: the config's default, so both agree."""

_INT64 = (-(2**63), 2**63 - 1)
_MAX_SEQ = _INT64[1]
_BUSY_TIMEOUT_S = 5.0
_MIN_BUDGET = 1024 * 1024  # as StoreConfig.max_bytes: below this the WAL allowance dominates
# The WAL is checkpointed (and truncated back to this size) after about 1/64 of the budget,
# between these bounds in pages: small budgets keep a small WAL, large ones SQLite's default.
_WAL_PAGES = (32, 1000)
# Eviction frees about 1/50 of the budget at a time (bounded, so that one round on a large card
# stays short), and starts when less than that is free.
_CHUNK_PAGES = (8, 2048)
_EVICT_ROUNDS = 8  # rounds per eviction; each re-estimates bytes per row
# When SQLite says the disk is full below the budget, the file's size becomes the limit; after
# this long, and if the disk has room again, the budget applies again.
_DISK_RECHECK_S = 300.0
# Published events older than the newest this many are pruned; unpublished ones only beyond
# the second bound (a pathological flood during an outage must not eat the readings' budget).
_EVENTS_KEPT = (1000, 100_000)
# Energy intervals deleted per eviction round once no reading is left to evict.
_INTERVALS_EVICTED = 1000
_INTERVAL_COLUMNS = (
    "meter",
    "start_ms",
    "end_ms",
    "value",
    "unit",
    "quality",
    "flags",
    "energy_type",
    "sub_item",
    "role",
)

# Keys of the counters in `meta`, kept in the same transactions as the rows they count.
_ROWS, _UNSYNCED, _FLOOR = "rows", "unsynced", "sync_floor"
_EVICTED_SYNCED, _EVICTED_UNSYNCED, _DROPPED = "evicted_synced", "evicted_unsynced", "dropped"
_LAST_SYNC = "last_sync_ms"
_COUNTERS = (_ROWS, _UNSYNCED, _FLOOR, _EVICTED_SYNCED, _EVICTED_UNSYNCED, _DROPPED, _LAST_SYNC)


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

    @property
    def lost(self) -> int:
        """Readings that will never reach the broker: evicted unsent, or never stored."""
        return self.evicted_unsynced + self.dropped


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """Something upstream must hear about, kept in the store until the uplink publishes it.

    The store's own kinds: ``readings_dropped`` (unsent readings deleted to stay within the
    budget or a full disk; ``detail`` has ``count``, ``first_seq``, ``last_seq``, ``first_ts``,
    ``last_ts``, ``reason``) and ``readings_lost`` (readings never stored because the in-memory
    hold overflowed while the disk refused writes; ``detail`` has ``count`` and ``reason``).
    Other parts of the agent add theirs with :meth:`Store.add_event` (e.g. ``hvac.*``).
    """

    id: int
    ts_ms: int
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": ms_to_iso(self.ts_ms),
            "kind": self.kind,
            "detail": dict(self.detail),
        }


# --- schema and migrations -------------------------------------------------------------------

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]


def _m0001_initial(db: sqlite_utils.Database) -> None:
    db["points"].create(  # type: ignore[union-attr]
        {"id": int, "device": str, "point": str, "unit": str},
        pk="id",
        not_null={"device", "point", "unit"},
    )
    db["points"].create_index(  # type: ignore[union-attr]
        ["device", "point", "unit"], index_name="points_key", unique=True
    )
    # Written as SQL because sqlite-utils has no public way to say AUTOINCREMENT (a seq is never
    # reused, even after the newest rows are deleted) or to leave a column without a type:
    # `value` must keep what it is given (INTEGER, REAL, TEXT or NULL); a REAL column would turn
    # 5 into 5.0 and a NUMERIC one "12" into 12.
    db.execute(
        """
        CREATE TABLE readings (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            point_id INTEGER NOT NULL REFERENCES points(id),
            ts_ms INTEGER NOT NULL,
            value,
            quality INTEGER NOT NULL,
            synced INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX readings_unsynced ON readings (seq) WHERE synced = 0")
    db.execute("CREATE INDEX readings_point_seq ON readings (point_id, seq)")
    db["meta"].create({"key": str, "value": str}, pk="key")  # type: ignore[union-attr]


def _m0002_compact_counters_events(db: sqlite_utils.Database) -> None:
    """Drop both secondary indexes (they cost 15 and 13 bytes per reading, half of the row
    again), keep the latest reading per point and the counts in small tables instead, and add
    the alert events."""
    conn = db.conn
    conn.execute("ALTER TABLE points ADD COLUMN last_seq INTEGER")
    conn.execute(
        "UPDATE points SET last_seq = (SELECT max(seq) FROM readings WHERE point_id = points.id)"
    )
    (rows,) = conn.execute("SELECT count(*) FROM readings").fetchone()
    (unsynced,) = conn.execute("SELECT count(*) FROM readings WHERE synced = 0").fetchone()
    floor = conn.execute("SELECT min(seq) FROM readings WHERE synced = 0").fetchone()[0]
    if floor is None:
        floor = _sequence(conn) + 1
    for key, value in ((_ROWS, rows), (_UNSYNCED, unsynced), (_FLOOR, floor)):
        _set_meta(conn, key, str(value))
    conn.execute("DROP INDEX readings_point_seq")
    conn.execute("DROP INDEX readings_unsynced")
    conn.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            published INTEGER NOT NULL DEFAULT 0
        )
        """
    )


def _m0003_energy_intervals(db: sqlite_utils.Database) -> None:
    """The energy pipeline's base intervals, kept apart from the pruned events (docs/energy.md)."""
    db.conn.execute(
        """
        CREATE TABLE intervals (
            meter TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            end_ms INTEGER NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL,
            quality TEXT NOT NULL,
            flags TEXT NOT NULL,
            energy_type TEXT,
            sub_item TEXT,
            role TEXT,
            PRIMARY KEY (meter, start_ms)
        ) WITHOUT ROWID
        """
    )


MIGRATIONS: tuple[Migration, ...] = (
    ("0001_initial", _m0001_initial),
    ("0002_compact_counters_events", _m0002_compact_counters_events),
    ("0003_energy_intervals", _m0003_energy_intervals),
)
"""Schema changes in order. Append new ones; never edit or reorder one that has shipped."""


def apply_migrations(
    db: sqlite_utils.Database,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    clock: Clock | None = None,
) -> list[str]:
    """Apply the migrations not yet recorded in the ``migrations`` table, in order.

    Each migration runs in one transaction together with its record, so a failure leaves it
    unapplied and unrecorded. Returns the names applied now.
    """
    clock = clock if clock is not None else system_clock()
    table = db["migrations"]
    table.create(  # type: ignore[union-attr]
        {"name": str, "applied_ms": int}, pk="name", if_not_exists=True
    )
    done = {row["name"] for row in table.rows}
    applied: list[str] = []
    for name, migrate in migrations:
        if name in done:
            continue
        with db.atomic():
            migrate(db)
            table.insert({"name": name, "applied_ms": clock.now_ms()})  # type: ignore[union-attr]
        applied.append(name)
        log.info("store migration %s applied", name)
    return applied


# --- small SQL helpers shared by the writer thread and the read-only helpers -----------------

_SELECT_READING = (
    "SELECT r.seq, p.device, p.point, r.ts_ms, r.value, p.unit, r.quality"
    " FROM readings r JOIN points p ON p.id = r.point_id"
)


def _to_stored(row: tuple[Any, ...]) -> StoredReading:
    seq, device, point, ts_ms, value, unit, quality = row
    return StoredReading(
        seq=seq,
        device=device,
        point=point,
        ts_ms=ts_ms,
        value=value,
        unit=unit,
        quality=Quality(quality),
    )


def _file_bytes(path: Path) -> int:
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total


def _sequence(conn: sqlite3.Connection) -> int:
    """The highest seq ever handed out (AUTOINCREMENT keeps it even when rows are deleted)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
    return int(row[0]) if row else 0


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _bump(conn: sqlite3.Connection, key: str, delta: int) -> None:
    """Add to a counter in SQL, so that two processes writing the same file (the agent and
    `edge-agent sync`) keep it exact."""
    if delta:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
            " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + excluded.value AS TEXT)",
            (key, str(delta)),
        )


def _counters(conn: sqlite3.Connection) -> dict[str, int]:
    marks = ",".join("?" * len(_COUNTERS))
    return {
        key: int(value)
        for key, value in conn.execute(
            f"SELECT key, value FROM meta WHERE key IN ({marks})", _COUNTERS
        )
    }


def _floor(conn: sqlite3.Connection) -> int:
    """The sync floor: every seq below it is synced (or gone)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_FLOOR,)).fetchone()
    return int(row[0]) if row else 0


def _runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive integers as (first, last) ranges: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _first_unsynced(conn: sqlite3.Connection, floor: int) -> int:
    """The lowest unsent seq at or above ``floor``, or the next seq when none is unsent.

    Walks the primary key from the floor over rows already synced: each row is passed over
    once in its life, when the floor moves past it.
    """
    row = conn.execute(
        "SELECT seq FROM readings WHERE seq >= ? AND synced = 0 ORDER BY seq LIMIT 1", (floor,)
    ).fetchone()
    return int(row[0]) if row else _sequence(conn) + 1


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        is not None
    )


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
    )


def _check_value(reading: Reading) -> None:
    """Refuse, in the caller, a value SQLite cannot hold: a bad value is a bug in a driver, and
    it must not sit in the batch and make every commit fail."""
    value = reading.value
    if value is None or isinstance(value, float | str):
        return
    if isinstance(value, int):  # bool included: stored as 0/1
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{reading.device}.{reading.point}: {value} does not fit in 64 bits")
        return
    raise TypeError(
        f"{reading.device}.{reading.point}: a reading's value must be int, float, str, bool or "
        f"None, not {type(value).__name__}"
    )


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def _chunk(limit_pages: int) -> int:
    """Pages one eviction frees: about 1/50 of the limit, within bounds."""
    return _clamp(limit_pages // 50, _CHUNK_PAGES)


# --- the writer thread -----------------------------------------------------------------------


@dataclass(slots=True)
class _Append:
    readings: list[Reading]


@dataclass(slots=True)
class _Call:
    what: str  # e.g. "reading unsynced rows", for the error message
    fn: Callable[[_Writer], Any]
    future: concurrent.futures.Future[Any]


@dataclass(slots=True)
class _Flush:
    future: concurrent.futures.Future[None]


@dataclass(slots=True)
class _Close:
    future: concurrent.futures.Future[None]


_Job = _Append | _Call | _Flush | _Close


class _Writer:
    """State owned by the writer thread. Nothing here is touched from the event loop."""

    def __init__(
        self,
        path: Path,
        jobs: queue.SimpleQueue[_Job],
        *,
        batch_window: float,
        batch_max: int,
        max_pending: int,
        max_bytes: int | None,
        notify: Callable[[int, list[StoreEvent]], None],
        clock: Clock,
    ) -> None:
        self.path = path
        self.clock = clock
        self.jobs = jobs
        self.batch_window = batch_window
        self.batch_max = batch_max
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.notify = notify
        self.conn: sqlite3.Connection | None = None
        self.db: sqlite_utils.Database | None = None
        self.point_ids: dict[tuple[str, str, str], int] = {}
        self.pending: deque[Reading] = deque()
        self.first_pending_at: float | None = None
        self.retry_at: float | None = None  # set while commits fail: the next attempt
        self.last_error: sqlite3.Error | None = None
        self.write_errors = 0
        self.failed_attempts = 0
        self.dropping = False
        self.unrecorded_drops = 0  # dropped from memory, not yet counted in meta
        self.dropping_unsynced = False  # evicting unsent readings, until the next sync
        self.new_events: list[StoreEvent] = []  # committed, not yet handed to the loop
        # the budget, in pages (set by open())
        self.page_size = 4096
        self.budget_pages: int | None = None
        self.reserve_bytes = 0  # disk space the store leaves free (set by open())
        self.disk_cap: int | None = None  # the file's size when a write found the disk full
        self.disk_cap_since = 0.0
        self.disk_limited = False  # evicting because the disk, not the budget, is the limit

    # opening

    def open(self) -> int:
        """Open the file, bring the schema up to date; returns the last seq handed out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
        self.conn = conn
        # Only a new, empty file takes this; it lets a lowered budget shrink the file later
        # (PRAGMA incremental_vacuum) without a full VACUUM. Routine eviction does not need it.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")  # why FULL: see the module docstring
        conn.execute("PRAGMA foreign_keys=ON")
        # Debian builds SQLite with secure_delete on: every evicted page would be overwritten
        # with zeros (through the WAL, then again at the checkpoint). Readings are not secrets;
        # an SD card's write budget is worth more.
        conn.execute("PRAGMA secure_delete=OFF")
        (self.page_size,) = conn.execute("PRAGMA page_size").fetchone()
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        apply_migrations(self.db, clock=self.clock)
        for pid, device, point, unit in conn.execute("SELECT id, device, point, unit FROM points"):
            self.point_ids[(device, point, unit)] = pid
        self._apply_budget()
        return _sequence(conn)

    def _apply_budget(self) -> None:
        conn = self.conn
        assert conn is not None
        budget = self.max_bytes
        wal_pages = (
            _WAL_PAGES[1] if budget is None else _clamp(budget // self.page_size // 64, _WAL_PAGES)
        )
        conn.execute(f"PRAGMA wal_autocheckpoint = {wal_pages}")
        # After a checkpoint the WAL file is cut back to this size, so it does not keep the
        # peak size of a long backfill (or eviction) on disk.
        conn.execute(f"PRAGMA journal_size_limit = {wal_pages * self.page_size}")
        # On a filling disk the store stops growing while this much is still free: room for the
        # WAL to reach twice its checkpoint size and for a checkpoint to extend the file, so
        # that an eviction can always commit. (With the disk truly full, no write can: not even
        # the DELETE that would make room.)
        self.reserve_bytes = 4 * wal_pages * self.page_size
        if budget is None:  # e.g. `edge-agent sync`: leaves the agent's budget as it is
            return
        with self._transaction():
            _set_meta(conn, "max_bytes", str(budget))
        # The WAL may reach about twice its checkpoint size (a transaction past the threshold,
        # a reader holding a checkpoint back): the database file gets the rest of the budget.
        self.budget_pages = (budget - 2 * wal_pages * self.page_size) // self.page_size
        page_count = self._pages()[0]
        if page_count > self.budget_pages:
            self._shrink(page_count)
        conn.execute(f"PRAGMA max_page_count = {self.budget_pages}").fetchall()
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return
        if free + _file_bytes(self.path) < budget + self.reserve_bytes:
            log.warning(
                "store: the disk holding %s has %.0f MiB free, less than the store's budget "
                "of %.0f MiB: when the disk fills up, the oldest readings make room",
                self.path,
                free / 2**20,
                budget / 2**20,
            )

    def _shrink(self, page_count: int) -> None:
        """The budget went down below the file's size: evict, then give the space back."""
        assert self.conn is not None
        assert self.budget_pages is not None
        log.warning(
            "store: %s (%.0f MiB) is larger than its budget of %.0f MiB; evicting the oldest "
            "readings",
            self.path,
            page_count * self.page_size / 2**20,
            (self.max_bytes or 0) / 2**20,
        )
        self.evict(self.budget_pages - 2 * _chunk(self.budget_pages), reason="budget")
        (auto_vacuum,) = self.conn.execute("PRAGMA auto_vacuum").fetchone()
        if auto_vacuum == 2:  # INCREMENTAL: moves pages down and truncates, once
            # executescript steps the pragma to the end; execute() would free one page only.
            self.conn.executescript("PRAGMA incremental_vacuum;")
            # In WAL mode the file only shrinks when a checkpoint writes the truncation back.
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        elif self._pages()[0] > self.budget_pages:
            log.warning(
                "store: %s was made before incremental vacuum: it keeps its size (the free "
                "pages inside are reused); run `sqlite3 %s VACUUM` with the agent stopped to "
                "shrink it",
                self.path,
                self.path,
            )

    # the loop

    def serve(self) -> None:
        while True:
            job = self._next_job()
            if isinstance(job, _Append):
                self._take(job.readings)
            elif isinstance(job, _Call):
                self._run(job)
            elif isinstance(job, _Flush):
                self._flush(job.future)
            elif isinstance(job, _Close):
                self._close(job.future)
                return
            # Checked after every job too, so that a steady stream of jobs cannot hold a
            # batch past its window.
            due = self._due_at()
            if due is not None and time.monotonic() >= due:
                self.commit()

    def _next_job(self) -> _Job | None:
        due = self._due_at()
        try:
            if due is None:
                return self.jobs.get()
            return self.jobs.get(timeout=max(0.0, due - time.monotonic()))
        except queue.Empty:
            return None

    def _due_at(self) -> float | None:
        if not self.pending:
            return None
        if self.retry_at is not None:
            return self.retry_at
        assert self.first_pending_at is not None
        return self.first_pending_at + self.batch_window

    def _take(self, readings: list[Reading]) -> None:
        if not self.pending:
            self.first_pending_at = time.monotonic()
        self.pending.extend(readings)
        excess = len(self.pending) - self.max_pending
        if excess > 0:
            # Only while commits fail and nothing can be evicted: keep the newest readings,
            # and the live view current, rather than the oldest.
            for _ in range(excess):
                self.pending.popleft()
            self.unrecorded_drops += excess
            if not self.dropping:
                self.dropping = True
                log.error(
                    "store: %d readings held in memory (the limit); dropping the oldest until "
                    "%s can be written again",
                    self.max_pending,
                    self.path,
                )
        # While commits fail, retry on the window, not on every append: no busy loop.
        if len(self.pending) >= self.batch_max and self.retry_at is None:
            self.commit()

    def _run(self, job: _Call) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.fn(self)
        except sqlite3.Error as exc:
            self._hand_over_events()
            job.future.set_exception(StoreError(f"{job.what} failed in {self.path}: {exc}"))
        except BaseException as exc:  # a bug: hand it to the caller, who crashes loudly
            self._hand_over_events()
            job.future.set_exception(exc)
        else:
            self._hand_over_events()  # first: the caller sees its event in last_event_id
            job.future.set_result(result)

    def _flush(self, future: concurrent.futures.Future[None]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        if self.commit():
            future.set_result(None)
        else:
            future.set_exception(
                StoreError(
                    f"{len(self.pending)} readings are held in memory and not yet stored in "
                    f"{self.path}: {self.last_error}"
                )
            )

    def _close(self, future: concurrent.futures.Future[None]) -> None:
        try:
            if not self.commit():
                log.error(
                    "store: %d readings could not be written to %s before closing and are lost: %s",
                    len(self.pending),
                    self.path,
                    self.last_error,
                )
        finally:
            self.close_connection()
            future.set_result(None)

    def close_connection(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self.conn is not None
        assert self.db is not None
        with self.db.atomic():
            yield self.conn

    def _pages(self) -> tuple[int, int]:
        """(pages in the file, free pages among them)."""
        assert self.conn is not None
        (count,) = self.conn.execute("PRAGMA page_count").fetchone()
        (free,) = self.conn.execute("PRAGMA freelist_count").fetchone()
        return int(count), int(free)

    def _hand_over_events(self, last_seq: int | None = None) -> None:
        if self.new_events or last_seq is not None:
            events, self.new_events = self.new_events, []
            self.notify(last_seq if last_seq is not None else 0, events)

    # writing

    def commit(self) -> bool:
        """Write every pending reading in one transaction. False when it failed (kept)."""
        if not self.pending:
            return True
        batch = list(self.pending)
        try:
            last_seq = self._insert(batch)
        except sqlite3.Error as exc:
            # Full (the budget's hard limit or the disk): make room the usual way, try once more.
            if not (_is_full(exc) and self._make_room()):
                self._commit_failed(exc)
                return False
            try:
                last_seq = self._insert(batch)
            except sqlite3.Error as again:
                self._commit_failed(again)
                return False
        self.pending.clear()
        self.first_pending_at = None
        self.dropping = False
        if self.retry_at is not None:
            log.info(
                "store: writing to %s works again after %d failed attempts; %d readings stored",
                self.path,
                self.failed_attempts,
                len(batch),
            )
            self.retry_at = None
            self.failed_attempts = 0
        self.keep_within_budget()
        self._hand_over_events(last_seq)
        return True

    def _insert(self, batch: list[Reading]) -> int:
        """One transaction: the readings, their points' latest seq, the counters."""
        assert self.conn is not None
        conn = self.conn
        new_points: dict[tuple[str, str, str], int] = {}
        events: list[StoreEvent] = []
        with self._transaction():
            before = _sequence(conn)
            point_of = [self._point_id(r, new_points) for r in batch]
            conn.executemany(
                "INSERT INTO readings (point_id, ts_ms, value, quality) VALUES (?, ?, ?, ?)",
                [
                    (pid, r.ts_ms, r.value, int(r.quality))
                    for pid, r in zip(point_of, batch, strict=True)
                ],
            )
            last_seq = _sequence(conn)
            if last_seq - before == len(batch):  # one writer: the batch got consecutive seqs
                latest = {pid: before + 1 + i for i, pid in enumerate(point_of)}
            else:  # pragma: no cover - another process inserted concurrently
                latest = dict(
                    conn.execute(
                        "SELECT point_id, max(seq) FROM readings WHERE seq > ? GROUP BY point_id",
                        (before,),
                    ).fetchall()
                )
            conn.executemany(
                "UPDATE points SET last_seq = ? WHERE id = ?",
                [(seq, pid) for pid, seq in latest.items()],
            )
            _bump(conn, _ROWS, len(batch))
            _bump(conn, _UNSYNCED, len(batch))
            if self.unrecorded_drops:
                _bump(conn, _DROPPED, self.unrecorded_drops)
                events.append(
                    self._add_event(
                        "readings_lost",
                        {
                            "count": self.unrecorded_drops,
                            "reason": "the disk refused writes and the in-memory hold was full",
                        },
                    )
                )
        # Only now: what a rolled-back transaction inserted does not exist.
        self.point_ids.update(new_points)
        if self.unrecorded_drops:
            log.error(
                "store: %d readings were lost while %s could not be written",
                self.unrecorded_drops,
                self.path,
            )
            self.unrecorded_drops = 0
        self.new_events.extend(events)
        return last_seq

    def _point_id(self, r: Reading, new_points: dict[tuple[str, str, str], int]) -> int:
        assert self.conn is not None
        key = (r.device, r.point, r.unit)
        pid = self.point_ids.get(key) or new_points.get(key)
        if pid is None:
            cur = self.conn.execute(
                "INSERT INTO points (device, point, unit) VALUES (?, ?, ?)", key
            )
            pid = cur.lastrowid
            assert pid is not None
            new_points[key] = pid
        return pid

    def _add_event(self, kind: str, detail: dict[str, Any]) -> StoreEvent:
        """Record an event (inside the caller's transaction) and prune the oldest."""
        assert self.conn is not None
        at = self.clock.now_ms()
        text = json.dumps(detail, ensure_ascii=False, separators=(",", ":"), default=str)
        cur = self.conn.execute(
            "INSERT INTO events (ts_ms, kind, detail) VALUES (?, ?, ?)", (at, kind, text)
        )
        assert cur.lastrowid is not None
        published_kept, kept = _EVENTS_KEPT
        self.conn.execute(
            "DELETE FROM events WHERE id <= ? AND (published = 1 OR id <= ?)",
            (cur.lastrowid - published_kept, cur.lastrowid - kept),
        )
        return StoreEvent(id=cur.lastrowid, ts_ms=at, kind=kind, detail=json.loads(text))

    def add_event(self, kind: str, detail: dict[str, Any]) -> StoreEvent:
        with self._transaction():
            event = self._add_event(kind, detail)
        self.new_events.append(event)
        return event

    def _commit_failed(self, exc: sqlite3.Error) -> None:
        self.write_errors += 1
        self.failed_attempts += 1
        self.last_error = exc
        first = self.retry_at is None
        self.retry_at = time.monotonic() + self.batch_window
        if not first:
            log.debug("store: commit still failing: %s", exc)
        elif _is_full(exc):
            log.warning(
                "store: the disk holding %s is full and nothing more can be evicted; %d "
                "readings kept in memory (up to %d), retrying every %.1f s",
                self.path,
                len(self.pending),
                self.max_pending,
                self.batch_window,
            )
        else:
            log.warning(
                "store: cannot write readings to %s (%s); %d kept in memory, retrying every %.1f s",
                self.path,
                exc,
                len(self.pending),
                self.batch_window,
            )

    # the budget

    def _limit(self, page_count: int) -> tuple[int | None, str]:
        """The most pages the file may use now, and why: its budget, or the disk."""
        if self.disk_cap is not None and time.monotonic() - self.disk_cap_since > _DISK_RECHECK_S:
            self._recheck_disk()
        limits: list[tuple[int, str]] = []
        if self.budget_pages is not None:
            limits.append((self.budget_pages, "budget"))
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(self.path.parent).free
            # Stop growing when the disk is down to the reserve (never shrink below the file:
            # its free pages are ours to reuse).
            room = max(0, free - self.reserve_bytes) // self.page_size
            limits.append((page_count + room, "disk_full"))
        if self.disk_cap is not None:
            limits.append((self.disk_cap, "disk_full"))
        return min(limits) if limits else (None, "budget")

    def _recheck_disk(self) -> None:
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            free = 0
        if free > 2 * self.reserve_bytes:
            self.disk_cap = None  # said by keep_within_budget, once
        else:
            self.disk_cap_since = time.monotonic()

    def keep_within_budget(self) -> None:
        """After a commit: when less than a chunk is left under the limit, evict two chunks."""
        try:
            count, free = self._pages()
            if self.disk_cap is not None and count > self.disk_cap:
                self.disk_cap = None  # the file could grow: the disk has room again
            limit, reason = self._limit(count)
            if limit is None:
                return
            chunk = _chunk(limit)
            room = limit - (count - free)
            if self.disk_limited and (reason == "budget" or room >= 4 * chunk):
                self.disk_limited = False
                log.info("store: the disk holding %s has room again", self.path)
            if room >= chunk or limit < 4 * chunk:
                return  # room enough; or too little to keep a ring of readings in
            if reason == "disk_full" and not self.disk_limited:
                self.disk_limited = True
                log.warning(
                    "store: the disk holding %s is nearly full: the store keeps within %.1f MiB "
                    "(leaving %.0f MiB free), evicting the oldest readings",
                    self.path,
                    limit * self.page_size / 2**20,
                    self.reserve_bytes / 2**20,
                )
            self.evict(limit - 2 * chunk, reason=reason)
        except sqlite3.Error as exc:  # never stop the writer over housekeeping
            log.warning("store: could not evict old readings from %s: %s", self.path, exc)

    def _make_room(self) -> bool:
        """A write failed as full. True when eviction freed pages to retry in."""
        count, free = self._pages()
        if self.budget_pages is None or count < self.budget_pages:
            # Not our hard limit: the disk itself is full. Live within the file as it is.
            if count < 4 * _chunk(count):
                return False  # too small a file to keep a ring of readings in: hold them
            if self.disk_cap is None and not self.disk_limited:
                log.warning(
                    "store: the disk holding %s is full; the store keeps to its current size "
                    "(%d KiB), evicting the oldest readings to make room",
                    self.path,
                    count * self.page_size // 1024,
                )
            self.disk_limited = True
            self.disk_cap = count
            self.disk_cap_since = time.monotonic()
        limit, reason = self._limit(count)
        assert limit is not None
        try:
            self.evict(limit - 2 * _chunk(limit), reason=reason)
        except sqlite3.Error as exc:
            log.debug("store: eviction failed too: %s", exc)
            return False
        return self._pages()[1] > free

    def evict(self, target_used: int, *, reason: str) -> None:
        """Delete the oldest readings until the file uses at most ``target_used`` pages.

        Synced readings go first, oldest first; unsynced ones only when no synced one is left
        (counted, with a ``readings_dropped`` event). Each round is one transaction.
        """
        assert self.conn is not None
        for _ in range(_EVICT_ROUNDS):
            count, free = self._pages()
            used = count - free
            need = used - max(target_used, 0)
            if need <= 0:
                return
            rows = _counters(self.conn).get(_ROWS, 0)
            if rows <= 0:
                # Nothing but the energy intervals left to give: the oldest go.
                if not self._delete_oldest_intervals(_INTERVALS_EVICTED):
                    return
                continue
            # Rows per page from the whole file: a slight overestimate of the pages a row takes,
            # so a round frees a little more than asked, rarely less.
            per_page = rows / max(used, 1)
            count_rows = max(1, math.ceil(need * per_page * 1.05))
            if not self._delete_oldest(min(count_rows, rows), reason):
                return

    def _delete_oldest(self, n: int, reason: str) -> int:
        """Delete the ``n`` oldest readings, synced before unsynced; returns how many went."""
        conn = self.conn
        assert conn is not None
        events: list[StoreEvent] = []
        with self._transaction():
            floor = _floor(conn)
            # Below the floor every row is synced: one range of the primary key.
            cut = conn.execute(
                "SELECT seq FROM readings WHERE seq < ? ORDER BY seq LIMIT 1 OFFSET ?",
                (floor, n - 1),
            ).fetchone()
            deleted = (
                conn.execute("DELETE FROM readings WHERE seq <= ?", (cut[0],))
                if cut
                else conn.execute("DELETE FROM readings WHERE seq < ?", (floor,))
            )
            synced = deleted.rowcount
            if synced < n:  # synced rows above the floor (e.g. live data sent during backfill)
                found = conn.execute(
                    "SELECT seq FROM readings WHERE seq >= ? AND synced = 1 ORDER BY seq LIMIT ?",
                    (floor, n - synced),
                ).fetchall()
                if found:
                    synced += conn.execute(
                        "DELETE FROM readings WHERE seq BETWEEN ? AND ? AND synced = 1",
                        (found[0][0], found[-1][0]),
                    ).rowcount
            unsynced = 0
            if synced < n:  # nothing synced is left: the oldest unsent readings must go
                found = conn.execute(
                    "SELECT seq, ts_ms FROM readings WHERE seq >= ? AND synced = 0"
                    " ORDER BY seq LIMIT ?",
                    (floor, n - synced),
                ).fetchall()
                if found:
                    (first, first_ts), (last, last_ts) = found[0], found[-1]
                    unsynced = conn.execute(
                        "DELETE FROM readings WHERE seq BETWEEN ? AND ? AND synced = 0",
                        (first, last),
                    ).rowcount
                    _set_meta(conn, _FLOOR, str(_first_unsynced(conn, last + 1)))
                    events.append(
                        self._add_event(
                            "readings_dropped",
                            {
                                "count": unsynced,
                                "first_seq": first,
                                "last_seq": last,
                                "first_ts": ms_to_iso(first_ts),
                                "last_ts": ms_to_iso(last_ts),
                                "reason": reason,
                            },
                        )
                    )
            _bump(conn, _ROWS, -(synced + unsynced))
            _bump(conn, _UNSYNCED, -unsynced)
            _bump(conn, _EVICTED_SYNCED, synced)
            _bump(conn, _EVICTED_UNSYNCED, unsynced)
        if unsynced:
            # An error once per episode (until the uplink syncs again), then info per round:
            # the events carry every range to upstream anyway.
            log.log(
                logging.INFO if self.dropping_unsynced else logging.ERROR,
                "store: %s is full (%s) and holds nothing already sent: %d unsent readings "
                "deleted (seq %d to %d); an alert event is queued for upstream",
                self.path,
                reason,
                unsynced,
                events[0].detail["first_seq"],
                events[0].detail["last_seq"],
            )
            self.dropping_unsynced = True
        elif synced:
            log.info("store: %d synced readings evicted from %s (%s)", synced, self.path, reason)
        self.new_events.extend(events)
        return synced + unsynced

    def _delete_oldest_intervals(self, n: int) -> int:
        """Delete the ``n`` oldest energy intervals (the store is full of nothing else)."""
        conn = self.conn
        assert conn is not None
        if not _has_table(conn, "intervals"):
            return 0
        with self._transaction():
            deleted = conn.execute(
                "DELETE FROM intervals WHERE (meter, start_ms) IN ("
                "SELECT meter, start_ms FROM intervals ORDER BY start_ms LIMIT ?)",
                (n,),
            ).rowcount
        if deleted:
            log.warning("store: %s is full: %d oldest energy intervals deleted", self.path, deleted)
        return deleted

    # jobs run through _Call

    def unsynced(self, limit: int, from_seq: int, below_seq: int) -> list[StoredReading]:
        assert self.conn is not None
        start = max(from_seq, _floor(self.conn))
        cur = self.conn.execute(
            f"{_SELECT_READING} WHERE r.seq >= ? AND r.seq < ? AND r.synced = 0"
            " ORDER BY r.seq LIMIT ?",
            (start, below_seq, limit),
        )
        return [_to_stored(row) for row in cur]

    def get_meta(self, key: str) -> str | None:
        assert self.conn is not None
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            _set_meta(conn, key, value)

    def mark_synced(self, seqs: Sequence[int], at_ms: int) -> None:
        with self._transaction() as conn:
            changed = 0
            for first, last in _runs(seqs):
                changed += conn.execute(
                    "UPDATE readings SET synced = 1 WHERE seq BETWEEN ? AND ? AND synced = 0",
                    (first, last),
                ).rowcount
            _bump(conn, _UNSYNCED, -changed)
            _set_meta(conn, _LAST_SYNC, str(at_ms))
            self.dropping_unsynced = False
            floor = _floor(conn)
            new_floor = _first_unsynced(conn, floor)
            if new_floor != floor:
                _set_meta(conn, _FLOOR, str(new_floor))

    def unpublished_events(self, limit: int) -> list[StoreEvent]:
        assert self.conn is not None
        return [
            StoreEvent(id=i, ts_ms=ts, kind=kind, detail=json.loads(detail))
            for i, ts, kind, detail in self.conn.execute(
                "SELECT id, ts_ms, kind, detail FROM events WHERE published = 0"
                " ORDER BY id LIMIT ?",
                (limit,),
            )
        ]

    def readings_after(
        self, seq: int, limit: int, points: Sequence[tuple[str, str]] | None
    ) -> list[StoredReading]:
        assert self.conn is not None
        if points is not None and not points:
            return []
        where, params = "r.seq > ?", [seq]
        if points is not None:
            ids = [
                pid
                for (pid,) in self.conn.execute(
                    "SELECT id FROM points WHERE "
                    + " OR ".join("(device = ? AND point = ?)" for _ in points),
                    [part for pair in points for part in pair],
                )
            ]
            if not ids:
                return []
            where += f" AND r.point_id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        cur = self.conn.execute(
            f"{_SELECT_READING} WHERE {where} ORDER BY r.seq LIMIT ?", (*params, limit)
        )
        return [_to_stored(row) for row in cur]

    def add_events(
        self,
        events: Sequence[tuple[str, dict[str, Any]]],
        meta: Mapping[str, str],
        intervals: Sequence[Mapping[str, Any]] = (),
    ) -> list[StoreEvent]:
        with self._transaction() as conn:
            added = [self._add_event(kind, detail) for kind, detail in events]
            conn.executemany(
                f"INSERT OR REPLACE INTO intervals ({', '.join(_INTERVAL_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(_INTERVAL_COLUMNS))})",
                [_interval_row(item) for item in intervals],
            )
            for key, value in meta.items():
                _set_meta(conn, key, value)
        self.new_events.extend(added)
        return added

    def events_after(self, event_id: int, limit: int, kind: str | None) -> list[StoreEvent]:
        assert self.conn is not None
        where, params = "id > ?", list[Any]([event_id])
        if kind is not None:
            where += " AND kind = ?"
            params.append(kind)
        return [
            StoreEvent(id=i, ts_ms=ts, kind=k, detail=json.loads(detail))
            for i, ts, k, detail in self.conn.execute(
                f"SELECT id, ts_ms, kind, detail FROM events WHERE {where} ORDER BY id LIMIT ?",
                (*params, limit),
            )
        ]

    def intervals(
        self, since_ms: int, until_ms: int, meters: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        assert self.conn is not None
        return _query_intervals(self.conn, since_ms, until_ms, meters)

    def mark_events_published(self, ids: Sequence[int]) -> None:
        with self._transaction() as conn:
            conn.executemany("UPDATE events SET published = 1 WHERE id = ?", [(i,) for i in ids])

    def latest(self) -> list[StoredReading]:
        assert self.conn is not None
        return _query_latest(self.conn)

    def stats(self) -> StoreStats:
        assert self.conn is not None
        base = _query_stats(self.conn, self.path)
        return StoreStats(
            rows=base.rows,
            unsynced=base.unsynced,
            bytes=base.bytes,
            oldest_unsynced_ms=base.oldest_unsynced_ms,
            last_seq=base.last_seq,
            last_sync_ms=base.last_sync_ms,
            pending=len(self.pending),
            dropped=base.dropped + self.unrecorded_drops,
            write_errors=self.write_errors,
            max_bytes=self.max_bytes,
            used_bytes=base.used_bytes,
            evicted_synced=base.evicted_synced,
            evicted_unsynced=base.evicted_unsynced,
            events_unpublished=base.events_unpublished,
        )


# --- the store, as seen from the event loop --------------------------------------------------


class Store:
    """The durable buffer of readings (an async context manager).

    ``append()`` hands readings to the writer thread and returns at once; the thread commits
    them in one transaction every ``batch_window`` seconds, or as soon as ``batch_max`` are
    waiting. ``flush()`` waits until everything appended before it is committed. A committed
    reading has a ``seq``: gateway-wide, strictly increasing and never reused.

    ``max_bytes`` is the size budget of the file and its WAL (None: no budget; the default is
    the config's). ``on_event`` is called on the event loop with each alert event once it is
    committed (the events also stay in the store until the uplink has published them).
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_window: float = 1.0,
        batch_max: int = 1000,
        max_pending: int = 100_000,
        close_timeout: float = 10.0,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        on_event: Callable[[StoreEvent], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if batch_window <= 0 or batch_max < 1 or max_pending < batch_max or close_timeout <= 0:
            raise ValueError(
                "Store needs batch_window > 0, batch_max >= 1, max_pending >= batch_max "
                "and close_timeout > 0"
            )
        if max_bytes is not None and max_bytes < _MIN_BUDGET:
            raise ValueError(f"Store needs max_bytes >= {_MIN_BUDGET} (1 MiB) or None")
        self.path = Path(path)
        self.batch_window = batch_window
        self.batch_max = batch_max
        self.max_pending = max_pending
        self.close_timeout = close_timeout
        self.max_bytes = max_bytes
        self.on_event = on_event
        self.clock = clock if clock is not None else system_clock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new -> open -> closed
        self._fatal: BaseException | None = None
        self._last_seq = 0
        self._last_event_id = 0
        # (after_seq, wake on a new event too, future) of each wait_for_new()
        self._waiters: list[tuple[int, bool, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, state={self._state})"

    @property
    def is_open(self) -> bool:
        return self._state == "open" and self._fatal is None

    @property
    def last_seq(self) -> int:
        """The highest committed seq this loop has been told about."""
        return self._last_seq

    @property
    def last_event_id(self) -> int:
        """The id of the newest alert event this loop has been told about (0: none yet)."""
        return self._last_event_id

    # lifecycle

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Start the writer thread and bring the file's schema up to date."""
        if self._state != "new":
            raise StoreError(f"the store {self.path} was already opened; make a new Store")
        self._loop = asyncio.get_running_loop()
        self._state = "open"
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(ready,),
            name=f"store[{self.path.name}]",
            daemon=True,  # committed data is safe anyway; never hold the process on exit
        )
        self._thread.start()
        try:
            self._last_seq = await asyncio.wrap_future(ready)
        except BaseException:
            self._state = "closed"
            self._jobs.put(_Close(concurrent.futures.Future()))  # ends the thread if it lives
            raise

    async def aclose(self) -> None:
        """Commit what is pending, close the file and join the thread (bounded; idempotent)."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._jobs.put(_Close(done))
        if self._fatal is not None:  # the writer is gone: nobody else will answer the job
            self._fail_queued_jobs(self._fatal)
        thread = self._thread
        assert thread is not None
        try:
            # Shielded so that a cancelled caller still lets the final commit finish; bounded
            # so that a stuck disk cannot hold the agent's shutdown forever.
            async with asyncio.timeout(self.close_timeout):
                await asyncio.shield(asyncio.wrap_future(done))
                await asyncio.to_thread(thread.join, self.close_timeout)
            in_time = True
        except TimeoutError:
            in_time = False
        finally:
            self._fail_waiters("was closed")
        if not in_time:
            log.error(
                "store: %s did not close within %.0f s; readings not yet committed may be lost",
                self.path,
                self.close_timeout,
            )

    def _thread_main(self, ready: concurrent.futures.Future[int]) -> None:
        writer = _Writer(
            self.path,
            self._jobs,
            batch_window=self.batch_window,
            batch_max=self.batch_max,
            max_pending=self.max_pending,
            max_bytes=self.max_bytes,
            notify=self._notify_from_thread,
            clock=self.clock,
        )
        try:
            last_seq = writer.open()
        except StoreError as exc:
            writer.close_connection()
            ready.set_exception(exc)
            return
        except (sqlite3.Error, OSError) as exc:  # OSError: e.g. the directory cannot be made
            writer.close_connection()
            ready.set_exception(StoreError(f"cannot open the reading store {self.path}: {exc}"))
            return
        except BaseException as exc:
            writer.close_connection()
            ready.set_exception(exc)
            return
        ready.set_result(last_seq)
        writer._hand_over_events()  # evictions at open (a lowered budget)
        try:
            writer.serve()
        except BaseException as exc:  # a bug in the writer: stop, and make every caller see it
            log.exception("store: the writer thread of %s stopped", self.path)
            self._fatal = exc
            writer.close_connection()
            self._fail_queued_jobs(exc)
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                self._loop.call_soon_threadsafe(self._fail_waiters, "stopped")

    def _fail_queued_jobs(self, exc: BaseException) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Append):
                continue
            if job.future.set_running_or_notify_cancel():
                if isinstance(job, _Close):
                    job.future.set_result(None)
                else:
                    job.future.set_exception(StoreError(f"the store {self.path} stopped: {exc}"))

    def _fail_waiters(self, what: str) -> None:
        for _, _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(StoreError(f"the store {self.path} {what}"))
        self._waiters.clear()

    def _notify_from_thread(self, last_seq: int, events: list[StoreEvent]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._committed, last_seq, events)

    def _committed(self, last_seq: int, events: list[StoreEvent]) -> None:
        self._last_seq = max(self._last_seq, last_seq)
        for event in events:
            self._last_event_id = max(self._last_event_id, event.id)
            if self.on_event is not None:
                self.on_event(event)
        for after, on_event, waiter in self._waiters:
            if (self._last_seq > after or (on_event and events)) and not waiter.done():
                waiter.set_result(None)

    def _check_open(self) -> None:
        if self._fatal is not None:
            raise StoreError(f"the store {self.path} stopped: {self._fatal}") from self._fatal
        if self._state != "open":
            raise StoreError(f"the store {self.path} is not open")

    def _submit(self, job: _Job) -> None:
        self._check_open()
        self._jobs.put(job)
        if self._fatal is not None:  # the writer died between the check and the put
            self._fail_queued_jobs(self._fatal)

    async def _call(self, what: str, fn: Callable[[_Writer], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit(_Call(what, fn, future))
        return await asyncio.wrap_future(future)

    # writing

    async def append(self, readings: Sequence[Reading]) -> None:
        """Queue readings for the next batch and return at once (they are not committed yet).

        A value SQLite cannot hold raises ``TypeError``/``ValueError`` here, in the caller.
        """
        self._check_open()
        batch = list(readings)
        for reading in batch:
            _check_value(reading)
        if batch:
            self._submit(_Append(batch))

    async def flush(self) -> None:
        """Wait until every reading appended before this call is committed.

        Raises StoreError when the commit fails (e.g. disk full); the readings stay in memory
        and the writer keeps retrying.
        """
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._submit(_Flush(future))
        await asyncio.wrap_future(future)

    async def get_meta(self, key: str) -> str | None:
        """A small piece of the agent's own state kept with the data (e.g. learned quirks)."""
        return await self._call(f"reading {key}", lambda w: w.get_meta(key))

    async def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, committed before this returns."""
        await self._call(f"writing {key}", lambda w: w.set_meta(key, value))

    async def mark_synced(self, seqs: Sequence[int]) -> None:
        """Record that the broker acknowledged these readings (and when: meta last_sync_ms)."""
        if not seqs:
            return
        chosen, at_ms = list(seqs), self.clock.now_ms()
        await self._call("marking readings as synced", lambda w: w.mark_synced(chosen, at_ms))

    async def add_event(self, kind: str, detail: dict[str, Any]) -> StoreEvent:
        """Record an event (e.g. ``hvac.write``), committed before this returns.

        Events are kept in the file and published by the uplink, oldest first, on the events
        topic; ``detail`` must be JSON-serialisable (anything else is written as text).
        """
        return await self._call(f"recording event {kind}", lambda w: w.add_event(kind, detail))

    async def add_events(
        self,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        meta: Mapping[str, str] | None = None,
        intervals: Iterable[Mapping[str, Any]] = (),
    ) -> list[StoreEvent]:
        """Record several events, energy intervals and meta keys in one transaction, committed
        on return.

        ``intervals`` are rows of the ``intervals`` table (dicts with its columns, ``flags`` a
        list of strings); one with the meter and start of a stored one replaces it.

        All or nothing: a consumer that keeps its cursor in ``meta`` never re-records or loses
        an event across a crash.
        """
        chosen, values, rows = list(events), dict(meta or {}), list(intervals)
        return await self._call(
            f"recording {len(chosen)} events", lambda w: w.add_events(chosen, values, rows)
        )

    async def intervals(
        self,
        *,
        since_ms: int = 0,
        until_ms: int = _MAX_SEQ,
        meters: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Stored energy intervals with ``since_ms <= start_ms < until_ms`` (of ``meters`` if
        given: that query uses the primary key), by start then meter.

        Each a dict of the ``intervals`` columns, ``flags`` as a list of strings.
        """
        chosen = None if meters is None else sorted(set(meters))
        return await self._call(
            "reading energy intervals", lambda w: w.intervals(since_ms, until_ms, chosen)
        )

    async def mark_events_published(self, ids: Sequence[int]) -> None:
        """Record that the broker acknowledged these alert events."""
        if ids:
            chosen = list(ids)
            await self._call(
                "marking events as published", lambda w: w.mark_events_published(chosen)
            )

    # reading

    # The timeout is part of the question ("anything new within this time?"), not a guard
    # around a network call, so it stays a parameter.
    async def wait_for_new(
        self,
        after_seq: int,
        timeout: float | None,  # noqa: ASYNC109
        *,
        or_event: bool = False,
    ) -> bool:
        """Wait until a reading with seq > after_seq is committed; False on timeout.

        With ``or_event``, a new event ends the wait too (the result is still whether a new
        reading is there).
        """
        self._check_open()
        if self._last_seq > after_seq:
            return True
        assert self._loop is not None
        entry = (after_seq, or_event, self._loop.create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[2]
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
        return self._last_seq > after_seq

    async def unsynced(
        self, limit: int, *, from_seq: int = 0, below_seq: int | None = None
    ) -> list[StoredReading]:
        """Up to ``limit`` committed readings not yet synced, oldest (lowest seq) first.

        Only seqs in ``from_seq <= seq < below_seq``: the uplink reads live readings and the
        backlog as two ranges, each from a cursor, so that no read walks what it already sent.
        """
        below = _MAX_SEQ if below_seq is None else below_seq
        return await self._call(
            "reading unsynced readings", lambda w: w.unsynced(limit, from_seq, below)
        )

    async def readings_after(
        self, seq: int, limit: int, points: Iterable[tuple[str, str]] | None = None
    ) -> list[StoredReading]:
        """Up to ``limit`` committed readings with seq > ``seq``, synced or not, oldest first;
        only those of ``points`` ((device, point) pairs) when given."""
        chosen = None if points is None else sorted(set(points))
        return await self._call("reading readings", lambda w: w.readings_after(seq, limit, chosen))

    async def events_after(
        self, event_id: int, limit: int, *, kind: str | None = None
    ) -> list[StoreEvent]:
        """Up to ``limit`` kept events with id > ``event_id`` (of one kind if given), oldest
        first, published or not (the oldest are pruned: see _EVENTS_KEPT)."""
        return await self._call("reading events", lambda w: w.events_after(event_id, limit, kind))

    async def unpublished_events(self, limit: int = 100) -> list[StoreEvent]:
        """Alert events the broker has not acknowledged yet, oldest first."""
        return await self._call("reading events", lambda w: w.unpublished_events(limit))

    async def latest(self) -> list[StoredReading]:
        """The newest committed reading of every point, ordered by device and point."""
        return await self._call("reading the latest readings", lambda w: w.latest())

    async def stats(self) -> StoreStats:
        return await self._call("reading store statistics", lambda w: w.stats())


# --- read-only access for the CLI (works while the agent runs) -------------------------------


@contextlib.contextmanager
def _read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    path = Path(db_path)
    if not path.is_file():
        raise StoreError(f"there is no reading store at {path}")
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S
        )
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
) -> Iterator[StoredReading]:
    """Committed readings ordered by seq, with ``since_ms <= ts_ms < until_ms`` and a device.

    Opens its own read-only connection: safe while the agent writes. A generator: errors
    (StoreError) surface on iteration.
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
        for row in conn.execute(f"{_SELECT_READING}{where} ORDER BY r.seq", params):
            yield _to_stored(row)


def _interval_row(item: Mapping[str, Any]) -> tuple[Any, ...]:
    flags = json.dumps(sorted(str(f) for f in item.get("flags", ())), separators=(",", ":"))
    return tuple(flags if c == "flags" else item.get(c) for c in _INTERVAL_COLUMNS)


def _query_intervals(
    conn: sqlite3.Connection,
    since_ms: int,
    until_ms: int,
    meters: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    if not _has_table(conn, "intervals") or (meters is not None and not meters):
        return []
    where, params = "start_ms >= ? AND start_ms < ?", list[Any]([since_ms, until_ms])
    if meters is not None:
        where += f" AND meter IN ({','.join('?' * len(meters))})"
        params.extend(meters)
    cur = conn.execute(
        f"SELECT {', '.join(_INTERVAL_COLUMNS)} FROM intervals"
        f" WHERE {where} ORDER BY start_ms, meter",
        params,
    )
    out: list[dict[str, Any]] = []
    for row in cur:
        item = dict(zip(_INTERVAL_COLUMNS, row, strict=True))
        item["flags"] = json.loads(item["flags"])
        out.append(item)
    return out


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
    """Statistics of a store file, read-only (safe while the agent writes)."""
    with _read_only(db_path) as conn:
        return _query_stats(conn, Path(db_path))


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
