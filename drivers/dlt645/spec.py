"""What a site config says about a DL/T 645 meter (a validated pydantic model).

    devices:
      - name: lighting_meter
        protocol: dlt645
        bus: floor1            # a serial line (kind: serial)
        address: "000000000161"  # the 12 digits on the nameplate, most significant first
        profile: dlt645-2007-3phase
        baudrate: 2400         # the meter's own line settings, when the line's differ
        parity: E

The physical layer (DL/T 645-2007 section 4, as transcribed in public) is RS-485 with 11-bit
characters: 8 data bits, even parity, one stop bit; 2400 bit/s is the usual factory speed of
2007 meters (vendor manuals), 1200 common on 1997 ones. A meter is read at its own `baudrate`
and `parity` when given, else at its line's when the line's config gives them, else at 2400 8E1:
the usual setting is a default, never a constant.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from agent.core.configbase import AddressedMeterConfig
from agent.core.durations import Duration

__all__ = ["Dlt645Device"]

_ADDRESS = re.compile(r"^[0-9]{12}$")


class Dlt645Device(AddressedMeterConfig):
    """A DL/T 645 (2007 or 1997) electricity meter on a serial line."""

    label: ClassVar[str] = "DL/T 645"

    protocol: Literal["dlt645"]
    """dlt645: a DL/T 645-2007 or -1997 meter (the profile says which)."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    """Stable device name used in readings and topics."""
    bus: str
    """Name of the serial line (a `kind: serial` bus) the meter is wired to."""
    address: str
    """The meter's 12-digit address (communication address, usually the nameplate number),
    most significant digit first; quote it in YAML so leading zeros stay."""
    interval: Duration = 10.0
    """How often the points are read."""
    blocks: bool = True
    """Try block identifiers (one frame for several values) before single ones; a meter that
    refuses a block is learned and asked point by point from then on."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(
                f"{value!r} is not a DL/T 645 address: write its 12 digits, quoted, "
                'e.g. "000000000161"'
            )
        return value

    @classmethod
    def profile_names(cls) -> tuple[str, ...]:
        from drivers.dlt645.profiles import profile_names  # the codec: when used

        return profile_names()

    @classmethod
    def profile_units(cls, profile: str) -> dict[str, str]:
        from drivers.dlt645.profiles import load_profile

        return {name: entry.unit for name, entry in load_profile(profile).entries.items()}
