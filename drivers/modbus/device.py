"""One Modbus device: its points read in planned requests, and written, through its bus.

This is the Modbus driver's polled device (agent.core.source.PolledDevice): ``read(points)``
asks for the named points in the fewest requests the planner finds, given what the device is
known to accept; a refused request's lesson is learned (and saved through the device's
SavedState, so a restart asks right the first time) and the rest of the cycle planned again
with it (drivers.modbus.planner.ReadSession); a point refused on its own is a bad reading.
Only a device that does not answer raises DeviceUnavailableError. Cadence and health belong to
the agent's one interval poller (agent.sources.poller).

Scale factors read from another register (SunSpec: value = raw x 10^SF): whenever a point that
takes one is read, its SF point is read in the same cycle (the planner usually finds it in the
same request), and the value is scaled with that reading. An SF that failed, holds its "not
implemented" sentinel or lies outside -10..10 makes the dependent reading bad, never a value
scaled wrong. A reading whose registers hold the point's `not_available` sentinel is bad too.

Writes (``write(point, value)``): only points declared `writable`, holding registers (FC6/FC16)
or coils (FC5); the engineering value is turned into raw registers with the point's scale,
offset, type and word order, and a value the register cannot hold is refused (ValueError)
before anything reaches the wire.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from agent.core.clock import Clock, system_clock
from agent.core.errors import DeviceUnavailableError
from agent.core.record import Quality, Reading, Value
from agent.core.source import PointInfo, SavedState
from drivers.modbus import codec
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.codec import raw_to_engineering, scale_with_exponent
from drivers.modbus.errors import ModbusExceptionError, ShortReplyError
from drivers.modbus.plan import ReadRequest
from drivers.modbus.planner import CostModel, DeviceQuirks, Plan, ReadSession, plan_reads
from drivers.modbus.shared import SharedTable
from drivers.modbus.spec import MAX_SCALE_FACTOR, DataType, ModbusDevice, ModbusPoint, Table
from drivers.modbus.unpack import ReplyDecoder

__all__ = ["GATEWAY_NO_ANSWER", "ModbusDeviceClient", "ModbusPointInfo"]

log = logging.getLogger(__name__)

# Exceptions a Modbus TCP gateway sends when the device behind it is absent or silent
# (Modbus application protocol v1.1b3, section 7: 0x0A path unavailable, 0x0B no response).
GATEWAY_NO_ANSWER = (0x0A, 0x0B)

# Reply decoders kept per device (a plan has a few requests; a re-plan makes a few more).
_DECODERS_KEPT = 64

_INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ModbusPointInfo(PointInfo):
    """A Modbus point as the rest of the agent sees it: integer registers hold values only to
    their scale, so a written 24.56 reads back as 24.6 from a x0.1 register."""

    spec: ModbusPoint | None = None

    def quantise(self, value: Value) -> Value:
        spec = self.spec
        if spec is None or spec.table.is_bits or isinstance(value, bool | str) or value is None:
            return value
        if spec.type in _INT_RANGES:
            raw = round(codec.engineering_to_raw(float(value), spec.scale, spec.offset))
            return float(raw * spec.scale + spec.offset)
        return value

    def same(self, held: Value, wanted: Value) -> bool:
        spec = self.spec
        if spec is None or spec.table.is_bits or isinstance(wanted, bool):
            return bool(held) == bool(wanted)
        if not isinstance(held, int | float) or not isinstance(wanted, int | float):
            return held == wanted
        tolerance = abs(spec.scale) / 2 + 1e-6 if spec.type in _INT_RANGES else 1e-3
        return abs(float(held) - float(wanted)) <= tolerance


_INFOS: SharedTable[ModbusPointInfo] = SharedTable()


def _point_info(point: ModbusPoint, interval: float) -> ModbusPointInfo:
    """The point as the agent sees it: one object for the devices with the same point config
    and interval (7,000 of 200 meters held 0.45 MB)."""
    interval = point.interval or interval
    return _INFOS.get(
        (id(point), interval),
        lambda: ModbusPointInfo(
            unit=point.unit, interval=interval, writable=point.writable, spec=point
        ),
    )


class _PointInfos:
    """A device's points as the agent sees them, read-only: one mapping for the devices with
    the same points (same names, same point configs) and interval (200 meters' were 0.2 MB)."""

    __slots__ = ("__weakref__", "view")

    def __init__(self, device: ModbusDevice) -> None:
        self.view: Mapping[str, PointInfo] = MappingProxyType(
            {name: _point_info(point, device.interval) for name, point in device.points.items()}
        )


_POINT_INFOS: SharedTable[_PointInfos] = SharedTable()


def _point_infos(device: ModbusDevice) -> _PointInfos:
    # The infos hold the point configs: their ids in the key stay theirs.
    key = (tuple((name, id(point)) for name, point in device.points.items()), device.interval)
    return _POINT_INFOS.get(key, lambda: _PointInfos(device))


class ModbusDeviceClient:
    """One device on its bus. Constructing it does no I/O."""

    def __init__(
        self,
        device: ModbusDevice,
        bus: ModbusBusClient,
        *,
        quirks: DeviceQuirks | None = None,
        state: SavedState | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.device = device
        self.bus = bus
        self._clock = clock if clock is not None else system_clock()
        # Learned quirks (perhaps restored from the saved state) plus the ranges the config
        # declares unreadable, which are never persisted with them.
        self.quirks = quirks if quirks is not None else DeviceQuirks()
        _declare_unreadable(self.quirks, device.unreadable_spans())
        self._state = state
        self._learned = False
        self._answering: bool | None = None  # whether it answered the last cycle (for retries)
        self.cost = CostModel.for_bus(bus.spec)
        self._decoders: dict[int, ReplyDecoder] = {}
        # Whether any point is scaled by another point's reading (SunSpec); most devices not.
        self._scale_factors = any(p.scale_factor is not None for p in device.points.values())
        self._infos = _point_infos(device)  # held: the table of shared ones is weak
        self._points: Mapping[str, PointInfo] = self._infos.view

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def points(self) -> Mapping[str, PointInfo]:
        return self._points

    def _decoder(self, request: ReadRequest) -> ReplyDecoder:
        """The request's decoder, worked out on its first reply (a kept plan gives the same
        request objects every cycle; the few made for a re-plan are dropped with the rest
        when the cache is full)."""
        kept = self._decoders.get(id(request))
        if kept is not None and kept.request is request:
            return kept
        if len(self._decoders) >= _DECODERS_KEPT:
            self._decoders.clear()
        decoder = ReplyDecoder(
            self.device.name, request, self.device.word_order, self.device.byte_order
        )
        self._decoders[id(request)] = decoder
        return decoder

    def _with_scale_factors(self, names: Iterable[str]) -> list[str]:
        """``names`` plus the scale-factor points they need, each once, in order."""
        wanted = list(dict.fromkeys(names))
        for name in list(wanted):
            source = self.device.points[name].scale_factor
            if source is not None and source not in wanted:
                wanted.append(source)
        return wanted

    def _apply_scale_factors(self, readings: Sequence[Reading]) -> list[Reading]:
        """Scale every raw reading that takes a scale factor by this cycle's SF reading."""
        by_name = {r.point: r for r in readings}
        out: list[Reading] = []
        for reading in readings:
            point = self.device.points[reading.point]
            if point.scale_factor is None or reading.quality is not Quality.GOOD:
                out.append(reading)
                continue
            exponent = _exponent(by_name.get(point.scale_factor))
            raw = reading.value
            if exponent is None or not isinstance(raw, int | float) or isinstance(raw, bool):
                log.debug(
                    "device %s: %s is bad: its scale factor %s has no usable value",
                    self.device.name,
                    reading.point,
                    point.scale_factor,
                )
                out.append(replace(reading, value=None, quality=Quality.BAD))
                continue
            scale = scale_with_exponent(point.scale, exponent)
            out.append(replace(reading, value=raw_to_engineering(raw, scale, point.offset)))
        return out

    def _bad(self, members: Sequence[tuple[str, ModbusPoint]]) -> list[Reading]:
        ts = self._clock.now_ms()
        return [Reading(self.device.name, n, ts, None, p.unit, Quality.BAD) for n, p in members]

    async def _read(self, request: ReadRequest) -> list[int] | list[bool]:
        retries = self.device.retries if self._answering is True else 0
        for attempt in range(retries + 1):
            try:
                return await self._read_once(request)
            except DeviceUnavailableError:
                if attempt == retries:
                    raise
                log.debug(
                    "device %s: no answer, retrying (%d/%d)", self.device.name, attempt + 1, retries
                )
        raise AssertionError("unreachable")

    async def _read_once(self, request: ReadRequest) -> list[int] | list[bool]:
        try:
            return await self.bus.read(
                device=self.device.name,
                unit_id=self.device.unit_id,
                table=request.table,
                address=request.address,
                count=request.count,
            )
        except ModbusExceptionError as exc:
            if exc.code in GATEWAY_NO_ANSWER:
                # The TCP gateway answered for a device behind it that did not: the device is
                # unavailable, not refusing this request (splitting it would only cost more).
                raise DeviceUnavailableError(self.device.name, str(exc)) from exc
            raise

    def plan(self, names: Sequence[str] | None = None) -> Plan:
        """The cheapest requests for the named points (all by default), given what the
        device is known to accept."""
        chosen = self._with_scale_factors(names or list(self.device.points))
        wanted = [(n, self.device.points[n]) for n in chosen]
        return plan_reads(
            wanted, cost=self.cost, max_registers=self.device.max_registers, quirks=self.quirks
        )

    async def read(self, points: Sequence[str] | None = None) -> list[Reading]:
        """Read the named points (all by default) once: one reading per named point
        (scale-factor points read only for the others' sake are not returned).

        Raises DeviceUnavailableError, carrying the readings taken so far, when the device
        stops answering; a refusal is learned and its points read one by one, never raised."""
        names = points
        asked = set(names or self.device.points)
        readings: list[Reading] = []
        answered = False
        failed: str | None = None  # why the device stopped answering, if it did
        chosen = self._with_scale_factors(names or list(self.device.points))
        session = ReadSession(
            [(n, self.device.points[n]) for n in chosen],
            cost=self.cost,
            max_registers=self.device.max_registers,
            quirks=self.quirks,
        )
        # A refused read is learned and what is left of the cycle planned again at once
        # (ReadSession); a point refused on its own is a bad reading.
        while (request := session.next()) is not None:
            try:
                raw = await self._read(request)
            except (ModbusExceptionError, ShortReplyError) as exc:
                answered = True
                if isinstance(exc, ModbusExceptionError):
                    lessons, lost = session.refused(request, exc.code)
                else:
                    lessons, lost = session.short(request, exc.got)
                log.debug("%s", exc)
                self._learn(lessons)
                readings.extend(self._bad(lost))
                continue
            except DeviceUnavailableError as exc:
                # The device is not answering: the rest of this cycle would only cost timeouts.
                failed = exc.reason
                break
            answered = True
            self._learn(session.answered(request))
            # One stamp per reply: its points were read together.
            readings.extend(self._decoder(request).decode(raw, self._clock.now_ms()))
        self._answering = failed is None if (answered or failed is not None) else self._answering
        if self._learned and self._state is not None:
            self._learned = False
            await self._state.save(self.quirks.to_json())
        if self._scale_factors:
            readings = self._apply_scale_factors(readings)
        # Only scale-factor points read for the others' sake are left out.
        done = readings if len(chosen) == len(asked) else [r for r in readings if r.point in asked]
        if failed is not None:
            raise DeviceUnavailableError(self.device.name, failed, readings=done)
        return done

    def _learn(self, lessons: object) -> None:
        if lessons:
            self._learned = True
            known = self.quirks.describe()
            if known:
                log.info("device %s: read quirks now known: %s", self.device.name, "; ".join(known))

    async def write(self, point: str, value: Value) -> None:
        """Write one declared-writable point (see the module docstring)."""
        spec = self.device.points.get(point)
        if spec is None:
            raise ValueError(f"device {self.device.name!r} has no point {point!r}")
        await self.bus.write(
            device=self.device.name,
            unit_id=self.device.unit_id,
            table=spec.table,
            address=spec.address,
            values=self.encode(point, value),
        )

    def encode(self, point: str, value: Value) -> list[int] | list[bool]:
        """The raw registers (or coil) for ``value``; ValueError when the point cannot hold it."""
        spec = self.device.points[point]
        if not spec.writable:
            raise ValueError(f"point {point!r} is not declared writable")
        if spec.table is Table.COIL:
            return [bool(value)]
        if (
            spec.table is not Table.HOLDING
            or spec.bit is not None
            or spec.type is DataType.STRING
            or not isinstance(value, int | float)
        ):
            raise ValueError(f"point {point!r} cannot be written as a number")
        raw = codec.engineering_to_raw(float(value), spec.scale, spec.offset)
        if spec.type in _INT_RANGES:
            low, high = _INT_RANGES[spec.type]
            if not math.isfinite(raw):
                raise ValueError(f"{value} is not a number the point can hold")
            raw = round(raw)
            if not low <= raw <= high:
                raise ValueError(
                    f"{value} does not fit point {point!r} ({spec.type.value}, raw {raw})"
                )
        elif not math.isfinite(raw):
            raise ValueError(f"{value} is not a number the point can hold")
        word_order = spec.word_order or self.device.word_order
        byte_order = spec.byte_order or self.device.byte_order
        return [
            int(w)
            for w in codec.encode(raw, spec.type, word_order=word_order, byte_order=byte_order)
        ]


def _exponent(reading: Reading | None) -> int | None:
    """The power of ten a scale-factor reading gives, or None when it gives none usable."""
    if reading is None or reading.quality is not Quality.GOOD:
        return None
    value = reading.value
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_SCALE_FACTOR:
        return None
    return value


def _declare_unreadable(quirks: DeviceQuirks, spans: dict[Table, list[tuple[int, int]]]) -> None:
    """Add the config's unreadable ranges to ``quirks`` (new lists: never mutate shared ones)."""
    for table, ranges in spans.items():
        quirks.unreadable[table] = sorted({*quirks.unreadable.get(table, ()), *ranges})
