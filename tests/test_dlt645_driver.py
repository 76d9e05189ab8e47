"""The DL/T 645 driver (drivers.dlt645: Dlt645Meter on the link's LineClient) against the
independent simulated meters (hil.dlt645_meter) on a socat pty pair.

Devices are opened as the service opens them (`open_links` / `open_devices`, the registry's
driver) unless a test needs the meter object itself. What went over the wire is read on the
simulator's side (`SimulatedDlt645Line.received`) and decoded here from the frame layout, so
the frame counts do not trust the driver's own bookkeeping. Readings are stamped with a pinned
clock; durations are measured on the monotonic clock only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import termios
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
from agent.core.serial_port import SerialSettings
from agent.sources.compose import MemoryState, open_devices, open_links
from agent.sources.poller import IntervalPoller
from drivers.dlt645.device import Dlt645Meter
from drivers.dlt645.spec import Dlt645Device
from hil.dlt645_meter import SimulatedDlt645Line, SimulatedMeter
from tests.serial_pair import SerialPair, serial_pair

METER = "000000000161"
OTHER_METER = "000006605518"
OLD_METER = "000000000003"
TIMEOUT = 0.3  # the line's answer timeout
# A pty ignores parity, and this kernel (Linux 6.18) refuses with EINVAL a tcsetattr whose only
# change is one the driver ignores: opening a pty again at the speed it already has with parity
# E fails. Tests that open the same pty again after closing it (a restart) use parity N.
REOPENED_LINE = {"parity": "N"}
CLOCK = ManualClock(datetime(2025, 7, 15, 3, 0, tzinfo=UTC))

# A three-phase meter's values in the agent's units, each exactly representable in its DL/T 645
# format (so equality is exact), with signed values where the standard signs them.
VALUES_2007: dict[str, float] = {
    "import_energy": 12345.67,
    "import_energy_t1": 1234.56,
    "import_energy_t2": 5000.0,
    "import_energy_t3": 4000.11,
    "import_energy_t4": 2111.0,
    "export_energy": 321.09,
    "export_energy_t1": 100.0,
    "export_energy_t2": 200.0,
    "export_energy_t3": 21.09,
    "export_energy_t4": 0.0,
    "voltage_l1": 230.1,
    "voltage_l2": 229.8,
    "voltage_l3": 231.0,
    "current_l1": 5.123,
    "current_l2": 4.987,
    "current_l3": -0.512,
    "active_power": 2345.6,
    "active_power_l1": 1000.0,
    "active_power_l2": 1496.1,
    "active_power_l3": -150.5,  # PV export on one phase
    "reactive_power": -433.1,
    "apparent_power": 2400.5,
    "power_factor": 0.977,
    "power_factor_l1": 0.99,
    "power_factor_l2": 0.98,
    "power_factor_l3": -0.5,
    "frequency": 49.98,
}
# DL/T 645-1997 formats: whole volts, XX.XX A, XX.XX kvar, unsigned.
VALUES_1997: dict[str, float] = {
    "import_energy": 12345.67,
    "import_energy_t1": 1234.56,
    "import_energy_t2": 5000.0,
    "import_energy_t3": 4000.11,
    "import_energy_t4": 2111.0,
    "export_energy": 321.09,
    "voltage_l1": 230.0,
    "voltage_l2": 229.0,
    "voltage_l3": 231.0,
    "current_l1": 5.12,
    "current_l2": 4.98,
    "current_l3": 0.51,
    "active_power": 2345.6,
    "active_power_l1": 1000.0,
    "active_power_l2": 1200.0,
    "active_power_l3": 145.6,
    "reactive_power": 750.0,
    "power_factor": 0.977,
    "power_factor_l1": 0.99,
    "power_factor_l2": 0.98,
    "power_factor_l3": 0.5,
}

# The 2007 three-phase profile's plan: its six blocks, then the points no block carries twice.
BLOCKS_2007 = [0x0001FF00, 0x0002FF00, 0x0201FF00, 0x0202FF00, 0x0203FF00, 0x0206FF00]
SINGLES_AFTER_BLOCKS = [0x02040000, 0x02050000, 0x02800002]
# Every point's own DI, in the profile's order (DL/T 645-2007 appendix A).
SINGLE_DIS_2007 = [
    0x00010000, 0x00010100, 0x00010200, 0x00010300, 0x00010400,
    0x00020000, 0x00020100, 0x00020200, 0x00020300, 0x00020400,
    0x02010100, 0x02010200, 0x02010300,
    0x02020100, 0x02020200, 0x02020300,
    0x02030000, 0x02030100, 0x02030200, 0x02030300,
    0x02040000, 0x02050000,
    0x02060000, 0x02060100, 0x02060200, 0x02060300,
    0x02800002,
]  # fmt: skip


def unit_of(point: str) -> str:
    """The unit the agent publishes each point in (W from kW, var from kvar, VA from kVA)."""
    prefixes = {
        "import_energy": "kWh",
        "export_energy": "kWh",
        "voltage": "V",
        "current": "A",
        "active_power": "W",
        "reactive_power": "var",
        "apparent_power": "VA",
        "power_factor": "",
        "frequency": "Hz",
    }
    return next(unit for prefix, unit in prefixes.items() if point.startswith(prefix))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


def asked(line: SimulatedDlt645Line, *, version: str = "2007") -> list[int]:
    """The DIs of the read requests the simulated line received, in order (decoded here from
    ``68 A0..A5 68 C L DATA CS 16``, DATA +33H, DI low byte first)."""
    width = 4 if version == "2007" else 2
    dis = []
    for frame in line.received:
        data = bytes((b - 0x33) & 0xFF for b in frame[10:-2])
        dis.append(int.from_bytes(data[:width], "little"))
    return dis


def is_block(di: int, *, version: str = "2007") -> bool:
    return di >> 8 & 0xFF == 0xFF if version == "2007" else di & 0xF == 0xF


def values_of(readings: list[Reading]) -> dict[str, Any]:
    return {r.point: r.value for r in readings}


def bad_points(readings: list[Reading]) -> set[str]:
    return {r.point for r in readings if r.quality is not Quality.GOOD}


def meter_config(**fields: Any) -> Dlt645Device:
    raw = {
        "protocol": "dlt645",
        "name": "power_meter",
        "bus": "field",
        "address": METER,
        "profile": "dlt645-2007-3phase",
        **fields,
    }
    return Dlt645Device.model_validate(raw)


@asynccontextmanager
async def opened(
    port: str,
    *configs: Dlt645Device,
    state: MemoryState | None = None,
    line: Mapping[str, Any] | None = None,
) -> AsyncIterator[dict[str, Dlt645Meter]]:
    """The devices opened on one serial link as the service opens them (by the registry)."""
    bus = SerialLinkConfig.model_validate(
        {"kind": "serial", "port": port, "baudrate": 2400, "parity": "E", "timeout": TIMEOUT}
        | dict(line or {})
    )
    states = state if state is not None else MemoryState()
    async with AsyncExitStack() as stack:
        links = await open_links({"field": bus}, stack)
        devices = await open_devices(
            list(configs), links, stack=stack, clock=CLOCK, state_for=lambda _: states
        )
        meters = {}
        for name, device in devices.items():
            assert isinstance(device, Dlt645Meter)
            meters[name] = device
        yield meters


def agent_baudrate(port: str) -> int:
    """The speed the agent's end of the pty is set to now (a pty keeps the speed, not parity)."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        speed = termios.tcgetattr(fd)[4]
    finally:
        os.close(fd)
    speeds = {termios.B2400: 2400, termios.B4800: 4800, termios.B9600: 9600}
    return speeds[speed]


# --- reading ---------------------------------------------------------------------------------


async def test_a_three_phase_meter_gives_every_point_in_the_agents_units(
    pair: SerialPair,
) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007)
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, meter_config()) as devices,
    ):
        readings = await devices["power_meter"].read(list(devices["power_meter"].points))
    assert values_of(readings) == VALUES_2007
    assert [r.point for r in readings] == list(VALUES_2007)  # the profile's 27 points, in order
    assert {r.point: r.unit for r in readings} == {p: unit_of(p) for p in VALUES_2007}
    assert {r.quality for r in readings} == {Quality.GOOD}
    assert {(r.device, r.ts_ms) for r in readings} == {("power_meter", CLOCK.now_ms())}
    assert asked(line) == BLOCKS_2007 + SINGLES_AFTER_BLOCKS


async def test_block_identifiers_take_fewer_frames_than_single_ones(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007)
    with_blocks = meter_config(name="with_blocks")
    without = meter_config(name="without_blocks", blocks=False)
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, with_blocks, without) as devices,
    ):
        by_block = await devices["with_blocks"].read(list(VALUES_2007))
        frames_by_block = asked(line)
        line.received.clear()
        one_by_one = await devices["without_blocks"].read(list(VALUES_2007))
        frames_one_by_one = asked(line)
    assert values_of(by_block) == values_of(one_by_one) == VALUES_2007
    assert frames_by_block == BLOCKS_2007 + SINGLES_AFTER_BLOCKS  # 9 frames
    assert frames_one_by_one == SINGLE_DIS_2007  # 27 frames, no block
    assert devices["with_blocks"].frames == 9
    assert devices["without_blocks"].frames == 27


async def test_a_meter_without_blocks_is_learned_saved_and_restored(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007, blocks=False)  # answers D1H to every block
    state = MemoryState()
    async with SimulatedDlt645Line(device_end, [meter]) as line:
        async with opened(agent_end, meter_config(), state=state, line=REOPENED_LINE) as devices:
            first = await devices["power_meter"].read(list(VALUES_2007))
            first_frames = asked(line)
            line.received.clear()
            second = await devices["power_meter"].read(list(VALUES_2007))
            second_frames = asked(line)
        assert state.value is not None
        saved = json.loads(state.value)
        line.received.clear()
        # A restart: a new device on a new link, the same saved state.
        async with opened(agent_end, meter_config(), state=state, line=REOPENED_LINE) as devices:
            restarted = await devices["power_meter"].read(list(VALUES_2007))
            restarted_frames = asked(line)
    assert values_of(first) == values_of(second) == values_of(restarted) == VALUES_2007
    # First read: each block refused, then its points one by one; nothing is lost.
    assert [di for di in first_frames if is_block(di)] == BLOCKS_2007
    assert sorted(di for di in first_frames if not is_block(di)) == sorted(SINGLE_DIS_2007)
    assert len(first_frames) == 6 + 27
    assert saved["no_blocks"] == sorted(BLOCKS_2007)
    assert saved["unsupported"] == []
    # Learned: no block is asked again, in this run or after the restart.
    assert sorted(second_frames) == sorted(SINGLE_DIS_2007)
    assert sorted(restarted_frames) == sorted(SINGLE_DIS_2007)


async def test_an_identifier_the_meter_lacks_is_bad_and_not_asked_again(
    pair: SerialPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.dlt645.device")
    agent_end, device_end = pair
    lacking = {"frequency", "power_factor_l3"}  # the meter answers D1H "no requested data"
    values = {p: v for p, v in VALUES_2007.items() if p not in lacking}
    meter = SimulatedMeter(METER, values)
    state = MemoryState()
    async with SimulatedDlt645Line(device_end, [meter]) as line:
        async with opened(agent_end, meter_config(), state=state, line=REOPENED_LINE) as devices:
            first = await devices["power_meter"].read(list(VALUES_2007))
            first_frames = asked(line)
            line.received.clear()
            second = await devices["power_meter"].read(list(VALUES_2007))
            second_frames = asked(line)
        line.received.clear()
        async with opened(agent_end, meter_config(), state=state, line=REOPENED_LINE) as devices:
            restarted = await devices["power_meter"].read(list(VALUES_2007))
            restarted_frames = asked(line)
    for readings in (first, second, restarted):
        assert bad_points(readings) == lacking
        assert {r.point: r.value for r in readings if r.point in lacking} == dict.fromkeys(lacking)
        assert {p: v for p, v in values_of(readings).items() if p not in lacking} == values
    # The power-factor block holds a lacking member: refused whole, so its points were asked
    # one by one, and power_factor_l3 and frequency were refused.
    assert 0x0206FF00 in first_frames
    assert {0x02060300, 0x02800002} <= set(first_frames)
    for frames in (second_frames, restarted_frames):
        assert 0x0206FF00 not in frames
        assert not {0x02060300, 0x02800002} & set(frames)
        assert {0x02060000, 0x02060100, 0x02060200} <= set(frames)  # still read, one by one
    refusals = [r for r in caplog.records if "not asked again" in r.getMessage()]
    assert len(refusals) == 2  # once per identifier, not once per read


async def test_an_abnormal_reply_that_is_not_no_data_is_not_learned(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007, fault="abnormal")  # D1H "other error"
    state = MemoryState()
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, meter_config(), state=state) as devices,
    ):
        refused = await devices["power_meter"].read(list(VALUES_2007))
        meter.fault = None
        line.received.clear()
        recovered = await devices["power_meter"].read(list(VALUES_2007))
        recovered_frames = asked(line)
    assert bad_points(refused) == set(VALUES_2007)
    assert {r.value for r in refused} == {None}
    assert state.value is None  # nothing learned, nothing saved
    assert values_of(recovered) == VALUES_2007
    assert recovered_frames == BLOCKS_2007 + SINGLES_AFTER_BLOCKS


async def test_a_value_that_is_not_bcd_is_a_bad_reading_never_a_number(
    pair: SerialPair,
) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007, fault="non_bcd")
    state = MemoryState()
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, meter_config(), state=state) as devices,
    ):
        garbled = await devices["power_meter"].read(list(VALUES_2007))
        garbled_frames = asked(line)
        meter.fault = None
        line.received.clear()
        clean = await devices["power_meter"].read(list(VALUES_2007))
        clean_frames = asked(line)
    assert bad_points(garbled) == set(VALUES_2007)
    assert {r.value for r in garbled} == {None}
    # An unusable block is retried point by point this time; nothing is learned from it.
    assert sorted(di for di in garbled_frames if not is_block(di)) == sorted(SINGLE_DIS_2007)
    assert state.value is None
    assert values_of(clean) == VALUES_2007
    assert clean_frames == BLOCKS_2007 + SINGLES_AFTER_BLOCKS


async def test_a_silent_meter_is_unavailable_within_its_timeout(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007, fault="silent")
    timeout = 0.2
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, meter_config(timeout=timeout)) as devices,
    ):
        started = time.monotonic()
        with pytest.raises(DeviceUnavailableError) as raised:
            await devices["power_meter"].read(list(VALUES_2007))
        elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + 0.3
    assert raised.value.device == "power_meter"
    assert raised.value.readings == ()
    assert len(line.received) == 1  # one timeout, not one per block


async def test_a_meter_that_falls_silent_mid_read_keeps_what_it_answered(
    pair: SerialPair,
) -> None:
    agent_end, device_end = pair
    answered = 0

    def values() -> dict[str, float]:
        nonlocal answered
        answered += 1
        if answered == 3:  # this request is answered, the next ones are not
            meter.fault = "silent"
        return VALUES_2007

    meter = SimulatedMeter(METER, values)
    async with (
        SimulatedDlt645Line(device_end, [meter]),
        opened(agent_end, meter_config(timeout=0.2)) as devices,
    ):
        with pytest.raises(DeviceUnavailableError) as raised:
            await devices["power_meter"].read(list(VALUES_2007))
    kept = raised.value.readings
    # The first three blocks: import energy (5 points), export energy (5) and voltages (3).
    assert len(kept) == 13
    assert {r.quality for r in kept} == {Quality.GOOD}
    assert values_of(list(kept)) == {r.point: VALUES_2007[r.point] for r in kept}
    assert {r.point for r in kept} >= {"import_energy", "export_energy_t4", "voltage_l3"}


@pytest.mark.parametrize("request_preamble", [0, 4])
async def test_noise_and_wake_up_preambles_are_tolerated(
    pair: SerialPair, request_preamble: int
) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007, fault="noise", reply_preamble=4)
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, meter_config(preamble=request_preamble)) as devices,
    ):
        readings = await devices["power_meter"].read(list(VALUES_2007))
    assert values_of(readings) == VALUES_2007
    assert all(reply.startswith(meter.noise + b"\xfe" * 4 + b"\x68") for reply in line.sent)


async def test_a_slow_meters_late_reply_is_not_taken_for_the_next_answer(
    pair: SerialPair,
) -> None:
    agent_end, device_end = pair
    # The late voltage reply reaches the agent while it waits for the current's.
    meter = SimulatedMeter(METER, VALUES_2007, fault="slow", slow_s=0.8)
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, meter_config(timeout=0.5)) as devices,
    ):
        device = devices["power_meter"]
        with pytest.raises(DeviceUnavailableError):
            await device.read(["voltage_l1"])
        meter.fault = None
        readings = await device.read(["current_l1"])
        await asyncio.sleep(0)
    assert [(r.point, r.value, r.quality) for r in readings] == [
        ("current_l1", VALUES_2007["current_l1"], Quality.GOOD)
    ]
    assert asked(line) == [0x02010100, 0x02020100]
    assert len(line.sent) == 2  # the late reply was on the wire, and was skipped


async def test_a_1997_meter_is_read_with_its_own_profile(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(OLD_METER, VALUES_1997, version="1997")
    config = meter_config(name="old_meter", address=OLD_METER, profile="dlt645-1997")
    async with (
        SimulatedDlt645Line(device_end, [meter]) as line,
        opened(agent_end, config) as devices,
    ):
        readings = await devices["old_meter"].read(list(devices["old_meter"].points))
    assert values_of(readings) == VALUES_1997
    assert {r.point: r.unit for r in readings} == {p: unit_of(p) for p in VALUES_1997}
    # Five blocks (energy, V, I, P, PF), then export energy and reactive power alone.
    assert asked(line, version="1997") == [0x901F, 0xB61F, 0xB62F, 0xB63F, 0xB65F, 0x9020, 0xB640]
    assert all(frame[8] == 0x01 for frame in line.received)  # the 1997 read, 01H


async def test_a_meter_with_its_own_line_settings_gets_the_port_reopened(
    pair: SerialPair,
) -> None:
    agent_end, device_end = pair
    meters = [SimulatedMeter(METER, VALUES_2007), SimulatedMeter(OTHER_METER, VALUES_2007)]
    own = meter_config(name="own_settings", baudrate=2400, parity="E", points=["voltage_l1"])
    lines = meter_config(name="line_settings", address=OTHER_METER, points=["voltage_l2"])
    async with (
        SimulatedDlt645Line(device_end, meters),
        opened(agent_end, own, lines, line={"baudrate": 9600, "parity": "N"}) as devices,
    ):
        client = devices["own_settings"].line
        assert devices["line_settings"].line is client  # one client per line
        seen = []
        for name in ("own_settings", "line_settings", "own_settings"):
            readings = await devices[name].read(list(devices[name].points))
            assert {r.quality for r in readings} == {Quality.GOOD}, name
            seen.append((client.port_settings, agent_baudrate(agent_end)))
    assert seen == [
        (SerialSettings(2400, "E", 1, 8), 2400),
        (SerialSettings(9600, "N", 1, 8), 9600),
        (SerialSettings(2400, "E", 1, 8), 2400),
    ]


# --- through the interval poller -------------------------------------------------------------


async def test_the_pollers_health_goes_down_and_comes_back_once_each(
    pair: SerialPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    agent_end, device_end = pair
    meter = SimulatedMeter(METER, VALUES_2007)
    async with (
        SimulatedDlt645Line(device_end, [meter]),
        opened(agent_end, meter_config(timeout=0.15)) as devices,
    ):
        poller = IntervalPoller(devices["power_meter"], sink=_discard, clock=CLOCK)
        assert values_of(await poller.poll_once()) == VALUES_2007
        assert poller.health.online is True
        meter.fault = "silent"
        for _ in range(3):
            readings = await poller.poll_once()
            assert bad_points(readings) == set(VALUES_2007)
            assert {r.value for r in readings} == {None}
        assert poller.health.online is False
        assert poller.health.consecutive_failures == 3
        meter.fault = None
        for _ in range(2):
            assert values_of(await poller.poll_once()) == VALUES_2007
        assert poller.health.online is True
    messages = [r.getMessage() for r in caplog.records if r.name == "agent.sources.poller"]
    assert len([m for m in messages if "power_meter is unavailable" in m]) == 1
    assert len([m for m in messages if "power_meter answers again" in m]) == 1
    assert len(messages) == 2
    # A silent meter is not a line that went away: the serial port logged nothing.
    assert not [r for r in caplog.records if r.name == "agent.core.serial_port"]


async def _discard(readings: Sequence[Reading]) -> None:
    pass
