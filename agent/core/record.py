"""The reading record: one shape in the store's export and on the wire.

A record is ``{"seq", "device", "point", "ts", "value", "unit", "quality"}``; ``ts`` is ISO 8601
UTC with milliseconds. A reading stamped before the gateway's clock was trusted (after a cold
boot without a real-time clock) also has ``"clock": "untrusted"``: its ``ts`` is not a real time.
``seq`` is given by the store when the reading is committed, strictly increasing across the
gateway and never reused, so a reading has no ``seq`` before it is stored.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Quality", "Reading", "StoredReading", "iso_to_ms", "ms_to_iso"]

Value = float | int | bool | str | None


class Quality(enum.IntEnum):
    """How far a value can be trusted. Stored as the integer, sent as the name."""

    GOOD = 0
    BAD = 1  # the read failed or the device answered an exception: the value is not a measurement
    STALE = 2  # the value is old (e.g. carried over) and must not be taken as current

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Quality:
        return cls[label.upper()]


# The formatted second of recent timestamps: every reading of a poll cycle (and of an uplink
# batch) falls in the same few seconds, and formatting a datetime costs about ten times the
# look-up. Bounded: cleared when full. Shared by threads: a dict's get and set are atomic.
_SECONDS: dict[int, str] = {}
_SECONDS_KEPT = 64


def ms_to_iso(ts_ms: int) -> str:
    """Epoch milliseconds to ISO 8601 UTC with milliseconds: 2026-11-26T05:40:25.123Z."""
    second, ms = divmod(ts_ms, 1000)
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        prefix = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _SECONDS[second] = prefix
    return f"{prefix}{ms:03d}Z"


def iso_to_ms(text: str) -> int:
    """Parse ISO 8601 (a naive time is taken as UTC) to milliseconds since the epoch."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


# Readings are made for every point of every cycle, twice (taken, then read back to be sent).
# A frozen dataclass's own __init__ sets each field through object.__setattr__, about four
# times what the slot descriptors cost (0.8 against 0.3 us for a Reading here): these two
# classes set their slots directly (still frozen: assigning a field raises).


@dataclass(frozen=True, slots=True, init=False)
class Reading:
    """A value taken from a device, not yet stored."""

    device: str
    point: str
    ts_ms: int
    value: Value
    unit: str
    quality: Quality = Quality.GOOD

    def __init__(  # noqa: PLR0917 - the dataclass's own signature, positional as it always was
        self,
        device: str,
        point: str,
        ts_ms: int,
        value: Value,
        unit: str,
        quality: Quality = Quality.GOOD,
    ) -> None:
        _r_device(self, device)
        _r_point(self, point)
        _r_ts_ms(self, ts_ms)
        _r_value(self, value)
        _r_unit(self, unit)
        _r_quality(self, quality)


@dataclass(frozen=True, slots=True, init=False)
class StoredReading:
    """A committed reading, with its gateway-wide sequence number."""

    seq: int
    device: str
    point: str
    ts_ms: int
    value: Value
    unit: str
    quality: Quality
    clock_untrusted: bool = False
    """Stamped before the clock was trusted, and not corrected since: ``ts`` is not real."""

    def __init__(  # noqa: PLR0917 - the dataclass's own signature, positional as it always was
        self,
        seq: int,
        device: str,
        point: str,
        ts_ms: int,
        value: Value,
        unit: str,
        quality: Quality,
        clock_untrusted: bool = False,
    ) -> None:
        _s_seq(self, seq)
        _s_device(self, device)
        _s_point(self, point)
        _s_ts_ms(self, ts_ms)
        _s_value(self, value)
        _s_unit(self, unit)
        _s_quality(self, quality)
        _s_clock_untrusted(self, clock_untrusted)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "seq": self.seq,
            "device": self.device,
            "point": self.point,
            "ts": ms_to_iso(self.ts_ms),
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality.label,
        }
        if self.clock_untrusted:
            record["clock"] = "untrusted"
        return record


def _setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The slot descriptor's setter of ``cls.name`` (what object.__setattr__ ends up calling)."""
    return cls.__dict__[name].__set__  # type: ignore[no-any-return]


_r_device, _r_point, _r_ts_ms, _r_value, _r_unit, _r_quality = (
    _setter(Reading, f) for f in ("device", "point", "ts_ms", "value", "unit", "quality")
)
_s_seq, _s_device, _s_point, _s_ts_ms, _s_value, _s_unit, _s_quality, _s_clock_untrusted = (
    _setter(StoredReading, f)
    for f in ("seq", "device", "point", "ts_ms", "value", "unit", "quality", "clock_untrusted")
)
