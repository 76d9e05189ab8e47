"""The base of every config model: unknown keys are errors, values are immutable once loaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigModel", "DeviceConfigBase"]


class ConfigModel(BaseModel):
    # extra="forbid" turns a misspelt key into an error (with a did-you-mean from the loader)
    # instead of a setting silently left at its default.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DeviceConfigBase(ConfigModel):
    """What every device's config has, whatever its protocol: each driver's device model
    extends it (with its own constraints and descriptions on these fields)."""

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
