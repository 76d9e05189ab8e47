"""The simulated building's room sensors and pulse outputs, as a gateway hears them.

- Room sensors: BTHome v2 adverts (service data under UUID 0xFCD2), built here from the
  format's public specification (bthome.io/format: a device-information byte, then objects
  id + little-endian value: 0x00 packet id, 0x01 battery %, 0x02 temperature x0.01 °C signed,
  0x03 humidity x0.01 %), not from the agent's parser, so the demo and tests check one against
  the other. Temperatures are the zones' own (hil.building), humidity a slow wander.
- A pulse output: a hot-water meter's reed switch closing once per litre drawn, the flow
  following occupancy (a canteen: busier in office hours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hil.building import Building

__all__ = ["BTHOME_SERVICE_UUID", "PulseTrain", "RoomSensor", "bthome_advert"]

BTHOME_SERVICE_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
_DEVICE_INFO = 0x40  # BTHome v2, unencrypted, regular interval


def bthome_advert(*, temperature: float, humidity: float, battery: int, packet_id: int) -> bytes:
    """The service data of one unencrypted BTHome v2 advert."""
    return bytes(
        [
            _DEVICE_INFO,
            0x00, packet_id & 0xFF,
            0x01, max(0, min(100, battery)),
            0x02, *round(temperature * 100).to_bytes(2, "little", signed=True),
            0x03, *round(humidity * 100).to_bytes(2, "little", signed=False),
        ]
    )  # fmt: skip


@dataclass
class RoomSensor:
    """A Xiaomi-style thermometer (BTHome firmware) hanging in a zone."""

    mac: str
    zone: str
    battery: int = 90
    packet_id: int = 0

    def advert(self, building: Building) -> bytes:
        building.update()
        self.packet_id = (self.packet_id + 1) % 256
        hours = building.now / 3600
        humidity = 55 + 8 * math.sin(hours / 5 + sum(map(ord, self.zone)))
        return bthome_advert(
            temperature=building.zone_sensor_temperature(self.zone),
            humidity=humidity,
            battery=self.battery,
            packet_id=self.packet_id,
        )


class PulseTrain:
    """Pulses of a hot-water meter: one per ``litres_per_pulse`` drawn; the building's clock
    decides how many are due."""

    def __init__(
        self,
        building: Building,
        *,
        litres_per_pulse: float = 1.0,
        occupied_m3_per_h: float = 0.36,
        empty_m3_per_h: float = 0.01,
    ) -> None:
        self.building = building
        self.litres_per_pulse = litres_per_pulse
        self._rates = (occupied_m3_per_h, empty_m3_per_h)
        self._litres = 0.0
        self._at = building.now
        self.sent = 0

    def due(self) -> int:
        """Pulses due since the last call (the flow integrated over the building's time)."""
        self.building.update()
        now = self.building.now
        rate = self._rates[0] if self.building.occupied else self._rates[1]
        self._litres += rate * 1000 * max(now - self._at, 0.0) / 3600
        self._at = now
        pulses = int(self._litres // self.litres_per_pulse)
        self._litres -= pulses * self.litres_per_pulse
        self.sent += pulses
        return pulses
