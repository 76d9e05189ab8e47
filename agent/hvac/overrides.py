"""Temporary overrides: a zone run at a given mode and/or setpoint until a time.

An override replaces the programme's period for its zone; the policy limits still clamp it. It
ends at `until` (schedule time, see agent.hvac.clock), when cleared, or when replaced by the
next override of the same zone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.hvac.program import Mode

__all__ = ["Override", "OverrideBook"]


@dataclass(frozen=True, slots=True)
class Override:
    """One zone's override."""

    zone: str
    id: str  # the command id that set it
    until: datetime  # aware
    mode: Mode | None = None  # None: the scheduled (or season's) mode
    setpoint: float | None = None  # None: the scheduled (or comfort) setpoint
    source: str = "mqtt"  # mqtt / cli
    set_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.until.tzinfo is None:
            raise ValueError("an override's `until` must carry its time zone")

    def active(self, at: datetime) -> bool:
        return at < self.until

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "id": self.id,
            "until": self.until.isoformat(),
            "mode": None if self.mode is None else self.mode.value,
            "setpoint": self.setpoint,
            "source": self.source,
            "set_at": None if self.set_at is None else self.set_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Override:
        return cls(
            zone=str(data["zone"]),
            id=str(data["id"]),
            until=datetime.fromisoformat(data["until"]),
            mode=None if data.get("mode") is None else Mode(data["mode"]),
            setpoint=None if data.get("setpoint") is None else float(data["setpoint"]),
            source=str(data.get("source", "mqtt")),
            set_at=None if data.get("set_at") is None else datetime.fromisoformat(data["set_at"]),
        )


class OverrideBook(Mapping[str, Override]):
    """The overrides in force, one per zone at most. A read-only mapping zone -> Override."""

    def __init__(self, overrides: list[Override] | None = None) -> None:
        self._by_zone: dict[str, Override] = {o.zone: o for o in overrides or []}
        self.version = 0  # bumped on every change, so the controller sees a new override at once

    def __getitem__(self, zone: str) -> Override:
        return self._by_zone[zone]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_zone)

    def __len__(self) -> int:
        return len(self._by_zone)

    def set(self, override: Override) -> Override | None:
        """Put ``override`` in force; returns the one it replaces."""
        previous = self._by_zone.get(override.zone)
        self._by_zone[override.zone] = override
        self.version += 1
        return previous

    def clear(self, zone: str) -> Override | None:
        previous = self._by_zone.pop(zone, None)
        if previous is not None:
            self.version += 1
        return previous

    def prune(self, at: datetime) -> list[Override]:
        """Drop the overrides that have ended by ``at``; returns them."""
        ended = [o for o in self._by_zone.values() if not o.active(at)]
        for override in ended:
            del self._by_zone[override.zone]
        if ended:
            self.version += 1
        return ended

    def to_json(self) -> str:
        """For persisting the book across restarts (the lead's store keeps it)."""
        return json.dumps([o.to_dict() for o in self._by_zone.values()], ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> OverrideBook:
        return cls([Override.from_dict(item) for item in json.loads(text)])
