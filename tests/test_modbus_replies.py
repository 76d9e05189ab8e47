"""A Modbus reply that does not answer its request — another function code or unit id, a byte
count the frame does not hold — is never a good reading: the device is unavailable for that
poll, with the reason, logged once per state change and never as a traceback; the next good
reply is read as usual. The device is a raw TCP server on loopback sending crafted ADUs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agent.core.links import TcpLinkConfig
from agent.core.record import Quality
from drivers.modbus.replies import ReplyCheck
from drivers.modbus.spec import ModbusDevice
from tests.helpers import ModbusPoller, modbus_bus

Answer = Callable[[int, int, bytes], bytes]  # (transaction id, unit id, request PDU) -> ADU


def adu(tid: int, unit: int, pdu: bytes, *, protocol: int = 0) -> bytes:
    """An MBAP frame (MODBUS Messaging on TCP/IP Implementation Guide v1.0b §3.1.3)."""
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


def good(tid: int, unit: int, request: bytes) -> bytes:
    count = int.from_bytes(request[3:5], "big")
    data = b"".join(struct.pack(">H", n + 1) for n in range(count))
    return adu(tid, unit, bytes([request[0], len(data)]) + data)


FAULTS: dict[str, tuple[Answer, str]] = {
    "wrong-function": (
        lambda t, u, r: adu(t, u, bytes([4, 4, 0, 1, 0, 2])),
        "a reply with function code 4 to a function 3 request",
    ),
    "wrong-unit": (
        lambda t, u, r: good(t, u + 1, r),
        "a reply from unit 2 to a request to unit 1",
    ),
    "count-beyond-frame": (
        lambda t, u, r: adu(t, u, bytes([3, 4, 0, 1])),
        "a function 3 reply whose byte count says 4 but holds 2",
    ),
    "data-beyond-count": (
        lambda t, u, r: adu(t, u, bytes([3, 2, 0, 1, 0, 2])),
        "a function 3 reply whose byte count says 2 but holds 4",
    ),
    "odd-count": (
        lambda t, u, r: adu(t, u, bytes([3, 3, 0, 1, 0])),
        "a function 3 reply of 3 bytes: registers are 2 bytes each",
    ),
    "more-than-asked": (
        lambda t, u, r: adu(t, u, bytes([3, 6, 0, 1, 0, 2, 0, 3])),
        "a function 3 reply of 6 bytes to a request for 4",
    ),
    "unknown-function": (
        lambda t, u, r: adu(t, u, bytes([0x55, 0, 0])),
        "a reply with function code 85 to a function 3 request",
    ),
    "protocol-id": (
        lambda t, u, r: adu(t, u, bytes([3, 4, 0, 1, 0, 2]), protocol=7),
        "a reply with protocol id 7, not 0 (Modbus)",
    ),
    "long-exception": (
        lambda t, u, r: adu(t, u, bytes([0x83, 2, 0])),
        "an exception reply of 3 bytes, not 2",
    ),
}


class CraftedDevice:
    """A Modbus TCP peer on loopback whose every answer is ``self.answer(tid, unit, pdu)``."""

    def __init__(self) -> None:
        self.answer: Answer = good
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                request = await reader.readexactly(length - 1)
                writer.write(self.answer(tid, unit, request))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection: it does after a bad reply
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CraftedDevice]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


def _device() -> ModbusDevice:
    return ModbusDevice.model_validate(
        {
            "name": "meter",
            "bus": "plant",
            "unit_id": 1,
            "points": {
                "a": {"register": 0, "type": "uint16"},
                "b": {"register": 1, "type": "uint16"},
            },
        }
    )


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_reply_that_does_not_answer_the_request_is_never_a_good_reading(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    answer, reason = FAULTS[fault]
    caplog.set_level(logging.DEBUG, logger="asyncio")
    async with CraftedDevice().running() as peer:
        spec = TcpLinkConfig(kind="tcp", host="127.0.0.1", port=peer.port, timeout=2.0)
        async with modbus_bus("plant", spec) as bus:
            poller = ModbusPoller(_device(), bus)
            assert [r.value for r in await poller.poll_once()] == [1, 2]  # the peer works
            peer.answer = answer
            for _ in range(2):
                readings = await poller.poll_once()
                assert [r.quality for r in readings] == [Quality.BAD, Quality.BAD]
                assert [r.value for r in readings] == [None, None]
            assert poller.health.online is False
            assert poller.health.last_error == f"{reason} (the reply was discarded)"
            peer.answer = good
            readings = await poller.poll_once()
    assert [(r.value, r.quality) for r in readings] == [(1, Quality.GOOD), (2, Quality.GOOD)]
    assert poller.health.online is True
    # One line when it went, one when it came back; no traceback from anyone.
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.sources.poller"]
    assert lines == [
        f"device meter is unavailable: {reason} (the reply was discarded)",
        "device meter answers again after 2 failed polls",
    ]
    assert not [r for r in caplog.records if r.exc_info or r.name == "asyncio"]


def test_the_check_leaves_late_and_partial_replies_to_pymodbus() -> None:
    check = ReplyCheck("tcp")
    check.start()
    request = adu(7, 1, bytes([3, 0, 0, 0, 2]))
    assert check(True, request) == request
    late = good(6, 1, bytes([3, 0, 0, 0, 2]))  # an answer to the request before: skipped there
    assert check(False, late) == late
    whole = good(7, 1, bytes([3, 0, 0, 0, 2]))
    assert check(False, whole[:9]) == whole[:9]  # the rest is on its way
    assert check(False, whole) == whole
    assert check.problem is None
    rtu = ReplyCheck("rtu")
    rtu.start()
    rtu(True, bytes([1, 3, 0, 0, 0, 2, 0xC4, 0x0B]))
    seen: list[Any] = []
    rtu.on_problem = lambda: seen.append(rtu.problem)
    assert rtu(False, bytes([1])) == bytes([1])  # one byte: nothing to judge yet
    late = bytes([2, 3, 4, 0, 1, 0, 2])  # another unit's: a late answer, skipped by pymodbus
    assert rtu(False, late) == late
    assert rtu(False, bytes([1, 4, 4])) == b""
    assert seen == ["a reply with function code 4 to a function 3 request"]
