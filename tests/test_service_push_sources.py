"""Push sources in the running agent: a BLE room sensor (adverts through the fake scanner
boundary) and a GPIO pulse water meter (gpiozero's mock pins), beside nothing else, from the site
config to committed readings, and the pulse count kept across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.config.loader import load_config_text
from agent.core.record import Quality
from agent.service import Agent
from agent.store import export_readings
from drivers.ble.backend import FakeBackend
from drivers.ble.driver import BleDriver
from drivers.ble.formats import BTHOME_UUID, encode_bthome
from drivers.gpio.pulses import pin_backend

SITE = """
site: {id: push-test, name: Push sources}
store: {batch_window: 50ms}
buses:
  bt: {kind: ble, adapter: hci0}
  pins: {kind: gpio, pin_factory: mock}
devices:
  - {name: room1, protocol: ble, bus: bt, mac: "A4:C1:38:00:00:01", interval: 200ms, timeout: 5s}
  - name: canteen_water
    protocol: gpio
    bus: pins
    pin: 17
    point: volume
    unit: m3
    per_pulse: 0.01
    bounce: 1ms
    max_rate: 50
    interval: 200ms
"""

MAC = "A4:C1:38:00:00:01"


async def _run(agent: Agent, work: Any) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(10):
        await agent.started.wait()
    await work(agent)
    stop.set()
    async with asyncio.timeout(10):
        await task


async def _pulses(agent: Agent, count: int) -> None:
    pin = pin_backend(agent.links["pins"]).factory.pin(17)
    for _ in range(count):
        pin.drive_low()  # a reed switch to ground, against the pull-up
        await asyncio.sleep(0.03)
        pin.drive_high()
        await asyncio.sleep(0.03)


async def test_ble_adverts_and_gpio_pulses_become_stored_readings(tmp_path: Path) -> None:
    config = load_config_text(SITE, filename="site.yaml")
    backend = FakeBackend()
    drivers = {"ble": BleDriver(backend_factory=lambda _: backend)}

    async def work(agent: Agent) -> None:
        async with asyncio.timeout(5):
            await backend.wait_scanning()
        for packet in range(4):
            data = encode_bthome(
                {"temperature": 26.4, "humidity": 55.0, "battery": 87}, packet_id=packet
            )
            backend.advertise(MAC, {BTHOME_UUID: data}, rssi=-70)
            await asyncio.sleep(0.1)
        await _pulses(agent, 12)
        await asyncio.sleep(1.3)  # an emit after the last pulse (at most one a second)

    first = Agent(config, data_dir=tmp_path, drivers=drivers)
    await _run(first, work)
    records = list(export_readings(tmp_path / "readings.db"))
    room = {r.point: r for r in records if r.device == "room1" and r.quality is Quality.GOOD}
    assert room["temperature"].value == 26.4
    assert room["temperature"].unit == "degC"
    assert room["humidity"].value == 55.0
    assert room["battery"].value == 87
    assert room["rssi"].value == -70
    volume = [r for r in records if r.device == "canteen_water" and r.point == "volume"]
    assert volume[-1].value == 0.12  # 12 pulses of 10 L
    assert volume[-1].unit == "m3"

    # A restart keeps the count: the saved pulses come back from the store.
    second = Agent(config, data_dir=tmp_path, drivers=drivers)
    async def three_more(agent: Agent) -> None:
        await _pulses(agent, 3)
        await asyncio.sleep(1.3)

    await _run(second, three_more)
    records = list(export_readings(tmp_path / "readings.db"))
    volume = [r for r in records if r.device == "canteen_water" and r.point == "volume"]
    assert abs(float(volume[-1].value) - 0.15) < 1e-9  # type: ignore[arg-type]
