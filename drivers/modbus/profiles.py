"""The shipped library of device profiles (drivers/modbus/profiles/*.yaml).

A profile gives a device's points (and defaults such as word order) so a technician writes
``profile: eastron-sdm630`` and a unit id instead of thirty register lines. Points named in
the site config override the profile's point of the same name, whole.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from ruamel.yaml import YAML

__all__ = ["DEVICE_DEFAULT_KEYS", "load_profile", "profile_names"]

# Device-level keys a profile may set; the site config's own value wins.
DEVICE_DEFAULT_KEYS = ("word_order", "byte_order", "max_registers", "interval")


@functools.cache
def profile_names() -> tuple[str, ...]:
    folder = resources.files("drivers.modbus") / "profiles"
    return tuple(
        sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
    )


@functools.cache
def _load(name: str) -> dict[str, Any]:
    text = (resources.files("drivers.modbus") / "profiles" / f"{name}.yaml").read_text("utf-8")
    data = YAML(typ="safe", pure=True).load(text)
    if not isinstance(data, dict) or not isinstance(data.get("points"), dict):
        # A packaging bug, not a user error: crash loudly.
        raise RuntimeError(f"shipped profile {name!r} is malformed: it needs `points`")  # noqa: TRY004
    return data


def load_profile(name: str) -> dict[str, Any]:
    """The raw profile (``points`` and optional ``defaults``); KeyError if there is none."""
    if name not in profile_names():
        raise KeyError(name)
    return _load(name)
