"""Equal point configs of a validated site config, kept once.

A site's devices mostly repeat the same points: every meter of a type takes its profile's, or a
technician copies one meter's block to the next. Validation makes one model per point and
device (about 800 bytes each: 7,000 points of 200 meters held 5.6 MB for the life of the agent);
the models are frozen, so equal ones can be the same object: after this, a point config is kept
once however many devices have it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable
from types import NoneType
from typing import Any

from pydantic import BaseModel

__all__ = ["share_equal_points"]


def share_equal_points(devices: Iterable[Any]) -> None:
    """Replace, in each device's ``points`` mapping, every point model equal to one seen before
    (same model type, same values, same fields written in the file) by that one."""
    seen: dict[Hashable, BaseModel] = {}
    for device in devices:
        points = getattr(device, "points", None)
        if not isinstance(points, dict):
            continue
        for name, point in points.items():
            if not isinstance(point, BaseModel) or not point.model_config.get("frozen"):
                continue
            key = _key(point)
            if key is None:
                continue
            shared = seen.setdefault(key, point)
            if shared is not point:
                points[name] = shared


def _key(point: BaseModel) -> Hashable | None:
    """What makes two point models interchangeable, or None when a value is not a plain one (a
    list, a nested model): such a point is kept as it is. The values are compared by their
    text, which tells apart what ``==`` does not (-0.0 from 0.0, True from 1) and is made in C
    (this runs for every point of every device, at each start)."""
    values = point.__dict__
    if not _plain(frozenset(map(type, values.values()))):
        return None
    return type(point), repr(tuple(values.values())), frozenset(point.model_fields_set)


@functools.cache
def _plain(kinds: frozenset[type]) -> bool:
    # Enums are str or int subclasses (their text names the member), bool is an int.
    return all(issubclass(kind, str | int | float | NoneType) for kind in kinds)
