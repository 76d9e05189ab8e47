"""Simulated devices as Modbus RTU on a serial port: one RS-485 line, several unit ids.

In tests the port is one end of a socat pty pair (tests/serial_pair.py): the agent opens the other
end as if it were its USB adapter. The devices are hil.devices models, served exactly as
hil.server serves them over TCP (the same SimDevice tables and actions, so values come from the
Building and writes reach it), or any pymodbus SimDevice.

    async with SimulatedRtuLine(port) as line:          # the switchboard's meters, units 1-3
        line.set_offline("lighting_meter")              # unit 2 falls silent

Fault injection: an offline device's reply is dropped on its way to the wire, whatever the request
(also replies pymodbus makes itself, such as exception 02 for an unmapped address), as a dead or
unpowered device on a real line. A unit id no device has is silent too: on RS-485 only the
addressed device may speak, and there is no gateway to answer 0x0B.

When the port goes away (socat stopped), pymodbus closes the server's side; serve the new port with
a new SimulatedRtuLine.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Literal, Self

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimDevice

from hil.building import Building
from hil.devices import DeviceModel, building_devices

# The TCP simulator's per-device pieces, reused so both transports serve identical devices.
from hil.server import _DeviceHandler, _Faults, _NoSuchUnit, _sim_device

__all__ = ["SimulatedRtuLine", "switchboard_devices"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0


def switchboard_devices(*, strict: bool = False) -> tuple[DeviceModel, ...]:
    """The building's low-voltage board meters (units 1-3): an RS-485 line in the field."""
    return tuple(d for d in building_devices(strict=strict) if d.bus == "switchboard")


@dataclass(frozen=True)
class _Unit:
    unit_id: int
    name: str


class SimulatedRtuLine:
    """Devices answering Modbus RTU on one serial port.

    An async context manager, entered once. The constructor does no I/O; entering opens the port
    and returns once the server listens on it; leaving (or aclose(), idempotent) closes it.
    ``devices`` defaults to the switchboard's meters; each needs its own unit id, 1-247.
    """

    def __init__(
        self,
        port: str | os.PathLike[str],
        devices: Sequence[DeviceModel | SimDevice] | None = None,
        *,
        building: Building | None = None,
        baudrate: int = 9600,
        parity: Literal["N", "E", "O"] = "N",
        stopbits: Literal[1, 2] = 1,
        bytesize: Literal[7, 8] = 8,
    ) -> None:
        self.port = os.fspath(port)
        self.building = building if building is not None else Building()
        chosen = list(switchboard_devices() if devices is None else devices)
        units: dict[int, _Unit] = {}
        for device in chosen:
            unit = (
                _Unit(device.unit_id, device.name)
                if isinstance(device, DeviceModel)
                else _Unit(device.id, f"unit {device.id}")
            )
            if not 1 <= unit.unit_id <= 247:
                raise ValueError(f"{unit.name}: unit id {unit.unit_id} is not 1-247")
            if unit.unit_id in units:
                raise ValueError(
                    f"{unit.name} and {units[unit.unit_id].name} share unit id {unit.unit_id}"
                )
            units[unit.unit_id] = unit
        self._devices = chosen
        self._units = {unit.name: unit.unit_id for unit in units.values()}
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self._silent: set[int] = set()
        self._server: ModbusSerialServer | None = None
        self._entered = False
        self._closed = False

    @property
    def units(self) -> Mapping[str, int]:
        """Unit id of each device, by device name (``unit N`` for a bare SimDevice)."""
        return MappingProxyType(self._units)

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a SimulatedRtuLine can be entered only once")
        self._entered = True
        faults = _Faults()  # never set: offline units are silenced below, at the wire
        context = [
            _sim_device(_DeviceHandler(device, self.building, faults))
            if isinstance(device, DeviceModel)
            else device
            for device in self._devices
        ]
        context.append(_NoSuchUnit(self.port, gateway=False).sim_device())
        self._server = ModbusSerialServer(
            context,
            port=self.port,
            ignore_missing_devices=True,  # an unknown unit sends nothing, as on a real line
            reconnect_delay=0,
            trace_packet=self._wire,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            bytesize=self.bytesize,
        )
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:
            await self.aclose()
            raise OSError(f"cannot open serial port {self.port}") from exc
        log.info("simulated RTU line on %s: units %s", self.port, sorted(self._units.values()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            with suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await server.shutdown()  # type: ignore[no-untyped-call]

    def set_offline(self, device: str | int, offline: bool = True) -> None:
        """Make a device (by name or unit id) stop answering anything, or answer again."""
        unit = self._units.get(device) if isinstance(device, str) else device
        if unit is None or unit not in self._units.values():
            known = ", ".join(f"{name} (unit {u})" for name, u in sorted(self._units.items()))
            raise KeyError(f"no device {device!r} on this line; it has {known}")
        if offline:
            self._silent.add(unit)
        else:
            self._silent.discard(unit)

    def is_offline(self, device: str | int) -> bool:
        unit = self._units.get(device) if isinstance(device, str) else device
        return unit in self._silent

    def _wire(self, sending: bool, frame: bytes) -> bytes:
        # pymodbus's trace hook sees every frame; an RTU frame starts with its unit id, and an
        # empty frame puts nothing on the wire.
        if sending and frame and frame[0] in self._silent:
            return b""
        return frame
