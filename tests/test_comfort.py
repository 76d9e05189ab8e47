"""`edge-agent comfort`: occupied hours outside the temperature policy, from room sensors."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.cli import main
from agent.comfort import comfort_rows
from agent.config.loader import load_config
from agent.core.errors import AgentError
from agent.core.record import Reading
from agent.hvac.program import hvac_problems
from agent.store import Store
from tests.helpers import DEMO_YAML

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 7, 1)  # a Wednesday in the demo's cooling season


async def _fill(db: Path) -> None:
    """zone1's thermometer every minute from 07:00 to 15:00: 25 °C from 08:00 to 10:00 (cooled
    below the 26 °C minimum), 27 °C otherwise; then nothing (the sensor's battery died)."""
    async with Store(db, batch_window=0.01) as store:
        at = datetime(2026, 7, 1, 7, 0, tzinfo=TZ)
        batch = []
        while at.hour < 15:
            celsius = 25.0 if 8 <= at.hour < 10 else 27.0
            batch.append(
                Reading("zone1_room", "temperature", round(at.timestamp() * 1000), celsius, "degC")
            )
            at += timedelta(minutes=1)
        await store.append(batch)
        await store.flush()


async def test_hours_cooled_below_the_minimum_and_hours_without_data(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    await _fill(db)
    config = load_config(DEMO_YAML)
    rows = {r.zone: r for r in comfort_rows(config, db, start=DAY, days=1)}
    zone1, zone2 = rows["zone1"], rows["zone2"]
    # The office programme: on from 07:30 to 18:00 on a workday (the lunch setback stays on).
    assert zone1.occupied_h == pytest.approx(10.5)
    assert zone1.cooled_below_h == pytest.approx(2.0)
    assert zone1.heated_above_h == 0
    # The last reading (14:59) stands for the room for its 2-minute timeout, to 15:01; then
    # nothing until 18:00: a dead sensor is not compliance.
    assert zone1.no_data_h == pytest.approx(3.0 - 1 / 60)
    assert zone1.cooling_min == 26
    # zone2's thermometer sent nothing: all of its occupied time is without data.
    assert zone2.no_data_h == pytest.approx(zone2.occupied_h)
    assert zone2.occupied_h > 0


async def test_the_command_prints_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await _fill(tmp_path / "readings.db")
    args = ["comfort", "--config", str(DEMO_YAML), "--data-dir", str(tmp_path)]
    assert main([*args, "--from", DAY.isoformat(), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    zone1 = next(r for r in rows if r["zone"] == "zone1")
    assert zone1["sensor"] == "zone1_room"
    assert float(zone1["cooled_below_h"]) == pytest.approx(2.0)
    assert main([*args, "--from", DAY.isoformat()]) == 0
    assert "2.00 h cooled below 26 °C" in capsys.readouterr().out


def test_a_site_without_room_sensors_is_told_why(tmp_path: Path) -> None:
    config = load_config(DEMO_YAML)
    config = config.model_copy(
        update={"devices": [d for d in config.devices if d.protocol != "ble"]}
    )
    with pytest.raises(AgentError, match="no device measures a zone") as raised:
        comfort_rows(config, tmp_path / "readings.db", start=DAY, days=1)
    # Both ways of linking a sensor to a zone are named.
    assert "`room_sensor: <device>`" in str(raised.value)
    assert "`zone: <hvac zone>`" in str(raised.value)


def _site(*, zone_keys: dict[str, str | None], without_room_sensor: tuple[str, ...] = ()) -> Any:
    """The demo site with its BLE sensors' `zone:` keys changed (None: removed), and some HVAC
    zones without their `room_sensor`; still a config the cross-check accepts."""
    config = load_config(DEMO_YAML)
    devices = [
        d.model_copy(update={"zone": zone_keys[d.name]}) if d.name in zone_keys else d
        for d in config.devices
    ]
    zones = {
        name: zone.model_copy(update={"room_sensor": None}) if name in without_room_sensor else zone
        for name, zone in config.hvac.zones.items()
    }
    hvac = config.hvac.model_copy(update={"zones": zones})
    assert hvac_problems(hvac, devices) == []
    return config.model_copy(update={"devices": devices, "hvac": hvac})


async def test_a_zone_names_its_sensor_by_room_sensor_alone(tmp_path: Path) -> None:
    # zone1 takes its room temperature from `room_sensor: zone1_room`, as the controller does;
    # the thermometer itself carries no `zone:` (zone2 has no sensor either way now).
    db = tmp_path / "readings.db"
    await _fill(db)
    config = _site(
        zone_keys={"zone1_room": None, "zone2_room": None}, without_room_sensor=("zone2",)
    )
    assert config.hvac.zones["zone1"].room_sensor == "zone1_room"
    rows = comfort_rows(config, db, start=DAY, days=1)
    assert [(r.zone, r.sensor) for r in rows] == [("zone1", "zone1_room")]
    assert rows[0].cooled_below_h == pytest.approx(2.0)
    assert rows[0].no_data_h == pytest.approx(3.0 - 1 / 60)


async def test_a_zones_room_sensor_wins_over_another_devices_zone_key(tmp_path: Path) -> None:
    # zone2's thermometer now says it hangs in zone1 (`zone: zone1`), but zone1 names its own
    # `room_sensor: zone1_room`: the controller uses that one, and so does the report.
    db = tmp_path / "readings.db"
    await _fill(db)
    config = _site(zone_keys={"zone2_room": "zone1"}, without_room_sensor=("zone2",))
    rows = comfort_rows(config, db, start=DAY, days=1)
    assert [(r.zone, r.sensor) for r in rows] == [("zone1", "zone1_room")]
