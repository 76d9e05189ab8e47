"""Readings stamped before the wall clock is trusted, and their correction.

A Raspberry Pi has no real-time clock: after a cold boot its wall clock says 1970 (or the time
of the last shutdown) until NTP synchronises it. A reading taken then is stored with the wall
time it was given and a flag (bit :data:`UNTRUSTED` of the ``quality`` column, ``"clock":
"untrusted"`` in its record), and the store remembers, per run of seqs, the boot and the offset
between that wall clock and the monotonic clock (``clock_ranges``, migration 0004). The monotonic
clock is never stepped, so a reading's monotonic time is its wall time minus that offset. When
the clock is trusted (the decision is the caller's: ``Store(clock_trusted=...)``), every range
of the same boot is shifted by the difference between the new offset and its own, which gives
each reading its true time, and the flag is cleared; the readings go out again (same seq, true
time). A range of another boot cannot be corrected (the monotonic clock restarted): its readings
keep the flag, counted as ``clock_uncorrected``, so nothing downstream takes them for real.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.core.record import Reading
from agent.store.schema import _FLOOR, _UNSYNCED, _bump, _floor, _set_meta

__all__ = ["TRUST_SOURCES", "UNTRUSTED", "UntrustedReading", "boot_id", "correct_clock", "trust"]

UNTRUSTED = 0x10
"""The bit of the ``quality`` column set on a reading stamped by an untrusted clock."""
UNCORRECTED = "clock_uncorrected"  # meta counter

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


# systemd-timesyncd creates this once it has synchronised the clock (systemd-timesyncd.service(8));
# /run is a tmpfs, so it never outlives a boot.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
_STA_UNSYNC = 0x0040  # adjtimex(2): the kernel's clock is not synchronised


def _timesyncd() -> bool:
    return TIMESYNC_FLAG.exists()


def _kernel() -> bool:
    """Whether the kernel says its clock is synchronised (adjtimex(2) status without
    STA_UNSYNC): set by whichever NTP client runs (timesyncd, chrony, ntpd)."""
    import ctypes.util  # only for `clock_trust: kernel`

    path = ctypes.util.find_library("c")
    if path is None:
        return False
    buf = ctypes.create_string_buffer(512)  # struct timex, with room to spare on any ABI
    if ctypes.CDLL(path, use_errno=True).adjtimex(buf) < 0:
        return False
    # modes (int, padded to a long), then offset, freq, maxerror, esterror (longs), status
    status = ctypes.c_int.from_buffer(buf, 5 * ctypes.sizeof(ctypes.c_long)).value
    return not status & _STA_UNSYNC


TRUST_SOURCES: dict[str, Callable[[], bool] | None] = {
    "always": None,
    "timesyncd": _timesyncd,
    "kernel": _kernel,
}
"""What says the wall clock can be trusted (``store.clock_trust``): ``always`` (a gateway with a
real-time clock, or none of this), systemd-timesyncd's flag, or the kernel's NTP status."""


def trust(source: str) -> Callable[[], bool] | None:
    """The trust decision named in the config (None: always trusted)."""
    return TRUST_SOURCES[source]


def boot_id() -> str:
    """This boot's id (proc(5): a random UUID made by the kernel at each boot)."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class UntrustedReading(Reading):
    """A reading stamped while the clock was not trusted, with what corrects it later."""

    boot: str = ""
    offset_ms: int = 0
    """Its wall clock minus the monotonic clock when it was handed to the store."""


def record_ranges(conn: sqlite3.Connection, first_seq: int, batch: list[Reading]) -> None:
    """Inside the caller's transaction: the runs of untrusted readings of a batch whose seqs
    are ``first_seq``, ``first_seq + 1``, ..."""
    run: tuple[int, int, str, int] | None = None
    rows: list[tuple[int, int, str, int]] = []
    for i, reading in enumerate(batch):
        seq = first_seq + i
        if not isinstance(reading, UntrustedReading):
            continue
        if run is not None and run[1] == seq - 1 and run[2:] == (reading.boot, reading.offset_ms):
            run = (run[0], seq, run[2], run[3])
            continue
        if run is not None:
            rows.append(run)
        run = (seq, seq, reading.boot, reading.offset_ms)
    if run is not None:
        rows.append(run)
    conn.executemany(
        "INSERT INTO clock_ranges (first_seq, last_seq, boot_id, offset_ms) VALUES (?, ?, ?, ?)",
        rows,
    )


@dataclass(frozen=True, slots=True)
class Correction:
    corrected: int
    """Readings given their true time."""
    shifts_ms: list[int]
    uncorrectable: int
    """Readings of another boot: they keep the flag."""


def correct_clock(conn: sqlite3.Connection, boot: str, offset_ms: int) -> Correction:
    """Inside the caller's transaction: correct every range of ``boot`` with the trusted
    ``offset_ms`` (wall minus monotonic now); count those of other boots as uncorrectable."""
    corrected, uncorrectable, shifts = 0, 0, []
    ranges = conn.execute(
        "SELECT first_seq, last_seq, boot_id, offset_ms FROM clock_ranges ORDER BY first_seq"
    ).fetchall()
    floor = _floor(conn)
    for first, last, their_boot, their_offset in ranges:
        if their_boot != boot:
            (count,) = conn.execute(
                "SELECT count(*) FROM readings WHERE seq BETWEEN ? AND ?", (first, last)
            ).fetchone()
            uncorrectable += count
            continue
        shift = offset_ms - their_offset
        (resend,) = conn.execute(
            "SELECT count(*) FROM readings WHERE seq BETWEEN ? AND ? AND synced = 1",
            (first, last),
        ).fetchone()
        corrected += conn.execute(
            "UPDATE readings SET ts_ms = ts_ms + ?, quality = quality & ?, synced = 0"
            " WHERE seq BETWEEN ? AND ?",
            (shift, ~UNTRUSTED, first, last),
        ).rowcount
        # Readings already sent with the flag go out again, with their true time.
        if resend:
            _bump(conn, _UNSYNCED, resend)
            floor = min(floor, first)
        shifts.append(shift)
    conn.execute("DELETE FROM clock_ranges")
    _bump(conn, UNCORRECTED, uncorrectable)
    _set_meta(conn, _FLOOR, str(floor))
    return Correction(corrected=corrected, shifts_ms=shifts, uncorrectable=uncorrectable)
