"""`edge-agent pulses set DEVICE VALUE` aligns a running agent's pulse counter to the meter's
dial once, through the local command spool: audited with the value before and after, the
readings carrying on from the dial; an unknown device, a device that is not a pulse meter, or a
dial in another unit is refused with the reason and changes nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.config.loader import load_config_text
from agent.core.record import Quality
from agent.service import Agent
from agent.store import export_readings, read_events
from drivers.gpio.pulses import pin_backend
from drivers.gpio.source import PulseMeterSource

SITE = """
site: {id: pulses-test, name: Pulses}
store: {batch_window: 50ms}
commands: {trust_clock: true}
buses:
  pins: {kind: gpio, pin_factory: mock}
  plant: {kind: tcp, host: 127.0.0.1, port: 9, timeout: 200ms}
devices:
  - {name: canteen_hot_water, protocol: gpio, bus: pins, pin: 17, point: volume, unit: m3,
     per_pulse: 0.001, bounce: 1ms, max_rate: 50, interval: 200ms}
  - {name: main_meter, bus: plant, unit_id: 1, profile: eastron-sdm120, interval: 1m}
"""


async def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = await asyncio.to_thread(main, ["pulses", "set", *args])
    out = capsys.readouterr().out
    return status, json.loads(out)


async def test_pulses_set_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config_text(SITE, filename="site.yaml")
    service = Agent(config, data_dir=tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    async with asyncio.timeout(10):
        await service.started.wait()
    source = service.push_sources["canteen_hot_water"]
    assert isinstance(source, PulseMeterSource)
    data = ["--data-dir", str(tmp_path)]
    refusals = [
        await _cli(capsys, "boiler", "3", *data),
        await _cli(capsys, "main_meter", "3", *data),
        await _cli(capsys, "canteen_hot_water", "1234500", "--unit", "L", *data),
    ]
    assert source.value == 0  # nothing changed
    accepted = await _cli(capsys, "canteen_hot_water", "1234.5", *data)
    pin = pin_backend(service.links["pins"]).factory.pin(17)
    for _ in range(3):
        pin.drive_low()
        await asyncio.sleep(0.03)
        pin.drive_high()
        await asyncio.sleep(0.03)
    await asyncio.sleep(1.3)  # an emission after the last pulse (at most one a second)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert [(status, reply["ok"], reply["applied"]) for status, reply in refusals] == [
        (1, False, None)
    ] * 3
    reasons = [reply["reason"] for _, reply in refusals]
    assert reasons[0] == "unknown device 'boiler'; the pulse meters are: canteen_hot_water"
    assert reasons[1] == (
        "device 'main_meter' is not a pulse meter (modbus): only a GPIO pulse counter can be set"
    )
    assert reasons[2] == (
        "`set_counter.unit` is 'L', but canteen_hot_water counts in 'm3': give the dial in m3"
    )
    status, reply = accepted
    assert status == 0
    assert reply["applied"] == {
        "device": "canteen_hot_water", "before": 0.0, "after": 1234.5, "unit": "m3"
    }  # fmt: skip
    # The readings carry on from the dial: 3 pulses of a litre after it.
    volume = [r for r in export_readings(tmp_path / "readings.db")
              if r.device == "canteen_hot_water" and r.point == "volume"]  # fmt: skip
    assert volume[-1].value == 1234.503
    assert volume[-1].quality is Quality.GOOD
    events = [e for e in read_events(tmp_path / "readings.db", limit=50)
              if e.kind == "pulses.command"]  # fmt: skip
    audit = [(e.detail["ok"], e.detail["source"], e.detail["sender"]) for e in reversed(events)]
    assert audit == [(False, "cli", "cli")] * 3 + [(True, "cli", "cli")]
    assert events[0].detail["counter"] == reply["applied"]
