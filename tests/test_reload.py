"""Config reload (``systemctl reload edge-agent``: SIGHUP): a broken file keeps the running
config, with one error line and a store event; a valid one is applied with no reading lost.

A real agent on the demo building's switchboard (the simulated Modbus TCP gateway), its config
in tmp_path; the reload comes through AgentService's reload event (what SIGHUP sets) and, once,
as a real SIGHUP to ``edge-agent run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.core.clock import system_clock
from agent.daemon import AgentService
from agent.store import export_readings, read_stats
from agent.store.queries import read_events
from hil.server import SimulatedBuilding

SITE = """
site: {{id: reload-test, name: Reload}}
store: {{batch_window: 100ms}}
buses:
  board: {{kind: modbus_tcp, host: {host}, port: {port}, timeout: 1s}}
devices:
  - {{name: main_meter, bus: board, unit_id: 1, profile: eastron-sdm630, interval: {interval}}}
  - {{name: lighting_meter, bus: board, unit_id: 2, profile: acrel-adw300, interval: 1s}}
"""


@contextlib.asynccontextmanager
async def service_on(tmp_path: Path) -> AsyncIterator[tuple[AgentService, Path, str]]:
    async with SimulatedBuilding() as sim:
        host, port = sim.endpoints["switchboard"]
        template = SITE.replace("{host}", host).replace("{port}", str(port))
        config_path = tmp_path / "site.yaml"
        config_path.write_text(template.format(interval="1s"), encoding="utf-8")
        service = AgentService(
            config_path=config_path,
            data_dir=tmp_path / "data",
            stop=asyncio.Event(),
            reload=asyncio.Event(),
            clock=system_clock(),
        )
        task = asyncio.create_task(service.run(load_config(config_path)))
        try:
            await _started(service, 1)
            yield service, config_path, template
        finally:
            service.stop.set()
            async with asyncio.timeout(10):
                await task


async def _started(service: AgentService, generation: int) -> None:
    async with asyncio.timeout(10):
        while not (  # noqa: ASYNC110 - the generation has no event of its own
            service.generation == generation
            and service.agent is not None
            and service.agent.started.is_set()
        ):
            await asyncio.sleep(0.02)


async def test_a_broken_file_keeps_the_running_config_with_one_line_and_an_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with service_on(tmp_path) as (service, config_path, template):
        agent = service.agent
        assert agent is not None
        await asyncio.sleep(1.2)
        config_path.write_text(
            template.format(interval="1s").replace("unit_id: 2", "unit_id: 2, intervall: 1s"),
            encoding="utf-8",
        )
        service.reload.set()
        await asyncio.sleep(0.3)
        before = agent.readings_polled
        await asyncio.sleep(1.5)
        assert service.agent is agent, "the running agent stays"
        assert service.generation == 1
        assert agent.readings_polled > before, "polling goes on"
        db = agent.db_path
    refused = [r for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].levelno == logging.ERROR
    assert (
        f"{config_path}:8:52: devices[1].intervall: unknown key 'intervall' "
        "(did you mean 'interval'?)"
    ) in refused[0].getMessage()
    (event,) = read_events(db, kinds=["config.reload_refused"])
    assert event.detail["file"] == str(config_path)
    assert "devices[1].intervall" in event.detail["problems"][0]
    assert read_stats(db).rows == agent.readings_polled, "a refused reload loses nothing"


async def test_a_valid_change_is_applied_and_no_reading_is_lost(tmp_path: Path) -> None:
    async with service_on(tmp_path) as (service, config_path, template):
        first = service.agent
        assert first is not None
        await asyncio.sleep(1.5)
        config_path.write_text(template.format(interval="250ms"), encoding="utf-8")
        service.reload.set()
        await _started(service, 2)
        second = service.agent
        assert second is not None
        assert second is not first
        assert first.store is not None
        assert not first.store.is_open, "the first agent stopped cleanly before the second"
        meter = next(p for p in second.pollers if p.name == "main_meter")
        assert {info.interval for info in meter.device.points.values()} == {0.25}
        await asyncio.sleep(1.5)
    db = second.db_path
    (event,) = read_events(db, kinds=["config.reloaded", "config.reload_refused"])
    assert (event.kind, event.detail) == ("config.reloaded", {"file": str(config_path)})
    seqs = [r.seq for r in export_readings(db)]
    assert len(seqs) == first.readings_polled + second.readings_polled, "every reading stored"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "one continuous sequence"
    main_after = [
        r.ts_ms
        for r in export_readings(db, device="main_meter")
        if r.point == "active_power" and r.seq > seqs[first.readings_polled - 1]
    ]
    # 1.5 s at 250 ms: the new interval is in effect (at 1 s there would be 2).
    assert len(main_after) >= 4


async def test_sighup_reaches_the_running_service(tmp_path: Path) -> None:
    """`systemctl reload` is `kill -HUP $MAINPID` (the unit's ExecReload): the real signal
    to `edge-agent run` reloads, and a broken file is refused with one line."""
    async with SimulatedBuilding() as sim:
        host, port = sim.endpoints["switchboard"]
        template = SITE.replace("{host}", host).replace("{port}", str(port))
        config_path = tmp_path / "site.yaml"
        config_path.write_text(template.format(interval="1s"), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(config_path),
            "--data-dir", str(tmp_path / "data"),
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        assert proc.stderr is not None
        lines: list[str] = []

        async def until(text: str) -> None:
            assert proc.stderr is not None
            async with asyncio.timeout(15):
                while not any(text in line for line in lines):
                    lines.append((await proc.stderr.readline()).decode())

        await until("agent started")
        config_path.write_text("site: {id: x}\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        await until("reload refused")
        config_path.write_text(template.format(interval="500ms"), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        await until("config reloaded")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            rest = (await proc.stderr.read()).decode()
            assert await proc.wait() == 0, "".join(lines) + rest
    refused = next(line for line in lines if "reload refused" in line)
    assert "site.yaml:1:7: site: the required key 'name' is missing" in refused
