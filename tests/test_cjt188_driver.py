"""The CJ/T 188 driver (drivers.cjt188: Cjt188Meter on the link's LineClient) against the
independent simulated meters (hil.cjt188_meter) on a socat pty pair.

Devices are opened as the service opens them (`open_links` / `open_devices`). Expected values are
the simulator's, in the agent's units (m3, kWh, W, m3/h, degC, h); each is exactly representable
in its field's BCD format, so equality is exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.core.clock import ManualClock
from agent.core.errors import DeviceUnavailableError
from agent.core.links import SerialLinkConfig
from agent.core.record import Quality, Reading
from agent.sources.compose import open_devices, open_links
from drivers.cjt188.device import Cjt188Meter
from drivers.cjt188.spec import Cjt188Device
from hil.cjt188_meter import SimulatedCjt188Line, SimulatedCjt188Meter
from tests.serial_pair import SerialPair, serial_pair

WATER = "00000000000012"
HEAT = "11223344550077"
TIMEOUT = 0.3
CLOCK = ManualClock(datetime(2025, 12, 1, 2, 0, tzinfo=UTC))

WATER_VALUES: dict[str, float] = {
    "volume": 1234.56,
    "volume_settlement": 1200.5,
    "status_valve_closed": 1,
    "status_valve_abnormal": 0,
    "status_battery_low": 1,
}
HEAT_VALUES: dict[str, float] = {
    "heat_energy_settlement": 1000.5,
    "heat_energy": 2340.0,  # sent in MWh (2.34), published in kWh
    "power": 12340.0,  # sent in kW (12.34), published in W
    "flow_rate": 1.2345,
    "volume": 456.78,
    "flow_temperature": 65.43,
    "return_temperature": 45.21,
    "operating_hours": 12345,
    "status_valve_closed": 0,
    "status_valve_abnormal": 0,
    "status_battery_low": 0,
}
WATER_UNITS = {
    "volume": "m3",
    "volume_settlement": "m3",
    "status_valve_closed": "",
    "status_valve_abnormal": "",
    "status_battery_low": "",
}
HEAT_UNITS = {
    "heat_energy_settlement": "kWh",
    "heat_energy": "kWh",
    "power": "W",
    "flow_rate": "m3/h",
    "volume": "m3",
    "flow_temperature": "degC",
    "return_temperature": "degC",
    "operating_hours": "h",
    "status_valve_closed": "",
    "status_valve_abnormal": "",
    "status_battery_low": "",
}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


def water_meter(**fields: Any) -> SimulatedCjt188Meter:
    """A cold-water meter that sends its DI low byte first, as most 2004-era ones do."""
    fields = {"values": WATER_VALUES, **fields}
    return SimulatedCjt188Meter(address=WATER, meter_type=0x10, di_order="swapped", **fields)


def water_config(**fields: Any) -> Cjt188Device:
    raw = {
        "protocol": "cjt188",
        "name": "water_main",
        "bus": "field",
        "address": WATER,
        "profile": "cjt188-water",  # di_order swapped by default
        **fields,
    }
    return Cjt188Device.model_validate(raw)


@asynccontextmanager
async def opened(
    port: str, *configs: Cjt188Device, line: Mapping[str, Any] | None = None
) -> AsyncIterator[dict[str, Cjt188Meter]]:
    bus = SerialLinkConfig.model_validate(
        {"kind": "serial", "port": port, "baudrate": 2400, "parity": "E", "timeout": TIMEOUT}
        | dict(line or {})
    )
    async with AsyncExitStack() as stack:
        links = await open_links({"field": bus}, stack)
        devices = await open_devices(list(configs), links, stack=stack, clock=CLOCK)
        meters = {}
        for name, device in devices.items():
            assert isinstance(device, Cjt188Meter)
            meters[name] = device
        yield meters


def values_of(readings: Sequence[Reading]) -> dict[str, Any]:
    return {r.point: r.value for r in readings}


def assert_all_bad(readings: Sequence[Reading], points: Mapping[str, Any]) -> None:
    assert [r.point for r in readings] == list(points)
    assert {r.quality for r in readings} == {Quality.BAD}
    assert {r.value for r in readings} == {None}


# --- values ----------------------------------------------------------------------------------


async def test_a_water_meter_decodes_to_the_simulators_values(pair: SerialPair) -> None:
    agent_end, device_end = pair
    async with (
        SimulatedCjt188Line(device_end, meters=[water_meter()]) as line,
        opened(agent_end, water_config()) as devices,
    ):
        readings = await devices["water_main"].read(list(devices["water_main"].points))
    assert values_of(readings) == WATER_VALUES
    assert {r.point: r.unit for r in readings} == WATER_UNITS
    assert {r.quality for r in readings} == {Quality.GOOD}
    assert {(r.device, r.ts_ms) for r in readings} == {("water_main", CLOCK.now_ms())}
    # One 901F read, its DI low byte first (swapped) as the profile says.
    (request,) = line.requests
    assert request[9] == 0x01  # read data
    assert request[11:13] == b"\x1f\x90"


async def test_a_heat_meter_decodes_to_the_simulators_values(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = SimulatedCjt188Meter(
        address=HEAT,
        meter_type=0x25,  # real heat meters answer as 25H whatever heat code they are asked
        di_order="standard",
        values=HEAT_VALUES,
        unit_codes={"heat_energy": 0x08},  # MWh
    )
    config = Cjt188Device.model_validate(
        {
            "protocol": "cjt188",
            "name": "heat_main",
            "bus": "field",
            "address": HEAT,
            "profile": "cjt188-heat",
            "di_order": "standard",
        }
    )
    async with (
        SimulatedCjt188Line(device_end, meters=[meter]),
        opened(agent_end, config) as devices,
    ):
        readings = await devices["heat_main"].read(list(devices["heat_main"].points))
    assert values_of(readings) == HEAT_VALUES
    assert {r.point: r.unit for r in readings} == HEAT_UNITS
    assert {r.quality for r in readings} == {Quality.GOOD}


# --- DI byte order -----------------------------------------------------------------------------


async def test_a_meter_asked_in_the_wrong_di_order_stays_silent(pair: SerialPair) -> None:
    """The simulator's default for a DI it does not know in that order: silence."""
    agent_end, device_end = pair
    wrong = water_config(name="wrong_order", di_order="standard")
    right = water_config(name="right_order", di_order="swapped")
    async with (
        SimulatedCjt188Line(device_end, meters=[water_meter()]),
        opened(agent_end, wrong, right) as devices,
    ):
        started = time.monotonic()
        with pytest.raises(DeviceUnavailableError) as raised:
            await devices["wrong_order"].read(list(WATER_VALUES))
        elapsed = time.monotonic() - started
        readings = await devices["right_order"].read(list(WATER_VALUES))
    assert raised.value.device == "wrong_order"
    assert TIMEOUT <= elapsed < TIMEOUT + 0.3
    assert values_of(readings) == WATER_VALUES


async def test_a_meter_that_answers_a_wrong_order_abnormal_gives_bad_readings(
    pair: SerialPair, caplog: pytest.LogCaptureFixture
) -> None:
    agent_end, device_end = pair
    meter = water_meter(di_mismatch="abnormal")
    async with (
        SimulatedCjt188Line(device_end, meters=[meter]),
        opened(agent_end, water_config(di_order="standard")) as devices,
    ):
        for _ in range(3):
            assert_all_bad(await devices["water_main"].read(list(WATER_VALUES)), WATER_VALUES)
    refusals = [r for r in caplog.records if "refused the read" in r.getMessage()]
    assert len(refusals) == 1  # logged once, not once per read


# --- replies that are not the answer ----------------------------------------------------------


async def test_a_slow_meters_late_reply_is_skipped_by_its_sequence_number(
    pair: SerialPair,
) -> None:
    agent_end, device_end = pair
    meter = water_meter(values={**WATER_VALUES, "volume": 1.0}, slow_s=0.8)
    async with (
        SimulatedCjt188Line(device_end, meters=[meter]) as line,
        opened(agent_end, water_config(timeout=0.5)) as devices,
    ):
        with pytest.raises(DeviceUnavailableError):
            await devices["water_main"].read(["volume"])
        # The meter answers at once from now on, with a new value; the late reply (SER 1,
        # volume 1.0) reaches the agent while it waits for the answer to SER 2.
        meter.slow_s = 0
        meter.values = {**WATER_VALUES, "volume": 2.0}
        readings = await devices["water_main"].read(["volume"])
        await asyncio.sleep(0)
    assert [(r.point, r.value, r.quality) for r in readings] == [("volume", 2.0, Quality.GOOD)]
    assert [request[13] for request in line.requests] == [1, 2]  # SER of each request


async def test_a_late_abnormal_reply_is_not_taken_for_the_next_answer(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = water_meter(abnormal=True, slow_s=0.8)
    async with (
        SimulatedCjt188Line(device_end, meters=[meter]),
        opened(agent_end, water_config(timeout=0.5)) as devices,
    ):
        with pytest.raises(DeviceUnavailableError):
            await devices["water_main"].read(list(WATER_VALUES))
        meter.abnormal = False
        meter.slow_s = 0
        readings = await devices["water_main"].read(list(WATER_VALUES))
    assert values_of(readings) == WATER_VALUES


class _OddUnitMeter(SimulatedCjt188Meter):
    """A meter that sends ``odd_unit`` as the unit code of its cumulative volume."""

    odd_unit = 0x99

    def body_901f(self, values: Mapping[str, float]) -> bytes:
        body = bytearray(super().body_901f(values))
        body[4] = self.odd_unit  # after the 4 BCD bytes of the volume
        return bytes(body)


@pytest.mark.parametrize(
    "fault",
    [
        "non_bcd",
        "unknown unit code",
        "unit code of another quantity",
    ],
)
async def test_a_reply_that_is_not_numbers_gives_bad_readings(pair: SerialPair, fault: str) -> None:
    agent_end, device_end = pair
    meter: SimulatedCjt188Meter
    if fault == "non_bcd":
        meter = water_meter(non_bcd=True)
    else:
        meter = _OddUnitMeter(address=WATER, di_order="swapped", values=WATER_VALUES)
        meter.odd_unit = 0x99 if fault == "unknown unit code" else 0x05  # 05H: kWh
    async with (
        SimulatedCjt188Line(device_end, meters=[meter]),
        opened(agent_end, water_config()) as devices,
    ):
        readings = await devices["water_main"].read(list(WATER_VALUES))
    assert_all_bad(readings, WATER_VALUES)


async def test_an_abnormal_reply_gives_bad_readings_logged_once(
    pair: SerialPair, caplog: pytest.LogCaptureFixture
) -> None:
    agent_end, device_end = pair
    meter = water_meter(abnormal=True)
    async with (
        SimulatedCjt188Line(device_end, meters=[meter]),
        opened(agent_end, water_config()) as devices,
    ):
        device = devices["water_main"]
        for _ in range(3):
            assert_all_bad(await device.read(list(WATER_VALUES)), WATER_VALUES)
        meter.abnormal = False
        assert values_of(await device.read(list(WATER_VALUES))) == WATER_VALUES
        meter.abnormal = True
        assert_all_bad(await device.read(list(WATER_VALUES)), WATER_VALUES)
    refusals = [r for r in caplog.records if "refused the read" in r.getMessage()]
    assert len(refusals) == 2  # once per spell of refusals
    assert {r.levelno for r in refusals} == {logging.WARNING}


async def test_a_silent_meter_is_unavailable_within_its_timeout(pair: SerialPair) -> None:
    agent_end, device_end = pair
    async with (
        SimulatedCjt188Line(device_end, meters=[water_meter(silent=True)]) as line,
        opened(agent_end, water_config(timeout=0.2)) as devices,
    ):
        started = time.monotonic()
        with pytest.raises(DeviceUnavailableError) as raised:
            await devices["water_main"].read(list(WATER_VALUES))
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.5
    assert raised.value.device == "water_main"
    assert len(line.requests) == 1
