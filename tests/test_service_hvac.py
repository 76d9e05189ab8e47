"""HVAC schedules inside the running agent: upstream commands over MQTT get replies, audit
events are stored and published, and an uplink outage changes nothing that is written."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt

from agent.config.model import SiteConfig, UplinkConfig
from agent.core.clock import ManualClock, system_clock
from agent.demo import _retarget, demo_config
from agent.service import Agent
from agent.store import read_events
from hil.building import Building
from hil.server import SimulatedBuilding

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _with_hvac_interval(config: SiteConfig, seconds: float) -> SiteConfig:
    assert config.hvac is not None
    hvac = config.hvac.model_copy(update={"check_interval": seconds})
    return config.model_copy(update={"hvac": hvac})


async def _start(agent: Agent) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(10):
        await agent.started.wait()
    return stop, task


async def test_upstream_commands_get_replies_and_audit_events_are_published(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    base = "bea/jz-demo-office/gw1"
    async with SimulatedBuilding(building=Building(zones_follow_office_hours=False)) as sim:
        config = _retarget(demo_config(), sim, mosquitto.url)
        agent = Agent(config, data_dir=tmp_path)
        async with mqtt_subscribe(mosquitto, f"{base}/commands/reply", f"{base}/events") as sub:
            stop, task = await _start(agent)
            await sub.wait_for(lambda _: agent.uplink is not None and agent.uplink.connected,
                               within=10)  # fmt: skip
            await asyncio.sleep(0.3)  # the uplink subscribes right after connecting
            expires = (system_clock().wall() + timedelta(minutes=5)).isoformat()
            commands = [
                b"{not json",
                json.dumps({"id": "c-1", "expires": expires, "action": "override",
                            "zone": "zone9", "setpoint": 20, "for": "1h"}).encode(),
                json.dumps({"id": "c-2", "expires": expires, "action": "override",
                            "zone": "zone1", "setpoint": 19, "for": "1h"}).encode(),
                json.dumps({"id": "c-2", "expires": expires, "action": "override",
                            "zone": "zone1", "setpoint": 19, "for": "1h"}).encode(),
            ]  # fmt: skip
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:  # upstream
                for command in commands:
                    await client.publish(f"{base}/commands", command, qos=1)

            def replies(messages: list[Any]) -> list[dict[str, Any]]:
                return [json.loads(bytes(m.payload)) for m in messages
                        if m.topic.matches(f"{base}/commands/reply")]  # fmt: skip

            await sub.wait_for(lambda m: len(replies(m)) == 4, within=15)
            await sub.wait_for(
                lambda m: any(b'"hvac.command"' in bytes(x.payload) for x in m), within=15
            )
            stop.set()
            await asyncio.wait_for(task, 15)
    got = replies(sub.messages)
    assert got[0]["ok"] is False
    assert got[0]["applied"] is None
    assert got[1]["ok"] is False
    assert "zone9" in got[1]["reason"]
    assert got[2]["ok"] is True
    assert got[3]["ok"] is False
    assert "replay" in got[3]["reason"] or "seen" in got[3]["reason"]
    kinds = [e.kind for e in read_events(tmp_path / "readings.db", limit=500)]
    # The one that is not JSON is no HVAC command: it is recorded as a plain `command`.
    assert (kinds.count("hvac.command"), kinds.count("command")) == (3, 1)


async def _simulated_days(tmp_path: Path, uplink: UplinkConfig | None, days: int) -> list[Any]:
    """Run the agent with its HVAC controller on a ManualClock for `days` simulated days;
    return the writes it audited (schedule time, zone, point, value)."""
    clock = ManualClock(datetime(2025, 12, 29, 6, 0, tzinfo=SHANGHAI))  # Mon, New Year week
    end = clock.wall() + timedelta(days=days)
    async with SimulatedBuilding(building=Building(zones_follow_office_hours=False)) as sim:
        config = _with_hvac_interval(_retarget(demo_config(), sim, None), 300)
        config = config.model_copy(update={"uplink": uplink})
        agent = Agent(config, data_dir=tmp_path, clock=clock)
        stop, task = await _start(agent)
        async with asyncio.timeout(60):
            while clock.wall() < end:  # noqa: ASYNC110 - the fake clock has no event to wait on
                await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 15)
    writes = [
        (e.detail.get("schedule_time"), e.detail.get("zone"), e.detail.get("point"),
         e.detail.get("value"))
        for e in reversed(read_events(tmp_path / "readings.db", limit=100_000))
        if e.kind == "hvac.write" and e.detail.get("schedule_time", "") < end.isoformat()
    ]  # fmt: skip
    return writes


async def test_an_uplink_outage_changes_nothing_written_locally(tmp_path: Path) -> None:
    # A week through New Year 2026 (holidays, then the make-up Sunday), once with no uplink
    # configured and once with a broker that is never there: the writes are the same.
    alone = await _simulated_days(tmp_path / "alone", None, 7)
    dead = UplinkConfig(url="mqtt://127.0.0.1:1", timeout=0.5)
    cut_off = await _simulated_days(tmp_path / "cut-off", dead, 7)
    # 3 zones x (on, mode, setpoint) at 4-5 boundaries on each of 4 working days, none on the
    # holidays: dozens of writes.
    assert len(alone) > 30, alone
    assert cut_off == alone
