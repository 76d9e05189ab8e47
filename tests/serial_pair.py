"""A serial cable for tests: two pseudo-terminals joined by socat.

    with serial_pair(tmp_path) as pair:
        agent_end, device_end = pair          # two paths, e.g. .../ttyA and .../ttyB
        ...
        await pair.astop()                    # the port vanishes, as an unplugged USB adapter
        await pair.astart()                   # and comes back on the same path

What one end writes, the other reads. The ends are symlinks that socat creates to the ptys it
allocates and removes when it exits, so stopping socat makes both paths disappear like the
device node of an unplugged USB adapter; starting again gives new ptys behind the same paths.
ptys ignore the baud rate: on them only the frame gap and the timeouts shape a line's timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import find_program

__all__ = ["SerialPair", "serial_pair"]

_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0


def _find_socat() -> str:
    return find_program("socat", debian_path="/usr/bin/socat")


class SerialPair:
    """One socat process joining the ptys behind the paths ``a`` and ``b``."""

    def __init__(self, folder: Path) -> None:
        self.binary = _find_socat()
        folder.mkdir(parents=True, exist_ok=True)
        self.a = folder / "ttyA"
        self.b = folder / "ttyB"
        self.log = folder / "socat.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __iter__(self) -> Iterator[str]:
        yield str(self.a)
        yield str(self.b)

    def __repr__(self) -> str:
        return f"SerialPair({self.a}, {self.b}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start socat and wait (bounded) until both paths lead to a pty."""
        if self.running:
            return
        for link in (self.a, self.b):
            link.unlink(missing_ok=True)  # a stale link from a killed socat
        with self.log.open("wb") as log_file:  # a fresh log: _transferring reads this run's
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.a}",
                    f"pty,raw,echo=0,link={self.b}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not (self.a.exists() and self.b.exists() and self._transferring()):
            if self._proc.poll() is not None:
                pytest.fail(f"socat exited at start ({self._proc.returncode}):\n{self._log()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"socat made no pty pair within {_START_TIMEOUT_S} s:\n{self._log()}")
            time.sleep(0.01)

    def _transferring(self) -> bool:
        # socat logs this once both ptys exist and it relays between them.
        return "starting data transfer loop" in self._log()

    def stop(self) -> None:
        """Terminate socat and wait until the paths are gone (the ports vanish)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=_STOP_TIMEOUT_S)
        for link in (self.a, self.b):
            link.unlink(missing_ok=True)  # socat removes them on SIGTERM, not when killed

    async def astart(self) -> None:
        """`start` off the event loop thread, for use inside a running test."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def _log(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def serial_pair(folder: Path) -> Iterator[SerialPair]:
    """A running pty pair under ``folder``; socat is stopped when the block ends."""
    pair = SerialPair(folder)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()
