"""One writing process per store: an advisory lock on a file beside the database.

Two agents on one data directory — the service, and a technician's ``edge-agent run`` started
by hand to try a config, or ``edge-agent sync`` while the service still runs — would both poll
the same lines, publish under the same MQTT client id (the broker then drops each for the other,
over and over), count the same readings as sent or lost twice, and write HVAC setpoints against
each other. SQLite keeps the file consistent, not the store's accounting. So the store that
writes takes ``flock(2)`` on ``readings.db-lock`` for as long as it is open, and a second one
refuses with a sentence that names the holder's process id.

flock, not a pid file: the kernel drops the lock when the process ends, however it ends (a
power cut, SIGKILL, a crash), so a stale lock never keeps the service from starting again, and
a process id written by an earlier boot cannot be mistaken for a live one. Readers (``status``,
``export``, ``store check`` without ``--repair``) take no lock: they are safe beside the agent,
and ``status`` tells whether one runs from the kernel's list of locks (:func:`writer_pid`).

A file system without flock (ENOLCK, EOPNOTSUPP: some network mounts) leaves the store unguarded
with a warning: refusing to run there would lose every reading to protect against a mistake.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from agent.core.errors import StoreInUseError
from agent.store.ledger import FILE_MODE

__all__ = ["StoreLock", "lock_path", "writer_pid"]

log = logging.getLogger(__name__)

UNGUARDED = "unguarded"  # in the lock file: its writer runs without the flock

_HELD = (errno.EWOULDBLOCK, errno.EAGAIN)  # flock(2) with LOCK_NB: another process holds it


def lock_path(db_path: Path) -> Path:
    return Path(f"{db_path}-lock")


class StoreLock:
    """The exclusive lock of one store file, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self, *, instead: str = "give this one a --data-dir of its own") -> None:
        """Take the lock, or raise StoreInUseError naming the process that has it and what to
        do (stop it, or ``instead``)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # as the writer would
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            # The store's own open will say what is wrong with the directory, if anything.
            log.warning("store: cannot open %s (%s): running without the one-writer guard",
                        self.path, exc.strerror)  # fmt: skip
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _HELD:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise StoreInUseError(
                    f"the store {self.db_path} is in use by {who} (an agent, or `edge-agent "
                    "sync`, already runs on this data directory): stop it first (systemctl "
                    f"stop edge-agent), or {instead}"
                ) from None
            log.warning("store: %s cannot be locked (%s): running without the one-writer guard",
                        self.path, exc.strerror)  # fmt: skip
            # Said in the file, so that `status` answers "cannot tell" rather than "not running".
            self._hold(fd, f"{os.getpid()} {UNGUARDED}")
            return
        self._hold(fd, str(os.getpid()))

    def _hold(self, fd: int, text: str) -> None:
        """Who holds the store, for the sentences of :meth:`acquire` and :func:`writer_pid`; the
        lock itself is the flock, not this text."""
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
                os.fchmod(fd, FILE_MODE)  # umask-independent, as the database's own files
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{text}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # nobody holds it now
            os.close(fd)  # closing the last descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def writer_pid(db_path: Path) -> int | None:
    """The process that writes the store (holds its lock), as the kernel lists it in
    /proc/locks, read without taking any lock (a `status` must never stand in the agent's way):
    None when no process does; 0 when one does whose pid this process cannot see (another pid
    namespace). OSError when it cannot be told: no /proc/locks, or a live writer that runs
    without the lock."""
    try:
        st = os.stat(lock_path(db_path))
    except FileNotFoundError:
        return None
    # proc(5): "1: FLOCK  ADVISORY  WRITE 812 b3:02:131090 0 EOF" (pid, then the file's
    # device major:minor in hex and its inode); a waiter's line has "->" in the second field.
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks", encoding="ascii", errors="replace") as locks:
        for line in locks:
            fields = line.split()
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
                return int(fields[4]) if fields[4].isdigit() else 0
    # No lock: nobody writes, unless a writer runs without one (a file system without flock).
    text = lock_path(db_path).read_text(encoding="ascii", errors="replace").split()
    if len(text) == 2 and text[1] == UNGUARDED and text[0].isdigit():
        try:
            os.kill(int(text[0]), 0)  # alive (or a pid reused since: so, "cannot tell")
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        raise OSError(
            errno.ENOLCK,
            f"process {text[0]} writes it without a lock (no flock on this file system)",
        )
    return None
