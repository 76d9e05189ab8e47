"""Serve any device profile's registers with known values over loopback Modbus TCP.

`ProfileDevice` takes a configured device (or a shipped profile's name) and a mapping of point
name to engineering value, encodes each value the way the agent decodes it (data type, word and
byte order, scale, offset, and a scale factor taken from the value given for the SF point) and
serves the registers with pymodbus 3.16's `SimDevice` (pymodbus 3.16 documentation: the
`SimData`/`SimDevice` API replaces the deprecated datastore classes).

Behaviours a test can ask for:
- strict=True: only the profile's registers exist; a read that touches any other register
  answers exception 02 (illegal data address), as devices that refuse gap-spanning reads do;
  strict=False serves every register from the lowest to the highest mapped one (zeros between);
- max_registers=N: a register read longer than N answers exception 03 (illegal data value);
- raw={point: unsigned bits}: put exact register content in place of an encoded value (e.g. a
  SunSpec "not implemented" sentinel, 0x8000 in an int16);
- writes (FC5/6/15/16) are accepted only on points declared writable and whole, and update the
  served values.

Known limit (pymodbus's, see hil/server.py): a bit-table action learns only the first bit of a
read, so strict checking of coils and discrete inputs looks at the first bit only.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from drivers.modbus.codec import encode, scale_with_exponent
from drivers.modbus.spec import DataType, ModbusDevice, ModbusPoint, Table
from hil.server import stop_servers

__all__ = ["ProfileDevice", "encode_point"]

Value = float | int | bool | str

# Function codes -> the table addressed, in the driver's Table type (hil.server has its own,
# in the simulator's type: the building simulator shares no code with the driver it tests).
_TABLE_OF_FUNCTION = {
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
_TABLE_ORDER = (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT)  # SimDevice's order
_UNSIGNED = {1: DataType.UINT16, 2: DataType.UINT32, 4: DataType.UINT64}


def encode_point(
    device: ModbusDevice, name: str, value: Value, *, exponent: int | None = None
) -> list[int]:
    """The registers (or, for a coil / discrete input, the one bit as 0/1) that make the agent
    read ``value`` for point ``name``. ``exponent`` is the scale factor's value, needed when
    the point has a `scale_factor`. Raises ValueError for a value the type cannot hold."""
    point = device.points[name]
    if point.type is DataType.BIT or point.type is DataType.STRING:
        return encode(
            value, point.type, byte_order=point.byte_order or device.byte_order, length=point.length
        )
    if isinstance(value, bool | str):
        raise TypeError(f"point {name!r} is a {point.type.value}: give a number, not {value!r}")
    scale = point.scale
    if point.scale_factor is not None:
        if exponent is None:
            raise ValueError(f"point {name!r} needs the value of {point.scale_factor!r}")
        scale = scale_with_exponent(scale, exponent)
    raw: float = (value - point.offset) / scale
    if point.type.is_integer:
        raw = round(raw)
        bits = 16 * point.type.registers
        low, high = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
            if point.type.value.startswith("int")
            else (0, (1 << bits) - 1)
        )
        if not low <= raw <= high:
            raise ValueError(f"{value!r} for {name!r} is {raw} raw, outside a {point.type.value}")
    elif not math.isfinite(raw):
        raise ValueError(f"{value!r} for {name!r} is not a finite number")
    return encode(
        raw,
        point.type,
        word_order=point.word_order or device.word_order,
        byte_order=point.byte_order or device.byte_order,
    )


def _raw_words(device: ModbusDevice, point: ModbusPoint, bits: int) -> list[int]:
    if point.type is DataType.BIT:
        return [1 if bits else 0]
    return encode(
        bits,
        _UNSIGNED[point.register_count],
        word_order=point.word_order or device.word_order,
        byte_order=point.byte_order or device.byte_order,
    )


def _runs(addresses: Iterable[int]) -> list[range]:
    """Sorted addresses as maximal runs of consecutive ones."""
    runs: list[range] = []
    for a in sorted(set(addresses)):
        if runs and runs[-1].stop == a:
            runs[-1] = range(runs[-1].start, a + 1)
        else:
            runs.append(range(a, a + 1))
    return runs


class ProfileDevice:
    """One device serving a profile's points with known values on loopback Modbus TCP.

    An async context manager, entered once. The constructor encodes the values and does no
    I/O; entering starts the server and returns once it listens (`endpoint` then holds the
    host and port); leaving, or `aclose()` (idempotent), stops it.
    """

    def __init__(
        self,
        device: ModbusDevice | str,
        values: Mapping[str, Value],
        *,
        raw: Mapping[str, int] | None = None,
        unit_id: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        strict: bool = False,
        max_registers: int | None = None,
    ) -> None:
        if isinstance(device, str):
            device = ModbusDevice(name="dut", bus="dut", profile=device)
        self.device = device
        self.unit_id = unit_id
        self.host = host
        self.strict = strict
        self.max_registers = max_registers
        self._port = port
        self.endpoint: tuple[str, int] | None = None
        # Served content: table -> address -> register word (or 0/1 for a bit table).
        self._words: dict[Table, dict[int, int]] = {t: {} for t in _TABLE_ORDER}
        for point in device.points.values():
            for address in range(point.address, point.address + point.register_count):
                self._words[point.table].setdefault(address, 0)
        self._served = {t: frozenset(self._words[t]) for t in _TABLE_ORDER}
        self.set(values, raw=raw)
        self._server: ModbusTcpServer | None = None
        self._listener: asyncio.Server | None = None
        self._entered = False
        self._closed = False

    # ---- values -------------------------------------------------------------------------------

    def set(self, values: Mapping[str, Value], *, raw: Mapping[str, int] | None = None) -> None:
        """Change served values (engineering units), and exact raw contents, from now on."""
        unknown = (set(values) | set(raw or {})) - set(self.device.points)
        if unknown:
            raise KeyError(f"the device has no point {', '.join(sorted(unknown))}")
        for name, value in values.items():
            point = self.device.points[name]
            exponent = None
            if point.scale_factor is not None:
                sf = values.get(point.scale_factor)
                if not isinstance(sf, int) or isinstance(sf, bool):
                    raise ValueError(
                        f"point {name!r} needs an integer value for {point.scale_factor!r}"
                    )
                exponent = sf
            self._place(point, encode_point(self.device, name, value, exponent=exponent))
        for name, bits in (raw or {}).items():
            point = self.device.points[name]
            self._place(point, _raw_words(self.device, point, bits))

    def _place(self, point: ModbusPoint, words: list[int]) -> None:
        table = self._words[point.table]
        if point.type is DataType.BIT and not point.table.is_bits:
            assert point.bit is not None
            mask = 1 << point.bit
            old = table[point.address]
            table[point.address] = old | mask if words[0] else old & ~mask
            return
        for offset, word in enumerate(words):
            table[point.address + offset] = word

    # ---- the pymodbus device ------------------------------------------------------------------

    def _blocks(self, table: Table) -> list[SimData]:
        addresses = self._served[table]
        if not addresses:
            if table.is_bits:  # SimDevice needs a bit entry per bit table
                return [SimData(address=0, count=1, values=False, datatype=SimDataType.BITS)]
            return [SimData(address=0, count=1, datatype=SimDataType.INVALID)]
        whole = [range(min(addresses), max(addresses) + 1)]
        runs = _runs(addresses) if self.strict else whole
        if table.is_bits:
            return [
                SimData(address=r.start, count=len(r), values=False, datatype=SimDataType.BITS)
                for r in runs
            ]
        return [
            SimData(address=r.start, count=len(r), values=0, datatype=SimDataType.REGISTERS)
            for r in runs
        ]

    async def _on_request(  # noqa: PLR0917 - pymodbus's positional SimAction signature
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _TABLE_OF_FUNCTION[function_code]
        if table.is_bits:
            if self.strict and address not in self._served[table]:
                return ExcCodes.ILLEGAL_ADDRESS
        elif set_values is None and self.max_registers is not None and count > self.max_registers:
            return ExcCodes.ILLEGAL_VALUE
        if set_values is not None and (
            error := self._write(table, address, [int(v) for v in set_values])
        ):
            return error
        self._refresh(table, start_address, registers)
        return None

    def _write(self, table: Table, address: int, words: list[int]) -> ExcCodes | None:
        """Accept a write only if it covers writable points whole, and nothing else."""
        written = range(address, address + len(words))
        covered: set[int] = set()
        for point in self.device.points.values():
            span = range(point.address, point.address + point.register_count)
            if point.table is not table or not (set(span) & set(written)):
                continue
            if not point.writable or not set(span) <= set(written):
                return ExcCodes.ILLEGAL_ADDRESS  # a read-only point, or half a value
            covered.update(span)
        if covered != set(written):
            return ExcCodes.ILLEGAL_ADDRESS  # registers no point defines
        for offset, word in enumerate(words):
            self._words[table][address + offset] = word
        return None

    def _refresh(self, table: Table, start_address: int, registers: list[int]) -> None:
        words = self._words[table]
        if table.is_bits:
            # Bit tables hold 16 bits per register, bit 0 first; start_address counts registers.
            for bit_address, on in words.items():
                index, offset = divmod(bit_address - start_address * 16, 16)
                if 0 <= index < len(registers):
                    mask = 1 << offset
                    registers[index] = registers[index] | mask if on else registers[index] & ~mask
            return
        for address, word in words.items():
            if 0 <= address - start_address < len(registers):
                registers[address - start_address] = word

    def _sim_device(self) -> SimDevice:
        coils, discrete, holding, inputs = (self._blocks(t) for t in _TABLE_ORDER)
        return SimDevice(
            id=self.unit_id,
            simdata=(coils, discrete, holding, inputs),
            action=self._on_request,
        )

    # ---- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a ProfileDevice can be entered only once")
        self._entered = True
        server = ModbusTcpServer(context=[self._sim_device()], address=(self.host, self._port))
        self._server = server
        try:
            # background=True returns once the socket listens.
            await server.serve_forever(background=True)
            listener = server.transport
            if not isinstance(listener, asyncio.Server) or not listener.is_serving():
                raise OSError(f"the server for {self.device.name} did not start listening")  # noqa: TRY301
        except BaseException:
            await self.aclose()
            raise
        self._listener = listener
        self.endpoint = (self.host, int(listener.sockets[0].getsockname()[1]))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the server and wait (bounded) until its socket is closed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        server, self._server = self._server, None
        listener, self._listener = self._listener, None
        await stop_servers(
            [server] if server is not None else [], [listener] if listener is not None else []
        )
