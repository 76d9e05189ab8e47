"""A simulated RS-485 bus made of pseudo-terminals, in-process: one end for the agent (its "USB
adapter"), one end per simulated device, and what any end sends reaches the others, as on a
real two-wire bus where every device hears every frame and only the addressed one answers.

    async with Rs485Bus(devices=2) as bus:
        bus.agent_port          # e.g. /dev/pts/7: the agent opens it as its serial port
        bus.device_ports[0]     # a simulated line (DL/T 645 meters) opens this one
        bus.device_ports[1]     # and another simulator (a CJ/T 188 meter) this one

This lets devices of different protocols, simulated by separate programs, share one line (as on
retrofits) without socat: the demo uses it, so it runs on a machine with nothing but Python.
Each end is a pty whose master this class holds; bytes read from one master are written to every
other master. ptys ignore the baud rate: only the agent's timeouts and frame gap shape timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from types import TracebackType
from typing import Self

__all__ = ["PtyEnd", "Rs485Bus"]

_CHUNK = 4096


class PtyEnd:
    """One pty: the master (held by its maker) and the slave's path (handed to a program)."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        # No echo, no line editing, no CR/LF or flow-control translation, so bytes pass as they
        # are even before a program opens the end (it then sets its own serial settings).
        # (tty.setraw would also do, but leaves settings pyserial cannot apply: EINVAL.)
        attrs = termios.tcgetattr(self._slave)
        attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON)
        attrs[1] &= ~termios.OPOST
        attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class Rs485Bus:
    """``devices`` device ends and one agent end, bridged (see the module docstring)."""

    def __init__(self, *, devices: int) -> None:
        if devices < 1:
            raise ValueError("a bus needs at least one device end")
        self._count = devices
        self._ends: list[PtyEnd] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.frames_relayed = 0

    @property
    def agent_port(self) -> str:
        return self._ends[0].path

    @property
    def device_ports(self) -> list[str]:
        return [end.path for end in self._ends[1:]]

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        try:
            self._ends = [PtyEnd() for _ in range(self._count + 1)]
        except OSError:
            self._close()
            raise
        for end in self._ends:
            self._loop.add_reader(end.master, self._relay, end)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        ends, self._ends = self._ends, []
        for end in ends:
            if self._loop is not None:
                self._loop.remove_reader(end.master)
            end.close()

    def _relay(self, source: PtyEnd) -> None:
        try:
            data = os.read(source.master, _CHUNK)
        except OSError:
            return  # nobody has the slave open (yet): EIO on Linux; nothing to relay
        if not data:
            return
        self.frames_relayed += 1
        for end in self._ends:
            if end is not source:
                with contextlib.suppress(BlockingIOError, OSError):
                    # A device end nobody has opened drops the bytes, as an unpowered device.
                    os.write(end.master, data)
