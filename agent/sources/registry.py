"""One registry: a device's config ``protocol`` to its driver.

Adding a driver is a folder under ``drivers/`` (its config model, its device, its ``DRIVER``) and
one line here. The config models are imported when the site config is validated (the site config
is a union of them, chosen by ``protocol``, Modbus when not given); a driver's code is imported
only when a device of its protocol is opened.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Annotated, Any, Union, cast

from pydantic import Discriminator, Tag

from agent.core.configbase import DeviceConfigBase
from agent.core.source import Driver

__all__ = [
    "DEFAULT_PROTOCOL",
    "REGISTRY",
    "Registration",
    "all_profiles",
    "device_config_type",
    "driver_for",
    "protocol_of_profile",
]

DEFAULT_PROTOCOL = "modbus"


@dataclass(frozen=True, slots=True)
class Registration:
    protocol: str
    config: str  # "module:Class", the device's config model (a DeviceConfigBase)
    driver: str  # "module:NAME", the Driver object
    profiles: str | None = None  # "module:function" naming the driver's shipped profiles


REGISTRY: tuple[Registration, ...] = (
    Registration("modbus", "drivers.modbus.spec:ModbusDevice", "drivers.modbus.driver:DRIVER",
                 "drivers.modbus.profiles:profile_names"),
    Registration("dlt645", "drivers.dlt645.spec:Dlt645Device", "drivers.dlt645.driver:DRIVER",
                 "drivers.dlt645.profiles:profile_names"),
    Registration("cjt188", "drivers.cjt188.spec:Cjt188Device", "drivers.cjt188.driver:DRIVER",
                 "drivers.cjt188.profiles:profile_names"),
    Registration("ble", "drivers.ble.spec:BleSensorConfig", "drivers.ble.driver:DRIVER"),
    Registration("gpio", "drivers.gpio.spec:PulseMeterConfig", "drivers.gpio.driver:DRIVER"),
    Registration("relay", "drivers.gpio.spec:RelayConfig", "drivers.gpio.driver:RELAY_DRIVER"),
)


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def protocols() -> tuple[str, ...]:
    return tuple(r.protocol for r in REGISTRY)


def _protocol_of(value: Any) -> str:
    """The union's tag: the ``protocol`` given, else Modbus (configs written before other
    protocols existed stay valid unchanged)."""
    if isinstance(value, dict):
        protocol = value.get("protocol", DEFAULT_PROTOCOL)
        return protocol if isinstance(protocol, str) else repr(protocol)
    return str(getattr(value, "protocol", DEFAULT_PROTOCOL))


@functools.cache
def device_config_type() -> Any:
    """The pydantic type of one entry of ``devices``: the registered models, by protocol."""
    members = tuple(
        Annotated[_load(r.config), Tag(r.protocol)]
        for r in REGISTRY
    )
    return Annotated[
        Union[members],  # noqa: UP007 - built from the registry at run time
        Discriminator(_protocol_of),
    ]


@functools.cache
def driver_for(protocol: str) -> Driver:
    """The driver of ``protocol`` (KeyError for one that is not registered)."""
    for registration in REGISTRY:
        if registration.protocol == protocol:
            return cast(Driver, _load(registration.driver))
    raise KeyError(protocol)


def protocol_of_profile(profile: str) -> str | None:
    """The protocol whose driver ships ``profile``, or None."""
    for protocol, names in all_profiles().items():
        if profile in names:
            return protocol
    return None


def all_profiles() -> dict[str, tuple[str, ...]]:
    """Every driver's shipped profiles, by protocol."""
    return {r.protocol: tuple(_load(r.profiles)()) for r in REGISTRY if r.profiles is not None}


def config_model(protocol: str) -> type[DeviceConfigBase]:
    for registration in REGISTRY:
        if registration.protocol == protocol:
            return cast(type[DeviceConfigBase], _load(registration.config))
    raise KeyError(protocol)
