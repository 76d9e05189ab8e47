"""Equal point configs of a validated site config, kept once.

A site's devices mostly repeat the same points: every meter of a type takes its profile's, or a
technician copies one meter's block to the next. Validation makes one model per point and
device (about 800 bytes each: 7,000 points of 200 meters held 5.6 MB for the life of the agent);
the models are frozen, so equal ones can be the same object: after this, a point config is kept
once however many devices have it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
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
    """What makes two point models interchangeable, or None when a value cannot be compared
    this way (a list, a nested model): such a point is kept as it is."""
    values: list[tuple[str, type, object]] = []
    for field, value in point.__dict__.items():
        if not isinstance(value, str | int | float | None):  # enums are str or int subclasses
            return None
        # A float by its text: -0.0 and 0.0 are equal but not the same setting, and a NaN is
        # never equal to itself.
        values.append((field, type(value), repr(value) if isinstance(value, float) else value))
    return type(point), tuple(values), frozenset(point.model_fields_set)
