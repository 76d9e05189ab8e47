"""Byte-level access to a serial line for the protocols that frame their own bytes (DL/T 645,
CJ/T 188): a non-blocking port read through the event loop, and a line client that takes turns
on its link.

`SerialPort` opens the port with pyserial in non-blocking mode and waits for input with the
loop's ``add_reader``, so no thread is blocked and a cancel ends a wait at once. The reader is
registered only while a read waits: readiness is level-triggered, so input nobody asked for (a
slow meter's late reply) or a hung-up port would otherwise wake the loop on every iteration
until the next transaction. A port whose device node vanishes (USB adapter unplugged, a pty
whose other end closed) reads as end of file: that is reported as `OSError`, and the client
opens the port again on a later turn once the path is back.

`LineClient` is one protocol's client on one serial link: on each turn it opens the port with the
settings the device asks for (a DL/T 645 meter at 2400 8E1 on a line whose Modbus devices run at
9600 8N1 gets the port reopened at its own settings, a millisecond's work), writes the request,
and feeds the reply to the protocol's decoder until the decoder says the frame is complete or the
link's timeout passes. When another protocol's client takes the line, the link asks this one to
release the port first.
"""

from __future__ import annotations

import asyncio
import logging
import termios
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import serial

from agent.core.errors import DeviceUnavailableError
from agent.core.links import Link, SerialLinkConfig

__all__ = ["LINE_CLIENT", "LineClient", "SerialPort", "SerialSettings"]

# The key under which a link shares its one byte-protocol client: DL/T 645 and CJ/T 188 meters
# on a line take turns on the same open port, which is reopened only when a device asks for
# other settings or another protocol's client (Modbus) had the line.
LINE_CLIENT = "line"

log = logging.getLogger(__name__)

T = TypeVar("T")

_PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_READ_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """How a port is opened: the line's settings, or a device's own."""

    baudrate: int
    parity: Literal["N", "E", "O"]
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @classmethod
    def of_line(cls, config: SerialLinkConfig) -> SerialSettings:
        return cls(config.baudrate, config.parity, config.stopbits, config.bytesize)

    @classmethod
    def for_device(
        cls,
        line: SerialLinkConfig,
        *,
        baudrate: int | None,
        parity: Literal["N", "E", "O"] | None,
        default_baudrate: int,
        default_parity: Literal["N", "E", "O"],
    ) -> SerialSettings:
        """A device's settings: its own, else what the line's config says explicitly, else its
        protocol's usual ones (a line left at Modbus's 9600 8N1 default is not taken to mean
        that a DL/T 645 meter on it runs at 9600 8N1)."""
        given = line.model_fields_set
        return cls(
            baudrate or (line.baudrate if "baudrate" in given else default_baudrate),
            parity or (line.parity if "parity" in given else default_parity),
            line.stopbits,
            line.bytesize,
        )

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class SerialPort:
    """One open serial port, read and written without blocking the loop."""

    def __init__(self, path: str, settings: SerialSettings) -> None:
        self.path = path
        self.settings = settings
        self._serial: serial.Serial | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        """Open the port (OSError / serial.SerialException when it cannot be)."""
        if self._serial is not None:
            return
        s = self.settings
        try:
            port = serial.serial_for_url(
                self.path,
                baudrate=s.baudrate,
                parity=_PARITIES[s.parity],
                stopbits=s.stopbits,
                bytesize=s.bytesize,
                timeout=0,  # non-blocking reads: the loop tells us when input is there
                write_timeout=1.0,
            )
        except termios.error as exc:  # not an OSError: settings the driver refuses
            raise OSError(f"cannot apply {s.describe()} to {self.path}: {exc}") from exc
        self._serial = port

    def close(self) -> None:
        """Close the port. Idempotent."""
        port, self._serial = self._serial, None
        if port is not None:
            port.close()

    def discard_input(self) -> None:
        """Throw away whatever arrived so far (a late reply to an abandoned request)."""
        port = self._require()
        try:
            while port.read(_READ_CHUNK):
                pass
        except (OSError, serial.SerialException):
            pass

    async def write(self, data: bytes) -> None:
        port = self._require()
        try:
            port.write(data)
            # Small frames: the kernel takes them at once; flush waits for the UART to drain.
            await asyncio.to_thread(port.flush)
        except (serial.SerialException, termios.error) as exc:
            # pyserial's flush is a bare tcdrain: a port that hangs up between the write and
            # the drain raises termios.error, which is no OSError.
            raise OSError(f"writing to {self.path} failed: {exc}") from exc

    async def read_some(self) -> bytes:
        """Wait for input and return what is there (at least one byte); OSError at end of file
        (the device node is gone)."""
        port = self._require()
        while True:
            try:
                # Non-blocking: b"" when nothing is there yet. pyserial itself raises when the
                # port is readable but gives nothing (end of file: the other end is gone).
                data = port.read(_READ_CHUNK)
            except serial.SerialException as exc:
                raise OSError(f"reading {self.path} failed: {exc}") from exc
            if data:
                return bytes(data)
            await _readable(port)

    def _require(self) -> serial.Serial:
        if self._serial is None:
            raise OSError(f"serial port {self.path} is not open")
        return self._serial


async def _readable(port: serial.Serial) -> None:
    """Wait until ``port`` has input or has hung up (the next read tells which)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = port.fileno()
    loop.add_reader(fd, _resolve, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class LineClient:
    """One byte protocol's client on one serial link (see the module docstring)."""

    def __init__(self, link: Link, *, protocol: str) -> None:
        if not isinstance(link.config, SerialLinkConfig):
            raise ValueError(  # noqa: TRY004 - a config mistake, reported as one
                f"{protocol} needs a serial line; bus {link.name!r} is not one"
            )
        self.link = link
        self.line: SerialLinkConfig = link.config
        self.protocol = protocol
        self._port: SerialPort | None = None
        self._down = False
        self.requests = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def port_settings(self) -> SerialSettings | None:
        """The settings the port is open at (None while it is closed): a device with its own
        baud rate or parity has the port reopened at them on its turn."""
        return self._port.settings if self._port is not None else None

    async def release(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    async def aclose(self) -> None:
        await self.release()

    async def transact(
        self,
        device: str,
        request: bytes,
        complete: Callable[[bytes], T | None],
        *,
        settings: SerialSettings | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the device's own, else the line's
    ) -> T:
        """Send ``request`` and feed the reply bytes to ``complete`` until it returns a result
        (the frame the request asked for); DeviceUnavailableError when nothing complete comes
        within the timeout or the port is not there. ``complete`` sees all bytes received so
        far in this transaction and must ignore what it cannot use (noise, a late reply)."""
        wanted = settings or SerialSettings.of_line(self.line)
        wait = timeout if timeout is not None else self.line.timeout
        async with self.link.turn(self):
            port = self._open(device, wanted)
            port.discard_input()
            self.requests += 1
            try:
                await port.write(request)
                self.bytes_sent += len(request)
                received = bytearray()
                async with asyncio.timeout(wait):
                    while True:
                        chunk = await port.read_some()
                        received += chunk
                        self.bytes_received += len(chunk)
                        result = complete(bytes(received))
                        if result is not None:
                            self._came_back()
                            return result
            except TimeoutError:
                raise DeviceUnavailableError(
                    device, f"no complete answer within {wait:g} s"
                ) from None
            except OSError as exc:
                await self.release()
                self._went_down(str(exc))
                raise DeviceUnavailableError(device, str(exc)) from exc

    def _open(self, device: str, settings: SerialSettings) -> SerialPort:
        port = self._port
        if port is not None and port.settings != settings:
            port.close()  # the device runs at other settings than the last one asked for
            port = self._port = None
        if port is not None:
            return port
        if missing := self.link.port_missing():
            self._went_down(missing)
            raise DeviceUnavailableError(device, missing)
        port = SerialPort(self.line.port, settings)
        try:
            port.open()
        except (OSError, serial.SerialException) as exc:
            reason = f"cannot open serial port {self.line.port}: {exc}"
            self._went_down(reason)
            raise DeviceUnavailableError(device, reason) from exc
        self._port = port
        return port

    def _went_down(self, reason: str) -> None:
        if not self._down:
            log.warning("bus %s (%s) is unavailable: %s", self.link.name, self.protocol, reason)
        self._down = True

    def _came_back(self) -> None:
        if self._down:
            log.warning("bus %s (%s): %s is back", self.link.name, self.protocol, self.line.port)
        self._down = False
