"""A zone's room temperature, and which source it came from. Pure: no I/O, no clock.

A zone may name a ``room_sensor`` (a thermometer in the room, e.g. a BLE sensor: a push source
whose latest measurement is kept) and its device's own ``temperature`` point (the thermostat's
built-in sensor, often in the return air or behind the wall unit). The room sensor is used while
its latest measurement is younger than the sensor's own stale timeout; else the device's point,
else none. Each choice carries the sentence that says why, for the audit trail and the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent.hvac.program import ZoneConfig

__all__ = ["LatestSource", "RoomTemperature", "choose_room", "room_sources"]


@runtime_checkable
class LatestSource(Protocol):
    """A push source that keeps its latest measurement per point (drivers.ble.source.BleSensor).

    ``latest(point)`` is ``(value, monotonic seconds when it was measured)`` or None before the
    first; ``stale_after`` is the sensor's own timeout in seconds."""

    @property
    def name(self) -> str: ...

    @property
    def stale_after(self) -> float: ...

    def latest(self, point: str) -> tuple[float, float] | None: ...


@dataclass(frozen=True, slots=True)
class RoomTemperature:
    """The zone's room temperature now, the source it came from, and why."""

    value: float | None
    source: str  # e.g. "room_sensor zone1_room.temperature", "device hvac.zone1_temperature"
    age_s: float | None = None  # the room sensor's measurement's age, when it is the source
    note: str = ""  # why the room sensor was not used, when it was not

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"source": self.source, "value": self.value}
        if self.age_s is not None:
            found["age_s"] = round(self.age_s, 1)
        if self.note:
            found["note"] = self.note
        return found


def _sensor_label(zone: ZoneConfig) -> str | None:
    room = zone.room_sensor_point()
    return None if room is None else f"room_sensor {room[0]}.{room[1]}"


def _device_label(zone: ZoneConfig) -> str | None:
    return None if zone.temperature is None else f"device {zone.device}.{zone.temperature}"


def room_sources(zone: ZoneConfig) -> list[str]:
    """The zone's room temperature sources, preferred first (empty: the zone has none)."""
    return [label for label in (_sensor_label(zone), _device_label(zone)) if label is not None]


def choose_room(
    zone: ZoneConfig,
    *,
    sensor: tuple[float, float] | None,
    stale_after: float,
    now: float,
    own: float | None,
    own_problem: str = "",
) -> RoomTemperature:
    """The room temperature of ``zone`` at monotonic time ``now``: the room sensor's ``sensor``
    measurement (value, monotonic time) while younger than ``stale_after``, else the device's
    own reading ``own`` (None when it has none or could not be read: ``own_problem`` says why)."""
    sensor_label = _sensor_label(zone)
    note = ""
    if sensor_label is not None:
        if sensor is None:
            note = f"{sensor_label} has not been heard yet"
        else:
            value, measured = sensor
            age = max(now - measured, 0.0)
            if age < stale_after:
                return RoomTemperature(value, sensor_label, age)
            note = (
                f"{sensor_label} is stale: last heard {age:.0f} s ago (timeout {stale_after:g} s)"
            )
    device_label = _device_label(zone)
    if device_label is not None and own is not None:
        return RoomTemperature(own, device_label, None, note)
    if device_label is not None:
        problem = f"{device_label}: {own_problem or 'no reading'}"
        note = f"{note}; {problem}" if note else problem
    return RoomTemperature(None, "none", None, note or "the zone has no room temperature source")
