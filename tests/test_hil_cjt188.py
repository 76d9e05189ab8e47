"""The simulated CJ/T 188 line over a real socat pty pair, read with the driver's codec.

The agent's end is opened with pyserial (non-blocking, read through the event loop); requests are
built and replies parsed with `drivers.cjt188`, while the simulator encodes with its own code,
so every test here is also a cross-check of two independent encoders. Each test is bounded: a
reply is awaited at most `REPLY_S`, and silence is observed for `SILENCE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial  # type: ignore[import-untyped]

from drivers.cjt188.data import decode_901f_response, encode_901f_response
from drivers.cjt188.errors import AbnormalReplyError, BcdError, FrameError
from drivers.cjt188.frame import (
    DI_ORDERS,
    DI_READ_ADDRESS,
    DiOrder,
    Frame,
    FrameDecoder,
    classify_meter_type,
    encode_frame,
    is_reply_to,
    parse_data_reply,
    read_address_request,
    read_data_request,
)
from hil.cjt188_meter import SimulatedCjt188Line, SimulatedCjt188Meter
from tests.serial_pair import SerialPair, serial_pair

pytestmark = pytest.mark.timeout(20)

REPLY_S = 2.0
SILENCE_S = 0.3

WATER = "78330007061326"
HEAT = "00000000250001"
GAS = "00000000300001"
WATER_VALUES = {"volume": 68.0, "volume_settlement": 60.5, "status_battery_low": 1}
HEAT_VALUES = {
    "heat_energy_settlement": 12345.67,
    "heat_energy": 12350.0,
    "power": 5500.0,
    "flow_rate": 0.4321,
    "volume": 123.45,
    "flow_temperature": 65.43,
    "return_temperature": 42.1,
    "operating_hours": 8760.0,
    "status_valve_closed": 1,
}


class AgentEnd:
    """The agent's side of the cable: the driver's codec over a non-blocking pyserial port."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(
            path, baudrate=2400, parity=serial.PARITY_EVEN, timeout=0, write_timeout=0
        )
        self.fd: int = self.port.fileno()
        self.decoder = FrameDecoder()
        self.raw = bytearray()  # every byte received, for preamble and noise checks
        self._frames: list[Frame] = []
        self._arrived = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            chunk = os.read(self.fd, 4096)
            self.raw += chunk
            self._frames += self.decoder.feed(chunk)
            self._arrived.set()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        self.port.close()

    async def ask(self, request: Frame, *, within: float = REPLY_S) -> Frame | None:
        """Send ``request``; its reply, or None if none came ``within`` seconds."""
        self._frames.clear()
        self.raw.clear()
        os.write(self.fd, encode_frame(request))
        try:
            async with asyncio.timeout(within):
                while True:
                    for frame in self._frames:
                        if is_reply_to(frame, request):
                            return frame
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            return None

    async def read(self, address: str, meter_type: int, order: DiOrder, ser: int = 0) -> Frame:
        request = read_data_request(address, meter_type, di_order=order, ser=ser)
        reply = await self.ask(request)
        assert reply is not None, f"meter {address} did not answer a {order} read"
        return reply


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


@contextlib.asynccontextmanager
async def line_and_agent(
    pair: SerialPair, *meters: SimulatedCjt188Meter
) -> AsyncIterator[tuple[SimulatedCjt188Line, AgentEnd]]:
    async with SimulatedCjt188Line(pair.b, meters=meters) as line:
        agent = AgentEnd(str(pair.a))
        try:
            yield line, agent
        finally:
            agent.close()


def _water(**options: Any) -> SimulatedCjt188Meter:
    return SimulatedCjt188Meter(WATER, meter_type=0x10, values=WATER_VALUES, **options)


def _heat(**options: Any) -> SimulatedCjt188Meter:
    return SimulatedCjt188Meter(HEAT, meter_type=0x25, values=HEAT_VALUES, **options)


# --- normal reads --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", DI_ORDERS)
async def test_a_water_meter_answers_in_its_di_order(pair: SerialPair, order: DiOrder) -> None:
    async with line_and_agent(pair, _water(di_order=order)) as (_, agent):
        reply = await agent.read(WATER, 0x10, order, ser=9)
    split = parse_data_reply(reply, di_order=order, ser=9)
    assert split.di_order == order
    assert reply.meter_type == 0x10
    # The driver's encoder and the simulator's own one agree, byte for byte.
    assert reply.data == encode_901f_response(
        WATER_VALUES, kind="water_cold", di_order=order, ser=9
    )
    points = decode_901f_response(reply.data, kind="water_cold", di_order=order)
    assert points == {
        "volume": 68.0,
        "volume_settlement": 60.5,
        "status_valve_closed": 0,
        "status_valve_abnormal": 0,
        "status_battery_low": 1,
    }


async def test_a_heat_meter_in_other_units_reads_in_kwh_w_and_m3(pair: SerialPair) -> None:
    units = {"heat_energy": 0x08, "heat_energy_settlement": 0x11, "power": 0x14, "flow_rate": 0x32}
    meter = _heat(di_order="swapped", unit_codes=units, meter_clock=(2026, 11, 29, 8, 30, 0))
    async with line_and_agent(pair, meter) as (_, agent):
        # Asked with the class code 20H, the meter answers as 25H, as real heat meters do.
        reply = await agent.read(HEAT, 0x20, "swapped")
    assert reply.meter_type == 0x25
    kind = classify_meter_type(reply.meter_type)
    assert kind == "heat"
    assert reply.data == encode_901f_response(
        HEAT_VALUES,
        kind=kind,
        di_order="swapped",
        unit_codes=units,
        meter_clock="2026-11-29 08:30:00",
    )
    points = decode_901f_response(reply.data, kind=kind)
    assert points["heat_energy"] == 12350.0  # 12.35 MWh
    assert points["heat_energy_settlement"] == pytest.approx(12345.67, abs=2.8)  # 44.44 GJ
    assert points["power"] == 5500.0  # 5500.00 W
    assert points["flow_rate"] == pytest.approx(0.4321)  # 432.1 L/h
    assert points["flow_temperature"] == 65.43
    assert points["status_valve_closed"] == 1


async def test_values_may_be_a_callable_read_at_each_request(pair: SerialPair) -> None:
    calls: list[int] = []

    def values() -> dict[str, float]:
        calls.append(1)
        return {"volume": 10.0 + len(calls), "volume_settlement": 0.0}

    meter = SimulatedCjt188Meter(GAS, meter_type=0x30, values=values)
    async with line_and_agent(pair, meter) as (_, agent):
        first = await agent.read(GAS, 0x30, "standard")
        second = await agent.read(GAS, 0x30, "standard")
    assert decode_901f_response(first.data, kind="gas")["volume"] == 11.0
    assert decode_901f_response(second.data, kind="gas")["volume"] == 12.0


# --- DI order ------------------------------------------------------------------------------------


async def test_a_read_in_the_other_di_order_gets_no_answer(pair: SerialPair) -> None:
    async with line_and_agent(pair, _water(di_order="swapped")) as (line, agent):
        request = read_data_request(WATER, 0x10, di_order="standard")
        assert await agent.ask(request, within=SILENCE_S) is None
        assert line.requests == [encode_frame(request, preamble=0)]  # heard, not understood


async def test_a_meter_may_answer_the_other_di_order_abnormal(pair: SerialPair) -> None:
    meter = _water(di_order="swapped", di_mismatch="abnormal")
    async with line_and_agent(pair, meter) as (_, agent):
        reply = await agent.ask(read_data_request(WATER, 0x10, di_order="standard", ser=3))
    assert reply is not None
    assert reply.control == 0xC1
    with pytest.raises(AbnormalReplyError) as caught:
        parse_data_reply(reply)
    assert caught.value.ser == 3
    assert caught.value.status == bytes([0x20, 0x00])  # battery low, as the meter's values say


async def test_a_scan_detects_the_di_order(pair: SerialPair) -> None:
    async with line_and_agent(pair, _water(di_order="swapped")) as (_, agent):
        found = []
        for order in DI_ORDERS:
            reply = await agent.ask(
                read_data_request(WATER, 0x10, di_order=order), within=SILENCE_S
            )
            if reply is not None:
                found.append(parse_data_reply(reply).di_order)
    assert found == ["swapped"]


# --- addressing ----------------------------------------------------------------------------------


async def test_only_the_addressed_meter_answers(pair: SerialPair) -> None:
    gas = SimulatedCjt188Meter(GAS, meter_type=0x30, values={"volume": 1.5})
    async with line_and_agent(pair, _water(), _heat(), gas) as (_, agent):
        reply = await agent.read(HEAT, 0x25, "standard")
        await asyncio.sleep(SILENCE_S)  # any second answer would have arrived by now
        assert agent.decoder.frames == 1
        assert reply.address == HEAT
        assert await agent.ask(read_data_request("00000000000099", 0x10), within=SILENCE_S) is None
        # A water read sent to the heat meter's address is not for it.
        assert await agent.ask(read_data_request(HEAT, 0x10), within=SILENCE_S) is None
        reply = await agent.read(GAS, 0x30, "standard")
    assert decode_901f_response(reply.data, kind="gas")["volume"] == 1.5


async def test_read_address_works_with_a_lone_meter(pair: SerialPair) -> None:
    async with line_and_agent(pair, _heat()) as (_, agent):
        reply = await agent.ask(read_address_request(ser=5))
    assert reply is not None
    assert reply.control == 0x83
    assert (reply.address, reply.meter_type) == (HEAT, 0x25)
    assert parse_data_reply(reply, di=DI_READ_ADDRESS, di_order="standard", ser=5).body == b""


async def test_read_address_gets_no_answer_with_several_meters(pair: SerialPair) -> None:
    async with line_and_agent(pair, _water(), _heat()) as (_, agent):
        assert await agent.ask(read_address_request(), within=SILENCE_S) is None


# --- faults --------------------------------------------------------------------------------------


async def test_a_silent_meter_and_its_return(pair: SerialPair) -> None:
    async with line_and_agent(pair, _water(), _heat()) as (line, agent):
        line.meter(WATER).silent = True
        assert await agent.ask(read_data_request(WATER, 0x10), within=SILENCE_S) is None
        assert (await agent.read(HEAT, 0x20, "standard")).address == HEAT  # the line still works
        line.meter(WATER).silent = False
        assert (await agent.read(WATER, 0x10, "standard")).address == WATER


async def test_a_bad_checksum_is_rejected_and_counted(pair: SerialPair) -> None:
    async with line_and_agent(pair, _water(bad_checksum=True)) as (_, agent):
        assert await agent.ask(read_data_request(WATER, 0x10), within=SILENCE_S) is None
    assert agent.decoder.rejects == {"checksum": 1}


async def test_a_non_bcd_value_raises_bcd_error(pair: SerialPair) -> None:
    async with line_and_agent(pair, _heat(non_bcd=True)) as (_, agent):
        reply = await agent.read(HEAT, 0x25, "standard")
    with pytest.raises(BcdError) as caught:
        decode_901f_response(reply.data, kind="heat")
    assert caught.value.field == "heat_energy_settlement"


async def test_an_abnormal_meter(pair: SerialPair) -> None:
    async with line_and_agent(pair, _heat(abnormal=True)) as (_, agent):
        reply = await agent.ask(read_data_request(HEAT, 0x25, ser=0x12))
    assert reply is not None
    assert reply.is_abnormal
    with pytest.raises(AbnormalReplyError) as caught:
        parse_data_reply(reply)
    assert (caught.value.ser, caught.value.status) == (0x12, bytes([0x40, 0x00]))


async def test_a_slow_meter_answers_late(pair: SerialPair) -> None:
    async with line_and_agent(pair, _water(slow_s=0.6)) as (_, agent):
        request = read_data_request(WATER, 0x10, ser=1)
        assert await agent.ask(request, within=0.2) is None
        late = await agent.ask(read_data_request(WATER, 0x10, ser=2))
    # The answer to the abandoned first request arrives while the second is waiting: only the
    # echoed SER tells them apart.
    assert late is not None
    assert parse_data_reply(late).ser == 1
    with pytest.raises(FrameError, match="does not echo"):
        parse_data_reply(late, ser=2)


async def test_noise_and_preamble_before_the_reply(pair: SerialPair) -> None:
    noise = bytes([0x00, 0x55, 0x68, 0x13, 0xFF])
    async with line_and_agent(pair, _water(noise=noise, preamble=3)) as (_, agent):
        reply = await agent.read(WATER, 0x10, "standard")
        raw = bytes(agent.raw)
    assert raw.startswith(noise + b"\xfe\xfe\xfe\x68")
    assert decode_901f_response(reply.data, kind="water_cold")["volume"] == 68.0
    assert agent.decoder.noise_bytes >= 2  # 00 55; the 68 13 FF start a candidate, rejected


@pytest.mark.parametrize("preamble", [0, 1, 4, 7])
async def test_any_number_of_leading_fe(pair: SerialPair, preamble: int) -> None:
    async with line_and_agent(pair, _water(preamble=preamble)) as (_, agent):
        await agent.read(WATER, 0x10, "standard")
        raw = bytes(agent.raw)
    assert raw[: preamble + 1] == b"\xfe" * preamble + b"\x68"


# --- the line itself -----------------------------------------------------------------------------


async def test_the_line_closes_once_and_enters_once(pair: SerialPair) -> None:
    line = SimulatedCjt188Line(pair.b, meters=[_water()])
    async with line:
        with pytest.raises(RuntimeError, match="only once"):
            await line.__aenter__()
    await line.aclose()  # idempotent
    with pytest.raises(KeyError, match="no meter"):
        line.meter("00000000000000")
    with pytest.raises(ValueError, match="share address"):
        SimulatedCjt188Line(pair.b, meters=[_water(), _water()])
