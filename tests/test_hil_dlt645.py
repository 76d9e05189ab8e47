"""Simulated DL/T 645 meters (hil.dlt645_meter) over a real serial line: a socat pty pair.

The simulator speaks the protocol with its own code; the test is where it meets the driver's
codec (drivers.dlt645), which builds every request and parses every reply. The agent's end is
opened with pyserial, non-blocking, and read through the event loop, as a driver would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import serial  # type: ignore[import-untyped]

from drivers.dlt645 import (
    AbnormalReplyError,
    BcdError,
    Frame,
    FrameDecoder,
    decode_value,
    load_profile,
    lookup,
    lookup_block,
    parse_address_reply,
    parse_read_reply,
    read_address_request,
    read_request,
)
from hil.dlt645_meter import SimulatedDlt645Line, SimulatedMeter, steady_load
from tests.serial_pair import SerialPair, serial_pair

REPLY_WITHIN_S = 1.0
SILENCE_S = 0.3
METER_A = "000000000161"
METER_B = "000006605518"
OLD_METER = "000000000003"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


def frozen_values() -> dict[str, float | int | str]:
    """A steady three-phase load at a clock that never moves, plus the nameplate parameters."""
    values: dict[str, float | int | str] = dict(steady_load(lambda: 0.0)())
    values.update(
        {
            "meter_number": METER_A,
            "rated_voltage": "220.0V",
            "pulse_constant": 1200,
            "meter_date": "25071502",
            "active_power_l3": -150.5,  # PV export on one phase: a negative value on the wire
        }
    )
    return values


class AgentEnd:
    """The agent's side of the cable: pyserial without blocking, fed to a FrameDecoder."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.decoder = FrameDecoder()
        self.raw = bytearray()
        self.frames: list[Frame] = []
        self._serial: Any = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._serial = serial.Serial(self.port, baudrate=2400, parity="E", timeout=0)
        asyncio.get_running_loop().add_reader(self._serial.fileno(), self._readable)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.get_running_loop().remove_reader(self._serial.fileno())
        self._serial.close()

    def _readable(self) -> None:
        chunk: bytes = self._serial.read(4096)
        self.raw += chunk
        self.frames += self.decoder.feed(chunk)
        self._changed.set()

    def send(self, request: bytes) -> None:
        self.raw.clear()
        self.frames.clear()
        self._serial.write(request)

    async def wait_until(self, condition: Any, *, within: float = REPLY_WITHIN_S) -> None:
        try:
            async with asyncio.timeout(within):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(f"nothing useful within {within} s; got {bytes(self.raw).hex(' ')}")

    async def ask(self, request: bytes, *, within: float = REPLY_WITHIN_S) -> Frame:
        """Send a request and return the one frame that answers it."""
        self.send(request)
        await self.wait_until(lambda: self.frames, within=within)
        (frame,) = self.frames
        return frame

    async def expect_silence(self, request: bytes, *, for_s: float = SILENCE_S) -> None:
        self.send(request)
        await asyncio.sleep(for_s)
        assert bytes(self.raw) == b"", f"expected silence, got {bytes(self.raw).hex(' ')}"


@asynccontextmanager
async def line_with(
    pair: SerialPair, *meters: SimulatedMeter
) -> AsyncIterator[tuple[SimulatedDlt645Line, AgentEnd]]:
    agent_port, device_port = pair
    async with (
        SimulatedDlt645Line(device_port, meters=meters) as line,
        AgentEnd(agent_port) as agent,
    ):
        yield line, agent


async def read_point(agent: AgentEnd, address: str, di: int, version: Any = "2007") -> object:
    frame = await agent.ask(read_request(address, di, version=version))
    assert frame.address == address
    return decode_value(lookup(di, version), parse_read_reply(frame, di, version=version))


# --- normal operation ------------------------------------------------------------------------


async def test_every_point_of_the_three_phase_profile(pair: SerialPair) -> None:
    values = frozen_values()
    profile = load_profile("dlt645-2007-3phase")
    async with line_with(pair, SimulatedMeter(METER_A, values)) as (_, agent):
        for point, di in profile.points.items():
            assert await read_point(agent, METER_A, di) == values[point], point
    assert agent.decoder.reject_count == 0


async def test_signed_value_and_parameters(pair: SerialPair) -> None:
    async with line_with(pair, SimulatedMeter(METER_A, frozen_values())) as (_, agent):
        assert await read_point(agent, METER_A, 0x02030300) == -150.5
        assert await read_point(agent, METER_A, 0x04000402) == METER_A
        assert await read_point(agent, METER_A, 0x04000404) == "220.0V"
        assert await read_point(agent, METER_A, 0x04000409) == 1200
        assert await read_point(agent, METER_A, 0x04000101) == "25071502"


async def test_block_reads(pair: SerialPair) -> None:
    values = frozen_values()
    profile = load_profile("dlt645-2007-3phase")
    async with line_with(pair, SimulatedMeter(METER_A, values)) as (_, agent):
        for block in profile.blocks:
            frame = await agent.ask(read_request(METER_A, block.di))
            decoded = profile.decode_block(block, parse_read_reply(frame, block.di))
            assert decoded == {p: values[p] for p in profile.block_points(block)}, block.di_text
            assert len(decoded) == len(block.members)


async def test_a_meter_without_blocks_answers_no_requested_data(pair: SerialPair) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), blocks=False)
    async with line_with(pair, meter) as (_, agent):
        frame = await agent.ask(read_request(METER_A, 0x0201FF00))
        assert frame.control == 0xD1
        with pytest.raises(AbnormalReplyError) as caught:
            parse_read_reply(frame, 0x0201FF00)
        assert caught.value.reasons == ("no requested data",)
        assert await read_point(agent, METER_A, 0x02010100) == 230.0  # single DIs still work


@pytest.mark.parametrize("di", [0x02800007, 0x02990000, 0x0299FF00])
async def test_unknown_or_unset_dis_answer_no_requested_data(pair: SerialPair, di: int) -> None:
    # 02800007 is a real DI this meter has no value for; 02990000 and 0299FF00 do not exist.
    async with line_with(pair, SimulatedMeter(METER_A, frozen_values())) as (_, agent):
        frame = await agent.ask(read_request(METER_A, di))
        assert frame.is_abnormal
        assert frame.error_word == 0x02


async def test_read_address_when_the_meter_is_alone(pair: SerialPair) -> None:
    async with line_with(pair, SimulatedMeter(METER_B, frozen_values())) as (_, agent):
        frame = await agent.ask(read_address_request())
        assert parse_address_reply(frame) == METER_B
        assert frame.address == METER_B


async def test_only_the_addressed_meter_answers(pair: SerialPair) -> None:
    a = SimulatedMeter(METER_A, {"voltage_l1": 231.0})
    b = SimulatedMeter(METER_B, {"voltage_l1": 229.5})
    async with line_with(pair, a, b) as (line, agent):
        assert await read_point(agent, METER_A, 0x02010100) == 231.0
        assert await read_point(agent, METER_B, 0x02010100) == 229.5
        await agent.expect_silence(read_request("000000000999", 0x02010100))  # nobody there
        await agent.expect_silence(read_request("999999999999", 0x02010100))  # broadcast
        await agent.expect_silence(read_address_request())  # two meters would collide
        # Short addressing: AA in the high bytes reaches the one meter whose low digits match,
        # and it answers with its full address.
        frame = await agent.ask(read_request("AAAAAAAA0161", 0x02010100))
        assert frame.address == METER_A
        assert parse_read_reply(frame, 0x02010100) == bytes.fromhex("1023")
        assert (a.requests, b.requests) == (2, 1)
        assert len(line.received) == 6
        assert len(line.sent) == 3


async def test_a_1997_meter(pair: SerialPair) -> None:
    values = {"voltage_l1": 100.0, "voltage_l2": 101.0, "voltage_l3": 99.0, "import_energy": 5.5}
    old = SimulatedMeter(OLD_METER, values, version="1997")
    async with line_with(pair, old) as (_, agent):
        assert await read_point(agent, OLD_METER, 0xB611, "1997") == 100.0
        frame = await agent.ask(read_request(OLD_METER, 0xB61F, version="1997"))
        block = lookup_block(0xB61F, "1997")
        assert load_profile("dlt645-1997").decode_block(
            block, parse_read_reply(frame, 0xB61F, version="1997")
        ) == {"voltage_l1": 100.0, "voltage_l2": 101.0, "voltage_l3": 99.0}
        frame = await agent.ask(read_request(OLD_METER, 0xB621, version="1997"))
        assert frame.control == 0xC1  # the 1997 abnormal reply: no current value here
        await agent.expect_silence(read_request(OLD_METER, 0x02010100))  # a 2007 read
        await agent.expect_silence(read_address_request())  # 1997 has no 13H


async def test_values_from_a_time_based_model(pair: SerialPair) -> None:
    now = [0.0]
    meter = SimulatedMeter(METER_A, steady_load(lambda: now[0], power_w=2000, start_kwh=10))
    async with line_with(pair, meter) as (_, agent):
        assert await read_point(agent, METER_A, 0x00010000) == 10.0
        now[0] += 1800  # half an hour at 2 kW
        assert await read_point(agent, METER_A, 0x00010000) == 11.0
        assert await read_point(agent, METER_A, 0x02030000) == 2000.0


# --- faults ----------------------------------------------------------------------------------


async def test_silent_meter(pair: SerialPair) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), fault="silent")
    async with line_with(pair, meter) as (_, agent):
        await agent.expect_silence(read_request(METER_A, 0x02010100))
        meter.fault = None
        assert await read_point(agent, METER_A, 0x02010100) == 230.0


async def test_bad_checksum(pair: SerialPair) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), fault="bad_checksum")
    async with line_with(pair, meter) as (_, agent):
        agent.send(read_request(METER_A, 0x02010100))
        await agent.wait_until(lambda: agent.decoder.reject_count)
        assert agent.frames == []
        assert agent.decoder.reject_counts == {"checksum": 1}


async def test_non_bcd_value(pair: SerialPair) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), fault="non_bcd")
    async with line_with(pair, meter) as (_, agent):
        frame = await agent.ask(read_request(METER_A, 0x00010000))
        value = parse_read_reply(frame, 0x00010000)
        with pytest.raises(BcdError):
            decode_value(lookup(0x00010000, "2007"), value)


async def test_abnormal_meter(pair: SerialPair) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), fault="abnormal")
    async with line_with(pair, meter) as (_, agent):
        frame = await agent.ask(read_request(METER_A, 0x02010100))
        assert frame.control == 0xD1
        assert frame.error_reasons == ("other error",)


async def test_slow_meter(pair: SerialPair) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), fault="slow", slow_s=0.6)
    async with line_with(pair, meter) as (_, agent):
        await agent.expect_silence(read_request(METER_A, 0x02010100), for_s=0.3)
        agent.raw.clear()
        await agent.wait_until(lambda: agent.frames, within=1.5)  # the late reply arrives
        assert parse_read_reply(agent.frames[0], 0x02010100) == bytes.fromhex("0023")


async def test_noise_before_the_reply(pair: SerialPair) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), fault="noise", noise=b"\x00\x68\x55\x13")
    async with line_with(pair, meter) as (_, agent):
        assert await read_point(agent, METER_A, 0x02010100) == 230.0
        assert bytes(agent.raw).startswith(b"\x00\x68\x55\x13\x68")
        assert agent.decoder.reject_count >= 1


@pytest.mark.parametrize("preamble", [0, 1, 2, 3, 4])
async def test_reply_preamble(pair: SerialPair, preamble: int) -> None:
    meter = SimulatedMeter(METER_A, frozen_values(), reply_preamble=preamble)
    async with line_with(pair, meter) as (_, agent):
        frame = await agent.ask(read_request(METER_A, 0x02010100))
        assert frame.preamble == preamble
        assert bytes(agent.raw) == b"\xfe" * preamble + frame.raw


# --- the line itself -------------------------------------------------------------------------


async def test_the_line_survives_its_port_vanishing(pair: SerialPair) -> None:
    _, device_port = pair
    line = SimulatedDlt645Line(device_port, meters=[SimulatedMeter(METER_A, {})])
    async with line:
        assert not line.port_lost
        await pair.astop()
        async with asyncio.timeout(2):
            await line.wait_port_lost()
    await line.aclose()  # again: harmless
    with pytest.raises(RuntimeError, match="only once"):
        await line.__aenter__()


def test_meter_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="12 digits"):
        SimulatedMeter("161", {})
    with pytest.raises(ValueError, match="0-4 FE"):
        SimulatedMeter(METER_A, {}, reply_preamble=5)
    with pytest.raises(ValueError, match="share the address"):
        SimulatedDlt645Line("/dev/null", [SimulatedMeter(METER_A, {}), SimulatedMeter(METER_A, {})])
