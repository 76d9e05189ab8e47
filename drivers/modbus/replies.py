"""Checking each Modbus reply against its request before pymodbus decodes it.

pymodbus (3.16) hands back a reply whose function code differs from the request's as if it
answered the request (a FC4 answer to a FC3 request becomes good registers); it silently skips a
reply from another unit id and waits out the timeout; and a reply whose byte count claims more
data than the frame holds makes its framer raise inside the transport's ``data_received``, which
asyncio logs as "Fatal error: protocol.data_received() call failed" with a traceback, before the
request times out. So the bus sees every packet first, through pymodbus's public
``trace_packet`` hook, and judges each reply to the request in flight:

- the unit id must be the request's (Modbus application protocol v1.1b3 §4.1: a server answers
  with the unit id of the request; MODBUS Messaging on TCP/IP Implementation Guide v1.0b §3.1.3
  for the MBAP unit identifier, and the protocol identifier is 0);
- the function code must be the request's, or the request's + 0x80 for an exception response
  of 2 bytes (§7);
- for a read (FC1-4), the byte count must be what the frame holds, for registers an even
  number, and no more than was asked (§6.1-6.4); a shorter but well-formed answer is left to
  the bus, which treats it as a short reply (bad readings, a learned quirk);
- for a write (FC5, 6, 15, 16) the answer is 4 bytes after the function code (§6.5, 6.6, 6.11,
  6.12).

A reply that fails is withheld from pymodbus (nothing decodes it, nothing logs a traceback), its
problem is kept in ``problem`` and ``on_problem`` is called, so the bus can fail the request at
once with that sentence instead of waiting out its timeout. Replies to earlier requests (a
late answer: another transaction id) are left to pymodbus, which skips them.

Modbus RTU frames carry no length nor transaction id, so on a serial line only the function
code of a frame from the unit asked is judged (as soon as two bytes are there); a frame from
another unit may be a late answer or another device's, which pymodbus skips; the CRC and the
frame's length are pymodbus's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ReplyCheck"]

_READS = (1, 2, 3, 4)
_WRITES = (5, 6, 15, 16)


@dataclass(frozen=True, slots=True)
class _Request:
    tid: int | None  # the MBAP transaction id (None on RTU)
    unit: int
    function: int
    count: int | None  # registers or bits asked for (reads)


class ReplyCheck:
    """``trace_packet`` for one pymodbus client: ``check(sending, data) -> data``."""

    def __init__(self, framing: Literal["tcp", "rtu"]) -> None:
        self.framing = framing
        self.problem: str | None = None
        self.on_problem: Callable[[], None] | None = None
        self._request: _Request | None = None

    def start(self) -> None:
        """A new request: forget the previous one's problem."""
        self.problem = None
        self._request = None

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._request = self._parse_request(data)
            return data
        request = self._request
        if request is None or self.problem is not None:
            return data if self.problem is None else b""
        problem = self._judge(request, data)
        if problem is None:
            return data
        self.problem = problem
        if self.on_problem is not None:
            self.on_problem()
        return b""  # withheld: the bus drops this connection and its buffer

    def _parse_request(self, packet: bytes) -> _Request | None:
        head = 7 if self.framing == "tcp" else 1
        if len(packet) < head + 1:
            return None
        tid = int.from_bytes(packet[0:2], "big") if self.framing == "tcp" else None
        unit, function = packet[head - 1], packet[head]
        count = None
        if function in _READS and len(packet) >= head + 5:
            count = int.from_bytes(packet[head + 3 : head + 5], "big")
        return _Request(tid, unit, function, count)

    def _judge(self, request: _Request, data: bytes) -> str | None:
        if self.framing == "rtu":
            if len(data) < 2 or data[0] != request.unit:
                # Not judged: a late answer of another unit, or another device's frame on a
                # shared line; pymodbus skips it, and the reply from our unit may still come.
                return None
            return _unit_and_function(request, data[0], data[1])
        if len(data) < 8:
            return None  # the MBAP header and function code are not all there yet
        if int.from_bytes(data[0:2], "big") != request.tid:
            return None  # a late answer to an earlier request: pymodbus skips it
        if (protocol := int.from_bytes(data[2:4], "big")) != 0:
            return f"a reply with protocol id {protocol}, not 0 (Modbus)"
        length = int.from_bytes(data[4:6], "big")
        if len(data) < 6 + length:
            return None  # wait for the rest of the frame
        pdu = data[7 : 6 + length]
        return _unit_and_function(request, data[6], pdu[0] if pdu else None) or _body(request, pdu)


def _unit_and_function(request: _Request, unit: int, function: int | None) -> str | None:
    if unit != request.unit:
        return f"a reply from unit {unit} to a request to unit {request.unit}"
    if function is None:
        return "a reply without a function code"
    if function not in (request.function, request.function | 0x80):
        return f"a reply with function code {function} to a function {request.function} request"
    return None


def _body(request: _Request, pdu: bytes) -> str | None:
    function = request.function
    if pdu[0] & 0x80:
        return None if len(pdu) == 2 else f"an exception reply of {len(pdu)} bytes, not 2"
    if function in _READS:
        if len(pdu) < 2:
            return f"a function {function} reply without a byte count"
        declared, held = pdu[1], len(pdu) - 2
        if declared != held:
            return f"a function {function} reply whose byte count says {declared} but holds {held}"
        if function in (3, 4) and declared % 2:
            return f"a function {function} reply of {declared} bytes: registers are 2 bytes each"
        if request.count is not None:
            asked = 2 * request.count if function in (3, 4) else (request.count + 7) // 8
            if declared > asked:
                return f"a function {function} reply of {declared} bytes to a request for {asked}"
    elif function in _WRITES and len(pdu) != 5:
        return f"a function {function} reply of {len(pdu)} bytes, not 5"
    return None
