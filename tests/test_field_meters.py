"""The plant-room line of the simulated building, end to end: a DL/T 645 meter and a CJ/T 188
water meter sharing one RS-485 line with nothing but the agent's registry between them and the
store, and their consumption in `edge-agent energy`, on simulated time."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.core.clock import ManualClock
from agent.demo import _retarget, demo_config
from agent.energy.command import print_energy_report
from agent.service import Agent
from agent.store import export_readings
from hil.building import Building
from hil.server import SimulatedBuilding

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 7, 1, 9, 0, tzinfo=TZ)  # a Wednesday morning: the building is in use
MINUTES = 45  # three whole 15-minute intervals


async def test_dlt645_and_cjt188_meters_reach_the_store_and_the_energy_report(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    building = Building(clock=clock.time, seed=5, zones_follow_office_hours=True)
    async with SimulatedBuilding(building=building) as sim:
        config = _retarget(demo_config(), sim, None)
        # Poll every device often, so each simulated minute has its readings.
        devices = [d.model_copy(update={"interval": 0.05}) for d in config.devices]
        config = config.model_copy(update={"devices": devices, "hvac": None})
        agent = Agent(config, data_dir=tmp_path, clock=clock)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        async with asyncio.timeout(10):
            await agent.started.wait()
        first = building.energy()
        for _ in range(MINUTES + 1):
            await asyncio.sleep(0.15)  # every device polled at least once in this minute
            clock.advance(60)
        stop.set()
        async with asyncio.timeout(30):
            await task
        building.update()
        last = building.energy()
    db = tmp_path / "readings.db"
    records = list(export_readings(db))
    power = [r for r in records if r.device == "power_meter" and r.point == "import_energy"]
    water = [r for r in records if r.device == "water_meter" and r.point == "volume"]
    assert power
    assert water
    assert all(r.quality.label == "good" for r in power + water)
    # The meters read the building's own counters (DL/T 645 to 0.01 kWh, CJ/T 188 to 0.01 m3),
    # the last reading a simulated minute or two before the end.
    assert 0 <= last.other - float(power[-1].value) < 0.5  # type: ignore[arg-type]
    assert 0 <= last.water - float(water[-1].value) < 0.05  # type: ignore[arg-type]
    assert float(power[0].value) < float(power[-1].value)  # type: ignore[arg-type]

    out = io.StringIO()
    assert config.energy is not None
    print_energy_report(
        config.energy,
        site=config.site,
        db=db,
        start="2026-07-01",
        as_csv=True,
        out=out,
        now=clock.now_ms(),
    )
    rows = {(r["section"], r["key"]): r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    power_row = next(r for (section, key), r in rows.items() if key.startswith("01C00"))
    water_row = rows[("consumption", "water")]
    # Whole intervals of each, no more than the counters moved over the run.
    assert 0 < float(power_row["value"]) <= last.other - first.other + 0.01
    assert 0 < float(water_row["value"]) <= last.water - first.water + 0.01
    assert water_row["unit"] == "m3"
    # Water is reported as water, never converted to standard coal.
    assert not any(section == "tce" and key == "water" for section, key in rows)
