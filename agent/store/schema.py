"""The store's file layout: the schema's migrations and the small SQL helpers every part shares.

The schema is only ever changed by appending to :data:`MIGRATIONS`; both the writer thread (which
applies them when it opens the file) and the read-only queries of the CLI (which may meet a file
no agent has migrated yet) rely on the helpers here. The counters kept in ``meta`` (rows, unsent
readings, the sync floor, evictions, ...) are named here too: a migration creates them, the
writer keeps them and the queries report them. This module imports nothing else of the package.

The migrations are written with sqlite-utils, which is imported only when one is due: a file
created by this version, or already migrated, never loads it (with its own dependencies it costs
the agent about 4 MB). An empty file gets the schema the migrations end with in one step
(:func:`migrate`): the same statements, so the file is the same (tests/test_store_schema.py
compares the two, statement by statement).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.clock import Clock, system_clock
from agent.core.record import Quality, StoredReading

if TYPE_CHECKING:  # imported by apply_migrations, when a migration is due
    import sqlite_utils

# One logger for the whole package, as before it was split into modules: log lines keep
# saying "agent.store".
log = logging.getLogger("agent.store")

_INT64 = (-(2**63), 2**63 - 1)
_MAX_SEQ = _INT64[1]
_BUSY_TIMEOUT_S = 5.0

# Keys of the counters in `meta`, kept in the same transactions as the rows they count.
_ROWS, _UNSYNCED, _FLOOR = "rows", "unsynced", "sync_floor"
_EVICTED_SYNCED, _EVICTED_UNSYNCED, _DROPPED = "evicted_synced", "evicted_unsynced", "dropped"
_LAST_SYNC = "last_sync_ms"
_COUNTERS = (_ROWS, _UNSYNCED, _FLOOR, _EVICTED_SYNCED, _EVICTED_UNSYNCED, _DROPPED, _LAST_SYNC)
# Losses under the other reasons (agent.store.health) are counted as `lost:<reason>`; the
# generation of the ledger (agent.store.ledger) whose losses these counters already hold:
_LOST_PREFIX = "lost:"
_LEDGER_GEN = "ledger_gen"


# --- schema and migrations -------------------------------------------------------------------

Migration = tuple[str, Callable[["sqlite_utils.Database"], None]]

# The statements the migrations write as SQL, shared with the one-step schema of an empty file
# (their text is what sqlite_master keeps, indentation included).
_READINGS_TABLE = """
        CREATE TABLE readings (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            point_id INTEGER NOT NULL REFERENCES points(id),
            ts_ms INTEGER NOT NULL,
            value,
            quality INTEGER NOT NULL,
            synced INTEGER NOT NULL DEFAULT 0
        )
        """
_EVENTS_TABLE = """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            published INTEGER NOT NULL DEFAULT 0
        )
        """
_INTERVALS_TABLE = """
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
_CLOCK_RANGES_TABLE = """
        CREATE TABLE clock_ranges (
            first_seq INTEGER PRIMARY KEY,
            last_seq INTEGER NOT NULL,
            boot_id TEXT NOT NULL,
            offset_ms INTEGER NOT NULL
        )
        """


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
    db.execute(_READINGS_TABLE)
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
    conn.execute(_EVENTS_TABLE)


def _m0003_energy_intervals(db: sqlite_utils.Database) -> None:
    """The energy pipeline's base intervals, kept apart from the pruned events (docs/energy.md)."""
    db.conn.execute(_INTERVALS_TABLE)


def _m0004_clock_ranges(db: sqlite_utils.Database) -> None:
    """Runs of readings stamped before the clock was trusted (agent/store/clocktrust.py)."""
    db.conn.execute(_CLOCK_RANGES_TABLE)


MIGRATIONS: tuple[Migration, ...] = (
    ("0001_initial", _m0001_initial),
    ("0002_compact_counters_events", _m0002_compact_counters_events),
    ("0003_energy_intervals", _m0003_energy_intervals),
    ("0004_clock_ranges", _m0004_clock_ranges),
)
"""Schema changes in order. Append new ones; never edit or reorder one that has shipped."""


# The schema the migrations above end with, for an empty file: the statements they run, in their
# order, with the text sqlite-utils writes for the tables it creates (and the column 0002 adds
# at the end of points). Appending a migration means appending its statements here;
# tests/test_store_schema.py fails until both give the same file.
_CURRENT_SCHEMA = (
    'CREATE TABLE "migrations" (\n   "name" TEXT PRIMARY KEY,\n   "applied_ms" INTEGER\n)',
    'CREATE TABLE "points" (\n   "id" INTEGER PRIMARY KEY,\n   "device" TEXT NOT NULL,\n'
    '   "point" TEXT NOT NULL,\n   "unit" TEXT NOT NULL\n, last_seq INTEGER)',
    'CREATE UNIQUE INDEX "points_key"\n    ON "points" ("device", "point", "unit")',
    _READINGS_TABLE,
    'CREATE TABLE "meta" (\n   "key" TEXT PRIMARY KEY,\n   "value" TEXT\n)',
    _EVENTS_TABLE,
    _INTERVALS_TABLE,
    _CLOCK_RANGES_TABLE,
)


def migrate(conn: sqlite3.Connection, *, clock: Clock | None = None) -> list[str]:
    """Bring the schema of the file on ``conn`` (autocommit mode) up to date; returns the
    migrations applied now.

    A file with every migration recorded is left as it is, and an empty one gets the current
    schema with every migration recorded, in one transaction, both without sqlite-utils; any
    other file is migrated step by step (:func:`apply_migrations`).
    """
    names = [name for name, _ in MIGRATIONS]
    if _has_table(conn, "migrations") and set(names) <= _recorded(conn):
        return []
    clock = clock if clock is not None else system_clock()
    with atomic(conn, immediate=True):  # a second process opening the same new file waits
        empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if empty:
            for statement in _CURRENT_SCHEMA:
                conn.execute(statement)
            for key, value in ((_ROWS, 0), (_UNSYNCED, 0), (_FLOOR, _sequence(conn) + 1)):
                _set_meta(conn, key, str(value))
            now = clock.now_ms()
            conn.executemany(
                "INSERT INTO migrations (name, applied_ms) VALUES (?, ?)",
                [(name, now) for name in names],
            )
    if empty:
        log.info("store schema created (migrations %s to %s)", names[0], names[-1])
        return names
    import sqlite_utils  # only for a file made by an older version

    return apply_migrations(sqlite_utils.Database(conn, execute_plugins=False), clock=clock)


def _recorded(conn: sqlite3.Connection) -> set[str]:
    return {str(name) for (name,) in conn.execute("SELECT name FROM migrations")}


# One name at every depth: SQLite releases or rolls back to the most recent savepoint of a name
# (https://www.sqlite.org/lang_savepoint.html), the innermost here. A name per use would make
# each its own statement text, prepared and kept in the connection's statement cache.
_SAVEPOINT = "atomic"


@contextlib.contextmanager
def atomic(conn: sqlite3.Connection, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
    """One transaction on ``conn`` (in autocommit mode), committed when the block ends and
    rolled back when it raises; inside another, a savepoint. sqlite-utils' ``Database.atomic``
    does the same; this one spares the writer thread its import. ``immediate`` takes the
    write lock at once (BEGIN IMMEDIATE)."""
    if conn.in_transaction:
        name = _SAVEPOINT
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            # A failure that ended the whole transaction (e.g. SQLITE_FULL in some cases) left
            # no savepoint to roll back to: the original exception is what matters.
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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


_QUALITY_BITS = 0x0F  # the rest of the column holds flags (0x10: agent.store.clocktrust)


_QUALITY_OF = {int(q): q for q in Quality}  # a dict look-up: Quality(n) costs more, per row


def _to_stored(row: tuple[Any, ...]) -> StoredReading:
    """A reading as the file holds it: (seq, device, point, ts_ms, value, unit, quality), the
    quality column with its flags."""
    seq, device, point, ts_ms, value, unit, quality = row
    bits = quality & _QUALITY_BITS
    return StoredReading(
        seq,
        device,
        point,
        ts_ms,
        value,
        unit,
        _QUALITY_OF[bits] if bits in _QUALITY_OF else Quality(bits),  # the latter raises
        quality != bits,  # flags set: stamped by an untrusted clock
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


def _lost_counters(conn: sqlite3.Connection) -> dict[str, int]:
    """The ``lost:<reason>`` counters, by reason."""
    return {
        str(key)[len(_LOST_PREFIX) :]: int(value)
        for key, value in conn.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?",
            (_LOST_PREFIX, _LOST_PREFIX[:-1] + chr(ord(":") + 1)),
        )
        if int(value)
    }


def _floor(conn: sqlite3.Connection) -> int:
    """The sync floor: every seq below it is synced (or gone)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_FLOOR,)).fetchone()
    return int(row[0]) if row else 0


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
