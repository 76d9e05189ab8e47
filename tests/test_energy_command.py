"""`edge-agent energy`'s shell: the report read from a real SQLite buffer."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.core.errors import AgentError
from agent.core.record import Quality, Reading
from agent.energy.command import print_energy_report
from agent.energy.config import EnergyConfig
from agent.store import Store
from hil.building import Building

TZ = ZoneInfo("Asia/Shanghai")
ENERGY = EnergyConfig.model_validate(
    {
        "meters": [
            {"name": "grid", "device": "main_meter", "point": "import_energy", "role": "main"},
            {
                "name": "lighting",
                "device": "lighting_meter",
                "point": "import_energy",
                "sub_item": "01A00",
            },
        ]
    }
)


class Site:
    id = "jz-test"
    name = "Test office"
    timezone = "Asia/Shanghai"
    floor_area_m2 = 12_000.0


async def _fill(db: Path, start: datetime, hours: int) -> None:
    """The simulated building read every 30 s, with the voltages a real poll also stores."""
    clock = [start.timestamp()]
    building = Building(clock=lambda: clock[0], seed=3)
    async with Store(db, batch_window=0.01) as store:
        for _ in range(hours * 120 + 1):
            energy, ts = building.energy(), round(clock[0] * 1000)
            await store.append(
                [
                    Reading("main_meter", "import_energy", ts, energy.main_import, "kWh"),
                    Reading("main_meter", "voltage_l1", ts, 230.0, "V"),
                    Reading("lighting_meter", "import_energy", ts, energy.lighting, "kWh"),
                    Reading("hvac_meter", "import_energy", ts, 1.0, "kWh", Quality.BAD),
                ]
            )
            clock[0] += 30
            building.update()
        await store.flush()


async def test_the_report_comes_from_the_buffer(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    await _fill(db, datetime(2026, 7, 1, 6, 0, tzinfo=TZ), hours=6)
    out = io.StringIO()
    now = round(datetime(2026, 7, 1, 12, 0, tzinfo=TZ).timestamp() * 1000)
    assert (
        print_energy_report(ENERGY, site=Site(), db=db, start="2026-07-01", out=out, now=now) == 0
    )
    text = out.getvalue()
    assert "Energy report: Test office (jz-test), by day, 2026-07-01 to 2026-07-01" in text
    # By noon 48 quarter hours were due; the buffer holds the 24 from 06:00.
    assert "24 of 48 received, 0 estimated, 24 missing" in text
    assert "01A00 lighting and sockets" in text

    out = io.StringIO()
    print_energy_report(
        ENERGY, site=Site(), db=db, start="2026-07", period="month", as_csv=True, out=out, now=now
    )
    header, *rows = out.getvalue().splitlines()
    assert header == "period,section,key,value,unit,note,factor"
    assert any(row.startswith("2026-07,consumption,electricity,") for row in rows)


def test_plain_sentences_for_what_is_missing(tmp_path: Path) -> None:
    out = io.StringIO()
    with pytest.raises(AgentError, match="no `energy` section"):
        print_energy_report(None, site=Site(), db=tmp_path / "x.db", out=out)
    with pytest.raises(AgentError, match="there is no buffer at"):
        print_energy_report(ENERGY, site=Site(), db=tmp_path / "x.db", out=out)
    (tmp_path / "x.db").write_bytes(b"")
    with pytest.raises(AgentError, match="--from: 'July' is not a date"):
        print_energy_report(ENERGY, site=Site(), db=tmp_path / "x.db", start="July", out=out)
