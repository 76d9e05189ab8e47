"""Poll one Modbus device on its points' intervals and turn replies into readings.

The coordinator pattern: one poller per device; a device that stops answering is marked
unavailable (logged once), polled less often until it answers, and logged once when it returns.
A failed read yields readings of quality ``bad`` with no value, never a stale value as good.

Scale factors read from another register (SunSpec: value = raw x 10^SF): whenever a point that
takes one is due, its SF point is read in the same cycle (the planner usually finds it in the
same request), and the value is scaled with that reading. An SF that failed, holds its "not
implemented" sentinel or lies outside -10..10 makes the dependent reading bad, never a value
scaled wrong. A reading whose registers hold the point's `not_available` sentinel is bad too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from agent.core.clock import Clock, system_clock
from agent.core.record import Quality, Reading
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.codec import decode, raw_bits, raw_to_engineering, scale_with_exponent
from drivers.modbus.errors import DeviceUnavailableError, ModbusExceptionError, ShortReplyError
from drivers.modbus.plan import ReadRequest
from drivers.modbus.planner import CostModel, DeviceQuirks, Plan, plan_reads
from drivers.modbus.spec import MAX_SCALE_FACTOR, ModbusDevice, ModbusPoint, Table

__all__ = ["DeviceHealth", "ModbusDevicePoller"]

log = logging.getLogger(__name__)

Sink = Callable[[Sequence[Reading]], Awaitable[None]]
# Called with the device's quirks as JSON whenever the poller learns something, so the
# knowledge survives a restart.
QuirksSaver = Callable[[str, str], Awaitable[None]]

# Exceptions a Modbus TCP gateway sends when the device behind it is absent or silent
# (Modbus application protocol v1.1b3, section 7: 0x0A path unavailable, 0x0B no response).
GATEWAY_NO_ANSWER = (0x0A, 0x0B)
# A device that stays down is retried after interval x 2^n, capped here (seconds).
MAX_OFFLINE_RETRY = 60.0
# Points due within this fraction of the shortest interval ride along with the current cycle,
# so points with equal intervals stay in one cycle despite timer jitter.
RIDE_ALONG = 0.1


@dataclass
class DeviceHealth:
    online: bool | None = None  # None until the first poll
    last_ok_ms: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    cycles: int = 0


class ModbusDevicePoller:
    def __init__(
        self,
        device: ModbusDevice,
        bus: ModbusBusClient,
        *,
        sink: Sink,
        quirks: DeviceQuirks | None = None,
        save_quirks: QuirksSaver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.device = device
        self._clock = clock if clock is not None else system_clock()
        self.bus = bus
        self._sink = sink
        self.health = DeviceHealth()
        # Learned quirks (perhaps restored from a saved JSON) plus the ranges the config
        # declares unreadable, which are never persisted with them.
        self.quirks = quirks if quirks is not None else DeviceQuirks()
        _declare_unreadable(self.quirks, device.unreadable_spans())
        self._save_quirks = save_quirks
        self._learned = False
        self.cost = CostModel.for_bus(bus.spec)
        self._intervals = {
            name: (point.interval or device.interval) for name, point in device.points.items()
        }

    def _decode(
        self, name: str, point: ModbusPoint, request: ReadRequest, raw: list[int] | list[bool]
    ) -> Reading:
        """The reading of one point from a reply. A point with a `scale_factor` keeps its raw
        value here; `_apply_scale_factors` finishes it once the cycle's SF readings are in."""
        offset = point.address - request.address
        ts = self._clock.now_ms()
        if request.table.is_bits:
            value: float | int | bool | str = bool(raw[offset])
        else:
            regs = [int(r) for r in raw[offset : offset + point.register_count]]
            word_order = point.word_order or self.device.word_order
            byte_order = point.byte_order or self.device.byte_order
            if point.not_available is not None and point.not_available == raw_bits(
                regs, word_order=word_order, byte_order=byte_order
            ):
                # The device says it has no value here (SunSpec "not implemented").
                return Reading(self.device.name, name, ts, None, point.unit, Quality.BAD)
            value = decode(
                regs, point.type, word_order=word_order, byte_order=byte_order, bit=point.bit
            )
            if point.scale_factor is None:
                value = raw_to_engineering(value, point.scale, point.offset)
        if isinstance(value, float) and not math.isfinite(value):
            # NaN or infinity from a float register is not a measurement.
            return Reading(self.device.name, name, ts, None, point.unit, Quality.BAD)
        return Reading(self.device.name, name, ts, value, point.unit, Quality.GOOD)

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
        retries = self.device.retries if self.health.online is True else 0
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

    async def poll_once(self, names: Sequence[str] | None = None) -> list[Reading]:
        """Read the named points (all by default) once; raise nothing a device can cause.

        Returns one reading per named point (scale-factor points read only for the others'
        sake are not returned)."""
        asked = set(names or self.device.points)
        readings: list[Reading] = []
        answered = failed = False
        requests = self.plan(names).requests
        for index, request in enumerate(requests):
            members = [p for _, p in request.points]
            try:
                raw = await self._read(request)
            except (ModbusExceptionError, ShortReplyError) as exc:
                answered = True
                if isinstance(exc, ModbusExceptionError):
                    lessons = self.quirks.learn_refusal(
                        request.table, request.address, request.count, exc.code, points=members
                    )
                else:
                    lessons = self.quirks.learn_short_reply(
                        request.table, request.address, request.count, exc.got, points=members
                    )
                self._learn(lessons)
                split, down = await self._split(request.points)
                readings.extend(split)
                if down:
                    failed = True
                    readings.extend(self._bad([m for r in requests[index + 1 :] for m in r.points]))
                    break
                continue
            except DeviceUnavailableError as exc:
                self._mark_failure(exc.reason)
                failed = True
                # The device is not answering: the rest of this cycle would only cost timeouts.
                readings.extend(self._bad([m for r in requests[index:] for m in r.points]))
                break
            answered = True
            self._learn(self.quirks.learn_success(request.table, request.address, request.count))
            readings.extend(self._decode(n, p, request, raw) for n, p in request.points)
        if answered and not failed:
            self._mark_ok()
        if self._learned and self._save_quirks is not None:
            self._learned = False
            await self._save_quirks(self.device.name, self.quirks.to_json())
        return [r for r in self._apply_scale_factors(readings) if r.point in asked]

    def _learn(self, lessons: object) -> None:
        if lessons:
            self._learned = True
            known = self.quirks.describe()
            if known:
                log.info("device %s: read quirks now known: %s", self.device.name, "; ".join(known))

    async def _split(
        self, members: Sequence[tuple[str, ModbusPoint]]
    ) -> tuple[list[Reading], bool]:
        """A merged read was refused: read its points one by one now, so no point is lost this
        cycle; the lesson just learned makes the next cycle's plan ask right the first time.
        Returns the readings and whether the device stopped answering meanwhile."""
        out: list[Reading] = []
        for index, (name, point) in enumerate(members):
            single = ReadRequest(point.table, point.address, point.register_count, ((name, point),))
            try:
                raw = await self._read(single)
            except (ModbusExceptionError, ShortReplyError) as exc:
                code = exc.code if isinstance(exc, ModbusExceptionError) else 3
                self._learn(
                    self.quirks.learn_refusal(
                        single.table, single.address, single.count, code, points=[point]
                    )
                )
                log.debug("%s", exc)
                out.extend(self._bad(single.points))
            except DeviceUnavailableError as exc:
                self._mark_failure(exc.reason)
                out.extend(self._bad(members[index:]))
                return out, True
            else:
                self._learn(self.quirks.learn_success(single.table, single.address, single.count))
                out.append(self._decode(name, point, single, raw))
        return out, False

    def _mark_ok(self) -> None:
        if self.health.online is False:
            log.warning(
                "device %s answers again after %d failed polls",
                self.device.name,
                self.health.consecutive_failures,
            )
        self.health.online = True
        self.health.last_ok_ms = self._clock.now_ms()
        self.health.last_error = None
        self.health.consecutive_failures = 0

    def _mark_failure(self, reason: str) -> None:
        if self.health.online is not False:
            log.warning("device %s is unavailable: %s", self.device.name, reason)
        self.health.online = False
        self.health.last_error = reason
        self.health.consecutive_failures += 1

    def _retry_delay(self) -> float:
        shortest = min(self._intervals.values())
        backoff = shortest * 2.0 ** min(self.health.consecutive_failures, 16)
        return min(max(MAX_OFFLINE_RETRY, shortest), backoff)

    async def run(self) -> None:
        """Poll forever on each point's interval (cancel to stop)."""
        if not self._intervals:
            return
        clock = time.monotonic
        start = clock()
        next_due = dict.fromkeys(self._intervals, start)
        tolerance = RIDE_ALONG * min(self._intervals.values())
        while True:
            now = clock()
            due = [n for n, t in next_due.items() if t <= now + tolerance]
            if due:
                readings = await self.poll_once(due)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # pymodbus awaits replies with asyncio.wait_for, which on Python 3.11 can
                    # swallow a cancel that lands as the reply arrives (CPython gh-86296): honour
                    # it here, or a stopping agent would poll on forever.
                    raise asyncio.CancelledError
                self.health.cycles += 1
                if readings:
                    await self._sink(readings)
                after = clock()
                for name in due:
                    # Stay on the interval grid; skip ticks missed while the bus was slow.
                    interval = self._intervals[name]
                    nxt = next_due[name] + interval
                    if nxt <= after:
                        nxt += math.ceil((after - nxt) / interval) * interval
                    next_due[name] = nxt
                if self.health.online is False:
                    retry_at = after + self._retry_delay()
                    next_due = {n: max(t, retry_at) for n, t in next_due.items()}
            await asyncio.sleep(max(0.0, min(next_due.values()) - clock()))


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
