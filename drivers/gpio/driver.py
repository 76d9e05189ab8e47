"""The GPIO drivers as the agent's registry sees them, on a ``kind: gpio`` link: ``DRIVER``
(``protocol: gpio``) opens a pulse meter as a push source, ``RELAY_DRIVER`` (``protocol:
relay``) a relay output as a polled device with a writable point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.errors import AgentError
from agent.core.links import Link
from agent.core.source import PolledDevice, PushSource, SavedState
from drivers.gpio.pulses import pin_backend
from drivers.gpio.relay import RelayDevice
from drivers.gpio.source import PulseMeterSource
from drivers.gpio.spec import PulseMeterConfig, RelayConfig

__all__ = ["DRIVER", "FINAL_SAVE_TIMEOUT", "RELAY_DRIVER", "GpioDriver", "RelayDriver"]

log = logging.getLogger(__name__)

FINAL_SAVE_TIMEOUT = 5.0
"""Seconds a clean stop waits for the count's last save."""


class GpioDriver:
    """Push sources on the gateway's own pins (agent.core.source.PushDriver)."""

    protocol = "gpio"

    @contextlib.asynccontextmanager
    async def open_source(
        self, config: DeviceConfigBase, *, link: Link, state: SavedState, clock: Clock
    ) -> AsyncIterator[PushSource]:
        """The pulse meter of ``config`` on ``link``, its saved count restored and its pin
        open (or retried by `run` when it cannot be opened now); on exit the count is saved
        once more and the pin released."""
        if not isinstance(config, PulseMeterConfig):
            raise TypeError(f"not a GPIO pulse meter config: {config!r}")
        source = PulseMeterSource(
            config, backend=pin_backend(link), state=state, clock=clock, saved=await state.load()
        )
        source.open()
        try:
            yield source
        finally:
            source.close()
            await _final_save(source)


async def _final_save(source: PulseMeterSource) -> None:
    # Shielded and time-limited: a clean stop keeps every pulse counted, but a store that is
    # already gone must not hold the stop up.
    try:
        async with asyncio.timeout(FINAL_SAVE_TIMEOUT):
            await asyncio.shield(source.save())
    except (TimeoutError, AgentError) as exc:
        log.warning(
            "pulse input %s: the last count (%s %s) could not be saved: %s",
            source.name,
            source.value,
            source.config.unit,
            exc or "timed out",
        )


DRIVER = GpioDriver()


class RelayDriver:
    """Relay outputs on the gateway's own pins (agent.core.source.Driver)."""

    protocol = "relay"

    @contextlib.asynccontextmanager
    async def open_device(
        self, config: DeviceConfigBase, *, link: Link, state: SavedState, clock: Clock
    ) -> AsyncIterator[PolledDevice]:
        """The relay of ``config`` on ``link``, the time of its last toggle restored; its pins
        open at the first read or write and are released on exit."""
        if not isinstance(config, RelayConfig):
            raise TypeError(f"not a GPIO relay config: {config!r}")
        device = RelayDevice(
            config, backend=pin_backend(link), state=state, clock=clock, saved=await state.load()
        )
        try:
            yield device
        finally:
            device.close()


RELAY_DRIVER = RelayDriver()
