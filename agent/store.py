"""The local buffer of readings: one SQLite file, written by one thread, in batches.

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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from agent.errors import StoreError
from agent.record import Quality, Reading, StoredReading, now_ms

__all__ = [
    "MIGRATIONS",
    "Migration",
    "Store",
    "StoreStats",
    "apply_migrations",
    "export_readings",
    "read_latest",
    "read_stats",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_INT64 = (-(2**63), 2**63 - 1)
_BUSY_TIMEOUT_S = 5.0
# After a checkpoint the WAL file is truncated to this size, so it does not keep the peak size of
# a long backfill on disk.
_WAL_SIZE_LIMIT = 4 * 1024 * 1024


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
    """Readings dropped because the in-memory hold was full (disk full for a long time)."""
    write_errors: int = 0
    """Batch commits that failed since the store was opened (e.g. disk full)."""


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
    # Only unsynced rows are in this index: "oldest unsynced" is one seek however large the
    # synced history grows, and the index stays small when the uplink keeps up.
    db.execute("CREATE INDEX readings_unsynced ON readings (seq) WHERE synced = 0")
    # The latest reading of a point (live view) is one seek per point.
    db.execute("CREATE INDEX readings_point_seq ON readings (point_id, seq)")
    db["meta"].create({"key": str, "value": str}, pk="key")  # type: ignore[union-attr]


MIGRATIONS: tuple[Migration, ...] = (("0001_initial", _m0001_initial),)
"""Schema changes in order. Append new ones; never edit or reorder one that has shipped."""


def apply_migrations(
    db: sqlite_utils.Database, migrations: Sequence[Migration] = MIGRATIONS
) -> list[str]:
    """Apply the migrations not yet recorded in the ``migrations`` table, in order.

    Each migration runs in one transaction together with its record, so a failure leaves it
    unapplied and unrecorded. Returns the names applied now.
    """
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
            table.insert({"name": name, "applied_ms": now_ms()})  # type: ignore[union-attr]
        applied.append(name)
        log.info("store migration %s applied", name)
    return applied


# --- queries shared by the writer thread and the read-only helpers ---------------------------

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


def _query_stats(conn: sqlite3.Connection, path: Path) -> StoreStats:
    (rows,) = conn.execute("SELECT count(*) FROM readings").fetchone()
    (unsynced,) = conn.execute("SELECT count(*) FROM readings WHERE synced = 0").fetchone()
    # The oldest by seq, not min(ts_ms): one seek in the partial index instead of a scan.
    oldest = conn.execute(
        "SELECT ts_ms FROM readings WHERE synced = 0 ORDER BY seq LIMIT 1"
    ).fetchone()
    last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
    sync = conn.execute("SELECT value FROM meta WHERE key = 'last_sync_ms'").fetchone()
    return StoreStats(
        rows=rows,
        unsynced=unsynced,
        bytes=_file_bytes(path),
        oldest_unsynced_ms=oldest[0] if oldest else None,
        last_seq=last[0] if last else 0,
        last_sync_ms=int(sync[0]) if sync else None,
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
        notify: Callable[[int], None],
    ) -> None:
        self.path = path
        self.jobs = jobs
        self.batch_window = batch_window
        self.batch_max = batch_max
        self.max_pending = max_pending
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
        self.dropped = 0
        self.dropping = False

    # opening

    def open(self) -> int:
        """Open the file, bring the schema up to date; returns the last seq handed out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
        self.conn = conn
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")  # why FULL: see the module docstring
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        apply_migrations(self.db)
        for pid, device, point, unit in conn.execute("SELECT id, device, point, unit FROM points"):
            self.point_ids[(device, point, unit)] = pid
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        return row[0] if row else 0

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
            # Only while commits fail (disk full): keep the newest readings, and the live view
            # current, rather than the oldest. A later issue replaces this with a disk budget.
            for _ in range(excess):
                self.pending.popleft()
            self.dropped += excess
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
            job.future.set_exception(StoreError(f"{job.what} failed in {self.path}: {exc}"))
        except BaseException as exc:  # a bug: hand it to the caller, who crashes loudly
            job.future.set_exception(exc)
        else:
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

    # writing

    def commit(self) -> bool:
        """Write every pending reading in one transaction. False when it failed (kept)."""
        if not self.pending:
            return True
        assert self.conn is not None
        assert self.db is not None
        batch = list(self.pending)
        new_points: dict[tuple[str, str, str], int] = {}
        try:
            with self.db.atomic():
                rows = [
                    (self._point_id(r, new_points), r.ts_ms, r.value, int(r.quality)) for r in batch
                ]
                self.conn.executemany(
                    "INSERT INTO readings (point_id, ts_ms, value, quality) VALUES (?, ?, ?, ?)",
                    rows,
                )
                (last_seq,) = self.conn.execute("SELECT max(seq) FROM readings").fetchone()
        except sqlite3.Error as exc:
            self._commit_failed(exc)
            return False
        # Only now: point ids inserted by a rolled-back transaction do not exist.
        self.point_ids.update(new_points)
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
        self.notify(last_seq)
        return True

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

    def _commit_failed(self, exc: sqlite3.Error) -> None:
        self.write_errors += 1
        self.failed_attempts += 1
        self.last_error = exc
        first = self.retry_at is None
        self.retry_at = time.monotonic() + self.batch_window
        if not first:
            log.debug("store: commit still failing: %s", exc)
        elif getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            log.warning(
                "store: the disk holding %s is full; %d readings kept in memory (up to %d), "
                "retrying every %.1f s",
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

    # jobs run through _Call

    def unsynced(self, limit: int) -> list[StoredReading]:
        assert self.conn is not None
        cur = self.conn.execute(
            f"{_SELECT_READING} WHERE r.synced = 0 ORDER BY r.seq LIMIT ?", (limit,)
        )
        return [_to_stored(row) for row in cur]

    def get_meta(self, key: str) -> str | None:
        assert self.conn is not None
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        assert self.conn is not None
        assert self.db is not None
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def mark_synced(self, seqs: Sequence[int], at_ms: int) -> None:
        assert self.conn is not None
        assert self.db is not None
        with self.db.atomic():
            self.conn.executemany(
                "UPDATE readings SET synced = 1 WHERE seq = ?", [(s,) for s in seqs]
            )
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('last_sync_ms', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(at_ms),),
            )

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
            dropped=self.dropped,
            write_errors=self.write_errors,
        )


# --- the store, as seen from the event loop --------------------------------------------------


class Store:
    """The durable buffer of readings (an async context manager).

    ``append()`` hands readings to the writer thread and returns at once; the thread commits
    them in one transaction every ``batch_window`` seconds, or as soon as ``batch_max`` are
    waiting. ``flush()`` waits until everything appended before it is committed. A committed
    reading has a ``seq``: gateway-wide, strictly increasing and never reused.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_window: float = 1.0,
        batch_max: int = 1000,
        max_pending: int = 100_000,
        close_timeout: float = 10.0,
    ) -> None:
        if batch_window <= 0 or batch_max < 1 or max_pending < batch_max or close_timeout <= 0:
            raise ValueError(
                "Store needs batch_window > 0, batch_max >= 1, max_pending >= batch_max "
                "and close_timeout > 0"
            )
        self.path = Path(path)
        self.batch_window = batch_window
        self.batch_max = batch_max
        self.max_pending = max_pending
        self.close_timeout = close_timeout
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new -> open -> closed
        self._fatal: BaseException | None = None
        self._last_seq = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, state={self._state})"

    @property
    def is_open(self) -> bool:
        return self._state == "open" and self._fatal is None

    @property
    def last_seq(self) -> int:
        """The highest committed seq this loop has been told about."""
        return self._last_seq

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
            notify=self._notify_from_thread,
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
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(StoreError(f"the store {self.path} {what}"))
        self._waiters.clear()

    def _notify_from_thread(self, last_seq: int) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._committed, last_seq)

    def _committed(self, last_seq: int) -> None:
        self._last_seq = max(self._last_seq, last_seq)
        for after, waiter in self._waiters:
            if self._last_seq > after and not waiter.done():
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
        chosen, at_ms = list(seqs), now_ms()
        await self._call("marking readings as synced", lambda w: w.mark_synced(chosen, at_ms))

    # reading

    # The timeout is part of the question ("anything new within this time?"), not a guard
    # around a network call, so it stays a parameter.
    async def wait_for_new(self, after_seq: int, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until a reading with seq > after_seq is committed; False on timeout."""
        self._check_open()
        if self._last_seq > after_seq:
            return True
        assert self._loop is not None
        entry = (after_seq, self._loop.create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        except TimeoutError:
            return self._last_seq > after_seq
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
        return True

    async def unsynced(self, limit: int) -> list[StoredReading]:
        """Up to ``limit`` committed readings not yet synced, oldest (lowest seq) first."""
        return await self._call("reading unsynced readings", lambda w: w.unsynced(limit))

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


def _query_latest(conn: sqlite3.Connection) -> list[StoredReading]:
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
