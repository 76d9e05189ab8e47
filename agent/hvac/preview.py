"""``edge-agent schedule preview``: the states the agent would apply, per zone and time, and why.

    edge-agent schedule preview --config site.yaml [--from 2026-01-01] [--days 7] [--json]

Each row is one zone over one interval with a constant wanted state: mode, setpoint, on, and
the reasons (kind of day — holiday, make-up workday —, period, season, override, clamp), and
where the zone's room temperature comes from (its room sensor while fresh, else its device's
own point: agent.hvac.room), as the controller's audit events name it.
A season decided by outdoor temperature is shown by its date spans, the fallback the
controller also uses without a reading.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from agent.hvac.overrides import Override
from agent.hvac.program import HvacConfig
from agent.hvac.room import room_sources
from agent.hvac.state import ScheduleContext, mode_shown, next_boundary, wanted_state

__all__ = ["EX_CONFIG", "PreviewRow", "format_rows", "preview_rows", "to_json"]

EX_CONFIG = 78  # as agent.cli: a config that cannot be used
MAX_DAYS = 366


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One zone over [start, end) in one wanted state."""

    zone: str
    start: datetime
    end: datetime
    mode: str
    setpoint: float | None
    on: bool
    reasons: list[str]
    room: tuple[str, ...] = ()  # the zone's room temperature sources, preferred first

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "zone": self.zone,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "mode": self.mode,
            "setpoint": self.setpoint,
            "on": self.on,
            "reasons": self.reasons,
        }
        if self.room:  # only zones with a room temperature source carry the key
            found["room_temperature"] = list(self.room)
        return found


def preview_rows(
    hvac: HvacConfig,
    tz: str,
    *,
    start: date,
    days: int,
    overrides: Mapping[str, Override] | None = None,
) -> list[PreviewRow]:
    """Rows for every zone from ``start`` 00:00 for ``days`` days, in site local time."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1 to {MAX_DAYS}, not {days}")
    context = ScheduleContext.for_site(hvac, tz)
    if overrides:
        context = ScheduleContext(
            hvac=hvac, tz=context.tz, calendar=context.calendar, overrides=dict(overrides)
        )
    first = datetime.combine(start, time(0), tzinfo=context.tz)
    last = datetime.combine(start + timedelta(days=days), time(0), tzinfo=context.tz)
    rows: list[PreviewRow] = []
    for zone in hvac.zones:
        room = tuple(room_sources(hvac.zones[zone]))
        at = first
        while at < last:
            wanted = wanted_state(zone, at, context)
            end = min(next_boundary(zone, at, context), last)
            setpoint = wanted.setpoint
            mode = mode_shown(hvac, zone, wanted)
            row = PreviewRow(zone, at, end, mode, setpoint, wanted.on, wanted.reasons, room)
            previous = rows[-1] if rows else None
            if (
                previous is not None
                and previous.zone == zone
                and previous.end == at
                and (previous.mode, previous.setpoint, previous.on, previous.reasons)
                == (row.mode, row.setpoint, row.on, row.reasons)
            ):
                rows[-1] = PreviewRow(
                    zone, previous.start, end, row.mode, setpoint, row.on, row.reasons, room
                )
            else:
                rows.append(row)
            at = end
    return rows


def _when(moment: datetime, *, after: datetime | None = None) -> str:
    if after is not None and moment.date() == after.date():
        return moment.strftime("%H:%M")
    if (
        after is not None
        and moment.time() == time(0)
        and moment.date() == after.date() + timedelta(days=1)
    ):
        return "24:00"
    return moment.strftime("%a %Y-%m-%d %H:%M")


def _state(row: PreviewRow) -> str:
    if not row.on:
        return "off"
    if row.setpoint is None:
        return row.mode
    return f"{row.mode} {row.setpoint:g} °C"


def format_rows(rows: list[PreviewRow], warnings: list[str] | None = None) -> str:
    """The rows as text for a terminal, zone by zone."""
    lines = [f"warning: {message}" for message in warnings or []]
    zone = None
    for row in rows:
        if row.zone != zone:
            zone = row.zone
            room = ", else ".join(row.room)
            lines.append(f"{zone}:" + (f" (room temperature: {room})" if room else ""))
        span = f"{_when(row.start)} - {_when(row.end, after=row.start)}"
        lines.append(f"  {span:<34} {_state(row):<14} {'; '.join(row.reasons)}")
    return "\n".join(lines) + "\n"


def to_json(rows: list[PreviewRow], warnings: list[str] | None = None) -> str:
    return json.dumps(
        {"warnings": warnings or [], "rows": [row.to_dict() for row in rows]},
        ensure_ascii=False,
        indent=2,
    )
