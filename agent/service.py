"""The agent service: one supervisor TaskGroup over device pollers, the store and the uplink.

Readings flow poller -> store (committed in batches on the store's thread) -> uplink, which
publishes only what the store has committed: the store is the single source of truth, so an
outage or a restart never loses what was stored and never sends what was not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config.model import SiteConfig
from agent.energy.live import EnergyLive
from agent.hvac.clock import Clock
from agent.hvac.controller import HvacController
from agent.hvac.overrides import OverrideBook
from agent.hvac.spool import SPOOL_DIR, serve_spool
from agent.record import Reading
from agent.sdnotify import notify
from agent.store import Store
from agent.uplink import Uplink
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.planner import DeviceQuirks
from drivers.modbus.poller import ModbusDevicePoller

__all__ = ["Agent"]

log = logging.getLogger(__name__)


class Agent:
    """``await Agent(config, data_dir=...).run(stop)`` runs until ``stop`` is set."""

    def __init__(
        self, config: SiteConfig, *, data_dir: Path, hvac_clock: Clock | None = None
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self._hvac_clock = hvac_clock  # injected by tests to run a schedule on simulated time
        self.hvac: HvacController | None = None
        self.energy: EnergyLive | None = None
        self.store: Store | None = None
        self.uplink: Uplink | None = None
        self.buses: dict[str, ModbusBusClient] = {}
        self.pollers: list[ModbusDevicePoller] = []
        self.started = asyncio.Event()
        self.readings_polled = 0  # handed to the store; at a clean stop all of them are committed

    @property
    def db_path(self) -> Path:
        path = self.config.store.path
        return path if path.is_absolute() else self.data_dir / path

    def birth(self) -> dict[str, Any]:
        """What the gateway tells upstream about itself when it connects."""
        return {
            "version": __version__,
            "site": {
                "id": self.config.site.id,
                "name": self.config.site.name,
                "timezone": self.config.site.timezone,
                "floor_area_m2": self.config.site.floor_area_m2,
            },
            "gateway": self.config.gateway.id,
            "devices": [
                {
                    "name": d.name,
                    "bus": d.bus,
                    "profile": d.profile,
                    "points": {n: {"unit": p.unit} for n, p in d.points.items()},
                }
                for d in self.config.devices
            ],
        }

    async def run(self, stop: asyncio.Event) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        async with contextlib.AsyncExitStack() as stack:
            self.store = await stack.enter_async_context(
                Store(
                    self.db_path,
                    batch_window=cfg.store.batch_window,
                    max_bytes=cfg.store.max_bytes,
                )
            )
            for name, spec in cfg.buses.items():
                self.buses[name] = await stack.enter_async_context(ModbusBusClient(name, spec))
            self.pollers = [
                ModbusDevicePoller(
                    d,
                    self.buses[d.bus],
                    sink=self._to_store,
                    quirks=await self._saved_quirks(d.name),
                    save_quirks=self._save_quirks,
                )
                for d in cfg.devices
            ]
            if cfg.hvac is not None:
                self.hvac = HvacController(
                    cfg.hvac,
                    devices=cfg.devices,
                    buses=self.buses,  # the pollers' clients: one lock per physical bus
                    tz=cfg.site.timezone,
                    audit=self._audit,
                    clock=self._hvac_clock,
                    overrides=await self._saved_overrides(),
                )
            if cfg.energy is not None and cfg.energy.meters:
                self.energy = EnergyLive(cfg.energy, site=cfg.site, store=self.store)
            if cfg.uplink is not None:
                self.uplink = Uplink(
                    cfg.uplink,
                    site=cfg.site,
                    gateway_id=cfg.gateway.id,
                    store=self.store,
                    birth=self.birth(),
                    on_command=self.handle_command if self.hvac is not None else None,
                )
            try:
                async with asyncio.TaskGroup() as group:
                    for poller in self.pollers:
                        group.create_task(
                            poller.run(),
                            name=f"agent[modbus:{poller.device.bus}/{poller.device.name}].poll",
                        )
                    if self.uplink is not None:
                        group.create_task(self.uplink.run(), name="agent[uplink].run")
                    if self.energy is not None:
                        group.create_task(self.energy.run(stop), name="agent[energy].live")
                    if self.hvac is not None:
                        group.create_task(self.hvac.run(stop), name="agent[hvac].control")
                        group.create_task(
                            serve_spool(self.data_dir / SPOOL_DIR, self._local_command, stop=stop),
                            name="agent[hvac].commands",
                        )
                    group.create_task(_until(stop), name="agent[supervisor].stop")
                    self.started.set()
                    notify("READY=1")
                    log.info(
                        "agent started: site %s, %d devices on %d buses, store %s, uplink %s",
                        cfg.site.id,
                        len(self.pollers),
                        len(self.buses),
                        self.db_path,
                        cfg.uplink.url if cfg.uplink else "none",
                    )
            except* _Stop:
                pass
            notify("STOPPING=1")
            log.info("agent stopping: flushing the store")
        # Leaving the exit stack flushed and closed the store: what was polled is committed.

    async def _saved_quirks(self, device: str) -> DeviceQuirks | None:
        """What an earlier run learned about the device, so a restart does not re-learn."""
        assert self.store is not None
        saved = await self.store.get_meta(f"quirks:{device}")
        if saved is None:
            return None
        try:
            return DeviceQuirks.from_json(saved)
        except ValueError:
            log.warning("device %s: saved read quirks are unreadable; learning afresh", device)
            return None

    async def _save_quirks(self, device: str, quirks_json: str) -> None:
        assert self.store is not None
        await self.store.set_meta(f"quirks:{device}", quirks_json)

    async def _audit(self, event: dict[str, Any]) -> None:
        """An HVAC write, refusal, clamp or fault: kept in the store (the audit trail) and
        published from there; never waits for the uplink, so an outage changes no write."""
        assert self.store is not None
        kind = str(event.get("event", "event"))
        await self.store.add_event(f"hvac.{kind}", event)
        if kind in ("command", "override_ended"):
            await self._save_overrides()

    async def _local_command(self, raw: bytes) -> dict[str, Any]:
        assert self.hvac is not None
        return await self.hvac.handle_command(raw, source="cli")

    async def handle_command(self, raw: bytes) -> dict[str, Any]:
        """An upstream command (MQTT): validated by the HVAC controller; the reply says why."""
        if self.hvac is None:
            return {
                "id": None,
                "ok": False,
                "reason": "this gateway has no hvac section",
                "applied": None,
            }
        return await self.hvac.handle_command(raw, source="mqtt")

    async def _saved_overrides(self) -> OverrideBook | None:
        assert self.store is not None
        saved = await self.store.get_meta("hvac:overrides")
        if saved is None:
            return None
        try:
            return OverrideBook.from_json(saved)
        except ValueError:
            log.warning("saved HVAC overrides are unreadable; starting without them")
            return None

    async def _save_overrides(self) -> None:
        if self.hvac is not None and self.store is not None:
            await self.store.set_meta("hvac:overrides", self.hvac.overrides.to_json())

    async def _to_store(self, readings: Sequence[Reading]) -> None:
        assert self.store is not None
        await self.store.append(readings)
        self.readings_polled += len(readings)


class _Stop(Exception):
    """Raised inside the TaskGroup to end it; the other tasks are cancelled by the group."""


async def _until(stop: asyncio.Event) -> None:
    await stop.wait()
    raise _Stop
