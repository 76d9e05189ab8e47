"""The gateway's status LED, driven from the running agent's health (issue #11's patterns).

The state, most urgent first (the LED shows one):

- ``fault``: a polled device does not answer, or a room sensor has gone silent (stale): the
  technician's next step is at the device (wiring, power, address, battery), and it is local;
- ``buffering``: the site has an uplink and it is not connected: readings wait in the store;
- ``ok``: otherwise;
- ``error`` (dark): the agent is not running (stopped, crashed, a config error, no power). The
  agent never shows it while it runs; the LED goes dark when the task ends or the process does.

The patterns themselves are `drivers.gpio.led`'s table; the health is looked at every
`HEALTH_EVERY_S` on the agent's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Protocol

from agent.config.model import SiteConfig, StatusLedConfig
from agent.core.clock import Clock
from agent.core.links import GpioConfig, Link
from agent.core.source import PushSource
from agent.sources.poller import IntervalPoller
from agent.uplink import Uplink
from drivers.gpio.led import LedState, StatusLed
from drivers.gpio.pulses import PinBackend, pin_backend

__all__ = ["HEALTH_EVERY_S", "led_state", "run_status_led"]

HEALTH_EVERY_S = 0.5


class RunningAgent(Protocol):
    """What the LED looks at of the running agent (agent.service.Agent)."""

    @property
    def config(self) -> SiteConfig: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def pollers(self) -> Sequence[IntervalPoller]: ...
    @property
    def uplink(self) -> Uplink | None: ...
    @property
    def links(self) -> Mapping[str, Link]: ...
    @property
    def push_sources(self) -> Mapping[str, PushSource]: ...


def led_state(agent: RunningAgent) -> LedState:
    """What the LED shows for the agent as it is now."""
    if any(poller.health.online is False for poller in agent.pollers):
        return "fault"
    # Push sources that can tell a silent device say so with `is_stale` (BLE room sensors); the
    # source interface has no health of its own.
    if any(getattr(source, "is_stale", False) is True for source in agent.push_sources.values()):
        return "fault"
    if agent.config.uplink is not None and (agent.uplink is None or not agent.uplink.connected):
        return "buffering"
    return "ok"


def _backend(config: StatusLedConfig, links: Mapping[str, Link]) -> PinBackend:
    gpio = [name for name, link in links.items() if isinstance(link.config, GpioConfig)]
    name = config.bus if config.bus is not None else (gpio[0] if len(gpio) == 1 else None)
    # The pins' link shares one pin library with the pulse inputs (closed with the link).
    return pin_backend(links[name]) if name is not None else PinBackend("default")


async def run_status_led(agent: RunningAgent, config: StatusLedConfig, stop: asyncio.Event) -> None:
    """Show the agent's health until ``stop``; then the LED is dark and its pin released."""
    backend = _backend(config, agent.links)
    led = StatusLed(config.pin, backend=backend, active_high=config.active_high, clock=agent.clock)
    led.show(led_state(agent))
    try:
        async with asyncio.TaskGroup() as group:
            blinking = group.create_task(led.run(), name=f"agent[status-led:{config.pin}].blink")
            while not stop.is_set():
                led.show(led_state(agent))
                await _sleep_unless(stop, agent, HEALTH_EVERY_S)
            blinking.cancel()
    finally:
        led.close()


async def _sleep_unless(stop: asyncio.Event, agent: RunningAgent, seconds: float) -> None:
    """Sleep ``seconds`` on the agent's clock, or until ``stop`` is set."""
    sleeping = asyncio.ensure_future(agent.clock.sleep(seconds))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeping, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
