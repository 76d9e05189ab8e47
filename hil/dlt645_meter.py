"""Simulated DL/T 645 meters on a serial port: one RS-485 line, one or more meters.

In tests the port is one end of a socat pty pair (tests/serial_pair.py); the agent opens the
other end as if it were its USB adapter.

    meter = SimulatedMeter("000000000161", values={"voltage_l1": 230.1, "import_energy": 12.5})
    async with SimulatedDlt645Line(port, meters=[meter]) as line:
        meter.fault = "silent"                       # the meter stops answering

This module speaks the protocol on its own, written from the protocol facts and NOT from
``drivers.dlt645``: it never imports the driver's codec or catalogue, so a bug there cannot hide
behind the same bug here. Facts used (public sources):

- frame ``[FE..] 68 A0..A5 68 C L DATA CS 16``; address 12 BCD digits, low byte first; DATA
  +33H; CS = sum mod 256 from the first 68 to the end of DATA (DL/T 645-2007 "帧格式", as
  transcribed by cnblogs.com/windowsxpxp/p/18467018; the real frames of meter 000000000161 in
  public code). Meters answer with 0-4 FE in front (juejin.cn/post/6996100518367985701).
- read 11H -> 91H, abnormal D1H with one error byte (bit 1 "no requested data" for a DI the
  meter does not have); read address 13H to AA x 6 -> 93H with the address as DATA; 1997 read
  01H -> 81H, abnormal C1H, 2-byte DIs (cnblogs above; ``wangjianghua/DLMR-PDA`` APP/DL645.h).
  Broadcast address 99..99: no reply. AAH address bytes are wildcards (缩位寻址).
- values: BCD, low byte first, implied decimals (XXXXXX.XX kWh, XXX.X V, XXX.XXX A, XX.XXXX kW,
  X.XXX, XX.XX Hz); the top bit of the most significant byte is the sign of current, active
  and reactive power and power factor (2007 appendix A notes, as in PyPI ``dlt645`` 3.2.0);
  ASCII parameters go last character first. 1997: voltage XXX V, current XX.XX A, reactive
  power XX.XX kvar, unsigned (``hoanghon00/meter-dlt645-1997`` Data_Trans.c).
- a block DI reads every member at once: DI1 = FFH in 2007 (0201FF00: phases A, B, C) and a
  low nibble of F in 1997 (B61F); members follow in DI order.

Faults, per meter (``SimulatedMeter.fault``, changeable at any time):
``silent`` (no reply), ``bad_checksum``, ``non_bcd`` (a value byte with a nibble above 9),
``abnormal`` (an abnormal reply to everything), ``slow`` (the reply comes ``slow_s`` late),
``noise`` (garbage bytes in front of the reply). ``reply_preamble`` sets the FE count (0-4).

Only an addressed meter talks: a request that matches no meter, or (through wildcards) more
than one, gets silence, as a collision would on a real line. ptys ignore the baud rate; it is
kept as metadata and set on the port.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from types import TracebackType
from typing import Any, Literal, Self

import serial

__all__ = ["FAULTS", "Fault", "SimulatedDlt645Line", "SimulatedMeter", "steady_load"]

log = logging.getLogger(__name__)

Fault = Literal["silent", "bad_checksum", "non_bcd", "abnormal", "slow", "noise"]
FAULTS: tuple[Fault, ...] = ("silent", "bad_checksum", "non_bcd", "abnormal", "slow", "noise")
MeterValues = Mapping[str, float | int | str]

CLOSE_TIMEOUT_S = 2.0
# A real meter drops a half-received frame after a pause; so does this one.
INTER_BYTE_TIMEOUT_S = 0.5

_NO_DATA = 0x02  # error word bit 1: no requested data
_OTHER_ERROR = 0x01  # error word bit 0: other error


# --- what the simulated meters know ---------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    point: str
    size: int  # bytes
    decimals: int = 0
    per_unit: int = 1  # published unit per standard unit: W per kW
    signed: bool = False
    text: Literal["number", "digits", "ascii"] = "number"


def _fields_2007() -> dict[int, _Field]:
    fields: dict[int, _Field] = {0x00000000: _Field("total_active_energy", 4, 2)}
    for group, name in ((1, "import_energy"), (2, "export_energy")):
        for tariff in range(5):  # total, then tariffs 1-4
            point = name if tariff == 0 else f"{name}_t{tariff}"
            fields[group << 16 | tariff << 8] = _Field(point, 4, 2)
    for phase in (1, 2, 3):
        fields[0x02010000 | phase << 8] = _Field(f"voltage_l{phase}", 2, 1)
        fields[0x02020000 | phase << 8] = _Field(f"current_l{phase}", 3, 3, signed=True)
    powers = ((3, "active_power", True), (4, "reactive_power", True), (5, "apparent_power", False))
    for group, name, signed in powers:  # apparent power is a magnitude: never signed
        for phase in range(4):  # total, then A, B, C
            point = name if phase == 0 else f"{name}_l{phase}"
            fields[0x02000000 | group << 16 | phase << 8] = _Field(point, 3, 4, 1000, signed)
    for phase in range(4):
        point = "power_factor" if phase == 0 else f"power_factor_l{phase}"
        fields[0x02060000 | phase << 8] = _Field(point, 2, 3, signed=True)
    fields[0x02800001] = _Field("neutral_current", 3, 3, signed=True)
    fields[0x02800002] = _Field("frequency", 2, 2)
    fields[0x02800007] = _Field("internal_temperature", 2, 1, signed=True)
    fields[0x04000101] = _Field("meter_date", 4, text="digits")
    fields[0x04000102] = _Field("meter_time", 3, text="digits")
    fields[0x04000401] = _Field("comm_address", 6, text="digits")
    fields[0x04000402] = _Field("meter_number", 6, text="digits")
    fields[0x04000404] = _Field("rated_voltage", 6, text="ascii")
    fields[0x04000405] = _Field("rated_current", 6, text="ascii")
    fields[0x04000407] = _Field("accuracy_class", 4, text="ascii")
    fields[0x04000409] = _Field("pulse_constant", 3)
    return fields


def _fields_1997() -> dict[int, _Field]:
    fields: dict[int, _Field] = {}
    for base, name in ((0x9010, "import_energy"), (0x9020, "export_energy")):
        for tariff in range(5):
            fields[base + tariff] = _Field(name if tariff == 0 else f"{name}_t{tariff}", 4, 2)
    for phase in (1, 2, 3):
        fields[0xB610 + phase] = _Field(f"voltage_l{phase}", 2, 0)
        fields[0xB620 + phase] = _Field(f"current_l{phase}", 2, 2)
    for base, name, size, decimals, per_unit in (
        (0xB630, "active_power", 3, 4, 1000),
        (0xB640, "reactive_power", 2, 2, 1000),
        (0xB650, "power_factor", 2, 3, 1),
        (0xB680, "apparent_power", 3, 4, 1000),
    ):
        for phase in range(4):
            point = name if phase == 0 else f"{name}_l{phase}"
            fields[base + phase] = _Field(point, size, decimals, per_unit)
    fields[0xB660] = _Field("frequency", 2, 2)
    fields[0xC010] = _Field("meter_date", 4, text="digits")
    fields[0xC011] = _Field("meter_time", 3, text="digits")
    fields[0xC030] = _Field("pulse_constant", 3)
    fields[0xC032] = _Field("meter_number", 6, text="digits")
    return fields


_FIELDS = {"2007": _fields_2007(), "1997": _fields_1997()}


def _block_members(di: int, version: str) -> list[int] | None:
    """The member DIs of a block DI, or None if ``di`` is not a block of a known group."""
    fields = _FIELDS[version]
    if version == "2007":
        if di >> 8 & 0xFF != 0xFF:
            return None
        members = [d for d in sorted(fields) if d & 0xFFFF00FF == di & 0xFFFF00FF]
    else:
        if di & 0x000F != 0x000F:
            return None
        members = [d for d in sorted(fields) if d & 0xFFF0 == di & 0xFFF0]
    return members or None


def _bcd(number: int, size: int, *, signed: bool) -> bytes:
    """``number`` as ``size`` BCD bytes, low byte first, sign in the top bit if ``signed``."""
    if number < 0 and not signed:
        raise ValueError(f"{number} is negative in an unsigned field")
    digits = str(abs(number)).rjust(2 * size, "0")
    if len(digits) > 2 * size or (signed and digits[0] > "7"):
        raise ValueError(f"{number} does not fit {size} bytes")
    raw = bytearray(int(digits[i : i + 2], 16) for i in range(0, 2 * size, 2))
    raw.reverse()
    if number < 0:
        raw[-1] |= 0x80
    return bytes(raw)


def _encode(spec: _Field, value: float | int | str) -> bytes:
    if spec.text == "ascii":
        text = str(value).encode("ascii")[: spec.size]
        return bytes(reversed(text + bytes(spec.size - len(text))))
    if spec.text == "digits":
        digits = str(value)
        if len(digits) != 2 * spec.size or not digits.isdigit():
            raise ValueError(f"{spec.point} needs {2 * spec.size} digits, not {value!r}")
        return _bcd(int(digits), spec.size, signed=False)
    if isinstance(value, str):
        raise TypeError(f"{spec.point} needs a number, not {value!r}")
    steps = Decimal(str(value)) / spec.per_unit * 10**spec.decimals
    number = int(steps.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return _bcd(number, spec.size, signed=spec.signed)


# --- one meter ------------------------------------------------------------------------------


def _address_bytes(address: str) -> bytes:
    if len(address) != 12 or not address.isdigit():
        raise ValueError(f"a meter address is 12 digits, not {address!r}")
    return bytes(int(address[i : i + 2], 16) for i in range(10, -1, -2))


class SimulatedMeter:
    """One DL/T 645 meter: an address, an edition, values, and an optional fault.

    ``values``: point name -> value in the agent's units (kWh, V, A, W, var, VA, Hz; text for
    addresses, dates YYMMDDWW and ASCII parameters), or a callable returning such a mapping,
    called once per request (a time-based model: see `steady_load`). A point with no value is
    answered "no requested data". ``blocks``: whether the meter answers block DIs.
    """

    def __init__(
        self,
        address: str,
        values: MeterValues | Callable[[], MeterValues],
        *,
        version: Literal["2007", "1997"] = "2007",
        blocks: bool = True,
        fault: Fault | None = None,
        slow_s: float = 2.0,
        reply_preamble: int = 0,
        noise: bytes = b"\x00\xff\x68\x55\x13",
        abnormal_error: int = _OTHER_ERROR,
    ) -> None:
        self.address = address
        self.address_bytes = _address_bytes(address)
        if version not in _FIELDS:
            raise ValueError(f"version is '2007' or '1997', not {version!r}")
        if not 0 <= reply_preamble <= 4:
            raise ValueError(f"meters send 0-4 FE in front of a reply, not {reply_preamble}")
        self.version = version
        self.values = values
        self.blocks = blocks
        self.fault = fault
        self.slow_s = slow_s
        self.reply_preamble = reply_preamble
        self.noise = noise
        self.abnormal_error = abnormal_error
        self.requests = 0  # requests addressed to this meter (answered or not)

    def __repr__(self) -> str:
        return f"SimulatedMeter({self.address!r}, version={self.version!r}, fault={self.fault!r})"

    def matches(self, address: bytes) -> bool:
        """Whether a request to ``address`` (wire order) is for this meter (AA = any byte)."""
        return all(a in (b, 0xAA) for a, b in zip(address, self.address_bytes, strict=True))

    def reply(self, control: int, data: bytes) -> bytes | None:
        """The complete reply frame to a request addressed to this meter, or None for silence.

        The ``slow`` fault is the line's business (it delays the write).
        """
        self.requests += 1
        if self.fault == "silent":
            return None
        function = control & 0x1F
        read_function = 0x11 if self.version == "2007" else 0x01
        if function == 0x13 and self.version == "2007":  # 1997 has no read-address command
            payload = self.address_bytes
        elif function == read_function:
            answer = self._read(data)
            if isinstance(answer, int):
                return self._frame(0xC0 | function, bytes([answer]))
            payload = answer
        elif control & 0x80 or self.version == "1997":
            return None  # a reply from another meter, or a command 1997 meters ignore
        else:
            return self._frame(0xC0 | function, bytes([_OTHER_ERROR]))
        if self.fault == "abnormal":
            return self._frame(0xC0 | function, bytes([self.abnormal_error]))
        return self._frame(0x80 | function, payload)

    def _read(self, data: bytes) -> bytes | int:
        """DI + value bytes for a read, or the error word of an abnormal reply."""
        width = 4 if self.version == "2007" else 2
        if len(data) < width:
            return _OTHER_ERROR
        di = int.from_bytes(data[:width], "little")
        fields = _FIELDS[self.version]
        if di in fields:
            members = [di]
        else:
            block = _block_members(di, self.version)
            if block is None or not self.blocks:
                return _NO_DATA  # what real meters answer for a DI (or block) they lack
            members = block
        values = self.values() if callable(self.values) else self.values
        chunks = []
        for member in members:
            spec = fields[member]
            if spec.point not in values:
                return _NO_DATA
            try:
                chunks.append(_encode(spec, values[spec.point]))
            except (TypeError, ValueError) as exc:
                log.warning("meter %s cannot send %s: %s", self.address, spec.point, exc)
                return _OTHER_ERROR
        value = b"".join(chunks)
        if self.fault == "non_bcd":
            value = bytes([value[0] | 0x0E]) + value[1:]
        return data[:width] + value

    def _frame(self, control: int, payload: bytes) -> bytes:
        body = bytearray([0x68, *self.address_bytes, 0x68, control, len(payload)])
        body += bytes((b + 0x33) & 0xFF for b in payload)
        checksum = sum(body) & 0xFF
        if self.fault == "bad_checksum":
            checksum = (checksum + 1) & 0xFF
        frame = b"\xfe" * self.reply_preamble + bytes(body) + bytes([checksum, 0x16])
        return self.noise + frame if self.fault == "noise" else frame


def steady_load(
    clock: Callable[[], float],
    *,
    power_w: float = 2300.0,
    voltage_v: float = 230.0,
    power_factor: float = 0.95,
    frequency_hz: float = 50.0,
    start_kwh: float = 1000.0,
    phases: int = 3,
) -> Callable[[], dict[str, float]]:
    """Values of a meter on a constant, balanced load, its energy counter driven by ``clock``.

    ``clock`` gives seconds (any origin; tests pin it). Physically consistent: P = V I PF per
    phase, S = P / PF, Q = sqrt(S^2 - P^2), and the import counter grows by P x elapsed time.
    """
    origin = clock()
    per_phase = power_w / phases
    current = per_phase / (voltage_v * power_factor)
    apparent = power_w / power_factor
    reactive = (apparent**2 - power_w**2) ** 0.5

    def values() -> dict[str, float]:
        hours = (clock() - origin) / 3600
        energy = start_kwh + power_w / 1000 * hours
        out = {
            "import_energy": round(energy, 2),
            "import_energy_t1": round(energy, 2),  # this load runs on tariff 1 only
            "import_energy_t2": 0.0,
            "import_energy_t3": 0.0,
            "import_energy_t4": 0.0,
            "export_energy": 0.0,
            **{f"export_energy_t{n}": 0.0 for n in range(1, 5)},
            "active_power": round(power_w, 1),
            "reactive_power": round(reactive, 1),
            "apparent_power": round(apparent, 1),
            "power_factor": round(power_factor, 3),
            "frequency": round(frequency_hz, 2),
        }
        for phase in range(1, phases + 1):
            out[f"voltage_l{phase}"] = round(voltage_v, 1)
            out[f"current_l{phase}"] = round(current, 3)
            out[f"active_power_l{phase}"] = round(per_phase, 1)
            out[f"power_factor_l{phase}"] = round(power_factor, 3)
        return out

    return values


# --- the line -------------------------------------------------------------------------------


def _parse_requests(buffer: bytearray) -> list[bytes]:
    """Take every complete, valid frame off the front of ``buffer`` (garbage is dropped)."""
    frames: list[bytes] = []
    while True:
        start = buffer.find(0x68)
        if start < 0:
            buffer.clear()
            return frames
        del buffer[:start]
        if len(buffer) < 12:
            return frames
        if buffer[7] != 0x68:
            del buffer[:1]
            continue
        end = 12 + buffer[9]
        if len(buffer) < end:
            return frames
        frame = bytes(buffer[:end])
        if sum(frame[:-2]) & 0xFF == frame[-2] and frame[-1] == 0x16:
            frames.append(frame)
            del buffer[:end]
        else:
            del buffer[:1]


class SimulatedDlt645Line:
    """Simulated meters answering DL/T 645 on one serial port.

    An async context manager, entered once. The constructor does no I/O; entering opens the
    port (pyserial, non-blocking, read through the event loop's reader callback) and starts the
    task that answers; leaving (or `aclose()`, idempotent) stops it and closes the port. When
    the port goes away (socat stopped), the line stops reading; serve the new port with a new
    line. ``received`` and ``sent`` keep every request frame and every reply written.
    """

    def __init__(
        self,
        port: str | os.PathLike[str],
        meters: Sequence[SimulatedMeter],
        *,
        baudrate: int = 2400,
        parity: Literal["N", "E", "O"] = "E",
    ) -> None:
        self.port = os.fspath(port)
        seen: dict[str, SimulatedMeter] = {}
        for meter in meters:
            if meter.address in seen:
                raise ValueError(f"two meters share the address {meter.address}")
            seen[meter.address] = meter
        self.meters = tuple(meters)
        self.baudrate = baudrate  # metadata: a pty ignores it
        self.parity = parity
        self.received: list[bytes] = []
        self.sent: list[bytes] = []
        self._port_lost = asyncio.Event()
        self._serial: Any = None
        self._buffer = bytearray()
        self._last_rx = 0.0
        self._requests: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._entered = False
        self._closed = False

    @property
    def port_lost(self) -> bool:
        """The port went away (socat stopped, adapter unplugged); the line no longer reads."""
        return self._port_lost.is_set()

    async def wait_port_lost(self) -> None:
        await self._port_lost.wait()

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a SimulatedDlt645Line can be entered only once")
        self._entered = True
        self._serial = await asyncio.to_thread(
            serial.Serial,
            self.port,
            baudrate=self.baudrate,
            bytesize=8,
            parity=self.parity,
            stopbits=1,
            timeout=0,  # non-blocking reads: the event loop says when there is data
            write_timeout=1.0,
        )
        loop = asyncio.get_running_loop()
        loop.add_reader(self._serial.fileno(), self._on_readable)
        self._task = asyncio.create_task(self._serve(), name=f"hil[dlt645:{self.port}].serve")
        log.info(
            "simulated DL/T 645 line on %s: %s",
            self.port,
            ", ".join(f"{m.address} ({m.version})" for m in self.meters),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop answering and close the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await task
        port, self._serial = self._serial, None
        if port is not None:
            with suppress(OSError, serial.SerialException):
                port.close()

    def _stop_reading(self) -> None:
        if self._serial is not None and not self.port_lost:
            with suppress(OSError, ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._serial.fileno())

    def _on_readable(self) -> None:
        try:
            chunk: bytes = self._serial.read(4096)
        except (OSError, serial.SerialException) as exc:
            log.warning("simulated DL/T 645 line lost its port %s: %s", self.port, exc)
            self._stop_reading()
            self._port_lost.set()
            return
        now = asyncio.get_running_loop().time()
        if now - self._last_rx > INTER_BYTE_TIMEOUT_S:
            self._buffer.clear()
        self._last_rx = now
        self._buffer += chunk
        for frame in _parse_requests(self._buffer):
            self.received.append(frame)
            self._requests.put_nowait(frame)

    async def _serve(self) -> None:
        while True:
            frame = await self._requests.get()
            meter, reply = self._answer(frame)
            if meter is None or reply is None:
                continue
            if meter.fault == "slow":
                await asyncio.sleep(meter.slow_s)
            if self.port_lost or self._serial is None:
                continue
            try:
                self._serial.write(reply)
            except (OSError, serial.SerialException) as exc:
                log.warning("simulated meter %s could not reply: %s", meter.address, exc)
                continue
            self.sent.append(reply)

    def _answer(self, frame: bytes) -> tuple[SimulatedMeter | None, bytes | None]:
        address, control = frame[1:7], frame[8]
        if control & 0x80 or address == b"\x99" * 6:
            return None, None  # a reply on the line, or a broadcast: nobody answers
        addressed = [m for m in self.meters if m.matches(address)]
        if len(addressed) != 1:
            if len(addressed) > 1:
                log.info(
                    "request to %s matches %d meters: collision", address.hex(), len(addressed)
                )
            return None, None
        meter = addressed[0]
        data = bytes((b - 0x33) & 0xFF for b in frame[10:-2])
        return meter, meter.reply(control, data)
