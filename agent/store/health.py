"""Whether the store can write, why not, and what a technician does about it.

A commit can fail for reasons SQLite names in one word ("disk I/O error") that cover very
different faults on a gateway: a file-size limit (``ulimit -f``, systemd's ``LimitFSIZE=``:
EFBIG), an SD card the kernel remounted read-only after errors, a permission change, a full
disk. :func:`diagnose` looks at the file and the process to name the likely cause and its cure,
once per episode, so the log line and ``edge-agent status`` say something a technician can act
on. :class:`StoreHealth` is the snapshot the writer thread hands to the event loop (and writes to
the ledger, :mod:`agent.store.ledger`, for ``edge-agent status`` in another process).

The reasons a reading can be lost are named here, so the writer, the ledger, the queries and
the status command count them under the same words.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LOSS_REASONS", "StoreHealth", "diagnose", "is_corrupt", "read_only_mount"]

# Why readings never reach the broker, each counted under its name (``lost:<reason>`` in meta,
# except the two the store counted before these names existed: see queries.StoreStats).
HOLD_FULL = "hold_full"  # the in-memory hold overflowed while the store could not write
NOT_WRITTEN_AT_STOP = "not_written_at_stop"  # held in memory when the agent stopped
FILE_DELETED = "file_deleted"  # unsent readings in a database file deleted under the agent
FILE_REPLACED = "file_replaced"  # the same, for a file replaced by another one
DAMAGED = "damaged"  # unsent readings that could not be read back from a damaged file
EVICTED_UNSENT = "evicted_unsent"  # deleted to stay within the budget or a full disk
EVENTS_HOLD_FULL = "events_hold_full"  # alert/audit events: the in-memory hold overflowed

LOSS_REASONS = (
    HOLD_FULL,
    NOT_WRITTEN_AT_STOP,
    FILE_DELETED,
    FILE_REPLACED,
    DAMAGED,
    EVICTED_UNSENT,
)
"""Every reason a reading is counted as lost, in the order ``status`` prints them."""

_ST_RDONLY = getattr(os, "ST_RDONLY", 1)


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """The store's ability to write, as the writer thread last saw it."""

    writable: bool = True
    """False from the first failed commit until one succeeds again."""
    cause: str | None = None
    """What stops the writes, in a sentence (None while writable)."""
    cure: str | None = None
    """What a technician can do about it."""
    since_ms: int | None = None
    """When the writes started failing (wall clock, ms)."""
    held: int = 0
    """Readings held in memory, waiting for the store to write again."""
    lost: dict[str, int] = field(default_factory=dict)
    """Losses by reason not yet recorded in the database (it could not be written)."""


def is_corrupt(exc: BaseException) -> bool:
    """Whether SQLite says the file itself is damaged (not merely unwritable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def read_only_mount(path: Path) -> bool:
    """Whether the filesystem holding ``path`` is mounted read-only."""
    with contextlib.suppress(OSError):
        return bool(os.statvfs(path.parent).f_flag & _ST_RDONLY)
    return False


def _store_bytes(path: Path) -> int:
    largest = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            largest = max(largest, Path(f"{path}{suffix}").stat().st_size)
    return largest


def diagnose(path: Path, exc: BaseException) -> tuple[str, str]:
    """The likely cause of a failed write to the store at ``path``, and its cure."""
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    if code & 0xFF == sqlite3.SQLITE_FULL:
        return (
            f"the disk holding {path} is full and nothing more can be evicted",
            "free space on that disk (or lower store.max_bytes)",
        )
    if read_only_mount(path):
        return (
            f"the filesystem holding {path} is mounted read-only (an SD card the kernel "
            "remounted read-only after I/O errors, or a read-only mount)",
            "check the card (dmesg, fsck) and remount it read-write, or replace it",
        )
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and _store_bytes(path) + 64 * 1024 >= soft:
        return (
            f"the process's file-size limit ({soft} bytes: ulimit -f, or LimitFSIZE= in the "
            f"unit) stops {path} from growing (EFBIG)",
            "raise or remove the limit (LimitFSIZE=infinity), or set store.max_bytes below it",
        )
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return (
            f"{path} or its directory is not writable by this user",
            f"give the service's user write access to {path.parent} (chown/chmod)",
        )
    if code & 0xFF == sqlite3.SQLITE_READONLY:
        return (
            f"SQLite opened {path} read-only ({exc})",
            "check the file's owner and mode and the mount; restart the agent once fixed",
        )
    return (
        f"SQLite cannot write {path}: {exc}",
        "check the disk (dmesg for I/O errors, fsck, free space); the store retries",
    )
