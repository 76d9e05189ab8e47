"""The base of every config model: unknown keys are errors, values are immutable once loaded."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.core.durations import Duration
from agent.core.suggest import did_you_mean

__all__ = ["AddressedMeterConfig", "ConfigModel", "DeviceConfigBase"]


class ConfigModel(BaseModel):
    # extra="forbid" turns a misspelt key into an error (with a did-you-mean from the loader)
    # instead of a setting silently left at its default. The docstring under each field is its
    # description, but only the config reference and `edge-agent schema` read it
    # (agent.config.reference): pydantic's use_attribute_docstrings would parse every model's
    # source at each start (about 60 ms and 1 MB on this machine, several times that on a Pi).
    # defer_build: a model builds its own validator when it is first used on its own; the site
    # config's validator holds those of the sections it contains, so most never build one
    # (about 20 ms and 1 MB at each start).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class DeviceConfigBase(ConfigModel):
    """What every device's config has, whatever its protocol: each driver's device model
    extends it (with its own constraints and descriptions on these fields)."""

    link_kinds: ClassVar[tuple[str, ...]] = ()
    """The bus kinds (agent.core.links) the driver's devices can sit on."""

    protocol: str
    """Which driver reads the device (modbus when not given)."""
    name: str
    """Stable name of the device, used in records and topics."""
    bus: str
    """Name of the bus (under `buses`) the device is on."""

    def point_names(self) -> tuple[str, ...]:
        """The points the device is read for."""
        return tuple(self.point_units())

    def point_units(self) -> dict[str, str]:
        """The points the device is read for, with the unit each is published in."""
        raise NotImplementedError

    def write_problem(self, point: str) -> str | None:
        """Why ``point`` cannot be written (None: it can). Read-only unless the driver says."""
        return f"point {point!r} of {self.name!r} is read-only ({self.protocol})"


class AddressedMeterConfig(DeviceConfigBase):
    """What a meter that carries its own address on a serial line has (DL/T 645, CJ/T 188): a
    shipped profile, a choice of its points, its own serial settings. A driver's model extends
    it with the address format and says which profiles it ships."""

    label: ClassVar[str] = "meter"  # the protocol as people write it, for messages
    link_kinds: ClassVar[tuple[str, ...]] = ("serial", "modbus_rtu")
    # The usual factory setting of these meters (each driver's spec cites its sources), used
    # when neither the meter's config nor its line's says otherwise.
    default_baudrate: ClassVar[int] = 2400
    default_parity: ClassVar[Literal["N", "E", "O"]] = "E"

    profile: str
    """The meter's shipped profile (which values it is read for)."""
    points: tuple[str, ...] | None = None
    """The profile's points to read (default: all of them)."""
    baudrate: int | None = Field(default=None, gt=0)
    """The meter's speed; default: the line's `baudrate` when the line's config gives one, else
    2400 (the usual factory setting of these meters)."""
    parity: Literal["N", "E", "O"] | None = None
    """The meter's parity; default: the line's `parity` when the line's config gives one, else E."""
    preamble: int = Field(default=4, ge=0, le=8)
    """FE wake-up bytes sent before each request."""
    timeout: Duration | None = None
    """How long to wait for an answer; default: the line's timeout."""

    @classmethod
    def profile_names(cls) -> tuple[str, ...]:
        """The driver's shipped profiles."""
        raise NotImplementedError

    @classmethod
    def profile_units(cls, profile: str) -> dict[str, str]:
        """A shipped profile's points, in order, with the unit each is published in."""
        raise NotImplementedError

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        names = cls.profile_names()
        if value not in names:
            raise ValueError(
                f"no {cls.label} profile is named {value!r}{did_you_mean(value, names)}; "
                f"the profiles are: {', '.join(names)}"
            )
        return value

    @model_validator(mode="after")
    def _known_points(self) -> AddressedMeterConfig:
        if self.points is not None:
            known = list(self.profile_units(self.profile))
            for point in self.points:
                if point not in known:
                    raise ValueError(
                        f"profile {self.profile} has no point {point!r}"
                        f"{did_you_mean(point, known)}"
                    )
        return self

    def point_units(self) -> dict[str, str]:
        """The points this meter is read for, in the profile's order, with their units."""
        units = self.profile_units(self.profile)
        return {p: u for p, u in units.items() if self.points is None or p in self.points}
