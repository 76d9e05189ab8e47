"""Commissioning: which BLE room sensors are around, in which format, how loud, saying what.

``await scan(backend, seconds=10)`` listens for ``seconds`` and returns one `FoundSensor` per
device that sent BTHome (0xFCD2) or 0x181A service data, nearest (loudest) first. An encrypted
BTHome sensor is listed with its format and no values (its key is not known here). For
``edge-agent scan --ble``; `FoundSensor.to_found` gives the CLI's common `Found` row.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agent.core.clock import Clock, system_clock
from agent.core.source import Found
from drivers.ble.backend import Advert, ScannerBackend
from drivers.ble.errors import AdapterError, DecryptionError, FormatError
from drivers.ble.formats import (
    BTHOME_UUID16,
    ENVIRONMENTAL_SENSING_UUID16,
    FormatName,
    decode,
    find_service_data,
)
from drivers.ble.spec import POINT_UNITS

__all__ = ["FoundSensor", "scan"]

_UNITS = {**POINT_UNITS, "battery_voltage": "V"}


@dataclass
class FoundSensor:
    """A sensor heard during a scan (its latest advert wins)."""

    mac: str
    format: FormatName | None  # None: its adverts could not be read
    rssi: int
    values: dict[str, float | int] = field(default_factory=dict)
    local_name: str | None = None
    encrypted: bool = False
    adverts: int = 0
    problem: str | None = None  # why the values are missing

    def describe(self) -> str:
        """One line for a technician: format, signal, values."""
        parts = [self.format or "unreadable", f"{self.rssi} dBm"]
        if self.local_name:
            parts.insert(0, repr(self.local_name))
        parts += [
            f"{name} {value:g} {_UNITS.get(name, '')}".rstrip()
            for name, value in self.values.items()
        ]
        if self.problem:
            parts.append(self.problem)
        return ", ".join(parts)

    def to_found(self) -> Found:
        return Found(address=self.mac, detail=self.describe())


async def scan(
    backend: ScannerBackend, *, seconds: float, clock: Clock | None = None
) -> list[FoundSensor]:
    """The sensors heard within ``seconds``, loudest first. Raises `AdapterError` when the
    adapter cannot scan."""
    timer = clock if clock is not None else system_clock()
    found: dict[str, FoundSensor] = {}
    try:
        async with backend.scanning() as adverts, asyncio.TaskGroup() as group:
            listener = group.create_task(_listen(adverts, found), name="agent[ble:scan].listen")
            await timer.sleep(seconds)
            listener.cancel()
    except* AdapterError as lost:  # the adapter went away mid-scan: say so plainly
        raise lost.exceptions[0] from None
    return sorted(found.values(), key=lambda row: (-row.rssi, row.mac))


async def _listen(adverts: AsyncIterator[Advert], found: dict[str, FoundSensor]) -> None:
    async for advert in adverts:
        row = _row(advert)
        if row is None:
            continue
        previous = found.get(row.mac)
        row.adverts = 1 if previous is None else previous.adverts + 1
        if previous is not None and row.format is None and previous.format is not None:
            previous.adverts, previous.rssi = row.adverts, row.rssi
            continue  # keep what the last readable advert said
        found[row.mac] = row


def _row(advert: Advert) -> FoundSensor | None:
    data = advert.service_data
    bthome = find_service_data(data, BTHOME_UUID16)
    if bthome is None and find_service_data(data, ENVIRONMENTAL_SENSING_UUID16) is None:
        return None
    row = FoundSensor(advert.mac, None, advert.rssi, local_name=advert.local_name)
    try:
        decoded = decode(data, mac=advert.mac)
    except DecryptionError:
        row.format, row.encrypted = "bthome", True
        row.problem = "encrypted (its key_file is needed)"
        return row
    except FormatError as exc:
        row.problem = str(exc)
        return row
    row.format = decoded.format
    row.values = dict(decoded.values)
    row.encrypted = decoded.encrypted
    return row
