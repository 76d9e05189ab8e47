"""The ledger: what the store could not write into its database, kept next to it.

When the database refuses writes (a full disk, a file-size limit, a failing card), the readings
it loses cannot be counted in the database either, and a stop would lose them silently. The
ledger is a small file beside the database (``readings.db-ledger``), allocated in full when the
store opens, while the disk still has room: later writes overwrite its blocks in place, so they
need no new space on a full disk, and they stay far below any file-size limit. It holds the
losses not yet recorded in the database, by reason, and the store's health (the cause of the
failure, readings held in memory), so ``edge-agent status`` in another process tells the truth.

Layout: two slots of :data:`_SLOT` bytes; a write goes to the slot of its generation's parity
and carries a length and a CRC-32, so a write cut by a power loss leaves the other slot intact
(the newest valid slot wins). The generation also tells whether the database already holds a
ledger's losses: the writer records the generation it merged in meta (``ledger_gen``) in the
same transaction as the counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Ledger", "LedgerState", "ledger_path", "read_ledger"]

_SLOT = 2048
_HEADER = struct.Struct(">II")  # length of the JSON, its CRC-32
FILE_MODE = 0o640


def ledger_path(db_path: Path) -> Path:
    return Path(f"{db_path}-ledger")


@dataclass(frozen=True, slots=True)
class LedgerState:
    gen: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    """Losses by reason not yet in the database as of this generation."""
    held: int = 0
    error: dict[str, Any] | None = None
    """``cause``, ``cure``, ``since_ms`` while the store cannot write."""
    written_ms: int = 0
    pid: int = 0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "gen": self.gen,
                "lost": self.lost,
                "held": self.held,
                "error": self.error,
                "written_ms": self.written_ms,
                "pid": self.pid,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LedgerState:
        data = json.loads(raw)
        return cls(
            gen=int(data["gen"]),
            lost={str(k): int(v) for k, v in data.get("lost", {}).items() if int(v)},
            held=int(data.get("held", 0)),
            error=data.get("error"),
            written_ms=int(data.get("written_ms", 0)),
            pid=int(data.get("pid", 0)),
        )


def _parse_slot(raw: bytes) -> LedgerState | None:
    if len(raw) < _HEADER.size:
        return None
    length, crc = _HEADER.unpack_from(raw)
    body = raw[_HEADER.size : _HEADER.size + length]
    if length == 0 or len(body) != length or zlib.crc32(body) != crc:
        return None
    try:
        return LedgerState.from_json(body)
    except (ValueError, KeyError, TypeError):
        return None


def read_ledger(db_path: Path) -> LedgerState | None:
    """The newest valid state in the ledger beside ``db_path``; None when there is none."""
    try:
        raw = ledger_path(db_path).read_bytes()
    except OSError:
        return None
    states = [s for s in (_parse_slot(raw[:_SLOT]), _parse_slot(raw[_SLOT : 2 * _SLOT])) if s]
    return max(states, key=lambda s: s.gen) if states else None


class Ledger:
    """The writer thread's handle on the ledger file (opened by :meth:`open`, never raising)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = ledger_path(db_path)
        self._fd: int | None = None
        self.state = LedgerState()

    def open(self) -> LedgerState:
        """Open (and allocate) the file; returns the state it held (empty when none). Opening
        again reopens the file at the path (it may have been deleted with the database)."""
        self.close()
        self.state = read_ledger(self.db_path) or LedgerState()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError:
            return self.state
        try:
            os.fchmod(fd, FILE_MODE)  # umask-independent, as the database's own files
            if os.fstat(fd).st_size < 2 * _SLOT:
                # Real blocks now, while there is room: a later overwrite needs no new space.
                os.pwrite(fd, bytes(2 * _SLOT - os.fstat(fd).st_size), os.fstat(fd).st_size)
                os.fsync(fd)
        except OSError:
            os.close(fd)
            return self.state
        self._fd = fd
        return self.state

    def write(self, state: LedgerState) -> bool:
        """Write ``state`` (its generation picks the slot); False when the disk refused it."""
        self.state = state
        if self._fd is None:
            return False
        body = state.to_json()
        if _HEADER.size + len(body) > _SLOT:  # never expected: a few reasons and a sentence
            body = LedgerState(gen=state.gen, lost=state.lost, held=state.held).to_json()
        slot = _HEADER.pack(len(body), zlib.crc32(body)) + body
        try:
            os.pwrite(self._fd, slot.ljust(_SLOT, b"\0"), (state.gen % 2) * _SLOT)
            os.fdatasync(self._fd)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
