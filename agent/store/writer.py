"""The writer thread: the only code that writes the store file, and everything it does there.

:class:`_Writer` is the state owned by that thread (nothing in it is touched from the event
loop); the loop hands it jobs (``_Append``, ``_Call``, ``_Flush``, ``_Close``) through a queue,
and readings through an inbox (``_Inbox``) that wakes the thread only when it must.
It batches readings into one transaction per ``batch_window``, keeps the counters in ``meta``,
records alert events, and keeps the file within its size budget (or a full disk) by evicting the
oldest readings: the budget's methods stay on the writer because they share its connection, its
transactions and its state (the budget in pages, the disk cap, the pending readings).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.backoff import Backoff
from agent.core.clock import Clock
from agent.core.errors import StoreError
from agent.core.record import Reading, StoredReading, ms_to_iso
from agent.store import health as reasons
from agent.store.clocktrust import (
    UNTRUSTED,
    UntrustedReading,
    correct_clock,
    record_ranges,
)
from agent.store.events import _EVENTS_KEPT, StoreEvent
from agent.store.health import StoreHealth, diagnose
from agent.store.intervals import _INTERVAL_COLUMNS, _interval_row, _query_intervals
from agent.store.ledger import FILE_MODE, Ledger, LedgerState
from agent.store.queries import StoreStats, _query_latest, _query_stats
from agent.store.salvage import (
    SalvageReport,
    open_source,
    readable,
    salvage,
    with_repaired_header,
)
from agent.store.salvage import check as salvage_check
from agent.store.schema import (
    _BUSY_TIMEOUT_S,
    _DROPPED,
    _EVICTED_SYNCED,
    _EVICTED_UNSYNCED,
    _FLOOR,
    _LAST_SYNC,
    _LEDGER_GEN,
    _LOST_PREFIX,
    _MAX_SEQ,
    _ROWS,
    _SELECT_READING,
    _UNSYNCED,
    _bump,
    _counters,
    _file_bytes,
    _first_unsynced,
    _floor,
    _has_table,
    _sequence,
    _set_meta,
    _to_stored,
    atomic,
    migrate,
)
from agent.store.window import LiveWindow

# One logger for the whole package, as before it was split into modules: log lines keep
# saying "agent.store".
log = logging.getLogger("agent.store")

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
# Energy intervals deleted per eviction round once no reading is left to evict.
_INTERVALS_EVICTED = 1000
# While writes fail, retries back off from the batch window to this (seconds): a failing card
# is not hammered, and a fixed one is written to within half a minute.
_RETRY_CAP_S = 30.0
# After a rebuild of a damaged file, another is not tried for this long (seconds): a fault
# that follows the fresh file (a failing card) must not rebuild in a loop.
_REBUILD_GAP_S = 60.0
# The page cache of the writer's connection and of its checks', KiB (SQLite's default is 2,000
# per connection). The writer appends at the end of one table and reads back what it wrote last
# (the uplink's batches): its hot pages are few, and other reads come from the OS's cache of the
# file or the WAL. A full cache is resident for the life of the agent (it fills in the first
# minutes: peak RSS growth); bench/bench_store.py measured no loss of speed at this size.
_CACHE_KIB = 512
# Events (audit trails, alerts) held in memory while the store cannot write; beyond this the
# oldest go, counted.
_EVENTS_HELD = 1000


def _private(path: Path) -> None:
    """Make the database file 0640 before SQLite creates it (SQLite gives its -wal and -shm
    the mode of the database file, whatever the umask), and tighten an existing one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            if Path(f"{path}{suffix}").stat().st_mode & 0o777 != FILE_MODE:
                Path(f"{path}{suffix}").chmod(FILE_MODE)


def _connect(path: Path, clock: Clock) -> sqlite3.Connection:
    """A connection to the store file at ``path`` as the writer uses it, the schema up to
    date."""
    _private(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    try:
        # Only a new, empty file takes this; it lets a lowered budget shrink the file later
        # (PRAGMA incremental_vacuum) without a full VACUUM. Routine eviction does not need it.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _wal_mode(conn, path)
        conn.execute("PRAGMA synchronous=FULL")  # why FULL: see the package docstring
        conn.execute("PRAGMA foreign_keys=ON")
        # Debian builds SQLite with secure_delete on: every evicted page would be overwritten
        # with zeros (through the WAL, then again at the checkpoint). Readings are not secrets;
        # an SD card's write budget is worth more.
        conn.execute("PRAGMA secure_delete=OFF")
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        migrate(conn, clock=clock)
    except BaseException:
        conn.close()
        raise
    return conn


def _wal_mode(conn: sqlite3.Connection, path: Path) -> None:
    (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    if mode.lower() != "wal":
        raise StoreError(f"{path}: SQLite refused WAL mode (got {mode!r})")


def _identity(path: Path) -> tuple[int, int] | None:
    """The file now at ``path`` (device, inode), None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _set_aside(path: Path, suffix: str, *, with_wal: bool) -> Path:
    """Rename the file (and its -wal/-shm, which belong to it) out of the store's way; kept,
    never deleted."""
    moved = path.with_name(f"{path.name}.{suffix}")
    path.rename(moved)
    if with_wal:
        for part in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{part}").rename(Path(f"{moved}{part}"))
    return moved


def _remove_db(path: Path) -> None:
    for part in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{part}").unlink(missing_ok=True)


def _runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive integers as (first, last) ranges: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    seqs = list(seqs)
    if seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))):
        return [(seqs[0], seqs[-1])]  # the uplink's usual batch, checked at C speed
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _merged_runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of seqs, sorted, those that touch or overlap joined: [(5, 9), (1, 4)] -> [(1, 9)]."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(runs):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _quality(reading: Reading) -> int:
    flag = UNTRUSTED if isinstance(reading, UntrustedReading) else 0
    return int(reading.quality) | flag


# Readings go in by statements of many rows: half the CPU per row of executemany, which steps
# and resets the statement once per row (bench/bench_decode.py). 128 rows are 512 parameters,
# under the 999 of SQLite before 3.32 (still the system library of some gateways' OS).
#
# Only power-of-two sizes (128, 64, ..., 1): a batch's rest goes in as its binary digits. A
# prepared statement of n rows holds a program of its own, and the connection keeps the last
# 128 statements it ran: with one statement per rest size (1 to 199), SQLite's heap grew by
# about 5 MB as new sizes came up over hours (the soak's RSS creep; `python -m
# bench.store_heap`: 5.4 MB after 300 sizes, 0.74 MB with these). 8 shapes ever.
_ROWS_PER_INSERT = 128
_INSERT_SQL: dict[int, str] = {
    size: "INSERT INTO readings (point_id, ts_ms, value, quality) VALUES "
    + ",".join(["(?, ?, ?, ?)"] * size)
    for size in (1 << bit for bit in range(_ROWS_PER_INSERT.bit_length()))
}


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[int, int, Any, int]]) -> None:
    """INSERT the readings' rows (point_id, ts_ms, value, quality), in order: their seqs follow
    one another as with one INSERT per row."""
    start, count = 0, len(rows)
    while start < count:
        # the largest power of two that fits what is left, at most _ROWS_PER_INSERT
        size = min(_ROWS_PER_INSERT, 1 << ((count - start).bit_length() - 1))
        part = rows[start : start + size]
        conn.execute(_INSERT_SQL[size], [column for row in part for column in row])
        start += size


def _is_damage(exc: BaseException) -> bool:
    return reasons.is_corrupt(exc)


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def _chunk(limit_pages: int) -> int:
    """Pages one eviction frees: about 1/50 of the limit, within bounds."""
    return _clamp(limit_pages // 50, _CHUNK_PAGES)


# --- the writer thread -----------------------------------------------------------------------


@dataclass(slots=True)
class _Append:
    """Readings wait in the inbox (the job only wakes the writer: see _Inbox)."""


class _Inbox:
    """Readings handed from the loop to the writer thread without waking it for each batch.

    The loop appends every device cycle's readings here (a deque: appending and taking are
    atomic) and puts an ``_Append`` job only when the writer has no batch window open (the
    first readings after a commit start it) or ``batch_max`` readings came since the last one;
    the writer takes everything here before every job and at its window's end. Waking the
    writer thread for each of 50 devices a second cost a thread switch each (and the GIL twice).
    """

    __slots__ = ("batches", "marks", "marks_woken", "open", "unseen", "woken")

    def __init__(self) -> None:
        self.batches: deque[list[Reading]] = deque()
        # The uplink's acknowledged seqs (with the time, epoch ms), marked synced in the
        # writer's next transaction: no transaction (no fsync) of their own while readings
        # flow. ``marks_woken``: the loop has woken the writer for them (no window was open).
        self.marks: deque[tuple[list[int], int]] = deque()
        self.marks_woken = False
        # Set by the loop when it puts an ``_Append``, cleared by the writer as it takes the
        # batches: one wake at a time.
        self.woken = False
        # Set by the writer only: it holds readings and will commit them at its window's end.
        self.open = False
        self.unseen = 0  # the loop's own count of the readings in the writer's open window


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


@dataclass(slots=True)
class _Hurry:
    """Someone waits for new readings (True) or no one does any more (False)."""

    on: bool


@dataclass(slots=True)
class _Acked:
    """Acknowledged seqs taken from the inbox, not yet marked synced in the file."""

    runs: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    since: float | None = None  # when the first was taken (the writer's monotonic clock)
    newest_ms: int = 0  # the time of the newest acknowledgement (epoch ms)


@dataclass(slots=True)
class _Marks:
    """Acknowledged seqs wait in the inbox (the job only wakes the writer to time them)."""


@dataclass(slots=True)
class _Wake:
    """A call waits in the urgent queue: take it now, even if the writer is idle."""


_Job = _Append | _Call | _Flush | _Close | _Hurry | _Wake | _Marks


class _Writer:
    """State owned by the writer thread. Nothing here is touched from the event loop."""

    def __init__(
        self,
        path: Path,
        jobs: queue.SimpleQueue[_Job],
        *,
        inbox: _Inbox | None = None,
        batch_window: float,
        publish_window: float | None = None,
        batch_max: int,
        max_pending: int,
        max_bytes: int | None,
        notify: Callable[[int, list[StoreEvent]], None],
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
        on_health: Callable[[StoreHealth], None] = lambda _: None,
        check_every: float = 30.0,
        integrity_every: float | None = None,
        urgent: queue.SimpleQueue[_Call] | None = None,
        window: LiveWindow | None = None,
    ) -> None:
        self.path = path
        # Each commit's readings, handed to the uplink without reading them back (None: not
        # kept, e.g. `edge-agent store check --repair`).
        self.window = window
        self.acked = _Acked()
        self.transactions = 0  # transactions committed, for the tests and benchmarks
        self.commits = 0  # those that stored readings
        self.clock = clock
        # The writer's own timers (batch window, retries, checks) run on this clock: the
        # thread waits on a queue with a real timeout, so it must be a real monotonic clock
        # (tests shift it forward to skip a backoff).
        self.monotonic = monotonic
        self.on_health = on_health
        self.jobs = jobs
        self.inbox = inbox if inbox is not None else _Inbox()
        # Calls served before the next job of `jobs` (the uplink's: reads of committed rows
        # and marks, which no queued append can change), so that a poll load filling `jobs`
        # does not make the uplink wait behind every append in it.
        self.urgent: queue.SimpleQueue[_Call] = (
            urgent if urgent is not None else queue.SimpleQueue()
        )
        self.batch_window = batch_window
        self.publish_window = publish_window  # the window while someone waits (None: same)
        self.hurried = False
        self.batch_max = batch_max
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.notify = notify
        self.conn: sqlite3.Connection | None = None
        self.point_ids: dict[tuple[str, str, str], int] = {}
        # The same points by id, for the uplink's reads (the same tuples: no second copy). A
        # list indexed by id, the points table's dense rowids: a dict of 7,000 points (200
        # meters) was 0.3 MB, the list is 56 kB.
        self.point_names: list[tuple[str, str, str] | None] = []
        self.pending: deque[Reading] = deque()
        self.first_pending_at: float | None = None
        self.retry_at: float | None = None  # set while commits fail: the next attempt
        self.last_error: sqlite3.Error | None = None
        self.write_errors = 0
        self.failed_attempts = 0
        self.backoff = Backoff(
            initial=batch_window, cap=max(batch_window, _RETRY_CAP_S), jitter=0.25
        )
        self.cause: tuple[str, str] | None = None  # (cause, cure) while writes fail
        self.failing_since_ms: int | None = None
        self.dropping = False
        # Losses by reason not yet counted in meta (the file could not be written).
        self.lost: dict[str, int] = {}
        self.held_events: deque[tuple[int, str, dict[str, Any]]] = deque()
        self.held_meta: dict[str, str] = {}
        self.ledger = Ledger(path)
        # The file the connection has open (device, inode), compared with the path's every
        # check_every seconds: a deleted or replaced file is noticed within that time.
        self.identity: tuple[int, int] | None = None
        self.check_every = check_every
        self.next_check_at = 0.0
        # A full integrity_check on a schedule, in a thread of its own (None: never).
        self.integrity_every = integrity_every
        self.next_integrity_at = (
            None if integrity_every is None else self.monotonic() + integrity_every
        )
        self.integrity_running = False
        self.rebuilt_at: float | None = None
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

    def open(self, *, damaged: Sequence[str] = ()) -> int:
        """Open the file, bring the schema up to date; returns the last seq handed out.

        A damaged file is set aside and a fresh store starts at once with what it still holds:
        found here when SQLite calls it malformed or not a database (a bad header, a truncated
        file), or by ``quick_check``, which starts now on a thread of its own (it reads every
        page: minutes for gigabytes on an SD card, longer than systemd waits for a start;
        readings are stored meanwhile, and salvaged with the rest). ``damaged`` forces the
        rebuild, with these problems (``edge-agent store check --repair``).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous = self.ledger.open()  # what an earlier run could not write into the file
        problems = list(damaged)
        if not problems:
            try:
                self._attach()
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                problems = [str(exc)]
        if problems:
            self._rebuild(reasons.DAMAGED, problems)
        self._merge_ledger(previous)
        self._apply_budget()
        if not damaged:
            self._start_check(full=False)
        assert self.conn is not None
        return _sequence(self.conn)

    def _attach(self) -> None:
        """Connect to the file at the path (made 0640 if new)."""
        self.close_connection()
        self.conn = conn = _connect(self.path, self.clock)
        (self.page_size,) = conn.execute("PRAGMA page_size").fetchone()
        # Each name once: 200 meters repeat 35 point names and a few units, and SQLite gives
        # every row its own strings (21,000 of them held 1.2 MB).
        strings: dict[str, str] = {}
        share = strings.setdefault
        self.point_ids = {
            (share(device, device), share(point, point), share(unit, unit)): pid
            for pid, device, point, unit in conn.execute(
                "SELECT id, device, point, unit FROM points"
            )
        }
        self.point_names = []
        self._name_points(self.point_ids.items())
        self.identity = _identity(self.path)
        self.next_check_at = self.monotonic() + self.check_every

    def _merge_ledger(self, state: LedgerState) -> None:
        """Count in the file the losses a previous run could only write to the ledger."""
        merged = int(self.get_meta(_LEDGER_GEN) or 0)
        if state.lost and state.gen >= merged:
            with self._transaction():
                events = self._record_losses(state.lost)
            self.new_events.extend(events)
            log.error(
                "store: a previous run could not write to %s and lost readings; now counted in "
                "it: %s",
                self.path,
                ", ".join(f"{n} {why}" for why, n in state.lost.items()),
            )
        self._publish_health(ledger=True)  # this run's state: writable, nothing held

    # the file itself: gone, replaced or damaged

    def _check_file(self) -> None:
        """Is the file at the path still the one the connection has open?"""
        self.next_check_at = self.monotonic() + self.check_every
        try:
            now = _identity(self.path)
        except OSError:  # e.g. EIO from a dying card: the writes will say more
            return
        if now == self.identity or self.conn is None:
            return
        why = reasons.FILE_DELETED if now is None else reasons.FILE_REPLACED
        log.error(
            "store: %s was %s while the agent had it open; rebuilding it from the open file",
            self.path,
            "deleted" if now is None else "replaced by another file",
        )
        try:
            self._rebuild(why, [])
        except (OSError, sqlite3.Error) as exc:
            # The sentence says what failed; a traceback would add nothing for a technician.
            log.error("store: could not rebuild %s: %s", self.path, exc)  # noqa: TRY400
            if self.conn is None:
                self._attach()  # raises if not even a fresh file can be opened: a crash

    def _start_integrity_check(self) -> None:
        """The scheduled full check."""
        assert self.integrity_every is not None
        self.next_integrity_at = self.monotonic() + self.integrity_every
        self._start_check(full=True)

    def _start_check(self, *, full: bool) -> None:
        """SQLite's check of the file (``integrity_check`` when ``full``, else ``quick_check``)
        on a read-only connection in a thread of its own, off the writer's path; its result
        comes back as a job."""
        if self.integrity_running:
            return
        self.integrity_running = True
        identity = self.identity

        def run() -> None:
            try:
                conn = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S
                )
                try:
                    # The check reads every page once: a full default cache would be 2 MB of
                    # peak RSS at each start of a large store, for no speed (measured).
                    conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
                    problems = salvage_check(conn, full=full)
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                problems = [str(exc)]
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            self.jobs.put(
                _Call("checking integrity", lambda w: w._integrity_done(problems, identity), done)
            )

        threading.Thread(target=run, name=f"store-check[{self.path.name}]", daemon=True).start()

    def _integrity_done(self, problems: list[str], identity: tuple[int, int] | None) -> None:
        self.integrity_running = False
        if problems == ["ok"]:
            log.debug("store: check of %s: ok", self.path)
        elif identity == self.identity:  # still the file that was checked
            log.error("store: check of %s failed: %s", self.path, "; ".join(problems))
            self._repair_with(problems)

    def _repair(self, problem: str) -> bool:
        """A query or commit met a damaged page: rebuild (at most once a minute). True when
        a fresh store is in place."""
        now = self.monotonic()
        if self.rebuilt_at is not None and now - self.rebuilt_at < _REBUILD_GAP_S:
            return False
        return self._repair_with([problem])

    def _repair_with(self, problems: list[str]) -> bool:
        try:
            self._rebuild(reasons.DAMAGED, problems)
        except (OSError, sqlite3.Error) as exc:
            # The sentence says what failed; a traceback would add nothing for a technician.
            log.error("store: could not rebuild the damaged %s: %s", self.path, exc)  # noqa: TRY400
            if self.conn is None:
                self._attach()  # raises if not even a fresh file can be opened: a crash
            return False
        return True

    def _rebuild(self, why: str, problems: Sequence[str]) -> None:
        """Start a fresh store at the path with everything the old file still holds.

        ``why`` is ``damaged`` (the file at the path is set aside, kept, and read from there),
        ``file_deleted`` or ``file_replaced`` (the agent still has the old file open and reads
        it from there; a file put in its place is set aside). The copy is made beside the
        path and renamed into place; unsent readings that could not be read are counted lost
        under ``why``, and an event tells upstream what happened.
        """
        self.rebuilt_at = self.monotonic()
        if self.window is not None:
            self.window.drop()  # what the copy salvages is read from it
        self.path.parent.mkdir(parents=True, exist_ok=True)  # `rm -r` of the data directory
        src, moved, rebuilt_header = self._old_file(why)
        try:
            known_seq = _sequence(src)
        except sqlite3.DatabaseError:
            known_seq = 0
        try:
            report, failure = self._copy_into_place(src, readable_counters=why != reasons.DAMAGED)
        finally:
            if src is self.conn:
                self.close_connection()  # now: it removes its own -wal and -shm at the path
            else:
                src.close()
            if rebuilt_header is not None:
                _remove_db(rebuilt_header)
        self._attach()
        self._reopen_ledger()
        self._apply_budget()  # max_page_count is the connection's: set it on the new one
        self._raise_sequence(max(known_seq, report.last_seq))
        if report.last_seq == 0 and why == reasons.DAMAGED and problems:
            # The old file's seqs could not be read at all: start above any it can have
            # handed out (fewer than one reading per millisecond since 1970), so that no seq
            # is ever handed out twice.
            self._raise_sequence(self.clock.now_ms())
        self._count_lost(why, report.lost_unsent)
        detail: dict[str, Any] = {
            "reason": why,
            "moved_to": str(moved) if moved else None,
            **report.detail(),
        }
        if problems:
            detail["problems"] = list(problems)[:10]
        if failure is not None:
            detail["error"] = str(failure)
        self.add_event("store_damaged" if why == reasons.DAMAGED else "store_file_gone", detail)
        log.error(
            "store: %s %s; a fresh store started at once with %d readings salvaged (%d unsent, "
            "queued for sync), %d unsent readings lost%s",
            self.path,
            {
                reasons.DAMAGED: f"is damaged ({'; '.join(problems)[:200]})",
                reasons.FILE_DELETED: "was deleted",
                reasons.FILE_REPLACED: "was replaced",
            }[why],
            report.readings,
            report.unsent,
            report.lost_unsent,
            f"; the old file is kept as {moved}" if moved else "",
        )
        self._publish_health(ledger=bool(report.lost_unsent))

    def _old_file(self, why: str) -> tuple[sqlite3.Connection, Path | None, Path | None]:
        """A connection to read the old store from, where a file was set aside, and a copy
        of our own to remove once read (a damaged file with its header rebuilt)."""
        stamp = self.clock.wall().strftime("%Y%m%dT%H%M%SZ")
        if why != reasons.DAMAGED:
            moved = None
            if self.path.exists():
                moved = _set_aside(self.path, f"replaced-{stamp}", with_wal=False)
            assert self.conn is not None
            return self.conn, moved, None
        self.close_connection()
        moved = _set_aside(self.path, f"damaged-{stamp}", with_wal=True)
        src = open_source(moved)
        if not readable(src) and (copy := with_repaired_header(moved)) is not None:
            src.close()
            return open_source(copy), moved, copy
        return src, moved, None

    def _reopen_ledger(self) -> None:
        """The ledger at the path (it may have gone with the directory); its generations go
        on from those the file's counters hold."""
        state = self.ledger.open()
        merged = int(self.get_meta(_LEDGER_GEN) or 0)
        if state.gen < merged:
            self.ledger.state = dataclasses.replace(state, gen=merged)

    def _copy_into_place(
        self, src: sqlite3.Connection, *, readable_counters: bool
    ) -> tuple[SalvageReport, Exception | None]:
        """Salvage ``src`` into a fresh file beside the path, then rename it into place (the
        path is free: the old file was set aside or deleted). With the copy failing (a full
        disk), nothing is put in place and the unsent readings are counted as lost."""
        fresh = self.path.with_name(f"{self.path.name}.salvage")
        _remove_db(fresh)
        report = SalvageReport()
        try:
            dest = _connect(fresh, self.clock)
            try:
                report = salvage(src, dest)
            finally:
                dest.close()
        except (sqlite3.Error, OSError) as exc:
            _remove_db(fresh)
            unsent = 0
            if readable_counters:
                with contextlib.suppress(sqlite3.Error):
                    unsent = _counters(src).get(_UNSYNCED, 0)
            report.lost_unsent = max(report.lost_unsent, unsent - report.unsent)
            return report, exc
        os.replace(fresh, self.path)
        return report, None

    def _raise_sequence(self, at_least: int) -> None:
        with self._transaction() as conn:
            if (
                conn.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'readings'",
                    (at_least,),
                ).rowcount
                == 0
            ):
                conn.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('readings', ?)", (at_least,)
                )
            _set_meta(conn, _FLOOR, str(max(_floor(conn), _first_unsynced(conn, _floor(conn)))))

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
            while True:
                try:
                    call = self.urgent.get_nowait()
                except queue.Empty:
                    break
                self._run(call)
            self._take_inbox()  # readings appended before a job are in before it runs
            now = self.monotonic()
            if now >= self.next_check_at:
                self._check_file()
            if self.next_integrity_at is not None and now >= self.next_integrity_at:
                self._start_integrity_check()
            if isinstance(job, _Append):
                pass  # its readings were taken above
            elif isinstance(job, _Call):
                self._run(job)
            elif isinstance(job, _Flush):
                self._flush(job.future)
            elif isinstance(job, _Close):
                self._close(job.future)
                return
            elif isinstance(job, _Hurry):
                self.hurried = job.on
            elif isinstance(job, _Marks):
                self._take_marks()
            # Checked after every job too, so that a steady stream of jobs cannot hold a
            # batch past its window.
            due = self._due_at()
            if due is not None and self.monotonic() >= due:
                self.commit()
            self._tell_inbox()

    def _take_inbox(self) -> None:
        self.inbox.woken = False  # first: a batch appended after this wakes the thread again
        batches = self.inbox.batches
        # Only the batches there now (every one appended before the job in hand): pollers that
        # append as fast as this takes and commits would otherwise keep the thread here for
        # ever, and the jobs behind (the uplink's meta, a flush, a close) would wait with them.
        for _ in range(len(batches)):
            self._take(batches.popleft())

    def _tell_inbox(self) -> None:
        """Let the loop know whether the next readings must wake this thread: they must when
        nothing is held (no window is open to commit them). Readings appended while this
        changes are taken here, so none waits for a wake that nobody sent."""
        inbox = self.inbox
        inbox.open = bool(self.pending)
        if not inbox.open and inbox.batches:
            self._take_inbox()
            inbox.open = bool(self.pending)

    def _next_job(self) -> _Job | None:
        # After _tell_inbox: a mark the loop did not wake this thread for (it saw a window
        # open) was queued before the window closed, so it is taken here and timed.
        self._take_marks()
        wake = self.next_check_at
        due = self._due_at()
        if due is not None and due < wake:
            wake = due
        if self.next_integrity_at is not None and self.next_integrity_at < wake:
            wake = self.next_integrity_at
        try:
            return self.jobs.get(timeout=max(0.0, wake - self.monotonic()))
        except queue.Empty:
            return None

    def _has_work(self) -> bool:
        return bool(
            self.pending or self.held_events or self.held_meta or self.lost or self.acked.runs
        )

    def _due_at(self) -> float | None:
        if not self._has_work():
            return None
        if self.retry_at is not None:
            return self.retry_at
        if self.first_pending_at is None:
            if self.held_events or self.held_meta or self.lost:  # at once
                return self.monotonic()
            # Marks only (an idle gateway): after a window, unless readings come first and
            # take them along.
            assert self.acked.since is not None
            return self.acked.since + self.batch_window
        if self.hurried and self.publish_window is not None:
            return self.first_pending_at + self.publish_window
        return self.first_pending_at + self.batch_window

    def _take(self, readings: list[Reading]) -> None:
        if not self.pending:
            self.first_pending_at = self.monotonic()
        self.pending.extend(readings)
        excess = len(self.pending) - self.max_pending
        if excess > 0:
            # Only while commits fail and nothing can be evicted: keep the newest readings,
            # and the live view current, rather than the oldest.
            for _ in range(excess):
                self.pending.popleft()
            self._count_lost(reasons.HOLD_FULL, excess)
            if not self.dropping:
                self.dropping = True
                log.error(
                    "store: %d readings held in memory (the limit); dropping the oldest until "
                    "%s can be written again, each counted as lost (%s)",
                    self.max_pending,
                    self.path,
                    reasons.HOLD_FULL,
                )
                self._publish_health(ledger=True)
        # While commits fail, retry on the window, not on every append: no busy loop.
        if len(self.pending) >= self.batch_max and self.retry_at is None:
            self.commit()
        elif self.retry_at is not None:
            self._publish_health()  # the count held, for the loop (no ledger write: cheap)

    def _run(self, job: _Call) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            try:
                result = job.fn(self)
            except sqlite3.DatabaseError as exc:
                # A bad page met by a query (the backlog, an export): rebuild the store from
                # what can be read, and ask again, so that nothing stays stuck behind it.
                if not (_is_damage(exc) and self._repair(str(exc))):
                    raise
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
                self._lose_what_is_held()
        finally:
            self.ledger.close()
            self.close_connection()
            future.set_result(None)

    def _lose_what_is_held(self) -> None:
        """At a stop with the file refusing writes: what is held is lost, and counted so.

        The counts go into the file if a small transaction still fits, else into the ledger
        (whose blocks were allocated at open), else only into the log.
        """
        held, events = len(self.pending), len(self.held_events)
        self.pending.clear()
        self.held_events.clear()
        self._count_lost(reasons.NOT_WRITTEN_AT_STOP, held)
        self._count_lost(reasons.EVENTS_HOLD_FULL, events)
        where = "in the store"
        if not self.commit():
            where = "in the ledger " + str(self.ledger.path)
            if not self._publish_health(ledger=True):
                where = "nowhere but this log (the ledger could not be written either)"
        log.error(
            "store: %d readings and %d events could not be written to %s before the agent "
            "stopped and are lost (%s): %s; counted %s",
            held,
            events,
            self.path,
            reasons.NOT_WRITTEN_AT_STOP,
            self.cause[0] if self.cause else self.last_error,
            where,
        )

    def close_connection(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self.conn is not None
        with atomic(self.conn):
            yield self.conn
        self.transactions += 1

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
        """Write every pending reading in one transaction, with the events and meta held while
        writes failed, the losses not yet counted and the acknowledged seqs to mark synced.
        False when it failed (all kept)."""
        self._take_marks()
        if not self._has_work():
            return True
        # At most ``batch_max`` readings a transaction, the budget kept between them: what
        # piled up while writes failed can be more than eviction makes room for at once (a
        # small budget, a disk that filled), and as one transaction it would fail as full
        # after every eviction, for ever. A soak found it: a 2 MiB store held 69,000 readings
        # after a 20 s write fault and never wrote again.
        stored = 0
        while True:
            batch = list(itertools.islice(self.pending, self.batch_max))
            try:
                last_seq = self._insert_or_make_room(batch)
            except sqlite3.Error as exc:
                if stored and self.retry_at is not None:
                    self._recovered(stored)  # part of it went in: that fault is over
                self._commit_failed(exc)
                return False
            for _ in batch:
                self.pending.popleft()
            stored += len(batch)
            self.dropping = False
            done = not self.pending
            if done:
                self.first_pending_at = None
                if self.retry_at is not None:
                    self._recovered(stored)
            self.keep_within_budget()
            self._hand_over_events(last_seq)
            if done:
                return True

    def _insert_or_make_room(self, batch: list[Reading]) -> int | None:
        """``_insert``; when it fails as full (the budget's hard limit or the disk), make room
        the usual way and try once more; when the file is damaged, rebuild it from what can be
        read and try once more. Raises the error that stands."""
        try:
            return self._insert(batch)
        except sqlite3.Error as exc:
            room = _is_full(exc) and self._make_room(len(batch))
            if not (room or (_is_damage(exc) and self._repair(str(exc)))):
                raise
        return self._insert(batch)

    def _insert(self, batch: list[Reading]) -> int | None:
        """One transaction: the readings, their points' latest seq, the counters, and the
        acknowledged seqs waiting to be marked synced. Returns the last seq (None: no
        readings)."""
        assert self.conn is not None
        conn = self.conn
        new_points: dict[tuple[str, str, str], int] = {}
        events: list[StoreEvent] = []
        last_seq: int | None = None
        consecutive = False
        with self._transaction():
            if batch:
                last_seq, consecutive = self._insert_readings(batch, new_points)
            for at, kind, detail in self.held_events:
                events.append(self._add_event(kind, detail, at_ms=at))
            for key, value in self.held_meta.items():
                _set_meta(conn, key, value)
            recorded = dict(self.lost)
            if recorded:
                events.extend(self._record_losses(recorded))
            marked = self._fold_marks(conn)
        # Only now: what a rolled-back transaction inserted (or marked) does not exist.
        self.commits += bool(batch)
        if marked:
            self._marks_done()
        window = self.window
        if window is not None and window.enabled and last_seq is not None:
            if consecutive:
                window.add(last_seq - len(batch) + 1, batch)
            else:  # pragma: no cover - seqs not known one by one: the uplink reads the file
                window.drop()
        self.point_ids.update(new_points)
        self._name_points(new_points.items())
        self.held_events.clear()
        self.held_meta.clear()
        if recorded:
            log.error(
                "store: readings lost, now counted in %s: %s",
                self.path,
                ", ".join(f"{n} {why}" for why, n in recorded.items()),
            )
            self.lost.clear()
            self._publish_health(ledger=True)  # the ledger's losses are in the file now
        self.new_events.extend(events)
        return last_seq

    def _insert_readings(
        self, batch: list[Reading], new_points: dict[tuple[str, str, str], int]
    ) -> tuple[int, bool]:
        """Inside the caller's transaction: the rows, their points' latest seq, the counters.
        Returns the last seq, and whether the batch got consecutive seqs."""
        assert self.conn is not None
        conn = self.conn
        before = _sequence(conn)
        known = self.point_ids  # one look-up per reading; a new point goes through _point_id
        point_of = [
            known.get((r.device, r.point, r.unit)) or self._point_id(r, new_points) for r in batch
        ]
        flagged = any(issubclass(kind, UntrustedReading) for kind in {type(r) for r in batch})
        _insert_rows(
            conn,
            [
                (pid, r.ts_ms, r.value, _quality(r) if flagged else int(r.quality))
                for pid, r in zip(point_of, batch, strict=True)
            ],
        )
        last_seq = _sequence(conn)
        consecutive = last_seq - before == len(batch)  # one writer: consecutive seqs
        if flagged and consecutive:
            record_ranges(conn, before + 1, batch)
        if consecutive:
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
        return last_seq, consecutive

    # the uplink's acknowledgements, marked in the next transaction

    def _take_marks(self) -> None:
        """Take the acknowledged seqs the loop queued (cheap when there are none)."""
        inbox = self.inbox
        inbox.marks_woken = False  # first: a mark queued after this wakes the thread again
        marks = inbox.marks
        if not marks:
            return
        if not self.acked.runs:
            self.acked.since = self.monotonic()
        for _ in range(len(marks)):
            seqs, at_ms = marks.popleft()
            self.acked.runs.extend(_runs(seqs))
            self.acked.newest_ms = max(self.acked.newest_ms, at_ms)
        self.acked.runs = _merged_runs(self.acked.runs)  # few runs, however many marks

    def _fold_marks(self, conn: sqlite3.Connection) -> bool:
        """Inside the caller's transaction: mark the acknowledged seqs synced, with the
        counter, the time of the last sync and the floor. False when none was waiting."""
        if not self.acked.runs:
            return False
        changed = 0
        for first, last in self.acked.runs:
            changed += conn.execute(
                "UPDATE readings SET synced = 1 WHERE seq BETWEEN ? AND ? AND synced = 0",
                (first, last),
            ).rowcount
        _bump(conn, _UNSYNCED, -changed)
        _set_meta(conn, _LAST_SYNC, str(self.acked.newest_ms))
        floor = _floor(conn)
        new_floor = _first_unsynced(conn, floor)
        if new_floor != floor:
            _set_meta(conn, _FLOOR, str(new_floor))
        return True

    def _marks_done(self) -> None:
        """The transaction that marked them has committed."""
        self.acked.runs.clear()
        self.acked.since = None
        self.dropping_unsynced = False

    def _is_marked(self) -> Callable[[int], bool] | None:
        """Whether a seq is acknowledged but not yet marked in the file (None: none is)."""
        if not self.acked.runs:
            return None
        runs = self.acked.runs
        starts = [first for first, _ in runs]

        def marked(seq: int) -> bool:
            i = bisect.bisect_right(starts, seq) - 1
            return i >= 0 and seq <= runs[i][1]

        return marked

    def marks_waiting(self) -> tuple[int, int]:
        """(unsent readings in the file acknowledged since, the time of the newest)."""
        assert self.conn is not None
        self._take_marks()
        waiting = 0
        for first, last in self.acked.runs:
            (count,) = self.conn.execute(
                "SELECT count(*) FROM readings WHERE seq BETWEEN ? AND ? AND synced = 0",
                (first, last),
            ).fetchone()
            waiting += count
        return waiting, self.acked.newest_ms

    def _record_losses(self, lost: Mapping[str, int]) -> list[StoreEvent]:
        """Inside the caller's transaction: the counters, an event per reason, and the ledger
        generation they cover (so that a ledger written before is not counted twice)."""
        assert self.conn is not None
        events = []
        for why, count in lost.items():
            _bump(self.conn, _DROPPED if why == reasons.HOLD_FULL else _LOST_PREFIX + why, count)
            kind = "events_lost" if why == reasons.EVENTS_HOLD_FULL else "readings_lost"
            events.append(self._add_event(kind, {"count": count, "reason": why}))
        _set_meta(self.conn, _LEDGER_GEN, str(self.ledger.state.gen + 1))
        return events

    def _count_lost(self, why: str, count: int) -> None:
        if count > 0:
            self.lost[why] = self.lost.get(why, 0) + count

    def health(self) -> StoreHealth:
        cause, cure = self.cause if self.cause else (None, None)
        return StoreHealth(
            writable=self.retry_at is None and self.conn is not None,
            cause=cause,
            cure=cure,
            since_ms=self.failing_since_ms,
            held=len(self.pending),
            lost=dict(self.lost),
        )

    def _publish_health(self, *, ledger: bool = False) -> bool:
        """Hand the health to the loop; with ``ledger``, write it there too (False: the ledger
        could not be written)."""
        health = self.health()
        self.on_health(health)
        if not ledger:
            return True
        error = None
        if health.cause is not None:
            error = {"cause": health.cause, "cure": health.cure, "since_ms": health.since_ms}
        return self.ledger.write(
            LedgerState(
                gen=self.ledger.state.gen + 1,
                lost=health.lost,
                held=health.held,
                error=error,
                written_ms=self.clock.now_ms(),
                pid=os.getpid(),
            )
        )

    def _recovered(self, stored: int) -> None:
        assert self.cause is not None
        log.warning(
            "store: writing to %s works again after %d failed attempts since %s; %d readings "
            "stored (the fault was: %s)",
            self.path,
            self.failed_attempts,
            ms_to_iso(self.failing_since_ms or 0),
            stored,
            self.cause[0],
        )
        detail = {
            "cause": self.cause[0],
            "since": ms_to_iso(self.failing_since_ms or 0),
            "attempts": self.failed_attempts,
        }
        self.retry_at = None
        self.failed_attempts = 0
        self.backoff.reset()
        self.cause = None
        self.failing_since_ms = None
        with contextlib.suppress(sqlite3.Error):
            self.add_event("store_write_failed", detail)
        self._publish_health(ledger=True)

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

    def _add_event(
        self, kind: str, detail: dict[str, Any], *, at_ms: int | None = None
    ) -> StoreEvent:
        """Record an event (inside the caller's transaction) and prune the oldest."""
        assert self.conn is not None
        at = self.clock.now_ms() if at_ms is None else at_ms
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
        """Record an event now; while the file refuses writes, hold it (id 0) and record it
        with the next commit that works: an audit trail never crashes its caller."""
        at = self.clock.now_ms()
        if self.retry_at is None:
            try:
                with self._transaction():
                    event = self._add_event(kind, detail, at_ms=at)
            except sqlite3.Error as exc:
                if _is_damage(exc):
                    raise
                self._commit_failed(exc)
            else:
                self.new_events.append(event)
                return event
        if len(self.held_events) >= _EVENTS_HELD:
            self.held_events.popleft()
            self._count_lost(reasons.EVENTS_HOLD_FULL, 1)
        # Through JSON now, as the file would keep it: the caller may change its dict later.
        kept = json.loads(json.dumps(detail, ensure_ascii=False, default=str))
        self.held_events.append((at, kind, kept))
        return StoreEvent(id=0, ts_ms=at, kind=kind, detail=kept)

    def _commit_failed(self, exc: sqlite3.Error) -> None:
        self.write_errors += 1
        self.failed_attempts += 1
        self.last_error = exc
        first = self.retry_at is None
        delay = self.backoff.next_delay()
        self.retry_at = self.monotonic() + delay
        if first:
            self.cause = diagnose(self.path, exc)
            self.failing_since_ms = self.clock.now_ms()
            log.error(
                "store: cannot write to %s: %s. To fix: %s. Readings wait in memory (%d now, "
                "up to %d, then the oldest are counted as lost); retrying with backoff up to "
                "%.0f s",
                self.path,
                self.cause[0],
                self.cause[1],
                len(self.pending),
                self.max_pending,
                self.backoff.cap,
            )
        else:
            log.debug("store: commit still failing (next try in %.1f s): %s", delay, exc)
        self._publish_health(ledger=True)

    # the budget

    def _limit(self, page_count: int) -> tuple[int | None, str]:
        """The most pages the file may use now, and why: its budget, or the disk."""
        if self.disk_cap is not None and self.monotonic() - self.disk_cap_since > _DISK_RECHECK_S:
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
            self.disk_cap_since = self.monotonic()

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

    def _pages_for(self, rows: int, used: int) -> int:
        """About how many pages ``rows`` more readings take (a little over: rows per page are
        the whole file's, its other tables included)."""
        assert self.conn is not None
        stored = _counters(self.conn).get(_ROWS, 0)
        if rows <= 0 or stored <= 0:
            return 0
        return math.ceil(rows * used / stored * 1.1)

    def _make_room(self, rows: int) -> bool:
        """A write of ``rows`` readings failed as full. True when eviction freed pages to
        retry in."""
        count, free = self._pages()
        need = self._pages_for(rows, count - free)
        # Below the budget, but the write would take the file past it: the budget refused
        # it, not the disk.
        if self.budget_pages is None or (
            count < self.budget_pages and count + max(0, need - free) <= self.budget_pages
        ):
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
            self.disk_cap_since = self.monotonic()
        limit, reason = self._limit(count)
        assert limit is not None
        try:
            self.evict(limit - max(2 * _chunk(limit), need), reason=reason)
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
            # What the broker has acknowledged is sent: marked first, it goes as sent, and is
            # never counted as an unsent reading lost.
            self._take_marks()
            marked = self._fold_marks(conn)
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
                if self.window is not None:
                    self.window.drop()  # first: the uplink never takes a copy of these
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
        if marked:
            self._marks_done()
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
        """The uplink's read, for every reading the gateway takes: the names come from the
        points the writer keeps in memory rather than from a join on every row (a point's
        names never change; a row whose point is not in the file is left out, as the join
        would)."""
        assert self.conn is not None
        self._take_marks()
        marked = self._is_marked()  # acknowledged, not yet marked in the file: not again
        start = max(from_seq, _floor(self.conn))
        out: list[StoredReading] = []
        while len(out) < limit:
            asked = limit - len(out)
            rows = self.conn.execute(
                "SELECT seq, point_id, ts_ms, value, quality FROM readings"
                " WHERE seq >= ? AND seq < ? AND synced = 0 ORDER BY seq LIMIT ?",
                (start, below_seq, asked),
            ).fetchall()
            names = self.point_names
            known = len(names)
            for seq, pid, ts_ms, value, quality in rows:
                if marked is not None and marked(seq):
                    continue
                name = (names[pid] if 0 <= pid < known else None) or self._point_names(pid)
                if name is not None:
                    device, point, unit = name
                    out.append(_to_stored((seq, device, point, ts_ms, value, unit, quality)))
            if len(rows) < asked or marked is None:
                break  # all read (a row left out for a missing point is not asked again)
            start = rows[-1][0] + 1
        return out

    def _point_names(self, pid: int) -> tuple[str, str, str] | None:
        """(device, point, unit) of a point this writer did not add (another process did)."""
        assert self.conn is not None
        row = self.conn.execute(
            "SELECT device, point, unit FROM points WHERE id = ?", (pid,)
        ).fetchone()
        if row is None:
            return None
        key = (str(row[0]), str(row[1]), str(row[2]))
        self._name_points([(key, pid)])
        return key

    def _name_points(self, points: Iterable[tuple[tuple[str, str, str], int]]) -> None:
        """Remember the names of these points by id."""
        names = self.point_names
        for key, pid in points:
            # An id far past the others (not this writer's) is not kept: asked when read.
            if len(names) <= pid <= 2 * len(self.point_ids) + 1024:
                names.extend([None] * (pid + 1 - len(names)))
            if 0 <= pid < len(names):
                names[pid] = key

    def correct_clock(self, boot: str, offset_ms: int) -> int:
        """The clock is trusted now (``offset_ms``: wall minus monotonic): give the readings
        stamped before it on this boot their true time; returns how many."""
        # The untrusted readings still held go in first, and the acknowledged ones are marked:
        # a mark applied after the correction would hide the corrected readings from the uplink.
        if not self.commit():
            raise sqlite3.OperationalError(f"cannot write: {self.last_error}")
        if self.window is not None:
            self.window.drop()  # its copies have the old times: the uplink reads the file
        with self._transaction() as conn:
            done = correct_clock(conn, boot, offset_ms)
            events = []
            if done.corrected:
                events.append(
                    self._add_event(
                        "clock_corrected",
                        {"readings": done.corrected, "shift_ms": sorted(set(done.shifts_ms))},
                    )
                )
            if done.uncorrectable:
                events.append(
                    self._add_event(
                        "clock_uncorrectable",
                        {
                            "readings": done.uncorrectable,
                            "reason": "stamped before a reboot by an untrusted clock: they keep "
                            "the untrusted flag",
                        },
                    )
                )
        self.new_events.extend(events)
        if done.corrected or done.uncorrectable:
            log.warning(
                "store: the clock is trusted now: %d readings stamped before it were given their "
                "true time (shifted by %s ms); %d from an earlier boot keep the untrusted flag",
                done.corrected,
                ", ".join(str(s) for s in sorted(set(done.shifts_ms))) or "0",
                done.uncorrectable,
            )
        return done.corrected

    def get_meta(self, key: str) -> str | None:
        assert self.conn is not None
        if key in self.held_meta:
            return self.held_meta[key]
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a value now; while the file refuses writes, hold it for the next commit."""
        if self.retry_at is None:
            try:
                with self._transaction() as conn:
                    _set_meta(conn, key, value)
            except sqlite3.Error as exc:
                if _is_damage(exc):
                    raise
                self._commit_failed(exc)
            else:
                return
        self.held_meta[key] = value

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
        # Acknowledged readings not yet marked in the file count as sent here (another
        # process reading the file sees them up to a batch window later).
        waiting, marked_ms = self.marks_waiting()
        last_sync_ms, oldest_ms = base.last_sync_ms, base.oldest_unsynced_ms
        if waiting:
            last_sync_ms = max(last_sync_ms or 0, marked_ms)
            first = self.unsynced(1, 0, _MAX_SEQ)
            oldest_ms = first[0].ts_ms if first else None
        return StoreStats(
            rows=base.rows,
            unsynced=max(0, base.unsynced - waiting),
            bytes=base.bytes,
            oldest_unsynced_ms=oldest_ms,
            last_seq=base.last_seq,
            last_sync_ms=last_sync_ms,
            pending=len(self.pending),
            dropped=base.dropped + self.lost.get(reasons.HOLD_FULL, 0),
            lost_reasons=_merged(base.lost_reasons, self.lost),
            write_errors=self.write_errors,
            max_bytes=self.max_bytes,
            used_bytes=base.used_bytes,
            evicted_synced=base.evicted_synced,
            evicted_unsynced=base.evicted_unsynced,
            events_unpublished=base.events_unpublished,
            events_lost=base.events_lost + self.lost.get(reasons.EVENTS_HOLD_FULL, 0),
            health=self.health(),
            clock_awaiting=base.clock_awaiting,
            clock_uncorrected=base.clock_uncorrected,
        )


def _merged(counted: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Loss counts of the file plus those not yet in it, without the two kept apart."""
    out = dict(counted)
    for why, count in more.items():
        if why not in (reasons.HOLD_FULL, reasons.EVENTS_HOLD_FULL):
            out[why] = out.get(why, 0) + count
    return out


def repair_file(path: Path, problems: Sequence[str], *, clock: Clock) -> dict[str, Any]:
    """Set a damaged store file aside and rebuild it from what it still holds, as the agent
    does at open (for ``edge-agent store check --repair``, with the agent stopped); returns
    the detail of the ``store_damaged`` event."""
    writer = _Writer(
        path,
        queue.SimpleQueue(),
        batch_window=1.0,
        batch_max=1,
        max_pending=1,
        max_bytes=None,
        notify=lambda _seq, _events: None,
        clock=clock,
    )
    try:
        writer.open(damaged=problems)
        event = next(e for e in writer.new_events if e.kind == "store_damaged")
        writer.commit()  # the losses counted by the rebuild
    finally:
        writer.ledger.close()
        writer.close_connection()
    return dict(event.detail)
