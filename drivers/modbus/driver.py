"""The Modbus driver as the agent's registry sees it: a device config on a link, opened."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.links import Link
from agent.core.source import PolledDevice, SavedState
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.device import ModbusDeviceClient
from drivers.modbus.planner import DeviceQuirks
from drivers.modbus.spec import ModbusDevice

__all__ = ["DRIVER", "ModbusDriver"]

log = logging.getLogger(__name__)


class ModbusDriver:
    protocol = "modbus"

    @contextlib.asynccontextmanager
    async def open_device(
        self, config: DeviceConfigBase, *, link: Link, state: SavedState, clock: Clock
    ) -> AsyncIterator[PolledDevice]:
        assert isinstance(config, ModbusDevice)
        # One Modbus client per link: its devices share the connection (or serial port).
        bus = link.shared("modbus", lambda: ModbusBusClient(link))
        yield ModbusDeviceClient(
            config, bus, quirks=await _saved_quirks(config.name, state), state=state, clock=clock
        )


async def _saved_quirks(device: str, state: SavedState) -> DeviceQuirks | None:
    """What an earlier run learned about the device, so a restart does not re-learn."""
    saved = await state.load()
    if saved is None:
        return None
    try:
        return DeviceQuirks.from_json(saved)
    except ValueError:
        log.warning("device %s: saved read quirks are unreadable; learning afresh", device)
        return None


DRIVER = ModbusDriver()
