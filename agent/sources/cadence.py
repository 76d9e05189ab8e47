"""The pollers' overruns, kept in the store for ``edge-agent status``.

A device whose interval cannot be kept (a saturated line, a slow device, more points than the
gateway can poll) is polled as often as it can be and counts the ticks it missed
(agent.sources.poller). The status command reads the store, not the running agent, so this task
writes what the pollers counted into the store's meta table, under `CADENCE_KEY`: once when it
starts (so a previous run's figures are not shown as this run's), then only when a count has
changed, at most every `EVERY_S`, and at a clean stop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Protocol

from agent.core.clock import Clock
from agent.core.errors import StoreError
from agent.sources.poller import IntervalPoller

__all__ = ["CADENCE_KEY", "EVERY_S", "cadence_record", "keep_cadence"]

CADENCE_KEY = "polling:cadence"
EVERY_S = 10.0
FINAL_WRITE_TIMEOUT_S = 2.0  # a write waits this long at most (the store's writer may lag)


class _MetaStore(Protocol):
    async def set_meta(self, key: str, value: str) -> None: ...


def cadence_record(pollers: Sequence[IntervalPoller], *, since_ms: int) -> dict[str, Any]:
    """What `status` shows: every device that overran since ``since_ms``, with its counts."""
    devices = {}
    for poller in pollers:
        health = poller.health
        if health.overruns:
            devices[poller.name] = {
                "overruns": health.overruns,
                "cycles": health.cycles,
                "interval_s": health.missed_interval,
                "last_cycle_s": round(health.cycle_s, 3),
                "last_overrun_ms": health.last_overrun_ms,
            }
    return {"since_ms": since_ms, "devices": devices}


async def keep_cadence(
    pollers: Sequence[IntervalPoller], store: _MetaStore, *, clock: Clock, every: float = EVERY_S
) -> None:
    """Write the pollers' overruns to the store until cancelled (stamped by ``clock``), and
    once more then, so that a clean stop leaves the last counts."""
    since_ms = clock.now_ms()
    written: dict[str, int] | None = None

    async def write() -> None:
        nonlocal written
        counts = {p.name: p.health.overruns for p in pollers if p.health.overruns}
        if counts == written:
            return
        record = cadence_record(pollers, since_ms=since_ms)
        try:
            async with asyncio.timeout(FINAL_WRITE_TIMEOUT_S):
                await store.set_meta(CADENCE_KEY, json.dumps(record, separators=(",", ":")))
        except (StoreError, TimeoutError):
            return  # the store reports its own faults; the next change is written again
        written = counts

    try:
        while True:
            await write()
            # Paced in real time, as the pollers are (a test's manual clock must not spin it).
            await asyncio.sleep(every)
    except asyncio.CancelledError:
        await write()
        raise
