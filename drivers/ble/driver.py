"""The BLE driver as the agent's registry sees it: a sensor config on a ``kind: ble`` link.

``DRIVER.open_source(config, link=, state=, clock=)`` yields the sensor's push source. The
sensors of one link share the link's `BleAdapterSource` (one scan per adapter); its backend is
made from the link's config by the driver's ``backend_factory``: `bleak_backend` for `DRIVER`
(bleak on the adapter the link names, passive as the link says). Tests, the demo and `hil/`
build their own driver around a `FakeBackend` instead, with no environment variable or magic
adapter name involved::

    fake = FakeBackend()
    driver = BleDriver(backend_factory=lambda link_config: fake)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.links import BleAdapterConfig, Link
from agent.core.source import PushSource, SavedState
from drivers.ble.backend import BleakBackend, ScannerBackend
from drivers.ble.errors import BleError
from drivers.ble.source import ADAPTER_KEY, BleAdapterSource, BleSensor
from drivers.ble.spec import BleSensorConfig, read_key_file

__all__ = ["DRIVER", "BackendFactory", "BleDriver", "bleak_backend"]

log = logging.getLogger(__name__)

BackendFactory = Callable[[BleAdapterConfig], ScannerBackend]
"""Makes the scanner backend of a ``kind: ble`` link from its config."""


def bleak_backend(config: BleAdapterConfig) -> ScannerBackend:
    """The real radio: bleak on the link's adapter."""
    return BleakBackend(config.adapter, passive=config.passive)


class BleDriver:
    """Opens BLE sensors (push sources) on their adapter links."""

    protocol = "ble"

    def __init__(self, *, backend_factory: BackendFactory = bleak_backend) -> None:
        self.backend_factory = backend_factory

    @contextlib.asynccontextmanager
    async def open_source(
        self, config: DeviceConfigBase, *, link: Link, state: SavedState, clock: Clock
    ) -> AsyncIterator[PushSource]:
        assert isinstance(config, BleSensorConfig)
        link_config = link.config
        if not isinstance(link_config, BleAdapterConfig):
            raise BleError(
                f"BLE sensor {config.name} is on bus {link.name}, which is not a Bluetooth "
                "adapter (kind: ble)"
            )
        key = None
        if config.key_file is not None:
            key, warning = await asyncio.to_thread(read_key_file, config.key_file)
            if warning:
                log.warning("BLE sensor %s: %s", config.name, warning)
        adapter = link.shared(
            ADAPTER_KEY,
            lambda: BleAdapterSource(link.name, self.backend_factory(link_config), clock=clock),
        )
        sensor = BleSensor(config, adapter, clock=clock, key=key)
        adapter.register(sensor)
        try:
            yield sensor
        finally:
            adapter.unregister(sensor)


DRIVER = BleDriver()
