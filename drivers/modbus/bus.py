"""One Modbus bus (a TCP endpoint or an RS-485 line): one connection, one request at a time.

A bus is serialised by a lock: on RS-485 only one frame may be on the wire, and many TCP
gateways in front of RS-485 lines also handle a single transaction at a time. Every request
has a timeout, so a dead device costs only its own timeout, never a stalled bus.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse

from drivers.modbus.errors import DeviceUnavailableError, ModbusExceptionError, ShortReplyError
from drivers.modbus.spec import ModbusRtuBus, ModbusTcpBus, Table

__all__ = ["ModbusBusClient"]

log = logging.getLogger(__name__)


def rtu_frame_gap(baudrate: int) -> float:
    """The silent interval between RTU frames: 3.5 characters of 11 bits, fixed 1.75 ms above
    19200 baud (Modbus over serial line spec v1.02, 2.5.1.1; see DOMAIN.md "Modbus facts")."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * 11 / baudrate


class ModbusBusClient:
    """Reads and writes on one bus. Use as ``async with ModbusBusClient(name, spec) as bus``."""

    def __init__(self, name: str, spec: ModbusTcpBus | ModbusRtuBus) -> None:
        self.name = name
        self.spec = spec
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._gap = rtu_frame_gap(spec.baudrate) if isinstance(spec, ModbusRtuBus) else 0.0
        if isinstance(spec, ModbusRtuBus) and spec.frame_gap is not None:
            self._gap = spec.frame_gap
        self._last_frame_end = 0.0
        self.requests = 0  # requests sent, for the live view and benchmarks

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        # pymodbus's own retries and reconnects are off: this class decides when to retry, so
        # that one dead device costs exactly one timeout and the poll cadence stays ours.
        if isinstance(self.spec, ModbusTcpBus):
            return AsyncModbusTcpClient(
                self.spec.host,
                port=self.spec.port,
                timeout=self.spec.timeout,
                retries=0,
                reconnect_delay=0,
                name=f"bus:{self.name}",
            )
        return AsyncModbusSerialClient(
            self.spec.port,
            baudrate=self.spec.baudrate,
            parity=self.spec.parity,
            stopbits=self.spec.stopbits,
            bytesize=self.spec.bytesize,
            timeout=self.spec.timeout,
            retries=0,
            reconnect_delay=0,
            name=f"bus:{self.name}",
        )

    async def __aenter__(self) -> Self:
        return self  # connects lazily: a bus that is down at start must not stop the agent

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _ensure_connected(
        self, device: str
    ) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self._client is not None:
            self._client.close()
        self._client = self._new_client()
        try:
            async with asyncio.timeout(self.spec.timeout):
                ok = await self._client.connect()
        except TimeoutError:
            ok = False
        if not ok:
            self._client.close()
            self._client = None
            raise DeviceUnavailableError(device, f"cannot connect to bus {self.name!r}")
        return self._client

    async def read(
        self, *, device: str, unit_id: int, table: Table, address: int, count: int
    ) -> list[int] | list[bool]:
        """Read ``count`` registers (or bits) from one table of one device."""
        async with self._lock:
            client = await self._ensure_connected(device)
            await self._respect_gap()
            self.requests += 1
            try:
                async with asyncio.timeout(self.spec.timeout):
                    if table is Table.HOLDING:
                        reply = await client.read_holding_registers(
                            address, count=count, device_id=unit_id
                        )
                    elif table is Table.INPUT:
                        reply = await client.read_input_registers(
                            address, count=count, device_id=unit_id
                        )
                    elif table is Table.COIL:
                        reply = await client.read_coils(address, count=count, device_id=unit_id)
                    else:
                        reply = await client.read_discrete_inputs(
                            address, count=count, device_id=unit_id
                        )
            except TimeoutError:
                raise DeviceUnavailableError(
                    device, f"no answer within {self.spec.timeout:g} s"
                ) from None
            except ModbusException as exc:
                # The connection is in an unknown state: start afresh on the next request.
                await self.aclose()
                raise DeviceUnavailableError(device, str(exc)) from exc
            finally:
                self._last_frame_end = asyncio.get_running_loop().time()
        if isinstance(reply, ExceptionResponse) or reply.isError():
            code = getattr(reply, "exception_code", 0)
            raise ModbusExceptionError(device, code, table.read_function, address, count)
        if table.is_bits:
            bits = list(reply.bits)
            if len(bits) < count:
                raise ShortReplyError(device, table.read_function, address, count, len(bits))
            return bits[:count]
        registers = list(reply.registers)
        if len(registers) != count:
            raise ShortReplyError(device, table.read_function, address, count, len(registers))
        return registers

    async def write(
        self,
        *,
        device: str,
        unit_id: int,
        table: Table,
        address: int,
        values: list[int] | list[bool],
    ) -> None:
        """Write registers (FC6 for one, FC16 for several) or coils (FC5 / FC15).

        Only the caller knows whether a point is declared writable; it must check first.
        """
        if table not in (Table.HOLDING, Table.COIL):
            raise ValueError(f"a {table.value} table cannot be written")
        if not values:
            raise ValueError("nothing to write")
        async with self._lock:
            client = await self._ensure_connected(device)
            await self._respect_gap()
            self.requests += 1
            try:
                async with asyncio.timeout(self.spec.timeout):
                    if table is Table.COIL:
                        bits = [bool(v) for v in values]
                        if len(bits) == 1:
                            reply = await client.write_coil(address, bits[0], device_id=unit_id)
                            function = 5
                        else:
                            reply = await client.write_coils(address, bits, device_id=unit_id)
                            function = 15
                    else:
                        regs = [int(v) for v in values]
                        if len(regs) == 1:
                            reply = await client.write_register(address, regs[0], device_id=unit_id)
                            function = 6
                        else:
                            reply = await client.write_registers(address, regs, device_id=unit_id)
                            function = 16
            except TimeoutError:
                raise DeviceUnavailableError(
                    device, f"no answer within {self.spec.timeout:g} s"
                ) from None
            except ModbusException as exc:
                await self.aclose()
                raise DeviceUnavailableError(device, str(exc)) from exc
            finally:
                self._last_frame_end = asyncio.get_running_loop().time()
        if isinstance(reply, ExceptionResponse) or reply.isError():
            code = getattr(reply, "exception_code", 0)
            raise ModbusExceptionError(device, code, function, address, len(values))

    async def _respect_gap(self) -> None:
        if self._gap:
            wait = self._last_frame_end + self._gap - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
