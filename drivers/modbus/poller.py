"""Poll one Modbus device on its points' intervals and turn replies into readings.

The coordinator pattern: one poller per device; a device that stops answering is marked
unavailable (logged once), polled less often until it answers, and logged once when it returns.
A failed read yields readings of quality ``bad`` with no value, never a stale value as good.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from agent.record import Quality, Reading, now_ms
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.codec import decode, raw_to_engineering
from drivers.modbus.errors import DeviceUnavailableError, ModbusExceptionError
from drivers.modbus.plan import ReadRequest, group_requests
from drivers.modbus.spec import ModbusDevice, ModbusPoint

__all__ = ["DeviceHealth", "ModbusDevicePoller"]

log = logging.getLogger(__name__)

Sink = Callable[[Sequence[Reading]], Awaitable[None]]

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
    def __init__(self, device: ModbusDevice, bus: ModbusBusClient, *, sink: Sink) -> None:
        self.device = device
        self.bus = bus
        self._sink = sink
        self.health = DeviceHealth()
        self._intervals = {
            name: (point.interval or device.interval) for name, point in device.points.items()
        }

    def _decode(
        self, name: str, point: ModbusPoint, request: ReadRequest, raw: list[int] | list[bool]
    ) -> Reading:
        offset = point.address - request.address
        if request.table.is_bits:
            value: float | int | bool | str = bool(raw[offset])
        else:
            regs = [int(r) for r in raw[offset : offset + point.register_count]]
            value = decode(
                regs,
                point.type,
                word_order=point.word_order or self.device.word_order,
                byte_order=point.byte_order or self.device.byte_order,
                bit=point.bit,
            )
            value = raw_to_engineering(value, point.scale, point.offset)
        if isinstance(value, float) and not math.isfinite(value):
            # NaN or infinity from a float register is not a measurement.
            return Reading(self.device.name, name, now_ms(), None, point.unit, Quality.BAD)
        return Reading(self.device.name, name, now_ms(), value, point.unit, Quality.GOOD)

    def _bad(self, members: Sequence[tuple[str, ModbusPoint]]) -> list[Reading]:
        ts = now_ms()
        return [Reading(self.device.name, n, ts, None, p.unit, Quality.BAD) for n, p in members]

    async def _read(self, request: ReadRequest) -> list[int] | list[bool]:
        return await self.bus.read(
            device=self.device.name,
            unit_id=self.device.unit_id,
            table=request.table,
            address=request.address,
            count=request.count,
        )

    async def poll_once(self, names: Sequence[str] | None = None) -> list[Reading]:
        """Read the named points (all by default) once; raise nothing a device can cause."""
        wanted = [(n, self.device.points[n]) for n in (names or list(self.device.points))]
        readings: list[Reading] = []
        answered = False
        for request in group_requests(wanted, max_registers=self.device.max_registers):
            try:
                raw = await self._read(request)
            except ModbusExceptionError as exc:
                answered = True
                readings.extend(await self._split(request, exc))
                continue
            except DeviceUnavailableError as exc:
                self._mark_failure(exc.reason)
                # The device is not answering: the rest of this cycle would only cost timeouts.
                done = {r.point for r in readings}
                readings.extend(self._bad([m for m in wanted if m[0] not in done]))
                return readings
            answered = True
            readings.extend(self._decode(n, p, request, raw) for n, p in request.points)
        if answered:
            self._mark_ok()
        return readings

    async def _split(self, request: ReadRequest, exc: ModbusExceptionError) -> list[Reading]:
        """A merged read was refused: read its points one by one so one bad register costs
        only its own point. (The planner issue makes this learn, so it is not repeated.)"""
        if len(request.points) == 1:
            log.debug("%s", exc)
            return self._bad(request.points)
        out: list[Reading] = []
        for name, point in request.points:
            single = ReadRequest(
                request.table, point.address, point.register_count, ((name, point),)
            )
            try:
                raw = await self._read(single)
            except ModbusExceptionError:
                out.extend(self._bad(single.points))
            else:
                out.append(self._decode(name, point, single, raw))
        return out

    def _mark_ok(self) -> None:
        if self.health.online is False:
            log.warning(
                "device %s answers again after %d failed polls",
                self.device.name,
                self.health.consecutive_failures,
            )
        self.health.online = True
        self.health.last_ok_ms = now_ms()
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
        return min(max(MAX_OFFLINE_RETRY, shortest), shortest * 2**self.health.consecutive_failures)

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
