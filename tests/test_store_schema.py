"""An empty store file gets, in one step and without sqlite-utils, exactly the schema the
migrations give; older files are still migrated step by step; the writer's transactions commit
and roll back as sqlite-utils' did."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlite_utils

from agent.core.clock import ManualClock
from agent.store.schema import MIGRATIONS, apply_migrations, atomic, migrate
from agent.store.writer import _CACHE_KIB, _ROWS_PER_INSERT, _connect, _insert_rows

CLOCK = ManualClock.at_ms(1_790_000_000_000)


def _connection(path: Path) -> sqlite3.Connection:
    """A connection set up as the writer's is before its schema (auto_vacuum first)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    return conn


def _file(conn: sqlite3.Connection) -> dict[str, object]:
    """What makes two store files the same: their schema as SQLite keeps it, every table's
    columns, the counters, the migrations recorded."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        "master": conn.execute(
            "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master ORDER BY rowid"
        ).fetchall(),
        "columns": {t: conn.execute(f"PRAGMA table_xinfo({t})").fetchall() for t in tables},
        "indexes": {t: conn.execute(f"PRAGMA index_list({t})").fetchall() for t in tables},
        "meta": conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
        "migrations": [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY rowid")],
        "auto_vacuum": conn.execute("PRAGMA auto_vacuum").fetchone(),
    }


def _migrated(path: Path, count: int = len(MIGRATIONS)) -> sqlite3.Connection:
    conn = _connection(path)
    apply_migrations(sqlite_utils.Database(conn), MIGRATIONS[:count], clock=CLOCK)
    return conn


def test_an_empty_file_gets_the_schema_the_migrations_give(tmp_path: Path) -> None:
    by_steps = _migrated(tmp_path / "steps.db")
    at_once = _connection(tmp_path / "once.db")
    assert migrate(at_once, clock=CLOCK) == [name for name, _ in MIGRATIONS]
    assert _file(at_once) == _file(by_steps)
    assert migrate(at_once, clock=CLOCK) == []  # nothing left to do


@pytest.mark.parametrize("done", range(1, len(MIGRATIONS)))
def test_an_older_file_is_migrated_step_by_step_to_the_same_schema(
    tmp_path: Path, done: int
) -> None:
    older = _migrated(tmp_path / "older.db", done)
    applied = migrate(older, clock=CLOCK)
    assert applied == [name for name, _ in MIGRATIONS[done:]]
    fresh = _connection(tmp_path / "fresh.db")
    migrate(fresh, clock=CLOCK)
    assert _file(older) == _file(fresh)


def test_the_writer_never_imports_sqlite_utils_for_a_new_or_current_file(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom agent.core.clock import system_clock\n"
        "from agent.store.writer import _connect\n"
        f"path = Path({str(tmp_path / 'store.db')!r})\n"
        "for _ in range(2):\n    _connect(path, system_clock()).close()\n"
        "print('sqlite_utils' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
    conn = _connect(tmp_path / "store.db", CLOCK)
    assert [r[0] for r in conn.execute("SELECT name FROM migrations")] == [
        name for name, _ in MIGRATIONS
    ]
    conn.close()


class _Undo(Exception):
    pass


def _insert_then_fail(conn: sqlite3.Connection, value: int) -> None:
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        raise _Undo


def test_atomic_commits_rolls_back_and_nests(tmp_path: Path) -> None:
    conn = _connection(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (x)")
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(_Undo):  # a savepoint: only its part goes
            _insert_then_fail(conn, 2)
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (3)")
    with pytest.raises(_Undo):
        _insert_then_fail(conn, 4)
    assert not conn.in_transaction
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3]


def test_the_writers_connections_keep_a_small_page_cache(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "store.db", CLOCK)
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -_CACHE_KIB
    conn.close()


class _Recorder:
    """A connection that notes the SQL text of every statement it is asked to run."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.texts: set[str] = set()

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        self.texts.add(sql)
        return self.conn.execute(sql, params)


def test_readings_go_in_by_a_few_statement_shapes_whatever_the_batch_sizes(
    tmp_path: Path,
) -> None:
    # The connection keeps the last 128 statements it prepared, each with a program as long as
    # its rows: one shape per batch size let SQLite's heap creep by megabytes over a soak.
    conn = _connect(tmp_path / "store.db", CLOCK)
    conn.execute("INSERT INTO points (device, point, unit) VALUES ('m', 'p', 'kW')")
    (pid,) = conn.execute("SELECT id FROM points").fetchone()
    recorder = _Recorder(conn)
    ts = 0
    with atomic(conn):
        for size in range(1, 301):
            rows = [(pid, ts + i, float(ts + i), 0) for i in range(size)]
            _insert_rows(recorder, rows)  # type: ignore[arg-type]
            ts += size
    assert len(recorder.texts) <= _ROWS_PER_INSERT.bit_length()  # 8: 1, 2, 4, ... 128 rows
    # every row in, in order: seqs follow the rows as one INSERT per row would give them
    got = conn.execute("SELECT seq, ts_ms FROM readings ORDER BY seq").fetchall()
    assert [t for _, t in got] == list(range(ts))
    assert [s for s, _ in got] == list(range(got[0][0], got[0][0] + ts))
    conn.close()


def _two_levels_then_fail(conn: sqlite3.Connection) -> None:
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (5)")
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (6)")
        raise _Undo


def test_atomic_nests_deeper_with_one_savepoint_name(tmp_path: Path) -> None:
    # Every level's savepoint has the same name: each release or rollback is the innermost's.
    conn = _connection(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (x)")
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            with pytest.raises(_Undo):
                _insert_then_fail(conn, 3)  # only 3 goes
            conn.execute("INSERT INTO t VALUES (4)")
        with pytest.raises(_Undo):
            _two_levels_then_fail(conn)  # 5 and 6 go: the released inner level was in it
        conn.execute("INSERT INTO t VALUES (7)")
    assert not conn.in_transaction
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 2, 4, 7]
