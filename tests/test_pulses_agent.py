"""A GPIO pulse meter through the running agent: edges on gpiozero's mock pin, the agent's own
pulse source, the store on disk. 10,000 pulses at the plausibility limit with contact bounce are
stored exactly, through a clean restart; a power cut mid-train loses only the pulses since the
last saved count (drivers.gpio.source: at most one ``min_gap`` of pulses and the save's commit);
and the demo's energy report turns the counter into water in m3 per 15-minute interval.

Edges are stamped by `EdgeTime` (gpiozero's mock pins read their module's ``monotonic``), so a
train at exactly ``max_rate`` is driven as fast as the machine goes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import gpiozero.pins.mock  # type: ignore[import-untyped]  # ships no type hints
import pytest

from agent.config.loader import load_config, load_config_text
from agent.config.model import SiteConfig
from agent.core.clock import Clock, VirtualClock
from agent.energy.command import print_energy_report
from agent.energy.intervals import build_intervals
from agent.service import Agent
from agent.store import export_readings
from drivers.gpio.pulses import pin_backend
from drivers.gpio.source import PulseMeterSource
from tests.helpers import DEMO_YAML
from tests.test_gpio_pulses import T0, EdgeTime, drive, eventually, reed_pulse

SHANGHAI = ZoneInfo("Asia/Shanghai")
EDGE_AGENT = Path(sys.executable).with_name("edge-agent")  # the installed copy
METER = (
    "canteen_hot_water"  # the demo's pulse meter, by name, so the demo's energy section reads it
)

SITE = f"""
site: {{id: pulse-test, name: Pulse meter}}
store: {{batch_window: 50ms}}
buses:
  pins: {{kind: gpio, pin_factory: mock}}
devices:
  - name: {METER}
    protocol: gpio
    bus: pins
    pin: 17
    unit: m3
    per_pulse: 0.001
    max_rate: 2000            # pulses 0.5 ms apart; the reed rings for 80 us, within the bounce
    bounce: 0.0002            # 200 us
"""


@pytest.fixture
def edge_time(monkeypatch: pytest.MonkeyPatch) -> EdgeTime:
    fake = EdgeTime()
    monkeypatch.setattr(gpiozero.pins.mock, "monotonic", fake)  # the mock pins' one clock
    return fake


class Train:
    """Reed-switch pulses exactly 1 / max_rate apart in edge time, driven on a mock pin from a
    worker thread (as gpiozero's callbacks come)."""

    def __init__(self, edge_time: EdgeTime, max_rate: float) -> None:
        self.edge_time = edge_time
        self.period = 1 / max_rate
        self.next = T0
        self.driven = 0

    async def pulses(self, agent: Agent, count: int) -> None:
        pin = pin_backend(agent.links["pins"]).factory.pin(17)
        edges = []
        for _ in range(count):
            edges += reed_pulse(self.next)
            self.next += self.period
        await asyncio.to_thread(drive, pin, self.edge_time, edges)
        self.driven += count


@contextlib.asynccontextmanager
async def running(
    config: SiteConfig, data_dir: Path, clock: Clock | None = None
) -> AsyncIterator[tuple[Agent, PulseMeterSource]]:
    agent = Agent(config, data_dir=data_dir, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(10):
        await agent.started.wait()
    source = agent.push_sources[METER]
    assert isinstance(source, PulseMeterSource)
    source.min_gap = 0.005  # emissions follow the test's steps closely
    try:
        await eventually(lambda: source.emitted >= 1, "the reading at start")
        yield agent, source
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task


def last_stored(db: Path, *, at_ms: int | None = None) -> int:
    """The last stored pulse count (at ``at_ms`` only, if given); -1 before any."""
    counts = [
        r.value
        for r in export_readings(db, device=METER)
        if r.point == "pulses" and (at_ms is None or r.ts_ms == at_ms)
    ]
    return int(counts[-1]) if counts else -1  # type: ignore[arg-type]


async def stored_after(agent: Agent, pulses: int, *, at_ms: int | None = None) -> None:
    """Wait until a reading with ``pulses`` (stamped ``at_ms``) is committed to the store."""
    await eventually(
        lambda: last_stored(agent.db_path, at_ms=at_ms) >= pulses, f"{pulses} pulses stored"
    )


def stored(db: Path, point: str) -> list[Any]:
    return [r.value for r in export_readings(db, device=METER) if r.point == point]


async def test_ten_thousand_pulses_at_the_limit_are_stored_exactly_through_a_restart(
    tmp_path: Path, edge_time: EdgeTime
) -> None:
    config = load_config_text(SITE, filename="site.yaml")
    train = Train(edge_time, max_rate=2000)
    async with running(config, tmp_path) as (agent, source):
        for _ in range(4):
            await train.pulses(agent, 1250)
        await stored_after(agent, 5000)
        db = agent.db_path
    # A clean restart in the middle of the train: the stop saved the count.
    async with running(config, tmp_path) as (agent, source):
        assert source.counter.pulses == 5000
        for _ in range(4):
            await train.pulses(agent, 1250)
        await stored_after(agent, 10_000)
        # Each pulse rang: 3 bounce activations swallowed per pulse (this run's 5,000).
        assert (source.counter.bounced, source.counter.noise) == (3 * 5000, 0)
    assert train.driven == 10_000
    assert stored(db, "pulses")[-1] == 10_000
    assert stored(db, "noise_pulses")[-1] == 0
    volumes = stored(db, "volume")
    assert volumes[-1] == 10.0  # 10,000 x 0.001 m3, with no float residue
    assert volumes == sorted(volumes), "the stored counter never goes backwards"


def snapshot(db: Path, into: Path) -> Path:
    """What is on the disk at a power cut: the store's committed state (SQLite's own backup
    reads it through its own connection while the agent goes on writing)."""
    into.mkdir()
    copy = into / db.name
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    return copy


def saved_pulses(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        [(text,)] = conn.execute("SELECT value FROM meta WHERE key = ?", (f"quirks:{METER}",))
    return int(json.loads(text)["pulses"])


async def test_a_power_cut_mid_train_loses_only_the_pulses_since_the_last_saved_count(
    tmp_path: Path, edge_time: EdgeTime
) -> None:
    config = load_config_text(SITE, filename="site.yaml")
    train = Train(edge_time, max_rate=2000)
    async with running(config, tmp_path / "before") as (agent, source):
        await train.pulses(agent, 3000)
        await stored_after(agent, 3000)  # saved (committed) before it was stored
        # The next save is further off than the cut: 37 pulses are counted, not yet saved.
        source.min_gap = 60.0
        await train.pulses(agent, 37)
        await eventually(lambda: source.counter.pulses == 3037, "37 more pulses counted")
        cut = await asyncio.to_thread(snapshot, agent.db_path, tmp_path / "after")
    # On the disk at the cut: the count saved before the last emission (committed at once), and
    # readings up to it at most (readings are committed within the store's batch window).
    assert saved_pulses(cut) == 3000
    assert stored(cut, "pulses")[-1] <= 3000
    async with running(config, tmp_path / "after") as (agent, source):
        assert source.counter.pulses == 3000
        await train.pulses(agent, 10_000 - train.driven)
        await stored_after(agent, 9963)
    assert train.driven == 10_000
    pulses = stored(cut, "pulses")
    assert pulses[-1] == 9963  # 10,000 driven, 37 lost in the cut: exactly those not yet saved
    assert stored(cut, "volume")[-1] == 9.963
    assert pulses == sorted(pulses), "the stored count never goes backwards across the cut"


async def test_the_energy_report_shows_the_pulse_meters_water_per_interval(
    tmp_path: Path, edge_time: EdgeTime
) -> None:
    # The demo's own meter (1 L a pulse, at most 5 a second), read by the demo's energy section.
    demo = load_config(DEMO_YAML)
    [device] = [d for d in demo.devices if d.name == METER]
    config = load_config_text(SITE, filename="site.yaml")
    # Its quiet-pin readings every 20 ms of loop time, so each step of the virtual clock has one.
    config = config.model_copy(update={"devices": [device.model_copy(update={"interval": 0.02})]})
    assert demo.energy is not None
    clock = VirtualClock(datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI))
    train = Train(edge_time, max_rate=device.max_rate)  # type: ignore[attr-defined]
    per_step = [100] * 3 + [200] * 3 + [0] * 3  # 5 minutes each, from 09:00 to 09:45
    async with running(config, tmp_path, clock) as (agent, _):
        db = agent.db_path
        for count in per_step:
            # The step's pulses, then its end: the first reading stamped there carries them
            # (the quiet pin's readings, every 20 ms, carry the count on to each new time).
            await train.pulses(agent, count)
            await stored_after(agent, train.driven)
            await clock.advance(5 * 60)
            await stored_after(agent, train.driven, at_ms=clock.now_ms())
    rows = list(export_readings(db, device=METER))
    intervals = [
        i for i in build_intervals(rows, demo.energy, tz="Asia/Shanghai") if i.meter == METER
    ]
    got = [
        (datetime.fromtimestamp(i.start_ms / 1000, SHANGHAI).strftime("%H:%M"), i)
        for i in intervals
    ]
    assert [(start, round(i.value, 9), i.unit, i.quality) for start, i in got] == [
        ("09:00", 0.3, "m3", "measured"),
        ("09:15", 0.6, "m3", "measured"),
        ("09:30", 0.0, "m3", "measured"),
    ]
    out = io.StringIO()
    print_energy_report(
        demo.energy, site=demo.site, db=db, start="2026-03-02", out=out, now=clock.now_ms()
    )
    report = out.getvalue()
    # The pulse meter is a water sub-meter: its m3 under the water class code, 3 intervals in.
    assert re.search(r"Sub-items +02000 water +0\.9000 m3 +partial, 3 of 96 intervals", report), (
        report
    )
    assert any(METER in line and "Completeness" in line for line in report.splitlines())

    # `edge-agent energy --intervals`, the installed command: the meter's m3 per interval.
    listing = await asyncio.to_thread(
        subprocess.run,
        [str(EDGE_AGENT), "energy", "--config", str(DEMO_YAML), "--db", str(db),
         "--from", "2026-03-02", "--intervals"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    at = lines.index(f"{METER} (water, m3): 3 intervals")
    assert [line.split() for line in lines[at + 1 : at + 4]] == [
        ["2026-03-02", "09:00", "-", "09:15", "0.3000", "m3", "measured"],
        ["2026-03-02", "09:15", "-", "09:30", "0.6000", "m3", "measured"],
        ["2026-03-02", "09:30", "-", "09:45", "0.0000", "m3", "measured"],
    ]
    assert "main_import (electricity, kWh): 0 intervals" in lines
    out = io.StringIO()
    print_energy_report(
        demo.energy, site=demo.site, db=db, start="2026-03-02", as_csv=True, intervals=True,
        out=out, now=clock.now_ms(),
    )  # fmt: skip
    rows_csv = [line for line in out.getvalue().splitlines() if line.startswith(METER)]
    utc = "2026-03-02T01:15:00.000Z,2026-03-02T01:30:00.000Z"  # 09:15-09:30 in Shanghai
    assert rows_csv[1] == f"{METER},{utc},0.6,m3,measured,"
