"""The store as the event loop sees it: the async :class:`Store`.

A :class:`Store` owns one writer thread (:mod:`agent.store.writer`) and never touches SQLite
itself: every call becomes a job on the writer's queue, answered through a
``concurrent.futures`` result; commits and new alert events come back to the loop through
``loop.call_soon_threadsafe``. A reading's value is checked here, in the caller, before it is
queued.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError
from agent.core.record import Reading, StoredReading
from agent.store.clocktrust import UntrustedReading, boot_id
from agent.store.events import StoreEvent
from agent.store.health import StoreHealth
from agent.store.lock import StoreLock
from agent.store.queries import StoreStats
from agent.store.schema import _INT64, _MAX_SEQ
from agent.store.window import LIVE_WINDOW, LiveWindow
from agent.store.writer import (
    _Append,
    _Call,
    _Close,
    _Flush,
    _Hurry,
    _Inbox,
    _Job,
    _Marks,
    _Wake,
    _Writer,
)

# One logger for the whole package, as before it was split into modules: log lines keep
# saying "agent.store".
log = logging.getLogger("agent.store")

T = TypeVar("T")

# The config's default budget (StoreConfig.max_bytes; a test keeps the two equal).
DEFAULT_MAX_BYTES = 3 * 1024**3
"""The budget of a Store given none: the config's default, so both agree."""

DEFAULT_INTEGRITY_EVERY = 86400.0
"""A full ``integrity_check`` once a day (the config's default)."""

_MIN_BUDGET = 1024 * 1024  # as StoreConfig.max_bytes: below this the WAL allowance dominates
_TRUST_RECHECK_S = 1.0  # how often an untrusted clock's trust is asked again, at most
# Jobs the writer has not taken yet past which `append` waits (each append is one job, a device
# cycle's readings): a poll load the writer cannot absorb then slows the sources, which report
# overruns, instead of growing memory without bound and queueing every other caller (the
# uplink's reads and marks) behind it. A commit that stalls the writer for a moment fills less.
MAX_QUEUED_JOBS = 64
# How many readings committed since the uplink (re)connected it may leave unacknowledged,
# while it is acknowledging, before `append` waits for it too: a poll load that leaves the uplink
# too little of the loop then slows the sources (overruns in `status`) instead of the uplink
# falling further behind without end. Only what was committed since the connection counts, so an
# outage's backlog and the backfill after it never hold polling up; with nothing acknowledged
# for `_ACKING_S` (no uplink, the broker away) readings are buffered as ever. About three
# seconds of 200 meters of 35 points each.
MAX_UNACKED_LIVE = 20_000
_ACKING_S = 2.0  # an acknowledgement this recent means the uplink is sending
_ROOM_RECHECK_S = 0.005


def _check_value(reading: Reading) -> None:
    """Refuse, in the caller, a value SQLite cannot hold: a bad value is a bug in a driver, and
    it must not sit in the batch and make every commit fail."""
    value = reading.value
    if type(value) is float or value is None or isinstance(value, float | str):
        return  # float first: nearly every reading
    if isinstance(value, int):  # bool included: stored as 0/1
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{reading.device}.{reading.point}: {value} does not fit in 64 bits")
        return
    raise TypeError(
        f"{reading.device}.{reading.point}: a reading's value must be int, float, str, bool or "
        f"None, not {type(value).__name__}"
    )


# --- the store, as seen from the event loop --------------------------------------------------


class Store:
    """The durable buffer of readings (an async context manager).

    ``append()`` hands readings to the writer thread and returns at once; the thread commits
    them in one transaction every ``batch_window`` seconds, or as soon as ``batch_max`` are
    waiting. ``flush()`` waits until everything appended before it is committed. A committed
    reading has a ``seq``: gateway-wide, strictly increasing and never reused.

    ``max_bytes`` is the size budget of the file and its WAL (None: no budget; the default is
    the config's). Every ``check_every`` seconds the writer makes sure the file at the path is
    still the one it has open (a deleted or replaced file is rebuilt from the open one); every
    ``integrity_every`` seconds (None: never) a full ``integrity_check`` runs on a thread of
    its own, and a damaged file is set aside and rebuilt. ``monotonic`` is the clock of the
    writer's timers (batch window, retries, checks). ``on_event`` is called on the event loop
    with each alert event once it is committed (the events also stay in the store until the
    uplink has published them).
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_window: float = 1.0,
        publish_window: float | None = None,
        batch_max: int = 1000,
        max_pending: int = 100_000,
        close_timeout: float = 10.0,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        on_event: Callable[[StoreEvent], None] | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        check_every: float = 30.0,
        integrity_every: float | None = DEFAULT_INTEGRITY_EVERY,
        clock_trusted: Callable[[], bool] | None = None,
        boot_id: Callable[[], str] = boot_id,
        live_window: int = LIVE_WINDOW,
    ) -> None:
        if batch_window <= 0 or batch_max < 1 or max_pending < batch_max or close_timeout <= 0:
            raise ValueError(
                "Store needs batch_window > 0, batch_max >= 1, max_pending >= batch_max "
                "and close_timeout > 0"
            )
        if max_bytes is not None and max_bytes < _MIN_BUDGET:
            raise ValueError(f"Store needs max_bytes >= {_MIN_BUDGET} (1 MiB) or None")
        self.path = Path(path)
        self._lock = StoreLock(self.path)
        self.batch_window = batch_window
        # While someone waits for new readings (the uplink, connected and caught up), commit
        # after this long instead of the batch window: they are published sooner, and a power
        # cut loses less, at the price of more commits only while they are being sent anyway.
        self.publish_window = (
            min(publish_window, batch_window) if publish_window is not None else None
        )
        self.batch_max = batch_max
        self.max_pending = max_pending
        self.close_timeout = close_timeout
        self.max_bytes = max_bytes
        self.on_event = on_event
        self.clock = clock if clock is not None else system_clock()
        self.monotonic = monotonic
        self.check_every = check_every
        self.integrity_every = integrity_every
        # Whether the wall clock can be trusted (None: always); until it is, readings are
        # flagged and corrected later (agent.store.clocktrust).
        self.clock_trusted = clock_trusted
        self.boot_id = boot_id
        self._trusted = clock_trusted is None
        self._correction_due = clock_trusted is not None  # ranges of a run before this one
        self._trust_asked_at: float | None = None
        # Set by the writer thread (a reference assignment: atomic), read by anyone.
        self._health = StoreHealth()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._inbox = _Inbox()
        self._urgent: queue.SimpleQueue[_Call] = queue.SimpleQueue()  # the uplink's calls
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new -> open -> closed
        self._fatal: BaseException | None = None
        self._last_seq = 0
        self._last_event_id = 0
        # (after_seq, wake on a new event too, future) of each wait_for_new()
        self._waiters: list[tuple[int, bool, asyncio.Future[None]]] = []
        self._room: asyncio.Lock | None = None  # appends waiting for the writer, in turn
        self._acked_seq = 0  # the highest seq the uplink marked synced
        self._acked_at = -math.inf  # when (self.monotonic)
        self._live_from = 1  # the first seq committed since the uplink's connection
        # The readings of the last commits, for the uplink (agent.store.window).
        self._window = LiveWindow(live_window)
        self._writer: _Writer | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, state={self._state})"

    @property
    def is_open(self) -> bool:
        return self._state == "open" and self._fatal is None

    @property
    def writable(self) -> bool:
        """Whether the store can record now (cheap: no trip to the writer thread).

        False while commits fail (a full disk, a file-size limit, a read-only card) and when
        the store is not open. Readings and events are still accepted then (held in memory);
        a caller that must not act unrecorded (a command) asks this first.
        """
        return self.is_open and self._health.writable

    @property
    def health(self) -> StoreHealth:
        """Why the store cannot write (if it cannot), and what it holds and lost meanwhile."""
        return self._health

    def _set_health(self, health: StoreHealth) -> None:
        self._health = health

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
        self._lock.acquire()  # one writing process per store (agent/store/lock.py)
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
            self._lock.release()
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
            self._lock.release()
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
            inbox=self._inbox,
            batch_window=self.batch_window,
            publish_window=self.publish_window,
            batch_max=self.batch_max,
            max_pending=self.max_pending,
            max_bytes=self.max_bytes,
            notify=self._notify_from_thread,
            clock=self.clock,
            monotonic=self.monotonic,
            on_health=self._set_health,
            check_every=self.check_every,
            integrity_every=self.integrity_every,
            urgent=self._urgent,
            window=self._window,
        )
        self._writer = writer  # for the tests and benchmarks (its counters); the thread's own
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
            job: _Job
            try:
                job = self._urgent.get_nowait()
            except queue.Empty:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    return
            if isinstance(job, _Append | _Hurry | _Wake | _Marks):
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

    async def _call(self, what: str, fn: Callable[[_Writer], T], *, urgent: bool = False) -> T:
        """Run ``fn`` on the writer thread; an ``urgent`` call (one that reads or marks only
        committed rows) is served before the appends queued ahead of it."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job = _Call(what, fn, future)
        if urgent:
            self._check_open()
            self._urgent.put(job)
            self._submit(_Wake())
        else:
            self._submit(job)
        return await asyncio.wrap_future(future)

    # writing

    async def append(self, readings: Sequence[Reading]) -> None:
        """Queue readings for the next batch (they are not committed yet) and return; at once,
        unless the writer is far behind or the acknowledging uplink cannot keep up (see
        `_wait_for_room`). Never because of an outage or the backfill after one: the store
        carries those.

        A value SQLite cannot hold raises ``TypeError``/``ValueError`` here, in the caller.
        """
        self._check_open()
        batch = list(readings)
        for reading in batch:
            if type(reading.value) is not float:  # nearly every reading is: no call for it
                _check_value(reading)
        if self.clock_trusted is not None:
            batch = await self._stamp_trust(batch)
        if batch:
            self._check_open()  # again: the store may have closed while the trust was asked
            inbox = self._inbox
            inbox.batches.append(batch)
            if not inbox.open:  # these readings open the writer's window: wake it
                inbox.unseen = len(batch)
                self._wake_writer()
            else:
                inbox.unseen += len(batch)
                # the window holds batch_max (commit now), or the writer is far behind
                if inbox.unseen >= self.batch_max or len(inbox.batches) > MAX_QUEUED_JOBS:
                    inbox.unseen = 0
                    self._wake_writer()
        # Queued first, then the wait: a caller cancelled while it waits (a stop) has still
        # handed over what it read.
        if self._queued() > MAX_QUEUED_JOBS or self._uplink_falling_behind():
            await self._wait_for_room()

    def _wake_writer(self) -> None:
        if not self._inbox.woken:
            self._inbox.woken = True
            self._submit(_Append())

    async def _wait_for_room(self) -> None:
        """Wait, in turn with the other appends, until the writer has caught up and the uplink
        is keeping up again; on a short sleep (no signal from the thread needed: this happens
        only under a load the agent cannot carry)."""
        if self._room is None:
            self._room = asyncio.Lock()
        async with self._room:
            while (  # noqa: ASYNC110
                self._queued() > MAX_QUEUED_JOBS or self._uplink_falling_behind()
            ) and self.is_open:
                await asyncio.sleep(_ROOM_RECHECK_S)

    def _queued(self) -> int:
        """Device cycles and jobs the writer has not taken yet (its wake-up not counted)."""
        inbox = self._inbox
        return len(inbox.batches) + self._jobs.qsize() - (1 if inbox.woken else 0)

    def _uplink_falling_behind(self) -> bool:
        """The uplink is acknowledging, yet more than `MAX_UNACKED_LIVE` readings committed
        since it connected are not acknowledged: it cannot keep up with what is polled."""
        return (
            self._last_seq - max(self._acked_seq, self._live_from - 1) > MAX_UNACKED_LIVE
            and self.monotonic() - self._acked_at < _ACKING_S
        )

    def uplink_connected(self, live_from: int) -> None:
        """The uplink has (re)connected and sends what is committed from ``live_from`` on as
        live readings; what is older is its backlog (see `MAX_UNACKED_LIVE`). From now on
        each commit's readings are kept for it (`committed_after`)."""
        self._live_from = live_from
        self._window.enabled = True

    async def _stamp_trust(self, batch: list[Reading]) -> list[Reading]:
        """Flag readings while the clock is untrusted; once it is, correct the earlier ones."""
        assert self.clock_trusted is not None
        mono = self.clock.monotonic()
        if not self._trusted and (
            self._trust_asked_at is None or mono - self._trust_asked_at >= _TRUST_RECHECK_S
        ):
            self._trust_asked_at = mono
            self._trusted = self.clock_trusted()
        offset = self.clock.now_ms() - round(mono * 1000)
        if not self._trusted:
            boot = self.boot_id()
            return [
                UntrustedReading(
                    r.device, r.point, r.ts_ms, r.value, r.unit, r.quality, boot, offset
                )
                for r in batch
            ]
        if self._correction_due:
            boot = self.boot_id()
            try:
                await self._call("correcting timestamps", lambda w: w.correct_clock(boot, offset))
            except StoreError as exc:  # the store cannot write now: on a later append
                log.warning("store: timestamps not corrected yet: %s", exc)
            else:
                self._correction_due = False
        return batch

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
        """Store ``value`` under ``key``, committed before this returns; while the store cannot
        write (see :attr:`writable`), held in memory and committed when it can."""
        await self._call(f"writing {key}", lambda w: w.set_meta(key, value))

    async def mark_synced(self, seqs: Sequence[int]) -> None:
        """Record that the broker acknowledged these readings (and when: meta last_sync_ms).

        Returns at once: the writer marks them in its next transaction (the next commit of
        readings), or after a batch window when none comes, or at a flush or a close; never
        in a transaction (an fsync) of their own while readings flow. Until then `unsynced`
        leaves them out and `stats` counts them as sent. A power cut before the mark is in
        the file leaves them unsent there: sent again after the restart, a duplicate.
        """
        if not seqs:
            return
        self._check_open()
        chosen = list(seqs)
        inbox = self._inbox
        inbox.marks.append((chosen, self.clock.now_ms()))
        # No wake while the writer holds readings: their commit takes the marks along.
        if not inbox.open and not inbox.marks_woken:
            inbox.marks_woken = True
            self._submit(_Marks())
        self._acked_seq = max(self._acked_seq, *chosen)
        self._acked_at = self.monotonic()

    async def add_event(self, kind: str, detail: dict[str, Any]) -> StoreEvent:
        """Record an event (e.g. ``hvac.write``), committed before this returns.

        Events are kept in the file and published by the uplink, oldest first, on the events
        topic; ``detail`` must be JSON-serialisable (anything else is written as text).

        While the store cannot write (see :attr:`writable`) the event is held in memory (the
        returned event has id 0) and committed with the next write that works; a full hold
        drops its oldest event, counted. So a write fault never raises here.
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
                "marking events as published",
                lambda w: w.mark_events_published(chosen),
                urgent=True,
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
        hurry = self.publish_window is not None and (timeout is None or timeout > 0)
        if hurry:  # commit what comes within the publish window
            self._jobs.put(_Hurry(True))
        try:
            async with asyncio.timeout(timeout):
                await entry[2]
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            if hurry and not self._waiters and self._state == "open":
                self._jobs.put(_Hurry(False))
        return self._last_seq > after_seq

    def committed_after(self, from_seq: int, limit: int) -> list[StoredReading] | None:
        """Up to ``limit`` readings committed from seq ``from_seq`` on, oldest first, from
        memory (the last commits' readings, kept since the uplink connected; each is handed
        out once); None when memory cannot answer for all of them: ask `unsynced`."""
        self._check_open()
        return self._window.take(from_seq, limit)

    async def unsynced(
        self, limit: int, *, from_seq: int = 0, below_seq: int | None = None
    ) -> list[StoredReading]:
        """Up to ``limit`` committed readings not yet synced, oldest (lowest seq) first.

        Only seqs in ``from_seq <= seq < below_seq``: the uplink reads live readings and the
        backlog as two ranges, each from a cursor, so that no read walks what it already sent.
        """
        below = _MAX_SEQ if below_seq is None else below_seq
        return await self._call(
            "reading unsynced readings", lambda w: w.unsynced(limit, from_seq, below), urgent=True
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
        return await self._call(
            "reading events", lambda w: w.unpublished_events(limit), urgent=True
        )

    async def latest(self) -> list[StoredReading]:
        """The newest committed reading of every point, ordered by device and point."""
        return await self._call("reading the latest readings", lambda w: w.latest())

    async def stats(self) -> StoreStats:
        return await self._call("reading store statistics", lambda w: w.stats())
