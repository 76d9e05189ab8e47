"""Commands reaching the running agent, from MQTT and from the local spool (the CLI): one
command path (agent.commands.path) over the kinds this gateway has — HVAC overrides with an
hvac section, ``set_counter`` with pulse meters, and always ``record_report`` from the CLI (a
savings report published as an event) —, its memory of spent ids kept in the store.

Each outcome is recorded in the store (the audit event and the memory, one transaction) before
anything is applied; a store that cannot record refuses the command with the cause and changes
nothing. The memory is read back at start, so a retained command delivered again after a
restart is refused as replayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.commands.config import CommandsConfig
from agent.commands.counters import CounterKind, Meter, PulseCounter
from agent.commands.memory import CommandMemory
from agent.commands.path import CommandKind, CommandPath
from agent.commands.reports import PUBLISH, ReportKind
from agent.commands.signature import read_secret
from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.errors import AgentError, StoreError
from agent.core.record import ms_to_iso
from agent.core.source import PushSource
from agent.hvac.clock import timesyncd_synchronized
from agent.store import Store

if TYPE_CHECKING:  # a site without HVAC does not load the controller
    from agent.hvac.controller import HvacController

__all__ = ["MEMORY_KEY", "CommandInbox"]

log = logging.getLogger(__name__)

MEMORY_KEY = "commands:memory"
"""The store meta key of the spent-id memory."""
# Without an hvac section (whose command_ttl_max / command_memory then decide).
DEFAULT_TTL_MAX = 600.0
DEFAULT_CAPACITY = 1024


class CommandInbox:
    """The agent's commands: ``await inbox.handle(raw, source=, sender=)`` is the reply.

    Constructing it does no I/O; `load` reads the secret and the saved memory.
    """

    def __init__(
        self,
        config: CommandsConfig,
        *,
        store: Store,
        clock: Clock,
        hvac: HvacController | None,
        devices: Sequence[DeviceConfigBase],
        push_sources: Mapping[str, PushSource],
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.hvac = hvac
        kinds: list[CommandKind] = []
        ttl_max, capacity = DEFAULT_TTL_MAX, DEFAULT_CAPACITY
        if hvac is not None:
            kinds.append(hvac.commands)
            ttl_max, capacity = hvac.hvac.command_ttl_max, hvac.hvac.command_memory
        meters = {
            d.name: Meter(_counter(push_sources[d.name]), str(getattr(d, "unit", "")))
            for d in devices
            if d.protocol == "gpio" and d.name in push_sources
        }
        if meters:
            others = {d.name: d.protocol for d in devices if d.name not in meters}
            kinds.append(CounterKind(meters, others=others))
        kinds.append(ReportKind())
        memory = CommandMemory(
            capacity=capacity, per_sender=config.per_sender, window=config.window
        )
        self.path = CommandPath(kinds, memory=memory, ttl_max=ttl_max, record=self._record)

    @property
    def takes_commands(self) -> bool:
        """Whether to listen for upstream (MQTT) commands: a kind takes them."""
        return any(not getattr(k, "local_only", False) for k in self.path.kinds)

    @property
    def takes_local_commands(self) -> bool:
        """Whether to serve the CLI's command spool (always: a report can be published)."""
        return bool(self.path.kinds)

    async def load(self) -> None:
        """Read the signing secret and the memory of spent ids (a memory that cannot be read is
        logged and started afresh: ids then outlive no restart, which the log says)."""
        if self.config.secret_file is not None:
            try:
                self.path.secret = await asyncio.to_thread(read_secret, self.config.secret_file)
            except (OSError, ValueError) as exc:
                raise AgentError(f"commands.secret_file: {exc}") from exc
        saved = await self.store.get_meta(MEMORY_KEY)
        if saved is None:
            return
        try:
            self.path.memory.restore(saved)
        except ValueError as exc:
            log.warning("commands: %s; replays of earlier commands are not recognised", exc)

    async def handle(
        self, raw: bytes, *, source: str = "mqtt", sender: str | None = None
    ) -> dict[str, Any]:
        reply = await self.path.handle(raw, now=await self._now(), source=source, sender=sender)
        applied = reply["applied"]
        if (
            reply["ok"]
            and self.hvac is not None
            and isinstance(applied, dict)
            and "zone" in applied
        ):
            self.hvac.wake()
            await self._save_overrides()
        return reply

    async def _now(self) -> datetime | None:
        if self.hvac is not None:
            return await self.hvac.command_time()
        if self.config.trust_clock or timesyncd_synchronized():
            return self.clock.wall()
        return None

    async def _record(self, kind: str, event: dict[str, Any], memory: str | None) -> None:
        # A kind's decision may carry one more event (a published report): recorded in the same
        # transaction as the audit event and the memory, so neither exists without the other.
        extra: tuple[str, dict[str, Any]] | None = event.pop(PUBLISH, None)
        stamped = {"event": event.pop("event"), "ts": ms_to_iso(self.clock.now_ms()), **event}
        events = [(kind, stamped)] if extra is None else [(kind, stamped), extra]
        if memory is None:
            assert extra is None  # only an accepted command, which spent its id, carries one
            await self.store.add_event(kind, stamped)
        else:
            await self.store.add_events(events, meta={MEMORY_KEY: memory})

    async def _save_overrides(self) -> None:
        assert self.hvac is not None
        try:
            await self.store.set_meta("hvac:overrides", self.hvac.overrides.to_json())
        except StoreError as exc:  # in force now; saved again with the next command or end
            log.warning("commands: the HVAC overrides could not be saved: %s", exc)


def _counter(source: PushSource) -> PulseCounter:
    if not callable(getattr(source, "set", None)) or not hasattr(source, "value"):
        raise TypeError(f"push source {source.name!r} has no settable counter")
    return source  # type: ignore[return-value]  # checked above: a PulseMeterSource
