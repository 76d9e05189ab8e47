"""EnergyLive: readings to `energy.interval` and `energy.alert` events, across restarts."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.config.model import SiteInfo
from agent.energy.config import EnergyConfig, MeterConfig, QuotaRule
from agent.energy.live import ALERTS_KEY, CURSOR_KEY, EnergyLive
from agent.record import Reading, ms_to_iso
from agent.store import Store, StoreEvent

SITE = SiteInfo(id="office", name="Office", timezone="Asia/Shanghai")
T0 = int(datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
MIN = 60_000
RATES = {"main": 20.0, "light": 8.0}  # kWh per hour: 5 and 2 kWh per 15 minutes


def energy(limit: float = 15.0) -> EnergyConfig:
    return EnergyConfig(
        interval_minutes=15,
        meters=[
            MeterConfig(name="main", device="main_meter", point="import_energy", role="main"),
            MeterConfig(
                name="light", device="light_meter", point="import_energy", sub_item="01A00"
            ),
        ],
        quotas=[
            QuotaRule(
                name="site-day",
                energy_type="electricity",
                period="day",
                limit=limit,
                thresholds=(100.0,),
                project=False,
            )
        ],
    )


def counters(first_min: int, last_min: int) -> list[Reading]:
    """A reading per minute of each meter (and of a point that is not a meter)."""
    out = []
    for minute in range(first_min, last_min + 1):
        ts = T0 + minute * MIN
        out.append(Reading("main_meter", "import_energy", ts, 1000 + 20 * minute / 60, "kWh"))
        out.append(Reading("light_meter", "import_energy", ts, 50 + 8 * minute / 60, "kWh"))
        out.append(Reading("main_meter", "voltage", ts, 230.0, "V"))
    return out


def clock() -> int:
    return T0 + 121 * MIN  # the same local day: the day quota does not roll over


async def events(store: Store, kind: str) -> list[StoreEvent]:
    return await store.events_after(0, 10_000, kind=kind)


def by_meter(found: list[StoreEvent]) -> dict[str, list[tuple[str, float, str]]]:
    out: dict[str, list[tuple[str, float, str]]] = {}
    for e in found:
        d = e.detail
        out.setdefault(d["meter"], []).append((d["start"], round(d["value"], 6), d["quality"]))
    return out


def expected(meter: str, intervals: int) -> list[tuple[str, float, str]]:
    value = round(RATES[meter] / 4, 6)
    return [(ms_to_iso(T0 + 15 * MIN * k), value, "measured") for k in range(intervals)]


async def test_intervals_and_one_quota_alert(tmp_path: Path) -> None:
    async with Store(tmp_path / "buffer.db") as store:
        await store.append(counters(0, 120))
        await store.flush()
        live = EnergyLive(energy(), site=SITE, store=store, interval=0.05, clock=clock)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(live.run(stop), name="test[energy].run")
            await asyncio.sleep(0.2)  # a few cycles
            stop.set()
        assert live.cycles >= 2
        found = by_meter(await events(store, "energy.interval"))
        assert found == {"main": expected("main", 8), "light": expected("light", 8)}
        detail = (await events(store, "energy.interval"))[0].detail
        assert {"energy_type", "sub_item", "unit", "flags", "end"} <= detail.keys()
        assert detail["energy_type"] == "electricity"
        alerts = [e.detail for e in await events(store, "energy.alert")]
        quota = [a for a in alerts if a["kind"] == "quota_threshold"]
        assert [a["state"] for a in quota] == ["raised"]
        assert json.loads(await store.get_meta(ALERTS_KEY) or "{}").keys() >= {
            a["key"] for a in quota
        }
        # the uplink sees them as unpublished events
        assert len(await store.unpublished_events(1000)) == 16 + len(alerts)


async def test_a_restart_repeats_nothing_and_loses_no_energy(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    async with Store(db) as store:
        await store.append(counters(0, 52))  # 3 intervals complete, the 4th is open
        await store.flush()
        first = EnergyLive(energy(), site=SITE, store=store, clock=clock)
        await first.cycle()
        await first.cycle()  # nothing new: nothing recorded twice
        assert by_meter(await events(store, "energy.interval"))["main"] == expected("main", 3)
        raised = [
            e for e in await events(store, "energy.alert") if e.detail["kind"] == "quota_threshold"
        ]
        assert len(raised) == 1  # 15 kWh reached by the third main interval
        assert json.loads(await store.get_meta(CURSOR_KEY) or "{}")["emitted"]["main"] > T0

    async with Store(db) as store:  # the agent restarted
        await store.append(counters(53, 120))
        await store.flush()
        second = EnergyLive(energy(), site=SITE, store=store, clock=clock)
        await second.cycle()
        found = by_meter(await events(store, "energy.interval"))
        # the 4th interval straddles the restart and is still complete and measured
        assert found == {"main": expected("main", 8), "light": expected("light", 8)}
        quota = [
            e for e in await events(store, "energy.alert") if e.detail["kind"] == "quota_threshold"
        ]
        assert len(quota) == 1
        assert second.pipeline is not None
        (status,) = second.pipeline.quotas.status()
        assert status.value == pytest.approx(40.0)  # the first run's intervals were restored


async def test_a_bad_section_is_logged_once_and_stands_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = EnergyConfig(
        meters=[MeterConfig(name="main", device="m", point="e", role="main")],
        off_hours=[{"name": "night", "meter": "nope", "baseline": 1.0}],  # type: ignore[list-item]
    )
    async with Store(tmp_path / "buffer.db") as store:
        live = EnergyLive(bad, site=SITE, store=store, interval=0.01)
        async with asyncio.timeout(5):
            await live.run(asyncio.Event())  # returns instead of crashing the agent
    assert [r.message for r in caplog.records if "disabled" in r.message]
