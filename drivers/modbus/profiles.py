"""The shipped library of device profiles (drivers/modbus/profiles/*.yaml).

A profile gives a device's points (and defaults such as word order) so a technician writes
``profile: eastron-sdm630`` and a unit id instead of thirty register lines. Points named in
the site config override the profile's point of the same name, whole.

A profile file holds:

- a comment block naming the public register map it follows (a line starting ``# Source:``);
- ``description``: one line for a technician (hints such as a needed bus timeout go here);
- ``defaults``: device-level settings (`DEVICE_DEFAULT_KEYS`); the site config's own win;
- ``points``: point name -> point, as in a site config; every name is in `POINT_NAMES`;
- ``unreadable`` (optional): ``[{table, start, end}]`` register ranges (end inclusive) that a
  merged read must never carry as filler; a site's own ``unreadable`` ranges add to them.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

__all__ = [
    "DEVICE_DEFAULT_KEYS",
    "POINT_NAMES",
    "load_profile",
    "profile_names",
    "profile_text",
]

# Device-level keys a profile may set; the site config's own value wins.
DEVICE_DEFAULT_KEYS = ("word_order", "byte_order", "max_registers", "interval")

# The stable point names profiles may use, so dashboards and alert rules do not care about the
# brand. Units are the same across profiles for the same name (W, var, VA, V, A, Hz, kWh, degC).
# Add a name here, with its meaning, before a profile uses it.
POINT_NAMES: frozenset[str] = frozenset(
    {
        # AC electrical quantities
        "voltage_l1",  # phase-to-neutral voltage, V
        "voltage_l2",
        "voltage_l3",
        "voltage_l1_l2",  # line-to-line voltage, V
        "voltage_l2_l3",
        "voltage_l3_l1",
        "current_l1",  # phase current, A
        "current_l2",
        "current_l3",
        "ac_current",  # total AC current of an inverter, A
        "active_power",  # total active power, W (import positive on meters)
        "active_power_l1",
        "active_power_l2",
        "active_power_l3",
        "apparent_power",  # total, VA
        "reactive_power",  # total, var
        "power_factor",  # total, -1..1 (a ratio, never a percentage)
        "frequency",  # Hz
        # energy counters
        "import_energy",  # kWh
        "export_energy",  # kWh
        "total_active_energy",  # kWh, import + export (or as the meter's setting says)
        # PV inverters
        "total_yield",  # kWh since commissioning
        "daily_yield",  # kWh today
        "dc_voltage",  # V
        "dc_current",  # A
        "dc_power",  # W
        "efficiency",  # %
        "internal_temperature",  # cabinet / internal, degC
        "heatsink_temperature",  # degC
        "operating_state",  # the maker's state code (SunSpec St: 1 off ... 4 MPPT ... 7 fault)
        # SunSpec scale factors (int16 exponents, value = raw x 10^SF)
        "current_sf",
        "voltage_sf",
        "power_sf",
        "frequency_sf",
        "apparent_power_sf",
        "reactive_power_sf",
        "power_factor_sf",
        "energy_sf",
        "dc_current_sf",
        "dc_voltage_sf",
        "dc_power_sf",
        "temperature_sf",
        # HVAC zone controllers and fan-coil thermostats
        "zone_temperature",  # degC
        "setpoint",  # degC
        "mode",  # the controller's mode code (see the profile)
        "fan_speed",  # the controller's fan code (see the profile)
        "power_on",  # on/off
    }
)


@functools.cache
def profile_names() -> tuple[str, ...]:
    folder = resources.files("drivers.modbus") / "profiles"
    return tuple(
        sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
    )


def profile_text(name: str) -> str:
    """The profile's YAML source, comments included; KeyError if there is none."""
    if name not in profile_names():
        raise KeyError(name)
    return (resources.files("drivers.modbus") / "profiles" / f"{name}.yaml").read_text("utf-8")


@functools.cache
def _load(name: str) -> dict[str, Any]:
    # ruamel.yaml only once a profile is read: a config of explicit points never loads it.
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load(profile_text(name))
    # A malformed shipped profile is a packaging bug, not a user error: crash loudly.
    if not isinstance(data, dict) or not isinstance(data.get("points"), dict):
        raise RuntimeError(f"shipped profile {name!r} is malformed: it needs `points`")  # noqa: TRY004
    if not isinstance(data.get("unreadable", []), list):
        raise RuntimeError(f"shipped profile {name!r} is malformed: `unreadable` is a list")  # noqa: TRY004
    return data


def load_profile(name: str) -> dict[str, Any]:
    """The raw profile (``points``, optional ``defaults`` and ``unreadable``); KeyError if
    there is none."""
    if name not in profile_names():
        raise KeyError(name)
    return _load(name)
