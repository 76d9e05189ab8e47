"""The supervisor: devices polled into the store, learned quirks kept across restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from agent.demo import _retarget, demo_config
from agent.service import Agent
from agent.store import read_stats
from drivers.modbus.device import ModbusDeviceClient
from hil.server import SimulatedBuilding


async def _run_agent(agent: Agent, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(10):
        await agent.started.wait()
    await asyncio.sleep(seconds)
    stop.set()
    async with asyncio.timeout(10):
        await task


async def test_learned_quirks_survive_a_restart(tmp_path: Path) -> None:
    async with SimulatedBuilding(strict=["main_meter"]) as sim:
        config = _retarget(demo_config(), sim, None)
        first = Agent(config, data_dir=tmp_path)
        await _run_agent(first, 1.0)
        db = tmp_path / "readings.db"
        with sqlite3.connect(db) as conn:
            saved = conn.execute(
                "SELECT value FROM meta WHERE key = 'quirks:main_meter'"
            ).fetchone()
        assert saved is not None, "the strict meter's refusals were not persisted"

        second = Agent(config, data_dir=tmp_path)
        await _run_agent(second, 0.5)
        meter = second.devices["main_meter"]
        assert isinstance(meter, ModbusDeviceClient)
        assert meter.quirks.describe(), "the restarted agent did not load what was learned"
    assert read_stats(db).rows == first.readings_polled + second.readings_polled


async def test_a_device_that_is_down_at_start_does_not_stop_the_others(tmp_path: Path) -> None:
    async with SimulatedBuilding() as sim:
        sim.set_offline("pv")
        config = _retarget(demo_config(), sim, None)
        agent = Agent(config, data_dir=tmp_path)
        await _run_agent(agent, 2.5)
    health = {p.device.name: p.health.online for p in agent.pollers}
    assert health["pv_inverter"] is False
    assert all(ok for name, ok in health.items() if name != "pv_inverter"), health


async def test_a_clean_stop_publishes_what_it_committed_before_it_says_offline(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    # A long batch window (and no publish window) holds every reading of the run in memory
    # until the stop: only the stop's own commit stores them, and the uplink must still
    # publish them before "offline".
    async with SimulatedBuilding() as sim:
        config = _retarget(demo_config(), sim, mosquitto.url)
        config = config.model_copy(
            update={
                "store": config.store.model_copy(
                    update={"batch_window": 30.0, "publish_window": None}
                )
            }
        )
        agent = Agent(config, data_dir=tmp_path)
        async with mqtt_subscribe(mosquitto, "bea/+/+/readings", "bea/+/+/status") as sub:
            await sub.wait_for(lambda _: True, within=1)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            async with asyncio.timeout(10):
                await agent.started.wait()
            await sub.wait_for(lambda m: any(x.payload == b"online" for x in m), within=10)
            await asyncio.sleep(1.0)  # a poll of every device, not yet committed
            assert read_stats(tmp_path / "readings.db").rows == 0
            stop.set()
            async with asyncio.timeout(30):
                await task
            await sub.wait_for(lambda m: m[-1].payload == b"offline", within=10)
    stats = read_stats(tmp_path / "readings.db")
    assert stats.rows == agent.readings_polled > 0
    assert stats.unsynced == 0
    published: list[int] = []
    for message in sub.messages:
        if message.topic.matches("bea/+/+/readings"):
            published += [r["seq"] for r in json.loads(bytes(message.payload))["readings"]]
    assert sorted(published) == list(range(1, stats.rows + 1))
    # Everything published came before the goodbye.
    order = [bytes(m.payload) == b"offline" for m in sub.messages]
    assert order.index(True) == len(order) - 1
