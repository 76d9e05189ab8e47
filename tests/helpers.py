"""Small shared test helpers (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from agent.config.model import SiteConfig
from agent.core.links import Link, SerialLinkConfig, TcpLinkConfig
from agent.core.record import Reading
from agent.sources.poller import IntervalPoller
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.device import ModbusDeviceClient
from drivers.modbus.planner import DeviceQuirks, Plan
from drivers.modbus.spec import ModbusDevice

ROOT = Path(__file__).resolve().parents[1]
DEMO_YAML = ROOT / "config" / "demo.yaml"


def find_program(name: str, *, debian_path: str) -> str:
    """A real peer the tests need (mosquitto, socat): on PATH or where Debian installs it.

    Missing is a failure, never a skip: CI must not pass by testing less.
    """
    found = shutil.which(name) or (debian_path if os.access(debian_path, os.X_OK) else None)
    if found is None:
        pytest.fail(
            f"{name} not installed: run ./scripts/test.sh (the README's test command), "
            "which installs it",
            pytrace=False,
        )
    return found


async def discard(readings: Sequence[Reading]) -> None:
    """A sink that keeps nothing."""


class _SaveAs:
    """SavedState handing what a device learned to ``save(device, json)``."""

    def __init__(self, device: str, save: Callable[[str, str], Awaitable[None]]) -> None:
        self.device, self._save = device, save

    async def load(self) -> str | None:
        return None

    async def save(self, value: str) -> None:
        await self._save(self.device, value)


class ModbusPoller(IntervalPoller):
    """What the service composes for a Modbus device: the interval poller over the Modbus
    driver's device client (``.client``), with the client's quirks and plan at hand."""

    def __init__(
        self,
        device: ModbusDevice,
        bus: ModbusBusClient,
        *,
        sink: Callable[[Sequence[Reading]], Awaitable[None]] = discard,
        quirks: DeviceQuirks | None = None,
        save_quirks: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        state = _SaveAs(device.name, save_quirks) if save_quirks is not None else None
        self.client = ModbusDeviceClient(device, bus, quirks=quirks, state=state)
        super().__init__(self.client, sink=sink)

    @property
    def quirks(self) -> DeviceQuirks:
        return self.client.quirks

    def plan(self, names: Sequence[str] | None = None) -> Plan:
        return self.client.plan(names)


def modbus_bus(name: str, spec: TcpLinkConfig | SerialLinkConfig) -> ModbusBusClient:
    """A Modbus client on a link of its own."""
    return ModbusBusClient(Link(name, spec))


def modbus_only(config: SiteConfig) -> SiteConfig:
    """``config`` with its Modbus devices only (no re-validation: its energy section may still
    name the others)."""
    devices = [d for d in config.devices if isinstance(d, ModbusDevice)]
    return config.model_copy(update={"devices": devices})
