"""EnergyLive: readings to `energy.interval` and `energy.alert` events, across restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.config.model import SiteInfo
from agent.core.clock import ManualClock
from agent.core.record import Reading, ms_to_iso
from agent.energy.config import EnergyConfig, MeterConfig, QuotaRule
from agent.energy.live import ALERTS_KEY, CURSOR_KEY, QUALITY_KEY, EnergyLive
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


def clock() -> ManualClock:
    return ManualClock.at_ms(T0 + 121 * MIN)  # the same local day: the day quota does not roll over


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
        live = EnergyLive(energy(), site=SITE, store=store, interval=0.05, clock=clock())
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
        # the uplink sees them as unpublished events (with the rollups of the closed hours)
        unpublished = await store.unpublished_events(1000)
        assert len([e for e in unpublished if e.kind in {"energy.interval", "energy.alert"}]) == (
            16 + len(alerts)
        )
        assert {e.kind for e in unpublished} <= {"energy.interval", "energy.alert", "energy.rollup"}
        # and every interval is in the intervals table too
        assert len(await store.intervals()) == 16


async def test_a_restart_repeats_nothing_and_loses_no_energy(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    async with Store(db) as store:
        await store.append(counters(0, 52))  # 3 intervals complete, the 4th is open
        await store.flush()
        first = EnergyLive(energy(), site=SITE, store=store, clock=clock())
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
        second = EnergyLive(energy(), site=SITE, store=store, clock=clock())
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


def month_quota() -> EnergyConfig:
    config = energy()
    return config.model_copy(
        update={
            "quotas": [
                QuotaRule(
                    name="site-month",
                    energy_type="electricity",
                    period="month",
                    limit=10_000.0,
                    project=False,
                )
            ]
        }
    )


async def test_a_restart_after_the_events_were_pruned_keeps_the_month_total(
    tmp_path: Path,
) -> None:
    db = tmp_path / "buffer.db"
    async with Store(db) as store:
        await store.append(counters(0, 52))
        await store.flush()
        await EnergyLive(month_quota(), site=SITE, store=store, clock=clock()).cycle()
    with sqlite3.connect(db) as conn:  # what the store's pruning does to published events
        conn.execute("DELETE FROM events")
    async with Store(db) as store:
        assert await store.events_after(0, 100, kind="energy.interval") == []
        await store.append(counters(53, 120))
        await store.flush()
        second = EnergyLive(month_quota(), site=SITE, store=store, clock=clock())
        await second.cycle()
        assert second.pipeline is not None
        (status,) = second.pipeline.quotas.status()
        assert status.value == pytest.approx(40.0)  # 8 intervals of 5 kWh: none lost, none twice
        stored = await store.intervals(meters=["main"])
        assert [round(i["value"], 6) for i in stored] == [5.0] * 8
        assert stored[0]["energy_type"] == "electricity"
        assert stored[0]["flags"] == []


# 2026-03-10 23:00 local: readings to 01:30 the next day cross an hour and a day boundary.
LATE = int(datetime(2026, 3, 10, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)


def late_counters(last_min: int) -> list[Reading]:
    out = []
    for minute in range(0, last_min + 1):
        ts = LATE + minute * MIN
        out.append(Reading("main_meter", "import_energy", ts, 1000 + 20 * minute / 60, "kWh"))
        out.append(Reading("light_meter", "import_energy", ts, 50 + 8 * minute / 60, "kWh"))
    return out


def rollups(found: list[StoreEvent], size: str) -> dict[str, dict[tuple[str, str], Any]]:
    return {
        e.detail["start"]: {(r["scope"], r["key"]): r for r in e.detail["records"]}
        for e in found
        if e.detail["size"] == size
    }


async def test_rollups_are_recorded_when_an_hour_and_a_day_close(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    async with Store(db) as store:
        await store.append(late_counters(90))  # to 00:30: the 00:00 hour is still open
        await store.flush()
        at = ManualClock.at_ms(LATE + 91 * MIN)
        live = EnergyLive(energy(limit=1e6), site=SITE, store=store, clock=at)
        await live.cycle()
        hours = rollups(await events(store, "energy.rollup"), "hour")
        assert list(hours) == [ms_to_iso(LATE)]
        hour = hours[ms_to_iso(LATE)]
        assert hour[("meter", "main")]["value"] == pytest.approx(20.0)
        assert hour[("meter", "light")]["value"] == pytest.approx(8.0)
        assert hour[("sub_item", "01A00")]["value"] == pytest.approx(8.0)
        assert hour[("type", "electricity")]["value"] == pytest.approx(20.0)
        assert hour[("meter", "main")]["count"] == 4 == hour[("meter", "main")]["expected"]
        tce = hour[("site", "tce")]
        assert tce["value"] == pytest.approx(20 * 0.1229 / 1000)
        assert "0.1229" in tce["basis"]  # the factor is named on the figure
        (co2,) = [f for f in hour[("type", "electricity")]["figures"] if f["name"] == "co2"]
        assert co2["factor"]
        days = rollups(await events(store, "energy.rollup"), "day")
        assert list(days) == [ms_to_iso(LATE - 23 * 60 * MIN)]  # 2026-03-10 closed at midnight
        day = days[ms_to_iso(LATE - 23 * 60 * MIN)]
        assert day[("meter", "main")]["value"] == pytest.approx(20.0)
        assert "incomplete" in day[("meter", "main")]["flags"]  # 4 of 96 intervals
        assert rollups(await events(store, "energy.rollup"), "month") == {}

    async with Store(db) as store:  # after a restart: nothing rolled twice, the next hour closes
        await store.append(late_counters(135)[2 * 91 :])
        await store.flush()
        again = EnergyLive(
            energy(limit=1e6), site=SITE, store=store, clock=ManualClock.at_ms(LATE + 136 * MIN)
        )
        await again.cycle()
        hours = rollups(await events(store, "energy.rollup"), "hour")
        assert list(hours) == [ms_to_iso(LATE), ms_to_iso(LATE + 60 * MIN)]
        assert hours[ms_to_iso(LATE + 60 * MIN)][("meter", "main")]["value"] == pytest.approx(20)
        assert len(rollups(await events(store, "energy.rollup"), "day")) == 1


async def test_a_closed_day_records_its_data_quality_and_status_shows_it(
    tmp_path: Path,
) -> None:
    from agent.status import print_status, status_report

    db = tmp_path / "buffer.db"
    async with Store(db) as store:
        await store.append(late_counters(90))
        await store.flush()
        at = ManualClock.at_ms(LATE + 91 * MIN)
        live = EnergyLive(energy(limit=1e6), site=SITE, store=store, clock=at)
        await live.cycle()
        (quality,) = await events(store, "energy.quality")
        assert quality.detail["day"] == "2026-03-10"
        meters = {m["meter"]: m for m in quality.detail["meters"]}
        assert (meters["main"]["received"], meters["main"]["expected"]) == (4, 96)
        assert meters["light"]["completeness"] == pytest.approx(4 / 96)
        assert json.loads(await store.get_meta(QUALITY_KEY) or "{}") == quality.detail
    report = status_report(db)
    assert report["energy_quality"]["day"] == "2026-03-10"
    assert report["energy_quality"]["meters"]["main"]["completeness"] == pytest.approx(4 / 96)
    import io

    out = io.StringIO()
    print_status(db, as_json=False, out=out)
    assert "energy data 2026-03-10: main 4.2 % (4/96), light 4.2 % (4/96)" in out.getvalue()
    out = io.StringIO()
    print_status(db, as_json=True, out=out)
    assert json.loads(out.getvalue())["energy_quality"]["meters"]["light"]["received"] == 4
