"""The simulated building served over Modbus TCP on loopback (pymodbus 3.16 SimDevice API).

One pymodbus `ModbusTcpServer` per bus serves that bus's devices by unit id. Each device is a
`SimDevice` with four separate tables (coils, discrete inputs, holding, input registers); its
`action` coroutine runs on every request, advances the Building and rewrites the table's registers
in place before pymodbus answers, so every read sees live values and every write reaches the
Building.

Fault injection (`set_offline`), as pymodbus allows it:
- reply="silence": the action raises pymodbus's NoSuchIdException and the server, built with
  ignore_missing_devices=True, drops the request: the client times out, as with a dead RS-485
  device or an unplugged endpoint that still accepts TCP;
- reply="gateway": the device answers exception 0x0B (gateway target device failed to respond),
  what a Modbus TCP gateway sends when a meter behind it is silent.
A unit id that no device has is silent on a device's own endpoint and answers 0x0B on the
switchboard gateway. `drop_connections(bus)` closes the bus's client sockets (a gateway reboot as
the client sees it).

Known limits of the pymodbus simulator: coils are checked against the map in blocks of 16, since
the action learns only the first coil of a read; pymodbus answers a request for an unknown table
entry (e.g. a write to an input register address) itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping
from contextlib import suppress
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from hil.building import Building
from hil.devices import BUSES, DeviceModel, SimPoint, Table, building_devices
from hil.field_line import SimulatedFieldLine

__all__ = ["FIELD_LINE_BUS", "OfflineReply", "SimulatedBuilding"]

log = logging.getLogger(__name__)

OfflineReply = Literal["silence", "gateway"]

CLOSE_TIMEOUT_S = 2.0
# Function codes -> the table they address (pymodbus routes FC22/23 to holding registers too).
TABLE_OF_FUNCTION = {
    1: Table.COIL,
    5: Table.COIL,
    15: Table.COIL,
    2: Table.DISCRETE,
    3: Table.HOLDING,
    6: Table.HOLDING,
    16: Table.HOLDING,
    22: Table.HOLDING,
    23: Table.HOLDING,
    4: Table.INPUT,
}
_TABLE_ORDER = (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT)  # SimDevice's tuple order


class _Faults:
    """Which buses and devices are offline, and how they show it."""

    def __init__(self) -> None:
        self._offline: dict[str, OfflineReply] = {}

    def set(self, target: str, offline: bool, reply: OfflineReply) -> None:
        if offline:
            self._offline[target] = reply
        else:
            self._offline.pop(target, None)

    def reply_for(self, device: DeviceModel) -> OfflineReply | None:
        # A device's own setting wins over its bus's.
        return self._offline.get(device.name) or self._offline.get(device.bus)


def _raise_or_reply(reply: OfflineReply, who: str) -> ExcCodes:
    if reply == "silence":
        # With ignore_missing_devices=True pymodbus sends no reply at all for this exception.
        raise NoSuchIdException(f"{who} is offline")
    return ExcCodes.GATEWAY_NO_RESPONSE


async def stop_servers(servers: Iterable[Any], listeners: Iterable[asyncio.Server]) -> None:
    """Shut pymodbus servers down and wait, bounded and shielded, until their sockets close."""
    for server in servers:
        # Closes the listener and every client connection (pymodbus leaves it unannotated).
        await server.shutdown()
    waits = asyncio.gather(*(listener.wait_closed() for listener in listeners))
    with suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await asyncio.shield(waits)


class _DeviceHandler:
    """The SimDevice action of one device: live values in, writes out, faults applied."""

    def __init__(self, device: DeviceModel, building: Building, faults: _Faults) -> None:
        self.device = device
        self._building = building
        self._faults = faults

    # The positional signature is pymodbus's SimAction, hence the noqa.
    async def on_request(  # noqa: PLR0917
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if reply := self._faults.reply_for(self.device):
            return _raise_or_reply(reply, self.device.name)
        table = TABLE_OF_FUNCTION[function_code]
        if table.is_bits and not self._serves_bits(table, address, set_values):
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None:
            words = [int(value) for value in set_values]
            if error := self._write(table, address, words):
                return error
        self._building.update()
        self._refresh(table, start_address, registers)
        return None

    def _serves_bits(
        self, table: Table, address: int, set_values: list[int] | list[bool] | None
    ) -> bool:
        # pymodbus passes a bit table's action the register count, not the bit count: a read is
        # checked by its first bit (and, via the block size, to the next multiple of 16).
        count = len(set_values) if set_values is not None else 1
        return self.device.serves(table, address, count)

    def _write(self, table: Table, address: int, words: list[int]) -> ExcCodes | None:
        """Validate every written point first, then apply them all (a write is all or nothing)."""
        written = range(address, address + len(words))
        changes: list[tuple[SimPoint, float]] = []
        covered = 0
        for point in self.device.points_in(table):
            overlap = range(
                max(point.address, written.start), min(point.addresses.stop, written.stop)
            )
            if not overlap:
                continue
            if len(overlap) != point.count or not point.writable:
                return ExcCodes.ILLEGAL_ADDRESS  # half a 32-bit value, or a read-only point
            offset = point.address - address
            value = point.decode(words[offset : offset + point.count])
            if not point.accepts(value):
                return ExcCodes.ILLEGAL_VALUE
            changes.append((point, value))
            covered += point.count
        if covered != len(words) or self.device.write is None:
            return ExcCodes.ILLEGAL_ADDRESS  # registers that only pad the map
        for point, value in changes:
            self.device.write(self._building, point.name, value)
        return None

    def _refresh(self, table: Table, start_address: int, registers: list[int]) -> None:
        values = self.device.read(self._building)
        for point in self.device.points_in(table):
            words = point.encode(values[point.name])
            if table.is_bits:
                _set_bit(registers, point.address - start_address * 16, bool(words[0]))
            else:
                offset = point.address - start_address
                registers[offset : offset + point.count] = words


def _set_bit(registers: list[int], bit: int, on: bool) -> None:
    """Bit tables hold 16 bits per register, bit 0 first."""
    index, offset = divmod(bit, 16)
    mask = 1 << offset
    registers[index] = registers[index] | mask if on else registers[index] & ~mask


def _table_blocks(device: DeviceModel, table: Table) -> list[SimData]:
    """SimData for one table: one entry per served range; pymodbus marks the gaps invalid."""
    ranges = device.served_ranges(table)
    if table.is_bits:
        # SimDevice needs at least one bit entry per bit table; the action rejects what the map
        # does not define.
        ranges = ranges or [range(0, 1)]
        return [
            SimData(address=r.start, count=len(r), values=False, datatype=SimDataType.BITS)
            for r in ranges
        ]
    if not ranges:
        return [SimData(address=0, count=1, datatype=SimDataType.INVALID)]
    return [
        SimData(address=r.start, count=len(r), values=0, datatype=SimDataType.REGISTERS)
        for r in ranges
    ]


def _sim_device(handler: _DeviceHandler) -> SimDevice:
    coils, discrete, holding, inputs = (_table_blocks(handler.device, t) for t in _TABLE_ORDER)
    return SimDevice(
        id=handler.device.unit_id,
        simdata=(coils, discrete, holding, inputs),
        action=handler.on_request,
    )


class _NoSuchUnit:
    """The catch-all device (pymodbus unit id 0 = "every id not defined")."""

    def __init__(self, bus: str, *, gateway: bool) -> None:
        self._bus = bus
        self._reply: OfflineReply = "gateway" if gateway else "silence"

    # The positional signature is pymodbus's SimAction, hence the noqa.
    async def on_request(  # noqa: PLR0917
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        return _raise_or_reply(self._reply, f"an unknown unit on {self._bus}")

    def sim_device(self) -> SimDevice:
        # Every address must be valid, or pymodbus answers 02 before the action can speak.
        block = SimData(address=0, count=65536, values=0, datatype=SimDataType.REGISTERS)
        return SimDevice(id=0, simdata=[block], action=self.on_request)


FIELD_LINE_BUS = "plant-room"  # the demo config's name for the line hil.field_line simulates


class SimulatedBuilding:
    """The building's buses as Modbus TCP servers on loopback, and its plant-room RS-485 line
    (hil.field_line: a DL/T 645 meter and a CJ/T 188 water meter) on an in-process pty bus.

    An async context manager, entered once per instance. The constructor does no I/O; entering
    starts one server per bus and returns once each listens; leaving (or aclose(), idempotent)
    stops them. `endpoints` maps each TCP bus to its (host, port); a port of 0 or None in
    `ports` picks a free one. Use a literal IP as host: a name may resolve to several sockets.
    `serial_ports` maps each serial bus to the path of the agent's end of the line (empty with
    ``field_line=False``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ports: Mapping[str, int | None] | None = None,
        building: Building | None = None,
        strict: bool | Collection[str] = False,
        field_line: bool = True,
    ) -> None:
        bus_names = {bus.name for bus in BUSES}
        if unknown := set(ports or {}) - bus_names:
            raise KeyError(f"no bus {', '.join(sorted(unknown))}; buses are {sorted(bus_names)}")
        self.host = host
        self.building = building if building is not None else Building()
        self._ports = {name: (ports or {}).get(name) or 0 for name in bus_names}
        self._faults = _Faults()
        self._devices = {device.name: device for device in building_devices(strict=strict)}
        self._servers: dict[str, ModbusTcpServer] = {}
        self._listeners: dict[str, asyncio.Server] = {}
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.field_line = SimulatedFieldLine(self.building) if field_line else None
        self.serial_ports: dict[str, str] = {}
        self._entered = False
        self._closed = False

    @property
    def devices(self) -> Mapping[str, DeviceModel]:
        return MappingProxyType(self._devices)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a SimulatedBuilding can be entered only once")
        self._entered = True
        try:
            for bus in BUSES:
                await self._start(bus.name, gateway=bus.gateway)
            if self.field_line is not None:
                await self.field_line.__aenter__()
                self.serial_ports[FIELD_LINE_BUS] = self.field_line.port
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _start(self, bus: str, *, gateway: bool) -> None:
        handlers = [
            _DeviceHandler(device, self.building, self._faults)
            for device in self._devices.values()
            if device.bus == bus
        ]
        context = [_sim_device(handler) for handler in handlers]
        context.append(_NoSuchUnit(bus, gateway=gateway).sim_device())
        server = ModbusTcpServer(
            context=context,
            address=(self.host, self._ports[bus]),
            ignore_missing_devices=True,  # lets a "silent" device send no reply at all
        )
        self._servers[bus] = server
        try:
            # background=True returns once the socket listens (asyncio create_server has bound
            # and called listen()), not when serving ends.
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.host}:{self._ports[bus]} for {bus}") from exc
        listener = server.transport
        if not isinstance(listener, asyncio.Server) or not listener.is_serving():
            raise OSError(f"the {bus} server did not start listening")
        self._listeners[bus] = listener
        # With port 0 the OS chose: read it back from the bound socket.
        port = int(listener.sockets[0].getsockname()[1])
        self.endpoints[bus] = (self.host, port)
        log.info("simulated %s bus listening on %s:%d", bus, self.host, port)

    async def aclose(self) -> None:
        """Stop every server and wait (bounded) until their sockets are closed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        servers, self._servers = self._servers, {}
        listeners, self._listeners = self._listeners, {}
        if self.serial_ports and self.field_line is not None:
            self.serial_ports = {}
            await self.field_line.__aexit__(None, None, None)
        await stop_servers(servers.values(), listeners.values())

    # ---- fault injection ----------------------------------------------------------------------

    def set_offline(
        self, target: str, offline: bool = True, *, reply: OfflineReply = "silence"
    ) -> None:
        """Make a device, or every device of a bus, stop answering (or answer 0x0B)."""
        known = set(self._devices) | {bus.name for bus in BUSES}
        if target not in known:
            raise KeyError(f"no bus or device {target!r}; known: {', '.join(sorted(known))}")
        self._faults.set(target, offline, reply)

    def is_offline(self, device: str) -> bool:
        return self._faults.reply_for(self._devices[device]) is not None

    def drop_connections(self, bus: str) -> int:
        """Close every client connection of a bus (the listener stays); returns how many."""
        server = self._servers[bus]
        connections = list(server.active_connections.values())
        for connection in connections:
            connection.close()
        return len(connections)
