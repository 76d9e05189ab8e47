"""What a site config says about a CJ/T 188 meter (a validated pydantic model).

    devices:
      - name: water_main
        protocol: cjt188
        bus: floor1                  # a serial line (kind: serial)
        address: "00000000000012"    # 14 digits, as printed on the meter
        profile: cjt188-water
        di_order: swapped            # 1F 90 on the wire; `edge-agent scan --protocol cjt188`
                                     # tells which order the meter answers

CJ/T 188 meters are commonly read at 2400 bit/s, 8 data bits, even parity (the public
aixiwang/python_cjt188 reader opens its port so; no primary text states the rate), often behind an
RS-485 to M-Bus level converter. A meter is read at its own `baudrate` and `parity` when given,
else at its line's when the line's config gives them, else at 2400 8E1.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from agent.core.configbase import AddressedMeterConfig
from agent.core.durations import Duration

__all__ = ["Cjt188Device"]

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{14}$")


class Cjt188Device(AddressedMeterConfig):
    """A CJ/T 188 water, heat or gas meter on a serial line."""

    label: ClassVar[str] = "CJ/T 188"

    protocol: Literal["cjt188"]
    """cjt188: a CJ/T 188-2004 household meter (water, heat or gas)."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    """Stable device name used in readings and topics."""
    bus: str
    """Name of the serial line (a `kind: serial` bus) the meter is wired to."""
    address: str
    """The meter's 14-digit address as printed (most significant first); quote it in YAML."""
    meter_type: int | None = Field(default=None, ge=0, le=0xFF)
    """Meter type byte T sent in requests (default: the profile's, e.g. 0x10 cold water;
    0x11 hot water, 0x20 heat, 0x30 gas)."""
    di_order: Literal["standard", "swapped"] | None = None
    """Byte order of the data identifier on the wire: standard (90 1F) or swapped (1F 90);
    it varies between makes (default: the profile's). `scan` finds the meter's."""
    interval: Duration = 60.0
    """How often the meter is read (battery meters wake their bus interface briefly: be sparing)."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(
                f"{value!r} is not a CJ/T 188 address: write its 14 digits, quoted, "
                'e.g. "00000000000012"'
            )
        return value.upper()

    @classmethod
    def profile_names(cls) -> tuple[str, ...]:
        from drivers.cjt188.profiles import profile_names  # the codec: when used

        return profile_names()

    @classmethod
    def profile_units(cls, profile: str) -> dict[str, str]:
        from drivers.cjt188.profiles import load_profile

        return {point.name: point.unit for point in load_profile(profile).points}
