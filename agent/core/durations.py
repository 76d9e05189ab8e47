"""Durations as technicians write them: ``5s``, ``1m``, ``250ms``, ``1h30m``, or seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

__all__ = ["Duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_LONGEST = 366 * 86400.0
_WHAT = "a duration must be a number of seconds or text like 5s, 1m, 250ms"
_BARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")  # seconds
# One or more number-unit parts, largest first as people write them: 1h30m, 6m30s, 2d.
_PART = r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)"
_PATTERN = re.compile(rf"^\s*(?:{_PART}\s*)+$")
_PARTS = re.compile(_PART)


def parse_duration(value: Any) -> float:
    """Seconds from ``5s``, ``1.5m``, ``250ms``, ``2h``, ``1d`` or a number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        # bool first: YAML `true` must not become 1 second.
        raise ValueError(_WHAT)  # noqa: TRY004 - pydantic reports ValueError, not TypeError
    if isinstance(value, str):
        if bare := _BARE.match(value):
            seconds = float(bare.group(1))
        elif _PATTERN.match(value):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PARTS.findall(value))
        else:
            raise ValueError(f"{value!r} is not a duration; write e.g. 5s, 1m, 250ms or 1h30m")
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if not math.isfinite(seconds) or seconds > _LONGEST:
        raise ValueError("a duration must be at most 366 days")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|min|s|m|h|d)?)+$"},
            ]
        }
    ),
    Field(gt=0),
]
