"""One Modbus bus (a TCP endpoint or an RS-485 line): one connection, one request at a time.

The bus is the Modbus client of one link (agent.core.links.Link): every request is one turn on
the link, which serialises the wire (on RS-485 only one frame may be on the wire, and many TCP
gateways in front of RS-485 lines also handle a single transaction at a time), keeps the frame
gap, and, on a line shared with another protocol, asks this client to release the port when the
other protocol's turn comes (the port is opened again on the next request). Every request
has its own deadline (the bus timeout), and this class, not pymodbus, decides when a request
has failed: pymodbus gets a longer timeout and no retries, so a dead device costs exactly one
timeout and the other devices on the bus wait for nothing more.

Serial lines (Modbus RTU): the port is opened with the line's baud rate, parity, stop bits and
byte size, and frames are separated by the inter-frame gap. A dead device on a shared line is
normal, so a timeout leaves the port open. A USB adapter that is unplugged takes its device
node away: pymodbus closes the port when a read fails, and the next request opens it again
once the path is back. Opening a local port costs microseconds, so a serial bus tries on every
request and comes back on the first one after the adapter does; while the path is missing,
requests fail at once.

Devices take the bus in turn, a whole cycle each: a device whose next request follows at once
(the rest of its read, with no other await in between) keeps the bus for it, and the devices
waiting meanwhile are served in the order they asked (round-robin on a saturated line). So a
meter's points are read together, seconds apart on a busy line never, and its readings are
handed on as soon as its own requests are done instead of after every other device's (a per-
request turn interleaves every device's requests and stretches each cycle over the whole line).
A device keeps the bus for at most `MAX_HOLD_S` at a time, so a write or a big device's long
read waits for one device's cycle at most, not for its own long cycle to end. The link still
takes every request as one turn (the frame gap, other protocols on the line).

TCP: a broken connection is opened again on the next request. A failed connect may cost a whole
timeout, so after one the bus waits (capped exponential backoff with jitter) before the next
attempt and fails requests at once meanwhile. Going down and coming back are logged once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import NoReturn, Self

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from agent.core.backoff import Backoff
from agent.core.links import Link, SerialLinkConfig, TcpLinkConfig
from drivers.modbus.errors import (
    DeviceUnavailableError,
    MismatchedReplyError,
    ModbusExceptionError,
    ShortReplyError,
)
from drivers.modbus.replies import ReplyCheck
from drivers.modbus.spec import Table

__all__ = ["ModbusBusClient"]

log = logging.getLogger(__name__)

Client = AsyncModbusTcpClient | AsyncModbusSerialClient

# pymodbus's own deadline is set this much later than ours, so that ours always fires first:
# a request that times out is then cancelled by this class and the connection kept, instead of
# pymodbus counting no-answers and closing the connection after a few of them.
LIBRARY_TIMEOUT_MARGIN_S = 1.0
# Wait between TCP connect attempts: doubles from the minimum after each failure, up to the cap,
# and is drawn from [half, whole] of that so that agents restarted together spread out.
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0
# The longest a device keeps the bus for requests that follow one another (seconds): four
# requests of a 35-point meter take a few tens of ms on TCP, a long read on a 9600 bit/s line
# about a second; past this, the devices waiting go first.
MAX_HOLD_S = 0.5


class ModbusBusClient:
    """Reads and writes on one link. ``async with ModbusBusClient(link) as bus``; a link
    shares one per protocol: ``link.shared("modbus", lambda: ModbusBusClient(link))``."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.name = link.name
        config = link.config
        if not isinstance(config, TcpLinkConfig | SerialLinkConfig):
            raise ValueError(  # noqa: TRY004 - a config mistake (the cross-check reports it)
                f"Modbus needs a TCP endpoint or a serial line; bus {link.name!r} is neither"
            )
        self.spec: TcpLinkConfig | SerialLinkConfig = config
        self._client: Client | None = None
        self._replies = ReplyCheck("tcp" if isinstance(config, TcpLinkConfig) else "rtu")
        self._reconnect = Backoff(initial=RECONNECT_MIN_S, cap=RECONNECT_MAX_S, jitter=0.5)
        self._failures = 0  # failed connects in a row
        self._retry_at = 0.0  # loop time before which a TCP bus does not try to connect
        self._down = False  # logged as down; logged again only when it comes back
        self.requests = 0  # requests sent, for the live view and benchmarks
        # Whose turn it is among this bus's devices (see the module docstring).
        self._device_lock = asyncio.Lock()
        self._holder: str | None = None
        self._held_since = 0.0
        self._release: asyncio.Handle | None = None

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    @property
    def is_connected(self) -> bool:
        """Whether the connection (or serial port) is open right now."""
        return self._client is not None and self._client.connected

    @property
    def where(self) -> str:
        """The endpoint, for messages: ``host:port`` or the serial port."""
        if isinstance(self.spec, TcpLinkConfig):
            return f"{self.spec.host}:{self.spec.port}"
        return self.spec.port

    def _new_client(self) -> Client:
        # pymodbus's own retries and reconnects are off: this class decides when to retry, so
        # that one dead device costs exactly one timeout and the poll cadence stays ours.
        library_timeout = self.spec.timeout + LIBRARY_TIMEOUT_MARGIN_S
        if isinstance(self.spec, TcpLinkConfig):
            return AsyncModbusTcpClient(
                self.spec.host,
                port=self.spec.port,
                timeout=library_timeout,
                retries=0,
                reconnect_delay=0,
                name=f"bus:{self.name}",
                trace_packet=self._replies,
            )
        return AsyncModbusSerialClient(
            self.spec.port,
            baudrate=self.spec.baudrate,
            parity=self.spec.parity,
            stopbits=self.spec.stopbits,
            bytesize=self.spec.bytesize,
            timeout=library_timeout,
            retries=0,
            reconnect_delay=0,
            name=f"bus:{self.name}",
            trace_packet=self._replies,
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
        """Close the connection or port; the next request opens it again. Idempotent."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def release(self) -> None:
        """Another protocol takes the line: close the port (agent.core.links.LinkUser)."""
        await self.aclose()

    async def connect(self) -> None:
        """Open the connection (or port) now rather than on the first request; raises
        DeviceUnavailableError, naming the bus, when it cannot."""
        async with self.link.turn(self):
            await self._ensure_connected(f"bus {self.name}")

    # ---- connecting ---------------------------------------------------------------------------

    async def _ensure_connected(self, device: str) -> Client:
        client = self._client
        if client is not None and client.connected:
            return client
        if client is not None:
            # It was open and is not any more: the peer closed it, or the serial port vanished.
            client.close()
            self._client = None
            log.info("bus %s: the connection to %s closed; opening it again", self.name, self.where)
        loop = asyncio.get_running_loop()
        if isinstance(self.spec, SerialLinkConfig):
            if missing := self.link.port_missing():
                self._went_down(missing)
                raise DeviceUnavailableError(device, missing)
        elif loop.time() < self._retry_at:
            wait = self._retry_at - loop.time()
            raise DeviceUnavailableError(
                device, f"cannot connect to {self.where}; next attempt in {wait:.1f} s"
            )
        elif self._failures:
            log.info(
                "bus %s: connecting to %s (attempt %d)", self.name, self.where, self._failures + 1
            )
        client = self._new_client()
        try:
            async with asyncio.timeout(self.spec.timeout):
                ok = await client.connect()
        except TimeoutError:
            ok = False
        if not ok:
            client.close()
            self._failures += 1
            self._retry_at = loop.time() + self._reconnect.next_delay()
            reason = self._connect_failure()
            self._went_down(reason)
            raise DeviceUnavailableError(device, reason)
        if self._down:
            log.warning("bus %s: %s is back", self.name, self.where)
        self._down = False
        self._failures = 0
        self._reconnect.reset()
        self._retry_at = 0.0
        self._client = client
        return client

    def _connect_failure(self) -> str:
        if isinstance(self.spec, TcpLinkConfig):
            return f"cannot connect to {self.where}"
        port = self.spec.port
        if "://" not in port and not os.access(port, os.R_OK | os.W_OK):
            return f"no permission to open serial port {port} (is the user in group dialout?)"
        return f"cannot open serial port {port} (in use by another program?)"

    def _went_down(self, reason: str) -> None:
        if not self._down:
            log.warning("bus %s is unavailable: %s", self.name, reason)
        self._down = True

    # ---- turns among the bus's devices ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _device_turn(self, device: str) -> AsyncIterator[None]:
        """One request of ``device``, in its turn among the bus's devices."""
        loop = asyncio.get_running_loop()
        release = self._release
        if release is not None and self._holder == device:
            # Its previous request has just ended and the loop has not run since: the rest of
            # its cycle, unless it has had the bus long enough.
            release.cancel()
            self._release = None
            if loop.time() - self._held_since >= MAX_HOLD_S:
                self._let_go()
                await self._take_turn(device, loop)
        else:
            await self._take_turn(device, loop)
        try:
            yield
        finally:
            # Let go once the loop runs on: a request that follows without yielding keeps it.
            self._release = loop.call_soon(self._let_go)

    async def _take_turn(self, device: str, loop: asyncio.AbstractEventLoop) -> None:
        await self._device_lock.acquire()
        self._holder = device
        self._held_since = loop.time()

    def _let_go(self) -> None:
        self._release = None
        self._holder = None
        self._device_lock.release()

    # ---- requests -----------------------------------------------------------------------------

    async def _transact(
        self,
        device: str,
        call: Callable[[Client], Awaitable[ModbusPDU]],
        *,
        unit_id: int,
        function: int,
    ) -> ModbusPDU:
        """One request: connect if needed, keep the frame gap, wait at most the bus timeout;
        a reply that does not match the request fails it at once (drivers.modbus.replies)."""
        async with self._device_turn(device), self.link.turn(self):
            client = await self._ensure_connected(device)
            self.requests += 1
            loop = asyncio.get_running_loop()
            self._replies.start()
            try:
                async with asyncio.timeout(self.spec.timeout) as deadline:
                    self._replies.on_problem = lambda: deadline.reschedule(loop.time())
                    reply = await call(client)
            except TimeoutError:
                if self._replies.problem is not None:
                    await self._mismatched(device, self._replies.problem)
                reason = f"no answer within {self.spec.timeout:g} s"
                if not client.connected:
                    reason += " (the connection closed)"
                raise DeviceUnavailableError(device, reason) from None
            except ModbusException as exc:
                # Garbage, or a broken link: start afresh on the next request.
                await self.aclose()
                raise DeviceUnavailableError(device, str(exc)) from exc
            finally:
                self._replies.on_problem = None
            problem = self._replies.problem or _mismatch(reply, unit_id, function)
            if problem is not None:
                await self._mismatched(device, problem)
            return reply

    async def _mismatched(self, device: str, problem: str) -> NoReturn:
        # What else the connection holds is not to be trusted: start afresh next time.
        await self.aclose()
        raise MismatchedReplyError(device, problem)

    async def read(
        self, *, device: str, unit_id: int, table: Table, address: int, count: int
    ) -> list[int] | list[bool]:
        """Read ``count`` registers (or bits) from one table of one device."""

        async def call(client: Client) -> ModbusPDU:
            if table is Table.HOLDING:
                return await client.read_holding_registers(address, count=count, device_id=unit_id)
            if table is Table.INPUT:
                return await client.read_input_registers(address, count=count, device_id=unit_id)
            if table is Table.COIL:
                return await client.read_coils(address, count=count, device_id=unit_id)
            return await client.read_discrete_inputs(address, count=count, device_id=unit_id)

        reply = await self._transact(device, call, unit_id=unit_id, function=table.read_function)
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
        call: Callable[[Client], Awaitable[ModbusPDU]]
        if table is Table.COIL:
            bits = [bool(v) for v in values]
            if len(bits) == 1:
                function, call = 5, lambda c: c.write_coil(address, bits[0], device_id=unit_id)
            else:
                function, call = 15, lambda c: c.write_coils(address, bits, device_id=unit_id)
        else:
            regs = [int(v) for v in values]
            if len(regs) == 1:
                function, call = 6, lambda c: c.write_register(address, regs[0], device_id=unit_id)
            else:
                function, call = 16, lambda c: c.write_registers(address, regs, device_id=unit_id)

        reply = await self._transact(device, call, unit_id=unit_id, function=function)
        if isinstance(reply, ExceptionResponse) or reply.isError():
            code = getattr(reply, "exception_code", 0)
            raise ModbusExceptionError(device, code, function, address, len(values))


def _mismatch(reply: ModbusPDU, unit_id: int, function: int) -> str | None:
    """What does not answer the request in a reply pymodbus decoded (the reply check judged
    its bytes already; this holds where it could not, e.g. RTU frames it saw only in part)."""
    if unit_id and reply.dev_id != unit_id:
        return f"a reply from unit {reply.dev_id} to a request to unit {unit_id}"
    if reply.function_code & 0x7F != function:
        return f"a reply with function code {reply.function_code} to a function {function} request"
    return None
