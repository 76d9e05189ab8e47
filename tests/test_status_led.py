"""The status LED in the running agent (issue #11): its pattern follows the agent's health,
read back from gpiozero's mock pin's state history.

A real agent on the simulated switchboard (Modbus TCP), a real Mosquitto broker, the LED on a
mock pin of the config's gpio bus: all good (a short flash), the broker stopped (a slow blink,
readings buffered), a meter silent (a fast blink), the agent stopped (dark, pin released).
The patterns' exact timing is tested on a manual clock in test_gpio_led.py; here real time
passes, so durations are checked with a tolerance that still tells the patterns apart.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from agent.config.loader import load_config_text
from agent.core.errors import ConfigError
from agent.service import Agent
from agent.status_led import led_state
from drivers.ble.backend import FakeBackend
from drivers.ble.driver import BleDriver
from drivers.gpio.pulses import pin_backend
from hil.server import SimulatedBuilding
from tests.conftest import MosquittoBroker

PIN = 27
SITE = """
site: {{id: led-test, name: Status LED}}
gateway:
  status_led: {{pin: {pin}}}    # on the only gpio bus
store: {{batch_window: 100ms}}
uplink: {{url: "{url}"}}
buses:
  board: {{kind: modbus_tcp, host: {host}, port: {port}, timeout: 200ms}}
  pins: {{kind: gpio, pin_factory: mock}}
devices:
  - {{name: main_meter, bus: board, unit_id: 1, profile: eastron-sdm630, interval: 250ms}}
"""


def phases(pin: Any) -> list[tuple[bool, float]]:
    """The pin's history as (level, how long it was held): gpiozero's mock pin stamps each
    change with the time since the one before."""
    pairs = itertools.pairwise(pin.states)
    return [(bool(before.state), after.timestamp) for before, after in pairs]


def find(held: list[tuple[bool, float]], pattern: list[tuple[bool, float]], start: int) -> int:
    """The index from ``start`` on where ``pattern`` occurs, or -1. Durations may be 0.25 s off
    (a loaded machine's event loop runs late); each sequence searched below still fits no
    other pattern."""
    for index in range(start, len(held) - len(pattern) + 1):
        window = held[index : index + len(pattern)]
        if all(
            level == want and abs(duration - seconds) < 0.25
            for (level, duration), (want, seconds) in zip(window, pattern, strict=True)
        ):
            return index
    return -1


async def _until(agent: Agent, state: str) -> float:
    async with asyncio.timeout(10):
        while led_state(agent) != state:  # noqa: ASYNC110 - health has no event of its own
            await asyncio.sleep(0.02)
    # The LED looks at the health every 0.5 s: its pattern follows within that.
    await asyncio.sleep(0.6)
    return time.monotonic()


async def test_the_led_shows_ok_buffering_fault_and_goes_dark_at_stop(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with SimulatedBuilding() as sim:
        host, port = sim.endpoints["switchboard"]
        text = SITE.format(pin=PIN, url=mosquitto.url, host=host, port=port)
        config = load_config_text(text, filename="site.yaml")
        agent = Agent(config, data_dir=tmp_path)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        async with asyncio.timeout(10):
            await agent.started.wait()
        pin = pin_backend(agent.links["pins"]).factory.pin(PIN)

        # Each state is held long enough for its pattern's signature to show.
        # `_until` returns 0.1-0.6 s after the LED switched: the waits below make each
        # pattern's signature whole even when the switch came late.
        await _until(agent, "ok")
        await asyncio.sleep(1.9)  # an ok flash, then 1.9 s dark
        mosquitto.stop()
        await _until(agent, "buffering")
        await asyncio.sleep(0.9)  # a whole 1 s on
        sim.set_offline("switchboard")
        await _until(agent, "fault")
        await asyncio.sleep(0.8)  # two whole fast blinks
        stop.set()
        async with asyncio.timeout(10):
            await task

    held = phases(pin)
    # ok: a short flash every 2 s; its mark is the 1.9 s dark between flashes (the flash that
    # starts it may merge with a lit phase of the pattern before).
    ok = find(held, [(False, 1.9)], 0)
    assert ok >= 0, held
    buffering = find(held, [(True, 1.0)], ok + 1)
    assert buffering >= 0, held
    fault = find(held, [(True, 0.2), (False, 0.2), (True, 0.2), (False, 0.2)], buffering + 1)
    assert fault >= 0, held
    # Stopped: dark.
    assert not pin.states[-1].state


def test_a_status_led_on_a_bus_that_is_not_gpio_is_one_located_sentence() -> None:
    text = SITE.format(pin=PIN, url="mqtt://127.0.0.1:1883", host="127.0.0.1", port=502)
    text = text.replace("status_led: {pin: 27}", "status_led: {pin: 27, bus: board}")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, filename="site.yaml")
    assert [str(issue) for issue in caught.value.issues] == [
        "site.yaml:4:30: gateway.status_led.bus: bus 'board' is of kind modbus_tcp; "
        "the status LED needs a gpio bus"
    ]


async def test_a_silent_room_sensor_is_a_fault(tmp_path: Path) -> None:
    """A BLE room sensor never heard goes stale after its timeout: the LED blinks fast."""
    text = """
site: {id: led-ble, name: Status LED}
gateway: {status_led: {pin: 27}}
store: {batch_window: 100ms}
buses:
  bt: {kind: ble, adapter: hci0}
  pins: {kind: gpio, pin_factory: mock}
devices:
  - {name: room1, protocol: ble, bus: bt, mac: "A4:C1:38:00:00:01", interval: 200ms, timeout: 500ms}
"""
    config = load_config_text(text, filename="site.yaml")
    backend = FakeBackend()
    agent = Agent(
        config, data_dir=tmp_path, drivers={"ble": BleDriver(backend_factory=lambda _: backend)}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(10):
        await agent.started.wait()
    pin = pin_backend(agent.links["pins"]).factory.pin(PIN)
    assert led_state(agent) == "ok", "not silent for its timeout yet"
    await _until(agent, "fault")
    await asyncio.sleep(0.8)  # two whole fast blinks after the switch (see above)
    stop.set()
    async with asyncio.timeout(10):
        await task
    held = phases(pin)
    assert find(held, [(True, 0.2), (False, 0.2), (True, 0.2), (False, 0.2)], 0) >= 0, held
