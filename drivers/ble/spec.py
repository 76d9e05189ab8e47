"""What a site config says about a BLE room sensor (a validated pydantic model).

    buses:
      office_ble:
        kind: ble
        adapter: hci0          # the Pi's own radio; hci1 for a USB dongle
        passive: true
    devices:
      - name: room_301
        protocol: ble
        bus: office_ble
        mac: "A4:C1:38:8D:18:B2"
        format: auto           # bthome, pvvx, atc1441 (auto: by the advert's UUID and length)
        key_file: /etc/edge-agent/keys/room_301.key   # encrypted BTHome only
        interval: 60s          # at most one stored reading per point per interval
        aggregate: latest      # or mean over the interval
        timeout: 10m           # silent longer: its points become stale
        zone: floor3_east      # the HVAC zone it measures

The sensor's points are fixed: temperature (degC), humidity (%), battery (%) and rssi (dBm).
A BTHome key lives in a file (32 hex digits), never in the site config, so the config can be
shared and versioned without the secret.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from agent.core.configbase import DeviceConfigBase
from agent.core.durations import Duration
from drivers.ble.errors import KeyFileError
from drivers.ble.formats import KEY_LENGTH, normalise_mac

__all__ = ["POINT_UNITS", "BleSensorConfig", "read_key_file"]

POINT_UNITS: dict[str, str] = {
    "temperature": "degC",
    "humidity": "%",
    "battery": "%",
    "rssi": "dBm",
}
"""The points of every BLE sensor, with their units (battery_voltage is decoded, not stored)."""


class BleSensorConfig(DeviceConfigBase):
    """A BLE room sensor (temperature, humidity) heard through a Bluetooth adapter."""

    link_kinds: ClassVar[tuple[str, ...]] = ("ble",)

    protocol: Literal["ble"]
    """ble: a sensor that advertises its readings (BTHome v2, pvvx custom or atc1441)."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    """Stable device name used in readings and topics."""
    bus: str
    """Name of the Bluetooth adapter (a `kind: ble` bus) that hears the sensor."""
    mac: str
    """The sensor's Bluetooth address, AA:BB:CC:DD:EE:FF (printed on pvvx-flashed units' screens
    and in `edge-agent scan --ble`); quote it in YAML."""
    format: Literal["auto", "bthome", "pvvx", "atc1441"] = "auto"
    """The advert format: auto (BTHome when the advert has UUID 0xFCD2, else pvvx or atc1441 by
    length), or one of them to ignore the others."""
    key_file: Path | None = None
    """A file holding the sensor's BTHome encryption key (32 hex digits); with it, only
    encrypted BTHome adverts are accepted. Keep it readable by the agent only."""
    interval: Duration = 60.0
    """At most one stored reading per point per interval."""
    aggregate: Literal["latest", "mean"] = "latest"
    """What an interval's reading is: the latest advert's value, or the mean of the interval's
    adverts (repeats of one measurement count once)."""
    timeout: Duration = 600.0
    """A sensor silent this long is stale: its points get one stale reading and a warning."""
    zone: str | None = None
    """The HVAC zone whose room temperature the sensor measures, if any."""

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normalise_mac(value)

    @model_validator(mode="after")
    def _consistent(self) -> BleSensorConfig:
        if self.key_file is not None and self.format not in ("auto", "bthome"):
            raise ValueError(f"key_file is for encrypted BTHome; format {self.format} has no key")
        if self.timeout <= self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g} s) must be longer than interval "
                f"({self.interval:g} s), or the sensor is stale between two readings"
            )
        return self

    def point_units(self) -> dict[str, str]:
        return dict(POINT_UNITS)


def read_key_file(path: Path) -> tuple[bytes, str | None]:
    """The 16-byte key in ``path`` (32 hex digits; spaces, colons and a trailing newline are
    allowed), and a warning when others may read the file. Blocking: call it off the loop."""
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise KeyFileError(path, reason) from None
    digits = "".join(text.split()).replace(":", "")
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise KeyFileError(path, "it does not hold hex digits only") from None
    if len(key) != KEY_LENGTH:
        raise KeyFileError(path, f"a key is {2 * KEY_LENGTH} hex digits, not {len(digits)}")
    warning = None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = f"BTHome key file {path} can be read by others (chmod 600 it)"
    return key, warning
