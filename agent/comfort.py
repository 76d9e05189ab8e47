"""``edge-agent comfort``: did the rooms keep to the temperature policy while they were in use?

    edge-agent comfort --config site.yaml --data-dir /var/lib/edge-agent [--from 2026-07-01]
                       [--days 7] [--csv]

Per zone that has a room sensor and per local day, from the readings in the buffer. A zone's
room sensor is the one its ``room_sensor`` names (device or device.point, as the controller
reads it); a zone without one takes every device that says ``zone: <the zone>`` and has a
``temperature`` point (e.g. a BLE thermometer):

- ``occupied``: the hours the zone's HVAC schedule had the unit on (the same schedule, calendar
  and season `schedule preview` shows);
- ``cooled below`` the zone's cooling minimum (26 °C under the public-building policy, unless the
  zone carries an exemption): occupied hours in cooling with the room colder than that — energy
  spent beyond the policy;
- ``heated above`` the heating maximum (20 °C): the same in heating;
- ``no data``: occupied hours the sensor did not cover (a reading counts until the next one, for
  at most the sensor's stale ``timeout``, else 10 minutes), so a missing sensor never reads as
  compliance.

The room temperature is the sensor's, not the zone controller's own: that is the point of
hanging a thermometer in the room.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from agent.core.errors import AgentError
from agent.core.record import Quality, StoredReading
from agent.hvac.program import ROOM_POINT

__all__ = ["ComfortRow", "comfort_command", "comfort_rows", "print_comfort"]

DEFAULT_HOLD_S = 600.0  # how long a reading stands for the room when the sensor has no timeout


@dataclass(frozen=True, slots=True)
class ComfortRow:
    zone: str
    day: date
    sensor: str
    occupied_h: float
    cooled_below_h: float
    heated_above_h: float
    no_data_h: float
    cooling_min: float | None
    heating_max: float | None


def _segments(
    readings: Sequence[StoredReading], *, hold_s: float
) -> list[tuple[float, float, float]]:
    """(start, end, °C) spans, in epoch seconds, where the room's temperature is known."""
    good = [r for r in readings if r.quality is Quality.GOOD and isinstance(r.value, int | float)]
    spans: list[tuple[float, float, float]] = []
    for index, reading in enumerate(good):
        start = reading.ts_ms / 1000
        end = start + hold_s
        if index + 1 < len(good):
            end = min(end, good[index + 1].ts_ms / 1000)
        spans.append((start, end, float(reading.value)))  # type: ignore[arg-type]
    return spans


def _overlap(a: float, b: float, c: float, d: float) -> float:
    return max(0.0, min(b, d) - max(a, c))


def comfort_rows(config: Any, db: Path, *, start: date, days: int) -> list[ComfortRow]:
    """The rows of the report (see the module docstring); ``config`` is the site config."""
    from agent.hvac.policy import zone_limits
    from agent.hvac.preview import preview_rows
    from agent.store import export_readings

    hvac = config.hvac
    if hvac is None:
        raise AgentError("the config has no `hvac` section: comfort is judged by the schedules")
    tz = ZoneInfo(config.site.timezone)
    sensors = _room_sensors(hvac, config.devices)
    if not sensors:
        raise AgentError(
            "no device measures a zone: give an hvac zone `room_sensor: <device>`, or a room "
            "sensor `zone: <hvac zone>` (see README)"
        )
    schedule = preview_rows(hvac, config.site.timezone, start=start, days=days)
    begin = datetime(start.year, start.month, start.day, tzinfo=tz)
    since_ms, until_ms = _ms(begin), _ms(begin + timedelta(days=days))
    rows: list[ComfortRow] = []
    for zone, sensor, point in sensors:
        hold = float(getattr(sensor, "timeout", DEFAULT_HOLD_S) or DEFAULT_HOLD_S)
        readings = [
            r
            for r in export_readings(
                db, since_ms=since_ms - round(hold * 1000), until_ms=until_ms, device=sensor.name
            )
            if r.point == point
        ]
        spans = _segments(readings, hold_s=hold)
        limits = zone_limits(hvac, zone)
        periods = [row for row in schedule if row.zone == zone and row.on]
        label = sensor.name if point == ROOM_POINT else f"{sensor.name}.{point}"
        for offset in range(days):
            day = start + timedelta(days=offset)
            day_start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
            day_end = (
                datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)
            ).timestamp()
            rows.append(
                _day_row(
                    zone,
                    label,
                    day,
                    bounds=(day_start, day_end),
                    periods=periods,
                    spans=spans,
                    limits=limits,
                )
            )
    return rows


def _room_sensors(hvac: Any, devices: Iterable[Any]) -> list[tuple[str, Any, str]]:
    """(zone, device, point) of each zone's room sensors: the one its ``room_sensor`` names,
    alone, since that is the one the controller reads (agent.hvac.room); else the devices that
    say ``zone: <the zone>`` with a temperature point."""
    devices = list(devices)
    by_name = {d.name: d for d in devices}
    found: list[tuple[str, Any, str]] = []
    for zone, config in hvac.zones.items():
        room = config.room_sensor_point()
        if room is not None:
            device = by_name.get(room[0])
            if device is not None and room[1] in device.point_names():
                found.append((zone, device, room[1]))
            continue
        found.extend(
            (zone, d, ROOM_POINT)
            for d in devices
            if getattr(d, "zone", None) == zone and ROOM_POINT in d.point_names()
        )
    return found


def _day_row(
    zone: str,
    sensor: str,
    day: date,
    *,
    bounds: tuple[float, float],
    periods: Iterable[Any],
    spans: Sequence[tuple[float, float, float]],
    limits: Any,
) -> ComfortRow:
    occupied = cooled = heated = covered = 0.0
    for period in periods:
        a = max(period.start.timestamp(), bounds[0])
        b = min(period.end.timestamp(), bounds[1])
        if b <= a:
            continue
        occupied += b - a
        for start, end, celsius in spans:
            both = _overlap(a, b, start, end)
            covered += both
            if period.mode == "cool" and limits.cooling_min is not None:
                cooled += both if celsius < limits.cooling_min else 0.0
            if period.mode == "heat" and limits.heating_max is not None:
                heated += both if celsius > limits.heating_max else 0.0
    return ComfortRow(
        zone=zone,
        day=day,
        sensor=sensor,
        occupied_h=occupied / 3600,
        cooled_below_h=cooled / 3600,
        heated_above_h=heated / 3600,
        no_data_h=max(occupied - covered, 0.0) / 3600,
        cooling_min=limits.cooling_min,
        heating_max=limits.heating_max,
    )


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def print_comfort(
    config: Any,
    db: Path,
    *,
    start: date,
    days: int,
    as_csv: bool = False,
    out: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    if not db.is_file():
        raise AgentError(f"there is no buffer at {db}: give the agent's --data-dir")
    rows = comfort_rows(config, db, start=start, days=days)
    header = ["zone", "day", "sensor", "occupied_h", "cooled_below_h", "heated_above_h",
              "no_data_h", "cooling_min", "heating_max"]  # fmt: skip
    if as_csv:
        writer = csv.writer(out)
        writer.writerow(header)
        for r in rows:
            writer.writerow(
                [r.zone, r.day.isoformat(), r.sensor, f"{r.occupied_h:.2f}",
                 f"{r.cooled_below_h:.2f}", f"{r.heated_above_h:.2f}", f"{r.no_data_h:.2f}",
                 r.cooling_min, r.heating_max]
            )  # fmt: skip
        return 0
    out.write(f"Comfort against the temperature policy: {config.site.name} ({config.site.id})\n")
    for r in rows:
        limits = []
        if r.cooling_min is not None:
            limits.append(f"{r.cooled_below_h:.2f} h cooled below {r.cooling_min:g} °C")
        if r.heating_max is not None:
            limits.append(f"{r.heated_above_h:.2f} h heated above {r.heating_max:g} °C")
        out.write(
            f"  {r.day.isoformat()}  {r.zone:<10} {r.sensor:<14} occupied {r.occupied_h:5.2f} h: "
            + ", ".join(limits)
            + (f"; no sensor data for {r.no_data_h:.2f} h" if r.no_data_h > 0.005 else "")
            + "\n"
        )
    return 0


def comfort_command(args: Any, *, db: Path) -> int:
    """The CLI command: ``--config``, ``--from`` (default today, site time), ``--days``."""
    from agent.config.loader import load_config
    from agent.core.clock import system_clock

    # Reads the buffer only (a copy on a laptop has no secrets); a ConfigError exits 78.
    config = load_config(args.config, check_files=False)
    if not 1 <= args.days <= 366:
        print("edge-agent comfort: --days is 1 to 366", file=sys.stderr)
        return 2
    tz = ZoneInfo(config.site.timezone)
    start = args.start or system_clock().wall().astimezone(tz).date()
    return print_comfort(config, db, start=start, days=args.days, as_csv=args.csv)
