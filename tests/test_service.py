"""The supervisor: devices polled into the store, learned quirks kept across restarts."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from agent.demo import _retarget, demo_config
from agent.service import Agent
from agent.store import read_stats
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
        config = _retarget(demo_config(), sim.endpoints, None)
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
        meter = next(p for p in second.pollers if p.device.name == "main_meter")
        assert meter.quirks.describe(), "the restarted agent did not load what was learned"
    assert read_stats(db).rows == first.readings_polled + second.readings_polled


async def test_a_device_that_is_down_at_start_does_not_stop_the_others(tmp_path: Path) -> None:
    async with SimulatedBuilding() as sim:
        sim.set_offline("pv")
        config = _retarget(demo_config(), sim.endpoints, None)
        agent = Agent(config, data_dir=tmp_path)
        await _run_agent(agent, 2.5)
    health = {p.device.name: p.health.online for p in agent.pollers}
    assert health["pv_inverter"] is False
    assert all(ok for name, ok in health.items() if name != "pv_inverter"), health
