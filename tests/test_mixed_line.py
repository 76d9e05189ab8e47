"""Three protocols on one RS-485 line: a Modbus RTU meter, a DL/T 645 meter and a CJ/T 188 water
meter, configured as a site config says, opened by the registry on one serial link, and polled
by their interval pollers at once.

The agent's end of the line is one socat pty pair. The three simulators cannot share its device
end: each opens the port and reads it, so each would take bytes meant for another (and
pymodbus's RTU server would read DL/T 645 frames as garbage). `Dispatcher` opens the device end
once and hands each request to the simulator of its protocol, which sits on its own pty (an
in-process ``os.openpty``), and writes every reply back onto the line. It tells the frames apart
by their framing:

- DL/T 645: ``[FE..] 68 A0..A5 68 C L DATA CS 16``: a second 68 at offset 7;
- CJ/T 188: ``[FE..] 68 T A0..A6 C L DATA CS 16``: L at offset 10;
- Modbus RTU: a unit id, a function code, then 6 bytes (FC 1-6) or 5 + count + 2 (FC 15, 16).

That is enough here because the test avoids the ambiguous cases: no Modbus unit id 68H or FEH,
no CJ/T 188 address with a 68H byte at offset 7. The simulators are unchanged: hil.rtu (the
building's SDM630 through pymodbus's serial server), hil.dlt645_meter and hil.cjt188_meter.

ptys ignore the baud rate; the port is still reopened at each device's own settings (the meters
at 2400 8E1, the line's Modbus device at 9600 8N1) on every change of protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

import pytest

from agent.config.model import SiteConfig, cross_check
from agent.core.clock import ManualClock
from agent.core.record import Quality, Reading
from agent.sources.compose import open_devices, open_links
from agent.sources.poller import IntervalPoller
from hil.building import Building
from hil.cjt188_meter import SimulatedCjt188Line, SimulatedCjt188Meter
from hil.devices import building_devices
from hil.dlt645_meter import SimulatedDlt645Line, SimulatedMeter
from hil.rs485 import PtyEnd
from hil.rtu import SimulatedRtuLine
from tests.serial_pair import SerialPair, serial_pair
from tests.test_cjt188_driver import WATER_VALUES
from tests.test_dlt645_driver import VALUES_2007

POWER_METER = "000000000161"
WATER_METER = "00000000000012"
MODBUS_UNIT = 1
INTERVAL = 0.5  # every device's poll interval
TIMEOUT = 0.2  # the line's answer timeout
RUN_S = 3.0
# How late a cycle may end after its tick: its own frames and the other devices' turns ahead of
# it (under 0.1 s here) and, with a device down, one of its timeouts (the line is half duplex:
# while a dead device is waited for, nobody else may talk). Never more: a dead device's timeouts
# must not pile up on the others, and no cycle may run into its next tick.
SLACK = 0.2
CLOCK = ManualClock(datetime(2025, 7, 15, 3, 0, tzinfo=UTC))
# A July weekday late morning: offices occupied, so the SDM630's values are not trivial zeros.
FROZEN_AT = datetime(2025, 7, 15, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


class Dispatcher:
    """The device end of the line, opened once (see the module docstring). ``routed`` keeps
    every request handed to each simulator, by protocol."""

    def __init__(self, line_port: str) -> None:
        self.line_port = line_port
        self.legs = {name: PtyEnd() for name in ("modbus", "dlt645", "cjt188")}
        self.routed: dict[str, list[bytes]] = defaultdict(list)
        self._buffer = bytearray()
        self._line = -1

    def port(self, protocol: str) -> str:
        return self.legs[protocol].path

    async def __aenter__(self) -> Self:
        self._line = os.open(self.line_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._line, self._from_line)
        for leg in self.legs.values():
            loop.add_reader(leg.master, self._from_leg, leg)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._line)
        os.close(self._line)
        for leg in self.legs.values():
            loop.remove_reader(leg.master)
            leg.close()

    def _from_leg(self, leg: PtyEnd) -> None:
        try:
            reply = os.read(leg.master, 4096)
        except OSError:  # the simulator closed its end
            return
        os.write(self._line, reply)

    def _from_line(self) -> None:
        self._buffer += os.read(self._line, 4096)
        while (request := self._next_request()) is not None:
            protocol, frame = request
            self.routed[protocol].append(frame)
            os.write(self.legs[protocol].master, frame)

    def _next_request(self) -> tuple[str, bytes] | None:
        buf = self._buffer
        while buf and buf[0] == 0xFE:  # wake-up preamble of DL/T 645 and CJ/T 188
            del buf[0]
        if buf[:1] == b"\x68":
            if len(buf) < 8:
                return None
            if buf[7] == 0x68:
                protocol, size = "dlt645", 12 + buf[9] if len(buf) >= 10 else 0
            else:
                protocol, size = "cjt188", 13 + buf[10] if len(buf) >= 11 else 0
        elif len(buf) >= 7:
            function = buf[1]
            size = 8 if function <= 6 else 9 + buf[6]  # FC 1-6; FC 15 and 16 carry a count
            protocol = "modbus"
        else:
            return None
        if not size or len(buf) < size:
            return None
        frame = bytes(buf[:size])
        del buf[:size]
        return protocol, frame


def site_config(port: str) -> SiteConfig:
    """The line as a technician writes it: one serial bus, three devices, each its protocol."""
    data: dict[str, Any] = {
        "site": {"id": "mixed-line", "name": "Plant room"},
        "buses": {
            "plant": {
                "kind": "serial",
                "port": port,
                "baudrate": 9600,
                "parity": "N",
                "timeout": TIMEOUT,
            }
        },
        "devices": [
            {
                "name": "main_meter",
                "bus": "plant",
                "unit_id": MODBUS_UNIT,
                "profile": "eastron-sdm630",
                "interval": INTERVAL,
            },
            {
                "name": "power_meter",
                "protocol": "dlt645",
                "bus": "plant",
                "address": POWER_METER,
                "profile": "dlt645-2007-3phase",
                "baudrate": 2400,
                "parity": "E",
                "interval": INTERVAL,
            },
            {
                "name": "water_meter",
                "protocol": "cjt188",
                "bus": "plant",
                "address": WATER_METER,
                "profile": "cjt188-water",
                "baudrate": 2400,
                "parity": "E",
                "interval": INTERVAL,
            },
        ],
    }
    assert cross_check(data) == []
    return SiteConfig.model_validate(data)


def sdm630_values() -> dict[str, float]:
    """The main meter's points as its registers carry them (float32 rounding included)."""
    building = Building(clock=lambda: FROZEN_AT)
    model = next(d for d in building_devices() if d.name == "main_meter")
    values = model.read(building)
    return {name: p.decode(p.encode(values[name])) for name, p in model.point_map().items()}


class Cycles:
    """What each poller handed its sink: when (monotonic) and which readings."""

    def __init__(self) -> None:
        self.started = 0.0  # when the pollers started (monotonic)
        self.ends: dict[str, list[float]] = defaultdict(list)
        self.readings: dict[str, list[Sequence[Reading]]] = defaultdict(list)

    def sink(self, device: str) -> Any:
        async def sink(readings: Sequence[Reading]) -> None:
            self.ends[device].append(time.monotonic())
            self.readings[device].append(readings)

        return sink

    def gaps(self, device: str) -> list[float]:
        ends = self.ends[device]
        return [later - earlier for earlier, later in itertools.pairwise(ends)]

    def lateness(self, device: str) -> list[float]:
        """How long after its tick (start + k x interval) each cycle ended."""
        return [end - (self.started + k * INTERVAL) for k, end in enumerate(self.ends[device])]


@contextlib.asynccontextmanager
async def mixed_line(pair: SerialPair) -> AsyncIterator[tuple[Dispatcher, dict[str, Any]]]:
    """The line with its three simulated devices; yields the dispatcher and the simulators."""
    _, device_end = pair
    power = SimulatedMeter(POWER_METER, VALUES_2007)
    water = SimulatedCjt188Meter(
        address=WATER_METER, meter_type=0x10, di_order="swapped", values=WATER_VALUES
    )
    sdm630 = [d for d in building_devices() if d.unit_id == MODBUS_UNIT and d.bus == "switchboard"]
    async with Dispatcher(device_end) as dispatcher:
        rtu = SimulatedRtuLine(
            dispatcher.port("modbus"), sdm630, building=Building(clock=lambda: FROZEN_AT)
        )
        async with (
            rtu,
            SimulatedDlt645Line(dispatcher.port("dlt645"), [power]),
            SimulatedCjt188Line(dispatcher.port("cjt188"), meters=[water]),
        ):
            yield dispatcher, {"main_meter": rtu, "power_meter": power, "water_meter": water}


async def poll_all(config: SiteConfig) -> tuple[Cycles, dict[str, IntervalPoller]]:
    """Every device of ``config`` polled by its own interval poller, at once, for RUN_S."""
    cycles = Cycles()
    async with contextlib.AsyncExitStack() as stack:
        links = await open_links(config.buses, stack)
        devices = await open_devices(config.devices, links, stack=stack, clock=CLOCK)
        pollers = {
            name: IntervalPoller(device, sink=cycles.sink(name), clock=CLOCK)
            for name, device in devices.items()
        }
        cycles.started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(p.run(), name=f"poll[{n}]") for n, p in pollers.items()]
            await asyncio.sleep(RUN_S)
            for task in tasks:
                task.cancel()
    return cycles, pollers


def values_of(readings: Sequence[Reading]) -> dict[str, Any]:
    return {r.point: r.value for r in readings}


EXPECTED = {"power_meter": VALUES_2007, "water_meter": WATER_VALUES}


def assert_kept_cadence(cycles: Cycles, device: str, *, slack: float) -> None:
    """Every tick kept (none skipped, none added), each cycle over within ``slack`` of it."""
    late = cycles.lateness(device)
    assert int(RUN_S / INTERVAL) <= len(late) <= int(RUN_S / INTERVAL) + 1, (device, late)
    assert min(late) >= 0, (device, late)
    assert max(late) <= slack, (device, late)
    assert max(cycles.gaps(device)) <= INTERVAL + slack, (device, late)


async def test_three_protocols_on_one_line_keep_their_cadence(pair: SerialPair) -> None:
    agent_end, _ = pair
    async with mixed_line(pair) as (dispatcher, _):
        cycles, pollers = await poll_all(site_config(agent_end))
    expected = {**EXPECTED, "main_meter": sdm630_values()}
    for device, values in expected.items():
        assert_kept_cadence(cycles, device, slack=SLACK)
        assert pollers[device].health.online is True, device
        assert pollers[device].health.overruns == 0, device
        for readings in cycles.readings[device]:
            assert {r.quality for r in readings} == {Quality.GOOD}, device
            assert values_of(readings) == pytest.approx(values), device
    # Each protocol's frames went to its own simulator, interleaved on the one line.
    assert set(dispatcher.routed) == {"modbus", "dlt645", "cjt188"}
    assert all(frame[0] == MODBUS_UNIT for frame in dispatcher.routed["modbus"])


@pytest.mark.parametrize("silent", ["main_meter", "power_meter", "water_meter"])
async def test_a_silent_device_costs_only_its_own_timeouts(pair: SerialPair, silent: str) -> None:
    agent_end, _ = pair
    async with mixed_line(pair) as (_, simulators):
        if silent == "main_meter":
            simulators[silent].set_offline(MODBUS_UNIT)
        elif silent == "power_meter":
            simulators[silent].fault = "silent"
        else:
            simulators[silent].silent = True
        cycles, pollers = await poll_all(site_config(agent_end))
    expected = {**EXPECTED, "main_meter": sdm630_values()}
    for device, values in expected.items():
        if device == silent:
            continue
        assert_kept_cadence(cycles, device, slack=SLACK + TIMEOUT)
        assert pollers[device].health.online is True, device
        assert pollers[device].health.overruns == 0, device
        for readings in cycles.readings[device]:
            assert values_of(readings) == pytest.approx(values), device
    down = pollers[silent]
    assert down.health.online is False
    # Retried less and less often (after 2, then 4 intervals): few timeouts in all.
    assert 1 <= down.health.consecutive_failures <= 3
    assert all(
        {r.quality for r in readings} == {Quality.BAD} for readings in cycles.readings[silent]
    )
