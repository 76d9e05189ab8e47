"""The byte-level serial client (agent.core.serial_port: SerialPort, LineClient) on a socat pty
pair, against a tiny peer on the device end.

The client knows no protocol: ``transact`` writes a request and feeds the reply bytes to the
caller's ``complete`` until it returns a frame. The peer here answers each request line
``<text>\\n`` with ``re:<text>;`` (in as many pieces as a test asks, as a slow UART delivers
them), so the tests see the client alone.
"""

from __future__ import annotations

import asyncio
import errno
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from unittest import mock

import pytest
import serial

from agent.core.errors import DeviceUnavailableError
from agent.core.links import Link, SerialLinkConfig
from agent.core.serial_port import LineClient, SerialSettings
from tests.serial_pair import SerialPair, serial_pair

TIMEOUT = 0.3
LOGGER = "agent.core.serial_port"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


class Peer:
    """The device end: answers each request line with ``re:<line>;`` after ``delay_s``, written
    in ``pieces`` parts ``gap_s`` apart. Stops reading when its port goes away."""

    def __init__(
        self, port: str, *, pieces: int = 1, gap_s: float = 0.03, delay_s: float = 0.0
    ) -> None:
        self.port = port
        self.pieces = pieces
        self.gap_s = gap_s
        self.delay_s = delay_s
        self.requests: list[bytes] = []
        self._serial: Any = None
        self._buffer = bytearray()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._reading = False

    async def __aenter__(self) -> Self:
        self._serial = serial.Serial(self.port, baudrate=9600, timeout=0)
        asyncio.get_running_loop().add_reader(self._serial.fileno(), self._on_readable)
        self._reading = True
        self._task = asyncio.create_task(self._serve(), name=f"peer[{self.port}]")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop_reading()
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task
        self._serial.close()

    def _stop_reading(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self._serial.fileno())
            self._reading = False

    def _on_readable(self) -> None:
        try:
            chunk: bytes = self._serial.read(4096)
        except serial.SerialException:  # the pty pair was stopped
            self._stop_reading()
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, _, rest = bytes(self._buffer).partition(b"\n")
            self._buffer[:] = rest
            self.requests.append(line)
            self._queue.put_nowait(line)

    async def _serve(self) -> None:
        while True:
            line = await self._queue.get()
            await asyncio.sleep(self.delay_s)
            reply = b"re:" + line + b";"
            size = -(-len(reply) // self.pieces)
            for start in range(0, len(reply), size):
                self._serial.write(reply[start : start + size])
                await asyncio.sleep(self.gap_s)


def answer(received: bytes) -> bytes | None:
    """The ``complete`` function of the peer's protocol: a reply ends with ``;``."""
    return received if received.endswith(b";") else None


def line_link(port: str, **fields: Any) -> Link:
    config = {"kind": "serial", "port": port, "baudrate": 9600, "timeout": TIMEOUT, **fields}
    return Link("line", SerialLinkConfig.model_validate(config))


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


async def test_a_reply_that_arrives_in_pieces_is_read_whole(
    pair: SerialPair, caplog: pytest.LogCaptureFixture
) -> None:
    agent_end, device_end = pair
    async with (
        Peer(device_end, pieces=4) as peer,
        line_link(agent_end) as link,
        LineClientOf(link) as client,
    ):
        for text in (b"first", b"second"):
            assert await client.transact("meter", text + b"\n", answer) == b"re:" + text + b";"
    assert peer.requests == [b"first", b"second"]
    assert client.requests == 2
    assert not [r for r in caplog.records if r.name == LOGGER]


async def test_the_port_is_opened_again_when_the_line_comes_back(
    pair: SerialPair, caplog: pytest.LogCaptureFixture
) -> None:
    agent_end, device_end = pair
    async with line_link(agent_end) as link, LineClientOf(link) as client:
        async with Peer(device_end):
            assert await client.transact("meter", b"a\n", answer) == b"re:a;"
            assert client.port_settings == SerialSettings(9600, "N", 1, 8)
            await pair.astop()  # the adapter is unplugged: the port it held is dead
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(DeviceUnavailableError) as raised:
                    await client.transact("meter", b"b\n", answer)
                assert time.monotonic() - started < TIMEOUT  # failed at once, not timed out
                assert raised.value.device == "meter"
                assert client.port_settings is None
        assert "not present" in raised.value.reason
        await pair.astart()  # plugged in again: the same path, a new pty behind it
        async with Peer(device_end):
            for text in (b"c", b"d"):
                assert await client.transact("meter", text + b"\n", answer) == b"re:" + text + b";"
    assert len(messages(caplog, "is unavailable")) == 1
    assert len(messages(caplog, "is back")) == 1
    assert len([r for r in caplog.records if r.name == LOGGER]) == 2


async def test_input_nobody_waits_for_does_not_keep_the_loop_busy(pair: SerialPair) -> None:
    """A late reply sitting unread, then a hung-up port, between transactions: the event loop
    must sleep, not call a reader on every turn (measured as this process's CPU time)."""
    agent_end, device_end = pair
    async with (
        Peer(device_end, delay_s=0.2) as peer,
        line_link(agent_end, timeout=0.1) as link,
        LineClientOf(link) as client,
    ):
        with pytest.raises(DeviceUnavailableError):
            await client.transact("meter", b"slow\n", answer)
        await asyncio.sleep(0.25)  # the late reply has come and sits in the port
        assert peer.requests == [b"slow"]
        assert await cpu_while_idle(0.3) < 0.1
        await pair.astop()  # the port the client holds hangs up
        assert await cpu_while_idle(0.3) < 0.1


async def cpu_while_idle(seconds: float) -> float:
    """Leave the loop idle for ``seconds``; the CPU time this process used meanwhile."""
    before = time.process_time()
    await asyncio.sleep(seconds)
    return time.process_time() - before


async def test_a_port_that_hangs_up_while_draining_is_unavailable(
    pair: SerialPair, caplog: pytest.LogCaptureFixture
) -> None:
    agent_end, device_end = pair
    hung_up = termios.error(errno.EIO, "Input/output error")  # what tcdrain raises then
    async with Peer(device_end), line_link(agent_end) as link, LineClientOf(link) as client:
        with (
            mock.patch.object(serial.Serial, "flush", autospec=True, side_effect=hung_up),
            pytest.raises(DeviceUnavailableError) as raised,
        ):
            await client.transact("meter", b"x\n", answer)
        assert "Input/output error" in raised.value.reason
        assert await client.transact("meter", b"y\n", answer) == b"re:y;"
    assert len(messages(caplog, "is unavailable")) == 1
    assert len(messages(caplog, "is back")) == 1


class LineClientOf:
    """``async with LineClientOf(link) as client``: a LineClient closed on exit."""

    def __init__(self, link: Link) -> None:
        self.client = LineClient(link, protocol="test")

    async def __aenter__(self) -> LineClient:
        return self.client

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()


def test_a_meter_runs_at_its_own_then_its_lines_explicit_then_its_protocols_settings() -> None:
    from agent.core.links import SerialLinkConfig
    from agent.core.serial_port import SerialSettings

    defaults = {"default_baudrate": 2400, "default_parity": "E"}
    bare = SerialLinkConfig(kind="serial", port="/dev/ttyUSB0")  # Modbus's 9600 8N1 unsaid
    assert SerialSettings.for_device(bare, baudrate=None, parity=None, **defaults) == (
        SerialSettings(2400, "E")
    )
    said = SerialLinkConfig(kind="serial", port="/dev/ttyUSB0", baudrate=9600, parity="N")
    assert SerialSettings.for_device(said, baudrate=None, parity=None, **defaults) == (
        SerialSettings(9600, "N")
    )
    assert SerialSettings.for_device(said, baudrate=1200, parity="O", **defaults) == (
        SerialSettings(1200, "O")
    )


def test_a_device_polled_less_often_than_the_retry_cap_gets_a_poller() -> None:
    # CJ/T 188 meters default to a minute; hourly ones exist: the offline retry must still build.
    from agent.core.source import PointInfo
    from agent.sources.poller import MAX_OFFLINE_RETRY, IntervalPoller

    class Slow:
        def __init__(self) -> None:
            self.name = "slow"
            self.points = {"volume": PointInfo(unit="m3", interval=3600.0)}

        async def read(self, points: object) -> list[object]:
            return []

        async def write(self, point: str, value: object) -> None:
            raise ValueError(point)

    async def sink(readings: object) -> None:
        pass

    poller = IntervalPoller(Slow(), sink=sink)  # type: ignore[arg-type]
    assert poller._retry.next_delay() == 3600.0 >= MAX_OFFLINE_RETRY
