"""Durations as technicians write them: ``5s``, ``1m``, ``250ms``, ``2h``, or a bare number of seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

__all__ = ["Duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``5s``, ``1.5m``, ``250ms``, ``2h``, ``1d`` or a number of seconds."""
    if isinstance(value, bool):  # YAML `yes` must not become 1 second
        raise ValueError("a duration must be a number of seconds or text like 5s, 1m, 250ms")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            number, unit = match.groups()
            return float(number) * _UNITS[unit or "s"]
        raise ValueError(f"{value!r} is not a duration; write e.g. 5s, 1m, 250ms or 2h")
    raise ValueError("a duration must be a number of seconds or text like 5s, 1m, 250ms")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|min|m|h|d)?$"},
            ]
        }
    ),
    Field(gt=0),
]
