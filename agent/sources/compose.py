"""Links and devices opened from the site config, by the registry: the one place that turns a
config's `buses` and `devices` into running sources (the service, the demo, commissioning and
the tests all open them here)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.links import BleAdapterConfig, GpioConfig, Link, SerialLinkConfig, TcpLinkConfig
from agent.core.source import Driver, PolledDevice, PushDriver, PushSource, SavedState
from agent.sources.registry import driver_for

__all__ = ["MemoryState", "open_devices", "open_links", "open_sources"]


class MemoryState:
    """Saved state kept in memory only (commissioning reads, tests): learns within a run."""

    def __init__(self, value: str | None = None) -> None:
        self.value = value

    async def load(self) -> str | None:
        return self.value

    async def save(self, value: str) -> None:
        self.value = value


async def open_links(
    buses: Mapping[str, TcpLinkConfig | SerialLinkConfig | BleAdapterConfig | GpioConfig],
    stack: contextlib.AsyncExitStack,
) -> dict[str, Link]:
    """One Link per bus, closed with ``stack`` (no I/O: ports open on first use)."""
    return {name: await stack.enter_async_context(Link(name, spec)) for name, spec in buses.items()}


async def open_sources(
    configs: Sequence[DeviceConfigBase],
    links: Mapping[str, Link],
    *,
    stack: contextlib.AsyncExitStack,
    clock: Clock,
    state_for: Callable[[str], SavedState] | None = None,
    drivers: Mapping[str, Driver | PushDriver] | None = None,
) -> tuple[dict[str, PolledDevice], dict[str, PushSource]]:
    """Every configured device, opened by its protocol's driver: the polled ones (for the
    interval poller) and the push sources (BLE sensors, pulse inputs), each by name.
    ``drivers`` replaces the registry's driver of a protocol (the demo's simulated BLE adverts
    come through a fake scanner backend this way, as gpiozero's pins through MockFactory)."""
    polled: dict[str, PolledDevice] = {}
    pushed: dict[str, PushSource] = {}
    for config in configs:
        state = state_for(config.name) if state_for is not None else MemoryState()
        driver: Driver | PushDriver = (
            drivers[config.protocol]
            if drivers is not None and config.protocol in drivers
            else driver_for(config.protocol)
        )
        link = links[config.bus]
        if hasattr(driver, "open_source"):
            push_driver = cast(PushDriver, driver)
            pushed[config.name] = await stack.enter_async_context(
                push_driver.open_source(config, link=link, state=state, clock=clock)
            )
        else:
            polled[config.name] = await stack.enter_async_context(
                driver.open_device(config, link=link, state=state, clock=clock)
            )
    return polled, pushed


async def open_devices(
    configs: Sequence[DeviceConfigBase],
    links: Mapping[str, Link],
    *,
    stack: contextlib.AsyncExitStack,
    clock: Clock,
    state_for: Callable[[str], SavedState] | None = None,
) -> dict[str, PolledDevice]:
    """Every configured polled device, by name (push sources among ``configs`` are an error:
    use `open_sources`)."""
    polled, pushed = await open_sources(
        configs, links, stack=stack, clock=clock, state_for=state_for
    )
    if pushed:
        raise ValueError(f"not polled devices: {', '.join(pushed)}")
    return polled
