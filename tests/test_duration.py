"""Durations as technicians write them."""

from __future__ import annotations

import pytest

from agent.core.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0), ("250ms", 0.25), ("1m", 60.0), ("2min", 120.0), ("1.5h", 5400.0),
        ("1d", 86400.0), ("30", 30.0), ("6m30s", 390.0), ("1h30m", 5400.0), ("1h 30m", 5400.0),
        (15, 15.0), (0.5, 0.5),
    ],
)  # fmt: skip
def test_durations_people_write(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m5", "", "1h30", "fast", True, None, [1], "400d", 1e300])
def test_what_is_not_a_duration_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
