"""`edge-agent scan --ble`: the sensors around, as a technician writes them into the config."""

from __future__ import annotations

import asyncio
import io
import json

from agent.commission import scan_ble
from drivers.ble.backend import FakeBackend
from hil.building import Building
from hil.rooms import BTHOME_SERVICE_UUID, RoomSensor


async def test_the_sensors_heard_are_listed_with_their_values() -> None:
    backend = FakeBackend()
    building = Building(clock=lambda: 1_782_870_000.0)  # pinned: the values do not move
    sensors = [RoomSensor("A4:C1:38:00:00:01", "zone1"), RoomSensor("A4:C1:38:00:00:02", "zone2")]

    async def advertise() -> None:
        await backend.wait_scanning()
        for rssi, sensor in zip((-55, -80), sensors, strict=True):
            backend.advertise(
                sensor.mac, {BTHOME_SERVICE_UUID: sensor.advert(building)}, rssi=rssi
            )

    out = io.StringIO()
    async with asyncio.timeout(5):
        feeder = asyncio.create_task(advertise())
        status = await scan_ble("hci0", seconds=0.3, as_json=True, out=out, backend=backend)
        await feeder
    assert status == 0
    rows = json.loads(out.getvalue())
    assert [r["mac"] for r in rows] == ["A4:C1:38:00:00:01", "A4:C1:38:00:00:02"]  # loudest first
    assert rows[0]["format"] == "bthome"
    expected = round(building.zone_sensor_temperature("zone1"), 2)
    assert rows[0]["temperature"] == expected


async def test_nothing_heard_is_exit_1() -> None:
    out = io.StringIO()
    assert await scan_ble("hci0", seconds=0.1, as_json=False, out=out, backend=FakeBackend()) == 1
    assert "0 sensors heard on hci0" in out.getvalue()
