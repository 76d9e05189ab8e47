"""What a site config says about a DL/T 645 meter (a validated pydantic model).

    devices:
      - name: lighting_meter
        protocol: dlt645
        bus: floor1            # a serial line (kind: serial)
        address: "000000000161"  # the 12 digits on the nameplate, most significant first
        profile: dlt645-2007-3phase
        baudrate: 2400         # the meter's own line settings, when the line's differ
        parity: E

Defaults follow DL/T 645-2007 section 4 (physical layer): 2400 bit/s, 8 data bits, even parity,
one stop bit as the usual factory setting, which every meter lets the user change; they are
defaults, never assumptions (the meter's own settings win).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.core.configbase import DeviceConfigBase
from agent.core.durations import Duration
from agent.core.suggest import did_you_mean
from drivers.dlt645.profiles import load_profile, profile_names

__all__ = ["Dlt645Device"]

_ADDRESS = re.compile(r"^[0-9]{12}$")


class Dlt645Device(DeviceConfigBase):
    """A DL/T 645 (2007 or 1997) electricity meter on a serial line."""

    protocol: Literal["dlt645"]
    """dlt645: a DL/T 645-2007 or -1997 meter (the profile says which)."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    """Stable device name used in readings and topics."""
    bus: str
    """Name of the serial line (a `kind: serial` bus) the meter is wired to."""
    address: str
    """The meter's 12-digit address (communication address, usually the nameplate number),
    most significant digit first; quote it in YAML so leading zeros stay."""
    profile: str
    """Which identifiers to read: dlt645-2007-3phase, dlt645-2007-1phase or dlt645-1997."""
    points: tuple[str, ...] | None = None
    """The profile's points to read (default: all of them)."""
    interval: Duration = 10.0
    """How often the points are read."""
    baudrate: int | None = Field(default=None, gt=0)
    """The meter's speed, when it is not the line's (DL/T 645 meters usually run at 2400)."""
    parity: Literal["N", "E", "O"] | None = None
    """The meter's parity, when it is not the line's (DL/T 645's default is E)."""
    preamble: int = Field(default=4, ge=0, le=8)
    """FE wake-up bytes sent before each request (the standard's example sends four)."""
    blocks: bool = True
    """Try block identifiers (one frame for several values) before single ones; a meter that
    refuses a block is learned and asked point by point from then on."""
    timeout: Duration | None = None
    """How long to wait for an answer; default: the line's timeout."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(
                f"{value!r} is not a DL/T 645 address: write its 12 digits, quoted, "
                'e.g. "000000000161"'
            )
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        names = profile_names()
        if value not in names:
            raise ValueError(
                f"no DL/T 645 profile is named {value!r}{did_you_mean(value, names)}; "
                f"the profiles are: {', '.join(names)}"
            )
        return value

    @model_validator(mode="after")
    def _known_points(self) -> Dlt645Device:
        if self.points is not None:
            known = load_profile(self.profile).points
            for point in self.points:
                if point not in known:
                    raise ValueError(
                        f"profile {self.profile} has no point {point!r}"
                        f"{did_you_mean(point, known)}"
                    )
        return self

    def point_names(self) -> tuple[str, ...]:
        """The points this device reads, in the profile's order."""
        known = tuple(load_profile(self.profile).points)
        return known if self.points is None else tuple(p for p in known if p in self.points)
