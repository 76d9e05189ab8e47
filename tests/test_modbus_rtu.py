"""Modbus RTU over a real serial line: the agent's bus on one end of a socat pty pair, the
simulated devices (hil.rtu, pymodbus's serial server) on the other.

ptys ignore the baud rate, so on this line the inter-frame gap and the timeouts set the timing.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from agent.config.loader import load_config
from agent.config.model import SiteConfig
from agent.core.links import SerialLinkConfig
from agent.core.record import Quality, Reading
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.errors import DeviceUnavailableError
from drivers.modbus.spec import ModbusDevice, Table
from hil.building import Building
from hil.devices import DeviceModel, SimPoint, building_devices
from hil.rtu import SimulatedRtuLine, switchboard_devices
from hil.server import SimulatedBuilding
from tests.helpers import DEMO_YAML, ModbusPoller, modbus_bus, modbus_only
from tests.serial_pair import SerialPair, serial_pair

TIMEOUT = 0.2
# A July weekday late morning: offices occupied, PV producing, so no value is a trivial zero.
FROZEN_AT = datetime(2025, 7, 15, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


@pytest.fixture
def config() -> SiteConfig:
    """The demo site's Modbus devices (its DL/T 645 and CJ/T 188 meters are tested elsewhere)."""
    return modbus_only(load_config(DEMO_YAML))


def _frozen_building() -> Building:
    # A clock that never moves: every read, over any transport, sees the same values.
    return Building(clock=lambda: FROZEN_AT)


def _rtu_bus(port: str | Path, *, timeout: float = TIMEOUT, **extra: object) -> ModbusBusClient:
    spec = SerialLinkConfig.model_validate(
        {"kind": "modbus_rtu", "port": str(port), "baudrate": 9600, "timeout": timeout, **extra}
    )
    return modbus_bus("rs485", spec)


def _on_line(device: ModbusDevice, unit_id: int, **update: object) -> ModbusDevice:
    return device.model_copy(update={"bus": "rs485", "unit_id": unit_id, **update})


async def _read_voltage(bus: ModbusBusClient) -> list[int] | list[bool]:
    """The main meter's (unit 1) voltage L1 register pair."""
    return await bus.read(device="main_meter", unit_id=1, table=Table.INPUT, address=0, count=2)


async def _discard(readings: Sequence[Reading]) -> None:
    pass


def _expected(point: SimPoint, value: float) -> float:
    """What a correct decoder makes of the registers the simulator serves for ``value``."""
    return point.decode(point.encode(value))


async def test_every_demo_point_decodes_over_rtu_as_over_tcp(
    pair: SerialPair, config: SiteConfig
) -> None:
    building = _frozen_building()
    models = {model.name: model for model in building_devices()}
    # On one RS-485 line every device needs its own unit id: number them 1..5.
    units = {device.name: n for n, device in enumerate(config.devices, start=1)}
    on_line = [replace(models[name], unit_id=unit) for name, unit in units.items()]
    async with (
        SimulatedRtuLine(pair.b, on_line, building=building),
        SimulatedBuilding(building=building) as tcp_sim,
        _rtu_bus(pair.a) as rtu_bus,
    ):
        for device in config.devices:
            rtu = await ModbusPoller(
                _on_line(device, units[device.name]), rtu_bus, sink=_discard
            ).poll_once()
            host, port = tcp_sim.endpoints[device.bus]
            async with modbus_bus(
                device.bus,
                config.buses[device.bus].model_copy(update={"host": host, "port": port}),
            ) as tcp_bus:
                tcp = await ModbusPoller(device, tcp_bus, sink=_discard).poll_once()
            model = models[device.name]
            truth = model.read(building)
            assert {r.point for r in rtu} == set(device.points) == set(model.point_map())
            for reading in rtu:
                assert reading.quality is Quality.GOOD, (device.name, reading)
                point = model.point_map()[reading.point]
                assert reading.value == pytest.approx(_expected(point, truth[reading.point])), (
                    device.name,
                    reading.point,
                )
            assert {r.point: r.value for r in rtu} == {r.point: r.value for r in tcp}


async def test_strict_device_answering_02_to_gap_reads_still_gives_every_value(
    pair: SerialPair, config: SiteConfig
) -> None:
    meter = next(d for d in config.devices if d.name == "main_meter")
    async with (
        SimulatedRtuLine(pair.b, switchboard_devices(strict=True)),
        _rtu_bus(pair.a) as bus,
    ):
        poller = ModbusPoller(_on_line(meter, 1), bus, sink=_discard)
        first = await poller.poll_once()
        assert len(first) == 20
        assert all(r.quality is Quality.GOOD for r in first)
        assert poller.quirks.lessons, "the refusals taught the planner nothing"
        # The next cycle asks right the first time: exactly the planned requests, no refusal.
        before = bus.requests
        second = await poller.poll_once()
        assert all(r.quality is Quality.GOOD for r in second)
        assert bus.requests - before == len(poller.plan().requests)


async def test_ten_devices_on_one_line_keep_their_interval_while_one_is_dead(
    pair: SerialPair, config: SiteConfig
) -> None:
    """The issue's done-when: with 10 devices on one RS-485 line and one of them dead, the
    others keep their poll interval. Each device has its own poller task on one shared bus."""
    interval, duration, slack = 0.5, 4.0, 0.15
    models = {model.name: model for model in building_devices()}
    kinds = list(config.devices)  # the five demo devices, each kind twice
    devices: list[ModbusDevice] = []
    served: list[DeviceModel] = []
    for unit in range(1, 11):
        kind = kinds[(unit - 1) % len(kinds)]
        name = f"dev{unit:02d}"
        devices.append(_on_line(kind, unit, name=name, interval=interval))
        served.append(replace(models[kind.name], name=name, unit_id=unit))
    dead = "dev07"
    arrivals: dict[str, list[float]] = {d.name: [] for d in devices}

    async def record(readings: Sequence[Reading]) -> None:
        if all(r.quality is Quality.GOOD for r in readings):
            arrivals[readings[0].device].append(time.monotonic())

    async with (
        SimulatedRtuLine(pair.b, served, building=_frozen_building()) as line,
        _rtu_bus(pair.a) as bus,
    ):
        line.set_offline(dead)
        pollers = [ModbusPoller(d, bus, sink=record) for d in devices]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(p.run(), name=f"poll:{p.device.name}") for p in pollers]
            await asyncio.sleep(duration)
            for task in tasks:
                task.cancel()
    dead_poller = next(p for p in pollers if p.device.name == dead)
    assert arrivals[dead] == []
    assert dead_poller.health.online is False
    assert dead_poller.health.consecutive_failures >= 2, "the dead device was hardly polled"
    report = []
    for name, times in arrivals.items():
        if name == dead:
            continue
        gaps = [b - a for a, b in itertools.pairwise(times)]
        report.append(
            f"{name}: {len(times)} polls, gap mean {statistics.mean(gaps):.3f} s,"
            f" max {max(gaps):.3f} s"
        )
        assert len(times) >= duration / interval - 1, report[-1]
        # A dead device costs the others at most its own timeout, never more.
        assert max(gaps) <= interval + TIMEOUT + slack, report[-1]
        assert statistics.mean(gaps) == pytest.approx(interval, abs=0.05), report[-1]
    print("\n".join(report))  # shown with -s: the measurements behind the assertion


async def test_the_port_vanishes_and_the_next_request_after_it_returns_works(
    pair: SerialPair,
) -> None:
    loop = asyncio.get_running_loop()
    async with _rtu_bus(pair.a) as bus:
        async with SimulatedRtuLine(pair.b):
            assert len(await _read_voltage(bus)) == 2
            await pair.astop()  # the USB adapter is pulled: both paths vanish
            started = loop.time()
            with pytest.raises(DeviceUnavailableError):
                await _read_voltage(bus)
            with pytest.raises(DeviceUnavailableError, match="not present"):
                await _read_voltage(bus)
            # Without the port nothing waits for an answer: the request fails at once.
            assert loop.time() - started < TIMEOUT
            assert not bus.is_connected
        await pair.astart()  # plugged in again: new ptys behind the same paths
        async with SimulatedRtuLine(pair.b):
            assert len(await _read_voltage(bus)) == 2
            assert bus.is_connected


async def test_a_port_that_never_existed_is_unavailable_at_once(tmp_path: Path) -> None:
    async with _rtu_bus(tmp_path / "ttyUSB9") as bus:
        with pytest.raises(DeviceUnavailableError, match="not present"):
            await bus.read(device="x", unit_id=1, table=Table.HOLDING, address=0, count=1)


async def test_frames_are_separated_by_the_configured_gap(pair: SerialPair) -> None:
    gap = 0.05
    async with SimulatedRtuLine(pair.b), _rtu_bus(pair.a, frame_gap=gap) as bus:
        await _read_voltage(bus)
        started = time.monotonic()
        for _ in range(4):
            await _read_voltage(bus)
        assert time.monotonic() - started >= 4 * gap


async def test_a_silent_unit_costs_one_timeout_and_the_line_stays_usable(
    pair: SerialPair,
) -> None:
    loop = asyncio.get_running_loop()
    async with SimulatedRtuLine(pair.b) as line, _rtu_bus(pair.a) as bus:
        line.set_offline("lighting_meter")
        started = loop.time()
        with pytest.raises(DeviceUnavailableError, match="no answer"):
            await bus.read(device="lighting", unit_id=2, table=Table.HOLDING, address=20, count=1)
        assert TIMEOUT <= loop.time() - started < TIMEOUT + 0.1
        # A unit id no device has is silent too (no gateway on a serial line answers 0x0B).
        with pytest.raises(DeviceUnavailableError, match="no answer"):
            await bus.read(device="nobody", unit_id=9, table=Table.HOLDING, address=0, count=1)
        assert bus.is_connected, "a silent device must not close the port"
        assert (
            len(await bus.read(device="m", unit_id=3, table=Table.HOLDING, address=0x2006, count=2))
            == 2
        )


async def test_any_pymodbus_simdevice_can_share_the_line(pair: SerialPair) -> None:
    extra = SimDevice(
        id=5,
        simdata=[SimData(address=100, count=3, values=[7, 8, 9], datatype=SimDataType.REGISTERS)],
    )
    devices: list[DeviceModel | SimDevice] = [*switchboard_devices(), extra]
    async with SimulatedRtuLine(pair.b, devices) as line, _rtu_bus(pair.a) as bus:
        assert line.units["unit 5"] == 5
        read = functools.partial(
            bus.read, device="extra", unit_id=5, table=Table.HOLDING, address=100
        )
        assert await read(count=3) == [7, 8, 9]
        line.set_offline(5)
        with pytest.raises(DeviceUnavailableError, match="no answer"):
            await read(count=1)
