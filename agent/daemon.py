"""``edge-agent run`` as a systemd service: the agent, its watchdog, its start-up timeout and
config reload (``systemctl reload edge-agent`` sends SIGHUP).

Reload, the design: the new file is loaded and validated first; an invalid one changes nothing
(one error line in the journal, a ``config.reload_refused`` event in the store, which the uplink
publishes). A valid one is applied by the agent's own clean stop followed by a start of a new
`Agent` in the same process: sources stop, the store commits what they read, energy and HVAC
finish their pass, the uplink publishes what it can, the store is closed; then everything
starts again on the new config. Nothing read is lost because this is exactly the SIGTERM path,
which the store-and-forward design already guarantees (every reading handed to the store is
committed before it closes), and any part of the config may change, the store's own section
included. The price is a pause in polling while the store reopens and the buses reconnect
(a second or two on the demo building; longer on a large store, whose open runs SQLite's
check): readings are not taken in that pause, none taken is lost. Patching a running agent
part by part would shorten the pause but give every part a second, rarely tried way to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.config.loader import load_config
from agent.config.model import SiteConfig
from agent.core.clock import Clock, system_clock
from agent.core.errors import ConfigError, StoreError
from agent.core.source import Driver, PushDriver
from agent.sdnotify import notify, started_by_systemd
from agent.service import Agent
from agent.watchdog import Part, PollerProgress, StoreProbe, TaskAlive, Watchdog

__all__ = ["START_EXTEND_S", "AgentService", "run_service"]

log = logging.getLogger(__name__)

# While the store opens (SQLite's check of a large buffer on an SD card can take minutes),
# systemd's start timeout is pushed this far ahead, again every half of it.
START_EXTEND_S = 60.0


async def run_service(
    config: SiteConfig,
    *,
    config_path: Path,
    data_dir: Path,
    stop: asyncio.Event,
    reload: asyncio.Event,
) -> None:
    """``edge-agent run``: the agent until ``stop``; on ``reload``, ``config_path`` is re-read
    and applied if valid; systemd's watchdog when it asks for one (``WATCHDOG_USEC``)."""
    clock = system_clock()
    service = AgentService(
        config_path=config_path,
        data_dir=data_dir,
        stop=stop,
        reload=reload,
        clock=clock,
        watchdog=Watchdog.from_environment(clock=clock),
        # Started by systemd: wait for a store another process holds rather than exit into the
        # unit's start limit; by hand: say so and stop.
        wait_for_store=started_by_systemd(),
    )
    await service.run(config)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


@dataclass(kw_only=True)
class AgentService:
    """The agent under systemd: `run` runs one `Agent` after another (one per applied config)
    until ``stop``, with the watchdog pinging while they make progress."""

    config_path: Path
    data_dir: Path
    stop: asyncio.Event
    reload: asyncio.Event
    clock: Clock
    watchdog: Watchdog | None = None
    drivers: Mapping[str, Driver | PushDriver] | None = None  # simulated hardware (tests)
    wait_for_store: bool = False  # see Agent.wait_for_store
    agent: Agent | None = None  # the running one
    generation: int = 0  # how many agents this process has started

    async def run(self, config: SiteConfig) -> None:
        dog = self.watchdog
        try:
            async with contextlib.AsyncExitStack() as stack:
                if dog is not None:
                    await stack.enter_async_context(dog)
                async with asyncio.TaskGroup() as group:
                    pinging = (
                        group.create_task(dog.run(), name="agent[watchdog].ping") if dog else None
                    )
                    try:
                        await self.serve(config)
                    finally:
                        if pinging is not None:
                            pinging.cancel()
        except BaseExceptionGroup as group_error:
            # The task groups wrap what went wrong; the CLI explains one error in one sentence.
            leaves = _leaves(group_error)
            if len(leaves) == 1:
                raise leaves[0] from group_error
            raise

    async def serve(self, config: SiteConfig) -> None:
        while True:
            agent = Agent(
                config,
                data_dir=self.data_dir,
                clock=self.clock,
                drivers=self.drivers,
                wait_for_store=self.wait_for_store,
            )
            self.agent, self.generation = agent, self.generation + 1
            agent_stop = asyncio.Event()
            async with asyncio.TaskGroup() as group:
                running = group.create_task(agent.run(agent_stop), name="agent[service].run")
                extending = group.create_task(
                    self._extend_start(agent, running), name="agent[service].start-timeout"
                )
                probe = await self._watch_when_started(agent, running, group)
                if self.generation > 1:
                    await self._record(agent, "config.reloaded", {"file": str(self.config_path)})
                new_config = await self._next_config(agent, config, running)
                # Stop watching first: the agent's own stop ends its sources on purpose.
                if self.watchdog is not None:
                    self.watchdog.unwatch()
                extending.cancel()
                if probe is not None:
                    probe.cancel()
                agent.reloading = new_config is not None
                agent_stop.set()
            if new_config is None:
                return
            config = new_config
            log.info("config reloaded from %s: the agent runs on it", self.config_path)

    async def _extend_start(self, agent: Agent, running: asyncio.Task[None]) -> None:
        """EXTEND_TIMEOUT_USEC while the store opens, so a long check is not killed."""
        while agent.store is None and not running.done():
            notify(f"EXTEND_TIMEOUT_USEC={int(START_EXTEND_S * 1e6)}")
            await _first(asyncio.sleep(START_EXTEND_S / 2), running=running)

    async def _watch_when_started(
        self, agent: Agent, running: asyncio.Task[None], group: asyncio.TaskGroup
    ) -> asyncio.Task[None] | None:
        # A stop before the start completes (the agent waiting for its store) is heard too.
        await _first(agent.started.wait(), self.stop.wait(), running=running)
        if (
            self.watchdog is None
            or running.done()
            or not agent.started.is_set()
            or agent.store is None
        ):
            return None
        now = self.clock.monotonic()
        probe = StoreProbe(agent.store, clock=self.clock, every=self.watchdog.interval)
        parts: list[Part] = [TaskAlive(task) for task in agent.source_tasks]
        parts += [PollerProgress(poller, now=now) for poller in agent.pollers]
        parts.append(probe)
        self.watchdog.watch(parts)
        return group.create_task(probe.run(), name="agent[watchdog].store-probe")

    async def _next_config(
        self, agent: Agent, config: SiteConfig, running: asyncio.Task[None]
    ) -> SiteConfig | None:
        """Wait for a stop (None), the agent's end (None) or a valid, changed config."""
        while True:
            stopping = asyncio.ensure_future(self.stop.wait())
            reloading = asyncio.ensure_future(self.reload.wait())
            try:
                await asyncio.wait(
                    {stopping, reloading, running}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopping.cancel()
                reloading.cancel()
            if self.stop.is_set() or running.done():
                return None
            self.reload.clear()
            notify("RELOADING=1")
            new_config = await self._load(agent)
            if self.stop.is_set():  # asked to stop while the file was read: stop, do not apply
                return None
            if new_config is not None and new_config != config:
                return new_config
            if new_config is not None:
                log.info("reload: %s has not changed; nothing to apply", self.config_path)
            notify("READY=1")

    async def _load(self, agent: Agent) -> SiteConfig | None:
        try:
            return await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            problems = [str(issue) for issue in exc.issues]
        # Outside the except: one line with every located problem, no traceback.
        log.error(
            "reload refused, the running config stays: %s has %d problem%s: %s",
            self.config_path,
            len(problems),
            "" if len(problems) == 1 else "s",
            "; ".join(problems),
        )
        await self._record(
            agent, "config.reload_refused", {"file": str(self.config_path), "problems": problems}
        )
        return None

    @staticmethod
    async def _record(agent: Agent, kind: str, detail: dict[str, object]) -> None:
        """An event for upstream (published from the store like every event)."""
        if agent.store is not None and agent.store.is_open:
            with contextlib.suppress(StoreError):  # the log line still says it
                await agent.store.add_event(kind, detail)


async def _first(*awaitables: Awaitable[object], running: asyncio.Task[None]) -> None:
    """Wait for the first of ``awaitables`` or for the agent's task to end, whichever comes
    first (the waiters left are cancelled; the agent's task never)."""
    waiters = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait({*waiters, running}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
