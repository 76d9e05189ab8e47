"""The platform uplink in the running agent, beside the pollers: it logs in and beats against
the reference platform; a platform that never answers slows neither polling nor a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config.model import SiteConfig
from agent.demo import _retarget, demo_config
from agent.platform.config import PlatformConfig, PlatformMeter
from agent.service import Agent
from agent.status import print_status
from hil.platform_server import PlatformServer
from hil.server import SimulatedBuilding

KEY = "0123456789abcdef"


def with_platform(config: SiteConfig, port: int, key_file: Path) -> SiteConfig:
    platform = PlatformConfig(
        host="127.0.0.1",
        port=port,
        building_id="421000A001",
        gateway_id="01",
        key_file=key_file,
        timeout=0.5,
        meters=[PlatformMeter(meter="main_import", id=1), PlatformMeter(meter="hvac", id=2)],
    )
    return config.model_copy(update={"platform": platform})


@contextlib.asynccontextmanager
async def silent_platform() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()


async def run(agent: Agent, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(10):
        await agent.started.wait()
    await asyncio.sleep(seconds)
    stop.set()
    async with asyncio.timeout(5):
        await task


async def test_the_agent_logs_in_and_shows_the_link_in_status(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY, encoding="utf-8")
    async with (
        SimulatedBuilding() as sim,
        PlatformServer(key=KEY.encode(), secret=KEY, time_offset_s=-42) as platform,
    ):
        config = with_platform(_retarget(demo_config(), sim, None), platform.port, tmp_path / "key")
        agent = Agent(config, data_dir=tmp_path)
        await run(agent, 1.0)
    assert platform.tally.logins == 1
    assert platform.tally.heartbeats >= 1
    out = io.StringIO()
    print_status(tmp_path / "readings.db", as_json=False, out=out)
    text = out.getvalue()
    assert "platform:      stopped" in text  # online until the clean stop
    offset = re.search(r"platform time: ([+-][\d.]+) s", text)
    assert offset is not None, text
    assert abs(float(offset.group(1)) + 42) <= 1  # the stamp has whole seconds
    assert "reporting rate" in text


async def test_a_silent_platform_slows_neither_polling_nor_the_mqtt_uplink(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "key").write_text(KEY, encoding="utf-8")
    async with SimulatedBuilding() as sim, silent_platform() as port:
        config = _retarget(demo_config(), sim, mosquitto.url)
        agent = Agent(with_platform(config, port, tmp_path / "key"), data_dir=tmp_path)
        async with mqtt_subscribe(mosquitto, "bea/+/+/readings") as sub:
            await sub.wait_for(lambda _: True, within=1)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            # Readings reach the broker while the platform never answers.
            await sub.wait_for(lambda m: len(m) >= 2, within=10)
            stop.set()  # and the clean stop does not wait on the link
            async with asyncio.timeout(10):
                await task
    assert all(p.health.online for p in agent.pollers if p.device.name != "pv_inverter")
    assert agent.platform is not None
    assert agent.platform.reports_sent == 0
    assert "no answer from the platform within 0.5 s" in caplog.text


async def test_the_demo_reports_to_the_reference_platform(tmp_path: Path) -> None:
    from agent.demo import run_demo

    out = io.StringIO()
    stop = asyncio.Event()
    async with asyncio.timeout(20):
        await run_demo(
            stop, data_dir=tmp_path, mqtt_url=None, duration=1.0, speed=1.0, platform=True, out=out
        )
    assert "reference platform on 127.0.0.1:" in out.getvalue()
    status = io.StringIO()
    print_status(tmp_path / "readings.db", as_json=False, out=status)
    assert "platform:      stopped" in status.getvalue()  # it was online, then stopped cleanly
    assert "platform time: " in status.getvalue()
