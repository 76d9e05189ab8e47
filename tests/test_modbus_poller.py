"""Device pollers against the simulated building over real loopback Modbus TCP."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from agent.config.loader import load_config
from agent.config.model import SiteConfig
from agent.core.links import TcpLinkConfig
from agent.core.record import Quality, Reading
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.planner import DeviceQuirks
from drivers.modbus.spec import ModbusDevice
from hil.devices import point_maps
from hil.server import SimulatedBuilding
from tests.helpers import DEMO_YAML, ModbusPoller, modbus_bus, modbus_only

TIMEOUT = 0.3


@pytest.fixture
async def building() -> AsyncIterator[SimulatedBuilding]:
    async with SimulatedBuilding(strict=["main_meter"]) as sim:
        yield sim


@pytest.fixture
def config() -> SiteConfig:
    """The demo site's Modbus devices (its DL/T 645 and CJ/T 188 meters are tested elsewhere)."""
    return modbus_only(load_config(DEMO_YAML))


def _bus(sim: SimulatedBuilding, name: str) -> ModbusBusClient:
    host, port = sim.endpoints[name]
    spec = TcpLinkConfig(kind="modbus_tcp", host=host, port=port, timeout=TIMEOUT)
    return modbus_bus(name, spec)


def _device(config: SiteConfig, name: str) -> ModbusDevice:
    return next(d for d in config.devices if d.name == name)


async def _discard(readings: Sequence[Reading]) -> None:
    pass


async def test_every_demo_point_decodes_to_the_simulated_value(
    building: SimulatedBuilding, config: SiteConfig
) -> None:
    maps = point_maps()
    for device in config.devices:
        async with _bus(building, device.bus) as bus:
            readings = await ModbusPoller(device, bus, sink=_discard).poll_once()
        assert {r.point for r in readings} == set(device.points), device.name
        assert set(device.points) == set(maps[device.name]), "demo.yaml and hil maps disagree"
        for reading in readings:
            assert reading.quality is Quality.GOOD, (device.name, reading)
            assert reading.unit == device.points[reading.point].unit
    # Spot checks against the building's physics (values move slowly at speed 1).
    b = building.building
    async with _bus(building, "switchboard") as bus:
        meter = await ModbusPoller(
            _device(config, "main_meter"), bus, sink=_discard
        ).poll_once()
    values = {r.point: r.value for r in meter}
    assert values["voltage_l1"] == pytest.approx(b.main_feed().voltage[0], abs=2.0)
    assert values["import_energy"] == pytest.approx(b.energy().main_import, rel=1e-6)
    assert values["voltage_l1_l2"] == pytest.approx(values["voltage_l1"] * 3**0.5, rel=0.05)


async def test_strict_device_refusing_a_merged_read_still_gives_every_point(
    building: SimulatedBuilding, config: SiteConfig
) -> None:
    # main_meter is strict: reads spanning undefined SDM630 registers answer exception 02,
    # so the merged request is split and every point still comes back good.
    async with _bus(building, "switchboard") as bus:
        poller = ModbusPoller(_device(config, "main_meter"), bus, sink=_discard)
        readings = await poller.poll_once()
    assert len(readings) == 20
    assert all(r.quality is Quality.GOOD for r in readings)
    assert poller.health.online is True


async def test_dead_device_is_bad_and_flagged_while_its_neighbour_is_fine(
    building: SimulatedBuilding, config: SiteConfig
) -> None:
    building.set_offline("lighting_meter")
    async with _bus(building, "switchboard") as bus:
        dead = ModbusPoller(_device(config, "lighting_meter"), bus, sink=_discard)
        alive = ModbusPoller(_device(config, "hvac_meter"), bus, sink=_discard)
        bad = await dead.poll_once()
        good = await alive.poll_once()
        assert bad
        assert all(r.quality is Quality.BAD and r.value is None for r in bad)
        assert dead.health.online is False
        assert "no answer" in (dead.health.last_error or "")
        assert all(r.quality is Quality.GOOD for r in good)
        building.set_offline("lighting_meter", False)
        back = await dead.poll_once()
    assert all(r.quality is Quality.GOOD for r in back)
    assert dead.health.online is True


async def test_dead_device_does_not_stall_the_others_cadence(
    building: SimulatedBuilding, config: SiteConfig
) -> None:
    """Two pollers share one bus; one device never answers. The other keeps its interval."""
    building.set_offline("lighting_meter")
    interval = 0.5
    arrivals: list[float] = []

    async def record(readings: Sequence[Reading]) -> None:
        if readings[0].device == "hvac_meter":
            arrivals.append(time.monotonic())

    alive_dev = _device(config, "hvac_meter").model_copy(update={"interval": interval})
    dead_dev = _device(config, "lighting_meter").model_copy(update={"interval": interval})
    async with _bus(building, "switchboard") as bus:
        tasks = [
            asyncio.create_task(ModbusPoller(d, bus, sink=record).run())
            for d in (alive_dev, dead_dev)
        ]
        await asyncio.sleep(3.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 5
    # A dead device costs at most its own timeout on the shared bus, never more.
    assert max(gaps) < interval + TIMEOUT + 0.25, gaps


async def test_unreachable_bus_gives_bad_readings_not_an_exception(config: SiteConfig) -> None:
    # A port nothing listens on: connection refused, reported as unavailable.
    spec = TcpLinkConfig(kind="modbus_tcp", host="127.0.0.1", port=1, timeout=0.3)
    bus = modbus_bus("nowhere", spec)
    async with bus:
        poller = ModbusPoller(_device(config, "pv_inverter"), bus, sink=_discard)
        readings = await poller.poll_once()
    assert readings
    assert all(r.quality is Quality.BAD for r in readings)
    assert poller.health.online is False


async def test_strict_device_is_learned_once_and_remembered_across_restarts(
    building: SimulatedBuilding, config: SiteConfig
) -> None:
    saved: dict[str, str] = {}

    async def save(device: str, quirks_json: str) -> None:
        saved[device] = quirks_json

    device = _device(config, "main_meter")  # strict: gap-spanning reads answer exception 02
    async with _bus(building, "switchboard") as bus:
        poller = ModbusPoller(device, bus, sink=_discard, save_quirks=save)
        per_cycle = []
        for _ in range(4):
            before = bus.requests
            readings = await poller.poll_once()
            per_cycle.append(bus.requests - before)
            assert len(readings) == 20
            assert all(r.quality is Quality.GOOD for r in readings)
        assert "main_meter" in saved, "what was learned must be handed over for persistence"
        assert per_cycle[0] > per_cycle[-1], per_cycle  # the first cycle paid for the lesson
        assert per_cycle[-1] == per_cycle[-2]  # converged
        # A restarted poller with the saved knowledge asks right the first time.
        restarted = ModbusPoller(
            device, bus, sink=_discard, quirks=DeviceQuirks.from_json(saved["main_meter"])
        )
        before = bus.requests
        readings = await restarted.poll_once()
        assert bus.requests - before == per_cycle[-1]
        assert all(r.quality is Quality.GOOD for r in readings)


async def test_lenient_sdm630_takes_three_requests_over_tcp(config: SiteConfig) -> None:
    async with SimulatedBuilding() as lenient, _bus(lenient, "switchboard") as bus:
        poller = ModbusPoller(_device(config, "main_meter"), bus, sink=_discard)
        readings = await poller.poll_once()
        assert bus.requests == 3
    assert len(readings) == 20
    assert all(r.quality is Quality.GOOD for r in readings)


async def test_gateway_saying_the_device_is_silent_marks_it_down_without_splitting(
    building: SimulatedBuilding, config: SiteConfig
) -> None:
    building.set_offline("hvac_meter", reply="gateway")  # the gateway answers exception 0x0B
    async with _bus(building, "switchboard") as bus:
        poller = ModbusPoller(_device(config, "hvac_meter"), bus, sink=_discard)
        readings = await poller.poll_once()
        assert bus.requests == 1  # not split into single-point reads
    assert all(r.quality is Quality.BAD for r in readings)
    assert len(readings) == 8
    assert poller.health.online is False
    assert not poller.quirks.describe(), "a silent device taught the planner nothing"


async def test_a_device_that_was_up_gets_one_retry_then_none_while_down(
    building: SimulatedBuilding, config: SiteConfig
) -> None:
    device = _device(config, "pv_inverter")  # one request per cycle; retries defaults to 1
    async with _bus(building, "pv") as bus:
        poller = ModbusPoller(device, bus, sink=_discard)
        await poller.poll_once()
        assert poller.health.online is True
        building.set_offline("pv_inverter")
        before = bus.requests
        await poller.poll_once()
        assert bus.requests - before == 2  # the request and its one retry
        assert poller.health.online is False
        before = bus.requests
        await poller.poll_once()
        assert bus.requests - before == 1  # down: no retry, so the bus loses one timeout only
