"""The shipped CJ/T 188 meter profiles (drivers/cjt188/profiles/*.yaml).

A profile names a meter class's request type byte, its default DI byte order and the points a
901F read gives, so a technician writes ``profile: cjt188-heat`` and an address. The file format
is described in a comment at the top of cjt188-water.yaml; every file cites its sources.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

from drivers.cjt188.data import POINT_UNITS, STATUS_POINTS, layout_for
from drivers.cjt188.frame import DI_ORDERS, DiOrder, MeterKind, classify_meter_type

__all__ = ["Cjt188Profile", "ProfilePoint", "load_profile", "profile_names", "profile_text"]

_PACKAGE = "drivers.cjt188"


@dataclass(frozen=True, slots=True)
class ProfilePoint:
    name: str
    unit: str  # "" for 0/1 status flags


@dataclass(frozen=True, slots=True)
class Cjt188Profile:
    """One shipped profile, checked against the codec's point names and layouts."""

    name: str
    meter_type: int
    kind: MeterKind
    description: str
    source: str
    di_order: DiOrder
    points: tuple[ProfilePoint, ...]

    @property
    def point_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.points)


@functools.cache
def profile_names() -> tuple[str, ...]:
    folder = resources.files(_PACKAGE) / "profiles"
    return tuple(
        sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
    )


def profile_text(name: str) -> str:
    """The profile's YAML source, comments included; KeyError if there is none."""
    if name not in profile_names():
        raise KeyError(name)
    return (resources.files(_PACKAGE) / "profiles" / f"{name}.yaml").read_text("utf-8")


def _malformed(name: str, why: str) -> RuntimeError:
    # A malformed shipped profile is a packaging bug, not a user error: crash loudly.
    return RuntimeError(f"shipped CJ/T 188 profile {name!r} is malformed: {why}")


def _parse(name: str, raw: Any) -> Cjt188Profile:
    if not isinstance(raw, dict):
        raise _malformed(name, "it is not a mapping")
    if raw.get("protocol") != "cjt188":
        raise _malformed(name, "`protocol` must be cjt188")
    meter_type = raw.get("meter_type")
    if not isinstance(meter_type, int) or not 0 <= meter_type <= 0xFF:
        raise _malformed(name, "`meter_type` is one byte, e.g. 0x10")
    kind = classify_meter_type(meter_type)
    if kind == "other":
        raise _malformed(name, f"meter_type 0x{meter_type:02X} is no water, heat or gas type")
    di_order = raw.get("di_order")
    if di_order not in DI_ORDERS:
        raise _malformed(name, f"`di_order` is one of {', '.join(DI_ORDERS)}")
    for key in ("description", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise _malformed(name, f"`{key}` is a line of text")
    entries = raw.get("points")
    if not isinstance(entries, list) or not entries:
        raise _malformed(name, "`points` is a list of {name, unit}")
    available = set(layout_for(kind).points) | set(STATUS_POINTS)
    points: list[ProfilePoint] = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"name", "unit"}:
            raise _malformed(name, f"point {entry!r} is not {{name, unit}}")
        point, unit = entry["name"], entry["unit"]
        if point not in available:
            raise _malformed(name, f"a {kind} meter's 901F reply has no point {point!r}")
        if POINT_UNITS.get(point) != unit:
            raise _malformed(name, f"{point} is published in {POINT_UNITS.get(point)!r}")
        points.append(ProfilePoint(point, unit))
    return Cjt188Profile(
        name=name,
        meter_type=meter_type,
        kind=kind,
        description=raw["description"].strip(),
        source=raw["source"].strip(),
        di_order=di_order,
        points=tuple(points),
    )


@functools.cache
def load_profile(name: str) -> Cjt188Profile:
    """A shipped profile by name ("cjt188-water", "cjt188-heat", ...); KeyError if none."""
    # ruamel.yaml only once a profile is read: a config of explicit points never loads it.
    from ruamel.yaml import YAML

    return _parse(name, YAML(typ="safe", pure=True).load(profile_text(name)))
