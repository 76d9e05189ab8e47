"""The agent service: one supervisor TaskGroup over device pollers, the store and the uplink.

Readings flow poller -> store (committed in batches on the store's thread) -> uplink, which
publishes only what the store has committed: the store is the single source of truth, so an
outage or a restart never loses what was stored and never sends what was not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.config.model import SiteConfig
from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError, StoreInUseError
from agent.core.heap import trim_heap
from agent.core.links import Link
from agent.core.record import Reading
from agent.core.source import Driver, PointInfo, PolledDevice, PushDriver, PushSource
from agent.hvac.overrides import OverrideBook
from agent.hvac.spool import SPOOL_DIR, serve_spool
from agent.inbox import CommandInbox
from agent.sdnotify import notify
from agent.sources.cadence import keep_cadence
from agent.sources.compose import open_links, open_sources
from agent.sources.poller import IntervalPoller
from agent.sources.state import MetaState
from agent.store import Store
from agent.store.clocktrust import trust as clock_trust
from agent.uplink import Uplink

if TYPE_CHECKING:  # imported in `run` only when the config has the part (start-up memory)
    from agent.energy.live import EnergyLive
    from agent.hvac.controller import HvacController
    from agent.platform.session import PlatformTime
    from agent.platform.uplink import PlatformUplink

__all__ = ["Agent"]

log = logging.getLogger(__name__)

# A clean stop waits this long at most for energy and HVAC to finish their last pass, and then
# for the uplink to publish what was committed; systemd's stop timeout (90 s) is well above both.
FINAL_PASS_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 5.0
# While another process holds the store, the service asks again this often.
STORE_RETRY_S = 2.0


class Agent:
    """``await Agent(config, data_dir=...).run(stop)`` runs until ``stop`` is set."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        data_dir: Path,
        clock: Clock | None = None,
        drivers: Mapping[str, Driver | PushDriver] | None = None,
        wait_for_store: bool = False,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        # Wait while another process holds the store (the service), or say so and stop (by hand).
        self.wait_for_store = wait_for_store
        # Drivers that replace the registry's (simulated hardware: the demo, tests).
        self._drivers = drivers
        # Every part gets this one clock (tests pin it, or run a schedule on simulated time).
        self.clock = clock if clock is not None else system_clock()
        self.hvac: HvacController | None = None
        self.energy: EnergyLive | None = None
        self.store: Store | None = None
        self.uplink: Uplink | None = None
        self.inbox: CommandInbox | None = None
        self.platform: PlatformUplink | None = None
        # The clock-trust logic sets this to hear the platform's heartbeat time (trust_time).
        self.on_platform_time: Callable[[PlatformTime], None] | None = None
        self.links: dict[str, Link] = {}
        self.devices: dict[str, PolledDevice] = {}
        self.push_sources: dict[str, PushSource] = {}
        self.pollers: list[IntervalPoller] = []
        self.started = asyncio.Event()
        self.readings_polled = 0  # handed to the store; at a clean stop all of them are committed
        # The running poller and push-source tasks (the watchdog checks they are alive).
        self.source_tasks: list[asyncio.Task[None]] = []
        # Set by agent.daemon before a reload's stop: systemd hears RELOADING=1, not STOPPING=1.
        self.reloading = False

    async def _open_store(
        self, stack: contextlib.AsyncExitStack, stop: asyncio.Event
    ) -> Store | None:
        """The store, opened into ``stack``; while another process holds it (a run by hand,
        `edge-agent sync`), refused, or with ``wait_for_store`` (the service) waited for until
        it is free or ``stop`` (then None): a service that gave up after systemd's few restarts
        would stay down once the other process ended."""
        cfg = self.config
        told = False
        while True:
            store = Store(
                self.db_path,
                batch_window=cfg.store.batch_window,
                publish_window=cfg.store.publish_window,
                max_bytes=cfg.store.max_bytes,
                integrity_every=cfg.store.integrity_check_every,
                clock_trusted=clock_trust(cfg.store.clock_trust),
                clock=self.clock,
            )
            try:
                return await stack.enter_async_context(store)
            except StoreInUseError as exc:
                if not self.wait_for_store:
                    raise
                if not told:
                    log.warning("%s; waiting for it to end", exc)
                    told = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STORE_RETRY_S):
                    await stop.wait()
                    return None

    def _platform_time(self, reading: PlatformTime) -> None:
        if self.on_platform_time is not None:
            self.on_platform_time(reading)

    @property
    def db_path(self) -> Path:
        path = self.config.store.path
        return path if path.is_absolute() else self.data_dir / path

    def birth(self) -> dict[str, Any]:
        """What the gateway tells upstream about itself when it connects."""
        # The uplink keeps this for every reconnect: one small dict per unit, shared by the
        # points (7,000 points were 1.4 MB of equal dicts at 200 meters).
        units: dict[str | None, dict[str, str | None]] = {}
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
                    "protocol": d.protocol,
                    "profile": getattr(d, "profile", None),
                    "points": {
                        n: units.setdefault(p.unit, {"unit": p.unit})
                        for n, p in self._points_of(d.name).items()
                    },
                }
                for d in self.config.devices
            ],
        }

    async def run(self, stop: asyncio.Event) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            self.store = await self._open_store(stack, stop)
            if self.store is not None:  # None: stopped while another process held the store
                await self._run_on(self.store, stack, stop)
        # Leaving the exit stack flushed and closed the store: what was polled is committed.

    async def _run_on(
        self, store: Store, stack: contextlib.AsyncExitStack, stop: asyncio.Event
    ) -> None:
        cfg = self.config
        self.links = await open_links(cfg.buses, stack)
        self.devices, self.push_sources = await open_sources(
            cfg.devices,
            self.links,
            stack=stack,
            clock=self.clock,
            state_for=lambda name: MetaState(store, name),
            drivers=self._drivers,
        )
        self.pollers = [
            IntervalPoller(device, sink=self._to_store, clock=self.clock)
            for device in self.devices.values()
        ]
        if cfg.hvac is not None:
            from agent.hvac.controller import HvacController

            self.hvac = HvacController(
                cfg.hvac,
                devices=self.devices,  # the pollers' devices: one lock per physical link
                tz=cfg.site.timezone,
                audit=self._audit,
                clock=self.clock,
                overrides=await self._saved_overrides(),
                room_sensors=self.push_sources,  # BLE sensors keep their latest reading
            )
        if cfg.energy is not None and cfg.energy.meters:
            from agent.energy.live import EnergyLive

            self.energy = EnergyLive(cfg.energy, site=cfg.site, store=store, clock=self.clock)
        self.inbox = CommandInbox(
            cfg.commands,
            store=store,
            clock=self.clock,
            hvac=self.hvac,
            devices=cfg.devices,
            push_sources=self.push_sources,
        )
        await self.inbox.load()
        if cfg.uplink is not None:
            self.uplink = Uplink(
                cfg.uplink,
                site=cfg.site,
                gateway_id=cfg.gateway.id,
                store=store,
                birth=self.birth(),
                on_command=self.handle_command if self.inbox.takes_commands else None,
                clock=self.clock,
            )
        if cfg.platform is not None and cfg.energy is not None:
            from agent.platform.uplink import PlatformUplink

            self.platform = PlatformUplink(
                cfg.platform,
                energy=cfg.energy,
                tz=cfg.site.timezone,
                store=store,
                clock=self.clock,
                on_time=self._platform_time,
            )
        # Parts that finish a last pass of their own (energy intervals, HVAC) stop on this
        # event, which the supervisor sets only once every source has stopped.
        finish = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                sources = [
                    group.create_task(
                        poller.run(), name=f"agent[{self._source_name(poller.name)}].poll"
                    )
                    for poller in self.pollers
                ] + [
                    group.create_task(
                        source.run(self._to_store),
                        name=f"agent[{self._source_name(source.name)}].listen",
                    )
                    for source in self.push_sources.values()
                ]
                self.source_tasks = sources
                # malloc's free pages back to the kernel: flat memory over months.
                group.create_task(trim_heap(), name="agent[heap].trim")
                if self.pollers:  # overruns, for `edge-agent status`
                    group.create_task(
                        keep_cadence(self.pollers, store, clock=self.clock),
                        name="agent[pollers].cadence",
                    )
                if self.uplink is not None:
                    group.create_task(self.uplink.run(), name="agent[uplink].run")
                if self.platform is not None:
                    group.create_task(self.platform.run(), name="agent[platform].run")
                finishing = []
                if self.energy is not None:
                    finishing.append(
                        group.create_task(self.energy.run(finish), name="agent[energy].live")
                    )
                if self.hvac is not None:
                    finishing.append(
                        group.create_task(self.hvac.run(finish), name="agent[hvac].control")
                    )
                if self.inbox.takes_local_commands:
                    group.create_task(
                        serve_spool(self.data_dir / SPOOL_DIR, self._local_command, stop=finish),
                        name="agent[commands].spool",
                    )
                if cfg.gateway.status_led is not None:
                    from agent.status_led import run_status_led

                    group.create_task(
                        run_status_led(self, cfg.gateway.status_led, stop),
                        name="agent[gateway].status-led",
                    )
                group.create_task(
                    self._supervise(stop, sources, finish, finishing),
                    name="agent[supervisor].stop",
                )
                self.started.set()
                notify("READY=1")
                log.info(
                    "agent started: site %s, %d devices on %d buses, store %s, uplink %s",
                    cfg.site.id,
                    len(self.pollers) + len(self.push_sources),
                    len(self.links),
                    self.db_path,
                    cfg.uplink.url if cfg.uplink else "none",
                )
        except* _Stop:
            pass

    async def _supervise(
        self,
        stop: asyncio.Event,
        sources: list[asyncio.Task[None]],
        finish: asyncio.Event,
        finishing: list[asyncio.Task[None]],
    ) -> None:
        """A clean stop, in the order that keeps everything that was read:

        1. the sources stop, so nothing new is read;
        2. the store commits what they handed over;
        3. energy and HVAC finish their last pass over it (bounded);
        4. the uplink publishes what is committed before it says "offline" (bounded: with the
           broker away or a long backlog, the rest stays in the store for the next start);
        5. everything else is cancelled, and the store is closed by the exit stack.
        """
        await stop.wait()
        if not self.reloading:
            notify("STOPPING=1")
        log.info("agent stopping: sources first, then the store, then the uplink")
        for task in sources:
            task.cancel()
        if sources:
            await asyncio.wait(sources)
        assert self.store is not None
        with contextlib.suppress(StoreError):
            await self.store.flush()
        finish.set()
        if finishing:
            await asyncio.wait(finishing, timeout=FINAL_PASS_TIMEOUT_S)
        if self.uplink is not None:
            drained = await self.uplink.drain(within=DRAIN_TIMEOUT_S)
            if not drained:
                log.info("uplink: stopping with readings not yet sent; they stay in the store")
        raise _Stop

    def _points_of(self, device: str) -> Mapping[str, PointInfo]:
        if device in self.devices:
            return self.devices[device].points
        if device in self.push_sources:
            return self.push_sources[device].points
        return {}

    def _source_name(self, device: str) -> str:
        config = next(d for d in self.config.devices if d.name == device)
        return f"{config.protocol}:{config.bus}/{device}"

    async def _audit(self, event: dict[str, Any]) -> None:
        """An HVAC write, refusal, clamp or fault: kept in the store (the audit trail) and
        published from there; never waits for the uplink, so an outage changes no write."""
        assert self.store is not None
        kind = str(event.get("event", "event"))
        await self.store.add_event(f"hvac.{kind}", event)
        if kind in ("command", "override_ended"):
            await self._save_overrides()

    async def _local_command(self, raw: bytes) -> dict[str, Any]:
        """A command from the CLI's spool: the same path as an upstream one."""
        assert self.inbox is not None
        return await self.inbox.handle(raw, source="cli", sender="cli")

    async def handle_command(self, raw: bytes, sender: str | None = None) -> dict[str, Any]:
        """An upstream command (MQTT; ``sender`` from its topic): checked, recorded, then
        applied (agent.inbox); the reply says why when it is refused."""
        if self.inbox is None:
            return {"id": None, "ok": False, "reason": "the agent is not running", "applied": None}
        return await self.inbox.handle(raw, source="mqtt", sender=sender)

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
