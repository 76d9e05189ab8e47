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
The uplink's acknowledgements ride on the next commit (no fsync of their own): a power cut before
it leaves those readings unsent in the file, to be sent again (a duplicate, never a loss).

Size budget (``max_bytes``, docs/store.md): the database file may not grow past the budget minus
an allowance for the WAL (SQLite's ``max_page_count`` enforces it). Before it gets there the
writer deletes the oldest readings that the broker already has; only when none is left does it
delete the oldest unsent ones, counting them and recording an alert event that the uplink
publishes. Freed pages are reused in place, so routine eviction never rewrites the file (no
VACUUM on an SD card). A full disk is handled the same way, with the file's current size as the
limit. Rows are kept small: no index besides the primary key (the oldest unsent reading is found
from a "sync floor" kept in ``meta``, the latest reading per point from ``points.last_seq``), and
the row and unsent counts are counters in ``meta`` kept in the same transactions as the rows.

Faults are contained, and every reading they cost is counted under its reason (docs/store.md,
"Faults"): a write error of any errno holds readings, events and meta values in memory (bounded)
and retries with backoff, the cause and cure named once (``Store.writable``/``health`` tell
callers); what a stop cannot write is counted in the file or, when the file refuses, in the
ledger beside it; a deleted or replaced file is rebuilt from the open one; a damaged file is set
aside (kept) and rebuilt from what it still holds.

Modules, each holding one thing:

- ``schema``: the migrations (:data:`MIGRATIONS`, :func:`apply_migrations`), the counters kept in
  ``meta`` and the small SQL helpers the other modules share;
- ``health``: the reasons a reading is lost, :class:`StoreHealth`, and the diagnosis of a
  failed write (cause and cure);
- ``ledger``: the small preallocated file beside the database that keeps what the database
  could not (losses, health) for ``status`` and the next start;
- ``lock``: :class:`StoreLock`, one writing process per store (``flock`` on a file beside it);
- ``events``: :class:`StoreEvent`, the alert events kept until the uplink publishes them;
- ``intervals``: the energy intervals' rows and their query;
- ``salvage``: SQLite's checks, and copying what can be read from a damaged or vanished file
  into a fresh one;
- ``queries``: :class:`StoreStats` and the read-only functions of the CLI (``read_stats``,
  ``read_events``, ``read_latest``, ``read_meta``, ``read_intervals``, ``export_readings``);
- ``window``: each commit's readings, handed to the uplink in memory (the live hand-off);
- ``writer``: the writer thread (``_Writer``) and its jobs: batching, counters, the budget and
  eviction, failed writes, the file checks and rebuilds, the uplink's acknowledgements marked
  in its next transaction;
- ``maintenance``: ``edge-agent store check [--repair]``;
- ``facade``: :class:`Store`, the async face of the writer thread on the event loop.

Each imports only those listed before it (``schema`` imports none, ``facade`` all but
``maintenance``); this module re-exports the public names, so ``from agent.store import Store``
is the way in.
"""

from __future__ import annotations

from agent.store.events import StoreEvent
from agent.store.facade import DEFAULT_INTEGRITY_EVERY, DEFAULT_MAX_BYTES, Store
from agent.store.health import LOSS_REASONS, StoreHealth
from agent.store.queries import (
    StoreStats,
    export_readings,
    read_events,
    read_intervals,
    read_latest,
    read_meta,
    read_stats,
)
from agent.store.schema import MIGRATIONS, Migration, apply_migrations

__all__ = [
    "DEFAULT_INTEGRITY_EVERY",
    "DEFAULT_MAX_BYTES",
    "LOSS_REASONS",
    "MIGRATIONS",
    "Migration",
    "Store",
    "StoreEvent",
    "StoreHealth",
    "StoreStats",
    "apply_migrations",
    "export_readings",
    "read_events",
    "read_intervals",
    "read_latest",
    "read_meta",
    "read_stats",
]
