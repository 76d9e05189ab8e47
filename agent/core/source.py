"""The source interface: how a field protocol hands its readings to the agent.

Every field source (Modbus, DL/T 645, CJ/T 188, BLE adverts, GPIO pulses) reaches the same sink,
so the store and the uplink never know which protocol a reading came from. A driver offers one
of two shapes:

- a **polled device** (`PolledDevice`): ``read(points)`` returns one reading per named point; a
  point the device refuses is a bad reading, and only "the device did not answer at all"
  raises `DeviceUnavailableError`. The agent's one interval poller owns cadence, health (logged
  once down, once back), slower retries while down, and cancellation, for every polled protocol
  alike. A point that can be written (a setpoint, a relay) is written through the same device
  with ``write(point, value)``, so control and polling share the driver's knowledge of the
  device (e.g. the Modbus planner's learned quirks) and its link's lock.
- a **push source** (`PushSource`): a task ``run(sink)`` that hands readings over as they arrive
  (BLE adverts, GPIO pulses); library threads reach the loop through
  ``loop.call_soon_threadsafe``.

A `Driver` is what the registry (`agent.sources.registry`) maps a config ``protocol`` to: it
names the device config model and opens a device on a link. Per-device saved state (learned
quirks, pulse counts) goes through `SavedState`, backed by the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.links import Link
from agent.core.record import Reading, Value

__all__ = [
    "Driver",
    "Found",
    "PointInfo",
    "PolledDevice",
    "PushDriver",
    "PushSource",
    "SavedState",
    "Scanner",
    "Sink",
]

Sink = Callable[[Sequence[Reading]], Awaitable[None]]
"""Where readings go (the store); awaited, so a slow store slows its sources, never loses."""


@dataclass(frozen=True, slots=True)
class PointInfo:
    """What the poller and the rest of the agent need to know of a point, whatever the
    protocol."""

    unit: str
    interval: float  # seconds between reads
    writable: bool = False

    def quantise(self, value: Value) -> Value:
        """The value as the device will hold it (drivers with coarser registers override)."""
        return value

    def same(self, held: Value, wanted: Value) -> bool:
        """Whether a read-back value is the written one, within the point's resolution."""
        if isinstance(held, int | float) and isinstance(wanted, int | float):
            return abs(float(held) - float(wanted)) <= 1e-3
        return held == wanted


class SavedState(Protocol):
    """One device's saved state (a JSON text), kept in the store across restarts."""

    async def load(self) -> str | None: ...

    async def save(self, value: str) -> None: ...


class PolledDevice(Protocol):
    """A device the agent polls. Created by its driver; no I/O before the first read."""

    @property
    def name(self) -> str: ...

    @property
    def points(self) -> Mapping[str, PointInfo]: ...

    async def read(self, points: Sequence[str]) -> list[Reading]:
        """One reading per named point. Raises `DeviceUnavailableError` (with the readings
        taken before the device fell silent on its ``readings``) when the device stops
        answering; a refusal of one point is a bad reading, not an error."""
        ...

    async def write(self, point: str, value: Value) -> None:
        """Write one point. Raises `DriverError` when the device refuses and
        `DeviceUnavailableError` when it does not answer; ValueError when the value cannot be
        represented."""
        ...


class PushSource(Protocol):
    """A source that delivers readings when they arrive (BLE adverts, GPIO pulses): the
    service runs ``run(sink)`` as a task of its supervisor until it cancels it at stop."""

    @property
    def name(self) -> str: ...

    @property
    def points(self) -> Mapping[str, PointInfo]: ...

    async def run(self, sink: Sink) -> None:
        """Deliver readings until cancelled. Library threads (bleak's D-Bus, gpiozero's pin
        callbacks) reach the loop only through ``loop.call_soon_threadsafe``; an adapter that
        disappears is reopened with backoff here, never by raising."""
        ...


class PushDriver(Protocol):
    """A driver whose devices push readings (the registry tells it from a Driver by
    ``open_source``)."""

    @property
    def protocol(self) -> str: ...

    def open_source(
        self,
        config: DeviceConfigBase,
        *,
        link: Link,
        state: SavedState,
        clock: Clock,
    ) -> AbstractAsyncContextManager[PushSource]:
        """The source of ``config`` on its link (a BLE adapter, a GPIO chip), its saved state
        loaded (e.g. a pulse count); closed on exit."""
        ...


class Driver(Protocol):
    """What a protocol's package offers the agent: one object, named in the registry."""

    @property
    def protocol(self) -> str:
        """The config's ``protocol`` value for this driver's devices."""
        ...

    def open_device(
        self,
        config: DeviceConfigBase,
        *,
        link: Link,
        state: SavedState,
        clock: Clock,
    ) -> AbstractAsyncContextManager[PolledDevice]:
        """The device of ``config`` (the driver's own config model) on its link, its saved
        state loaded; what it opened is closed on exit (the link closes what it shares)."""
        ...


@dataclass(frozen=True, slots=True)
class Found:
    """A device a scan found on a line: its address and what it said about itself."""

    address: str
    detail: str


class Scanner(Protocol):
    """A driver that can find the address of a lone meter on a line (commissioning)."""

    async def scan(self, link: Link, *, settings: Any, wait: float) -> list[Found]:
        """The devices that answered at ``settings`` (agent.core.serial_port.SerialSettings)
        within ``wait`` seconds each;
        empty when nothing answered."""
        ...
