"""HVAC zones that take their room temperature from a BLE thermometer: the real path from the
scanner boundary (the package's FakeBackend, fed real BTHome adverts) through the BLE driver's
sensor to the controller, which writes to the simulated zone controller over loopback Modbus TCP
and falls back to that controller's own sensor when the thermometer goes quiet. Time is the
core's VirtualClock: the building, the sensor and the controller share it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ruamel.yaml import YAML

from agent.config.loader import load_config
from agent.core.clock import VirtualClock
from agent.demo import _retarget
from agent.hvac.controller import HvacController
from agent.hvac.preview import format_rows, preview_rows, to_json
from agent.hvac.program import HvacConfig, hvac_problems
from agent.sources.compose import open_links, open_sources
from drivers.ble.backend import FakeBackend
from drivers.ble.driver import BleDriver
from drivers.ble.source import BleSensor
from hil.building import Building
from hil.rooms import BTHOME_SERVICE_UUID, bthome_advert
from hil.server import SimulatedBuilding
from tests.helpers import DEMO_YAML, discard

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAC = "A4:C1:38:00:00:01"  # the demo's zone1_room
SENSOR = "room_sensor zone1_room.temperature"
OWN = "device hvac_controller.zone1_temperature"

HVAC = """
zones:
  zone1: {device: hvac_controller, setpoint: zone1_setpoint, mode: zone1_mode, on: zone1_on,
          programme: office, temperature: zone1_temperature, room_sensor: zone1_room}
programmes:
  office:
    workday:
      - {start: "07:30", level: comfort}
      - {start: "18:00", level: off}
check_interval: 1m
"""


def hvac_config(text: str = HVAC) -> HvacConfig:
    return HvacConfig.model_validate(YAML(typ="safe", pure=True).load(text))


@dataclass
class Rig:
    clock: VirtualClock
    building: Building
    backend: FakeBackend
    sensor: BleSensor
    controller: HvacController
    events: list[dict[str, Any]] = field(default_factory=list)
    packet: int = 0

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    async def advertise(self, celsius: float) -> None:
        self.packet += 1
        data = bthome_advert(temperature=celsius, humidity=50.0, battery=80, packet_id=self.packet)
        self.backend.advertise(MAC, {BTHOME_SERVICE_UUID: data})
        await self.clock.advance(0)

    async def step_after(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        await self.controller.step()


@contextlib.asynccontextmanager
async def rig(start: datetime, hvac: HvacConfig | None = None) -> AsyncIterator[Rig]:
    clock = VirtualClock(start, yields=30)
    building = Building(zones_follow_office_hours=False, clock=clock.time, seed=3)
    backend = FakeBackend()
    async with SimulatedBuilding(building=building) as sim, contextlib.AsyncExitStack() as stack:
        site = _retarget(load_config(DEMO_YAML), sim, None, push_sources=True)
        wanted = [d for d in site.devices if d.name in ("hvac_controller", "zone1_room")]
        links = await open_links({d.bus: site.buses[d.bus] for d in wanted}, stack)
        devices, pushed = await open_sources(
            wanted,
            links,
            stack=stack,
            clock=clock,
            drivers={"ble": BleDriver(backend_factory=lambda _config: backend)},
        )
        sensor = pushed["zone1_room"]
        assert isinstance(sensor, BleSensor)
        events: list[dict[str, Any]] = []

        async def audit(event: dict[str, Any]) -> None:
            events.append(event)

        controller = HvacController(
            hvac or hvac_config(),
            devices=devices,
            tz="Asia/Shanghai",
            audit=audit,
            clock=clock,
            time_trusted=lambda: True,
            room_sensors=pushed,
        )
        listening = asyncio.create_task(sensor.run(discard))
        await clock.advance(0)
        assert backend.is_scanning
        try:
            yield Rig(clock, building, backend, sensor, controller, events)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening


async def test_the_zone_uses_its_thermometer_falls_back_when_it_is_stale_and_comes_back() -> None:
    # A Wednesday in July at 07:29: the zone is switched on at 07:30.
    async with rig(datetime(2026, 7, 1, 7, 29, tzinfo=SHANGHAI)) as r:
        await r.advertise(27.35)
        await r.controller.step()
        room = r.controller.rooms["zone1"]
        assert (room.source, room.value, room.note) == (SENSOR, 27.35, "")
        [first] = r.of("room_source")
        assert (first["source"], first["previous"], first["value"]) == (SENSOR, None, 27.35)

        # 07:30: the schedule switches the zone on; every write names the room and its source.
        await r.step_after(60)
        writes = r.of("write")
        assert "on" in [w["role"] for w in writes]
        for write in writes:
            assert write["room"]["source"] == SENSOR
            assert write["room"]["value"] == 27.35
            assert write["room"]["age_s"] == pytest.approx(60.0)  # the advert came at 07:29
        assert r.building.zones["zone1"].on

        # The thermometer is heard again at 07:31 and then falls silent: it counts for its
        # timeout (2 min in the demo) after its last advert, then the controller's own sensor.
        await r.clock.advance(60)
        await r.advertise(26.8)
        await r.step_after(119)
        assert r.controller.rooms["zone1"].value == 26.8
        assert len(r.of("room_source")) == 1  # still the same source: no new event
        await r.step_after(1)
        room = r.controller.rooms["zone1"]
        assert room.source == OWN
        # The value is the simulated controller's own register, read over Modbus (0.1 °C).
        assert room.value == pytest.approx(r.building.zone_sensor_temperature("zone1"), abs=0.06)
        assert "stale: last heard 120 s ago (timeout 120 s)" in room.note
        fallback = r.of("room_source")[-1]
        assert (fallback["previous"], fallback["source"]) == (SENSOR, OWN)
        assert fallback["note"] == room.note

        # Heard again: back to the thermometer at the next cycle, and audited once.
        await r.clock.advance(30)
        await r.advertise(26.1)
        await r.controller.step()
        assert (r.controller.rooms["zone1"].source, r.controller.rooms["zone1"].value) == (
            SENSOR,
            26.1,
        )
        back = r.of("room_source")[-1]
        assert (back["previous"], back["source"]) == (OWN, SENSOR)
        assert len(r.of("room_source")) == 3


async def test_an_undecodable_advert_does_not_count_as_a_room_temperature() -> None:
    async with rig(datetime(2026, 7, 1, 7, 20, tzinfo=SHANGHAI)) as r:
        r.backend.advertise(MAC, {BTHOME_SERVICE_UUID: b"\x40\x02"})  # cut short
        await r.clock.advance(0)
        await r.controller.step()
        room = r.controller.rooms["zone1"]
        assert room.source == OWN
        assert room.note == f"{SENSOR} has not been heard yet"


async def test_without_any_source_the_zone_says_it_has_no_room_temperature() -> None:
    hvac = hvac_config(HVAC.replace(", temperature: zone1_temperature", ""))
    async with rig(datetime(2026, 7, 1, 7, 20, tzinfo=SHANGHAI), hvac) as r:
        await r.controller.step()
        room = r.controller.rooms["zone1"]
        assert (room.source, room.value) == ("none", None)
        assert room.note == f"{SENSOR} has not been heard yet"
        [event] = r.of("room_source")
        assert (event["value"], event["source"]) == (None, "none")
        # Control goes on without a room temperature: the zone is still switched on.
        await r.step_after(10 * 60)
        assert "on" in [w["role"] for w in r.of("write")]
        assert all(w["room"]["source"] == "none" for w in r.of("write"))


def test_the_preview_names_the_room_temperature_sources() -> None:
    hvac = hvac_config(
        HVAC.replace(
            "programmes:",
            "  zone3: {device: hvac_controller, setpoint: zone3_setpoint, on: zone3_on,\n"
            "          programme: office}\nprogrammes:",
        )
    )
    rows = preview_rows(hvac, "Asia/Shanghai", start=date(2026, 7, 1), days=1)
    shown = format_rows(rows)
    assert f"zone1: (room temperature: {SENSOR}, else {OWN})\n" in shown
    assert "\nzone3:\n" in shown
    data = json.loads(to_json(rows))
    by_zone = {row["zone"]: row.get("room_temperature", []) for row in data["rows"]}
    assert by_zone == {"zone1": [SENSOR, OWN], "zone3": []}


@pytest.mark.parametrize(
    ("room_sensor", "message"),
    [
        ("zone1_rom", "no device is named 'zone1_rom' (did you mean 'zone1_room'?)"),
        ("main_meter", "device 'main_meter' is not a room sensor that keeps its latest reading"),
        ("zone2_room", "device 'zone2_room' says it measures zone 'zone2', not 'zone1'"),
        ("zone1_room.temprature", "has no point 'temprature' (did you mean 'temperature'?)"),
    ],
)
def test_a_wrong_room_sensor_is_one_located_sentence(room_sensor: str, message: str) -> None:
    site = load_config(DEMO_YAML)
    hvac = hvac_config(HVAC.replace("room_sensor: zone1_room", f"room_sensor: {room_sensor}"))
    problems = dict(hvac_problems(hvac, site.devices))
    assert message in problems[("hvac", "zones", "zone1", "room_sensor")]
    assert hvac_problems(hvac_config(), site.devices) == []


def test_a_room_sensor_that_is_not_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"is not a device name or device\.point"):
        hvac_config(HVAC.replace("room_sensor: zone1_room", "room_sensor: 'Zone 1 room'"))
