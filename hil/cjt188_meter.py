"""Simulated CJ/T 188 meters (water, heat, gas) answering on a serial port: one RS-485 line.

In tests the port is one end of a socat pty pair (tests/serial_pair.py); the agent opens the other
end as if it were its USB RS-485 (or M-Bus) adapter.

    meters = [SimulatedCjt188Meter("78330007061326", values={"volume": 68.0})]
    async with SimulatedCjt188Line(port, meters=meters) as line:
        line.meter("78330007061326").silent = True        # the meter falls silent

This module deliberately does not import the driver (`drivers.cjt188`): it has its own small
frame encoder and decoder, written from the protocol as published, so a bug in the driver's
codec shows up as a disagreement instead of being mirrored. What the simulated meters do:

- Frames: ``FE x n 68 T A0..A6 C L DATA CS 16``, address low byte first, CS the sum mod 256
  from 68 to the last data byte, no +33H scrambling (hftangyu.com/563.html; the transcription
  of CJ/T 188-2004 at cnblogs.com/cj94/p/18534595; `aixiwang/python_cjt188`).
- Read data (C 01, DI 901F) is answered with C 81 and the water/gas (L 16H) or heat (L 2EH)
  layout, chosen by the meter type: 20H-29H heat, anything else in 10H-19H or 30H-39H
  water/gas (layouts per hftangyu.com/563.html, `ioBroker.sanext` main.js and cj188.h in
  `xijunzhou/sdqr_energy_node_class-20180705`). Values are BCD, low byte first, followed by a
  unit code where the layout has one.
- DI byte order: each meter knows one ("standard" ``90 1F`` or "swapped" ``1F 90``). A read in
  the other order is not the DI it knows. No source says what a real meter does then; the
  simulated one stays silent by default (``di_mismatch="silent"``: the driver must cope with
  a timeout, the slow case) and can answer abnormal instead (``di_mismatch="abnormal"``).
- Read address (C 03, DI 810A) is answered with C 83, the meter's own type and address in the
  header and the request's DI and SER as data (captures at cnblogs.com/cj94/p/18534598). Sent
  to the wildcard address AA x 7 it is answered only when the line has a single meter: "the
  broadcast address is only for point-to-point links" (transcription); with several meters
  the line stays silent rather than pretend a collision can be read.
- Only the addressed meter answers; a request with the wildcard type AA or a type in the
  meter's class (10H-19H, 20H-29H, 30H-39H) is for it, since real heat meters answer as 25H
  to whatever heat code they are asked with.
- Abnormal reply: C with D6 set (C1 for a read), L 03, data SER + ST ST (transcription; the
  KingDa firmware's error struct, `CaiYongCode/KingDa-NBWaterMeterCode-BC95`).
- Status ST byte 1: valve 00 open / 40 closed / C0 abnormal, battery low 20 (cj188.h).

Faults, per meter, changeable while the line runs: ``silent`` (no answer at all),
``bad_checksum`` (CS off by one), ``non_bcd`` (a nibble above 9 in the first value, CS still
right), ``abnormal`` (an abnormal reply to every read), ``slow_s`` (answer after N seconds),
``noise`` (bytes sent before the preamble), ``preamble`` (how many FE lead the reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from types import TracebackType
from typing import Final, Literal, Self

import serial

__all__ = ["SimulatedCjt188Line", "SimulatedCjt188Meter"]

log = logging.getLogger(__name__)

# A pause that ends a half-received frame: less than the master's gap between frames (3.5
# characters, 16 ms at 2400 bit/s), more than a pty ever leaves between the bytes of one write.
INTER_BYTE_TIMEOUT_S = 0.01
CLOSE_TIMEOUT_S: Final = 2.0

_START: Final = 0x68
_END: Final = 0x16
_FE: Final = 0xFE
_WILDCARD: Final = b"\xaa" * 7
_WILDCARD_TYPE: Final = 0xAA
_READ_DATA: Final = 0x01
_READ_ADDRESS: Final = 0x03
_REPLY: Final = 0x80
_ABNORMAL: Final = 0x40
_MAX_LENGTH: Final = 0x64  # "L <= 64H when reading" (transcription, cnblogs cj94)
_DI_901F: Final = {"standard": b"\x90\x1f", "swapped": b"\x1f\x90"}

# The unit code each quantity is sent in unless a meter says otherwise, and how many of that
# unit make one of the canonical unit (m3, kWh, W, m3/h). Codes as in real frames and the
# KingDa firmware's unit table: 2C m3, 29 L, 05 kWh, 08 MWh, 11 GJ, 02 Wh, 17 kW, 14 W,
# 35 m3/h, 32 L/h.
_DEFAULT_UNIT: Final = {"volume": 0x2C, "energy": 0x05, "power": 0x17, "flow": 0x35}
_PER_CANONICAL: Final[dict[int, tuple[str, Decimal]]] = {
    0x2C: ("volume", Decimal(1)),
    0x29: ("volume", Decimal(1000)),
    0x05: ("energy", Decimal(1)),
    0x02: ("energy", Decimal(1000)),
    0x08: ("energy", Decimal("0.001")),
    0x11: ("energy", Decimal("0.0036")),  # 1 kWh = 3.6 MJ
    0x17: ("power", Decimal("0.001")),
    0x14: ("power", Decimal(1)),
    0x35: ("flow", Decimal(1)),
    0x32: ("flow", Decimal(1000)),
}

# ST byte 1 (cj188.h).
_VALVE_CLOSED: Final = 0x40
_VALVE_ABNORMAL: Final = 0xC0
_BATTERY_LOW: Final = 0x20

Values = Mapping[str, float]


def _bcd(value: int, size: int) -> bytes:
    digits = f"{value:0{2 * size}d}"
    if len(digits) > 2 * size:
        raise ValueError(f"{value} does not fit {size} BCD bytes")
    return bytes(int(digits[i : i + 2], 16) for i in range(0, 2 * size, 2))[::-1]


def _address_bytes(address: str) -> bytes:
    if len(address) != 14 or not address.isdigit():
        raise ValueError(f"a CJ/T 188 address is 14 digits, not {address!r}")
    return bytes(int(address[i : i + 2], 16) for i in range(0, 14, 2))[::-1]


def _frame(meter_type: int, address: bytes, control: int, data: bytes) -> bytearray:
    """68 ... CS 16, without preamble."""
    head = bytearray([_START, meter_type, *address, control, len(data)]) + data
    return head + bytes([sum(head) & 0xFF, _END])


@dataclass(eq=False)
class SimulatedCjt188Meter:
    """One meter on the line. Values, units and faults may be changed while the line runs;
    address and meter type are fixed.

    ``values`` (or a callable returning them, called per read) holds points in the canonical
    units: water/gas ``volume``, ``volume_settlement`` (m3); heat ``heat_energy_settlement``,
    ``heat_energy`` (kWh), ``power`` (W), ``flow_rate`` (m3/h), ``volume`` (m3),
    ``flow_temperature``, ``return_temperature`` (degC), ``operating_hours`` (h); and the 0/1
    flags ``status_valve_closed``, ``status_valve_abnormal``, ``status_battery_low``. A missing
    value is sent as 0. ``unit_codes`` picks another unit code per point (e.g. heat in MWh).
    """

    address: str
    meter_type: int = 0x10
    di_order: Literal["standard", "swapped"] = "standard"
    values: Values | Callable[[], Values] = field(default_factory=dict)
    unit_codes: Mapping[str, int] = field(default_factory=dict)
    power_decimals: int = 2
    flow_rate_decimals: int = 4
    meter_clock: tuple[int, int, int, int, int, int] | None = None  # Y, M, D, h, m, s
    status_vendor: int = 0
    di_mismatch: Literal["silent", "abnormal"] = "silent"
    preamble: int = 2
    # faults
    silent: bool = False
    bad_checksum: bool = False
    non_bcd: bool = False
    abnormal: bool = False
    slow_s: float = 0.0
    noise: bytes = b""

    def __post_init__(self) -> None:
        self.address_bytes = _address_bytes(self.address)
        if self.di_order not in _DI_901F:
            raise ValueError(f"di_order is standard or swapped, not {self.di_order!r}")
        if not 0x10 <= self.meter_type <= 0x39:
            raise ValueError(
                f"simulated meters are water, heat or gas (10H-39H), not {self.meter_type:#x}"
            )

    @property
    def is_heat(self) -> bool:
        return 0x20 <= self.meter_type <= 0x29

    def current_values(self) -> Values:
        return self.values() if callable(self.values) else self.values

    def accepts_type(self, requested: int) -> bool:
        return requested in (_WILDCARD_TYPE, self.meter_type) or (
            requested >> 4 == self.meter_type >> 4 and 1 <= requested >> 4 <= 3
        )

    def _fields(self) -> list[tuple[str, int, int, str | None]]:
        # (point, BCD bytes, decimals, quantity of its unit code or None for a fixed unit)
        if not self.is_heat:
            return [("volume", 4, 2, "volume"), ("volume_settlement", 4, 2, "volume")]
        return [
            ("heat_energy_settlement", 4, 2, "energy"),
            ("heat_energy", 4, 2, "energy"),
            ("power", 4, self.power_decimals, "power"),
            ("flow_rate", 4, self.flow_rate_decimals, "flow"),
            ("volume", 4, 2, "volume"),
            ("flow_temperature", 3, 2, None),
            ("return_temperature", 3, 2, None),
            ("operating_hours", 3, 0, None),
        ]

    def status(self, values: Values) -> bytes:
        first = 0
        if values.get("status_valve_abnormal"):
            first = _VALVE_ABNORMAL
        elif values.get("status_valve_closed"):
            first = _VALVE_CLOSED
        if values.get("status_battery_low"):
            first |= _BATTERY_LOW
        return bytes([first, self.status_vendor & 0xFF])

    def body_901f(self, values: Values) -> bytes:
        """The 901F reply after DI and SER."""
        body = bytearray()
        for point, size, decimals, quantity in self._fields():
            number = Decimal(repr(float(values.get(point, 0))))
            code = None
            if quantity is not None:
                code = self.unit_codes.get(point, _DEFAULT_UNIT[quantity])
                code_quantity, per = _PER_CANONICAL[code]
                if code_quantity != quantity:
                    raise ValueError(f"unit code 0x{code:02X} is not a {quantity} unit")
                number *= per
            raw = (number.scaleb(decimals)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
            body += _bcd(int(raw), size)
            if code is not None:
                body.append(code)
        if self.meter_clock is None:
            body += bytes(7)
        else:
            year, month, day, hour, minute, second = self.meter_clock
            parts = (second, minute, hour, day, month, year % 100, year // 100)
            body += b"".join(_bcd(p, 1) for p in parts)
        body += self.status(values)
        return bytes(body)


@dataclass(frozen=True)
class _Request:
    meter_type: int
    address: bytes
    control: int
    data: bytes
    raw: bytes


class _RequestReader:
    """The line side of the link: request frames out of the bytes the master sends."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        """Forget a partial frame (a silence on the line ended it)."""
        self._buf.clear()

    def feed(self, chunk: bytes) -> list[_Request]:
        self._buf += chunk
        found: list[_Request] = []
        buf = self._buf
        while True:
            start = buf.find(_START)
            if start < 0:
                buf.clear()
                return found
            del buf[:start]
            if len(buf) < 11:
                return found
            if buf[10] > _MAX_LENGTH:  # a 68 in line noise, not a request: do not wait for it
                del buf[:1]
                continue
            size = 13 + buf[10]
            if len(buf) < size:
                return found
            frame = bytes(buf[:size])
            if frame[-1] != _END or sum(frame[:-2]) & 0xFF != frame[-2]:
                del buf[:1]  # not a frame after all: look for the next 68
                continue
            del buf[:size]
            found.append(_Request(frame[1], frame[2:9], frame[9], frame[11:-2], frame))


class SimulatedCjt188Line:
    """CJ/T 188 meters answering on one serial port.

    An async context manager, entered once. The constructor does no I/O; entering opens the
    port (non-blocking) and returns once requests are being read; leaving (or `aclose`,
    idempotent) stops answering and closes the port. Replies go out one at a time, in the
    order the requests came, as on a half-duplex bus. ``requests`` records every well-formed
    frame received, as bytes from 68 to 16.
    """

    def __init__(
        self,
        port: str | os.PathLike[str],
        *,
        meters: Sequence[SimulatedCjt188Meter],
        baudrate: int = 2400,
        parity: Literal["N", "E", "O"] = "E",
    ) -> None:
        self.port = os.fspath(port)
        addresses = [m.address for m in meters]
        if duplicates := sorted({a for a in addresses if addresses.count(a) > 1}):
            raise ValueError(f"meters share address {', '.join(duplicates)}")
        self._meters = list(meters)
        self.baudrate = baudrate
        self.parity = parity
        self.requests: list[bytes] = []
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._reader = _RequestReader()
        self._last_rx = -float("inf")
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._entered = False
        self._closed = False

    @property
    def meters(self) -> tuple[SimulatedCjt188Meter, ...]:
        return tuple(self._meters)

    def meter(self, address: str) -> SimulatedCjt188Meter:
        for m in self._meters:
            if m.address == address:
                return m
        known = ", ".join(m.address for m in self._meters)
        raise KeyError(f"no meter {address} on this line; it has {known}")

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a SimulatedCjt188Line can be entered only once")
        self._entered = True
        port = await asyncio.to_thread(self._open)
        self._serial = port
        self._fd = port.fileno()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._on_readable)
        self._task = asyncio.create_task(self._serve(), name=f"hil[cjt188:{self.port}].serve")
        addresses = [m.address for m in self._meters]
        log.info("simulated CJ/T 188 line on %s: meters %s", self.port, addresses)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open(self) -> serial.Serial:
        # timeout=0: pyserial opens the port O_NONBLOCK; the event loop does the waiting.
        return serial.Serial(
            self.port,
            baudrate=self.baudrate,
            bytesize=serial.EIGHTBITS,
            parity=self.parity,
            stopbits=serial.STOPBITS_ONE,
            timeout=0,
            write_timeout=0,
        )

    async def aclose(self) -> None:
        """Stop answering and close the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await task
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(OSError):
                port.close()

    def _stop_reading(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(RuntimeError):  # the loop may be closing
                asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = -1

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the other end of the pty went away
            log.info("simulated CJ/T 188 line %s: port gone (%s)", self.port, exc)
            self._stop_reading()
            return
        if not chunk:
            self._stop_reading()
            return
        # As a real meter's UART does: a silence on the line ends whatever was being received,
        # so bytes of another protocol's frame (a shared line) never swallow the next request.
        now = asyncio.get_running_loop().time()
        if now - self._last_rx > INTER_BYTE_TIMEOUT_S:
            self._reader.reset()
        self._last_rx = now
        for request in self._reader.feed(chunk):
            self.requests.append(request.raw)
            self._queue.put_nowait(request)

    async def _serve(self) -> None:
        while True:
            request = await self._queue.get()
            for meter, reply in self._answers(request):
                if meter.slow_s > 0:
                    await asyncio.sleep(meter.slow_s)
                await self._write(meter.noise + bytes([_FE]) * meter.preamble + reply)

    def _addressed(self, request: _Request) -> list[SimulatedCjt188Meter]:
        if request.address == _WILDCARD:
            # Every meter answers the wildcard, so only a lone meter can be read with it.
            return self._meters[:] if len(self._meters) == 1 else []
        return [m for m in self._meters if m.address_bytes == request.address]

    def _answers(self, request: _Request) -> list[tuple[SimulatedCjt188Meter, bytes]]:
        answers: list[tuple[SimulatedCjt188Meter, bytes]] = []
        for meter in self._addressed(request):
            if meter.silent or not meter.accepts_type(request.meter_type):
                continue
            reply = self._reply(meter, request)
            if reply is not None:
                answers.append((meter, reply))
        return answers

    def _reply(self, meter: SimulatedCjt188Meter, request: _Request) -> bytes | None:
        if len(request.data) < 3:
            return None
        di, ser = request.data[:2], request.data[2]
        values = meter.current_values()
        if request.control == _READ_ADDRESS:
            data = di + bytes([ser])
            frame = _frame(meter.meter_type, meter.address_bytes, _READ_ADDRESS | _REPLY, data)
        elif request.control == _READ_DATA:
            understood = di == _DI_901F[meter.di_order]
            if meter.abnormal or (not understood and meter.di_mismatch == "abnormal"):
                data = bytes([ser]) + meter.status(values)
                control = _READ_DATA | _REPLY | _ABNORMAL
                frame = _frame(meter.meter_type, meter.address_bytes, control, data)
            elif not understood:
                return None
            else:
                body = bytearray(meter.body_901f(values))
                if meter.non_bcd:
                    body[0] = 0xAB
                data = di + bytes([ser]) + body
                frame = _frame(meter.meter_type, meter.address_bytes, _READ_DATA | _REPLY, data)
        else:
            return None
        if meter.bad_checksum:
            frame[-2] = (frame[-2] + 1) & 0xFF
        return bytes(frame)

    async def _write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view and (fd := self._fd) >= 0:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
                continue
            except OSError as exc:
                log.info("simulated CJ/T 188 line %s: write failed (%s)", self.port, exc)
                return
            view = view[written:]
