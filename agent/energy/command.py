"""`edge-agent energy`: the report, or each meter's intervals (`--intervals`), read from the local
buffer (the only I/O in agent.energy)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from agent.core.clock import system_clock
from agent.core.errors import AgentError
from agent.core.record import StoredReading
from agent.energy.config import EnergyConfig
from agent.energy.intervals import Interval, build_intervals, thin_rows
from agent.energy.report import (
    SiteLike,
    energy_report,
    parse_period_start,
    render_csv,
    render_text,
    report_window,
)

__all__ = ["interval_listing", "print_energy_report"]

# A counter read every second or two needs no such resolution for 15-minute energy.
_THIN_MS = 60_000


def print_energy_report(
    energy: EnergyConfig | None,
    *,
    site: SiteLike,
    db: Path,
    period: str = "day",
    start: str | None = None,
    count: int = 1,
    as_csv: bool = False,
    intervals: bool = False,
    out: TextIO,
    now: int | None = None,
) -> int:
    """Print the report of `count` periods from `start` (default: the current period); with
    ``intervals``, each meter's base intervals over those periods instead of the totals."""
    from agent.store import export_readings

    if energy is None:
        raise AgentError(
            "the config has no `energy` section: list the meters there (see docs/energy.md)"
        )
    if not db.is_file():
        raise AgentError(f"there is no buffer at {db}: give the agent's --data-dir (or --db)")
    now = system_clock().now_ms() if now is None else now
    try:
        start_ms = parse_period_start(start, tz=site.timezone) if start else now
    except ValueError as exc:
        raise AgentError(f"--from: {exc}") from None
    report_start, report_end, read_from, read_until = report_window(
        energy, tz=site.timezone, period=period, start_ms=start_ms, count=count
    )
    wanted = {(meter.device, meter.point) for meter in energy.meters}

    def rows() -> Iterator[StoredReading]:
        for device in sorted({device for device, _point in wanted}):
            for row in export_readings(db, since_ms=read_from, until_ms=read_until, device=device):
                if (row.device, row.point) in wanted:
                    yield row

    every = min(_THIN_MS, round(energy.max_step * 500))
    if intervals:
        found = [
            interval
            for interval in build_intervals(
                thin_rows(rows(), every), energy, tz=site.timezone
            )
            if report_start <= interval.start_ms < report_end
        ]
        listing = interval_listing(
            found, energy, site=site, start_ms=report_start, end_ms=report_end, as_csv=as_csv
        )
        out.write(listing)
        return 0
    report = energy_report(
        thin_rows(rows(), every),
        energy,
        site=site,
        period=period,
        start_ms=report_start,
        end_ms=report_end,
        now_ms=now,
    )
    out.write(render_csv(report) if as_csv else render_text(report))
    return 0


def interval_listing(
    intervals: list[Interval],
    energy: EnergyConfig,
    *,
    site: SiteLike,
    start_ms: int,
    end_ms: int,
    as_csv: bool = False,
) -> str:
    """Each meter's base intervals (in its unit, with their quality), meters in config order:
    the figures the uplink sends and every rollup sums. An interval without readings around it
    is missing from the list (the report's completeness counts it)."""
    zone = ZoneInfo(site.timezone)
    by_meter: dict[str, list[Interval]] = {}
    for interval in sorted(intervals, key=lambda i: i.start_ms):
        by_meter.setdefault(interval.meter, []).append(interval)
    if as_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["meter", "start", "end", "value", "unit", "quality", "flags"])
        for meter in energy.meters:
            for i in by_meter.get(meter.name, []):
                record = i.to_record()
                writer.writerow(
                    [meter.name, record["start"], record["end"], f"{i.value:.10g}", i.unit,
                     i.quality, " ".join(record["flags"])]
                )  # fmt: skip
        return buffer.getvalue()
    first = datetime.fromtimestamp(start_ms / 1000, zone).date()
    last = datetime.fromtimestamp((end_ms - 1) / 1000, zone).date()
    out = [
        f"Energy intervals: {site.name} ({site.id}), {first} to {last} ({site.timezone}), "
        f"{energy.interval_minutes} min"
    ]
    for meter in energy.meters:
        found = by_meter.get(meter.name, [])
        out += ["", f"{meter.name} ({meter.energy_type.value}, {meter.energy_unit}): "
                f"{len(found)} intervals"]  # fmt: skip
        for i in found:
            begin = datetime.fromtimestamp(i.start_ms / 1000, zone)
            end = datetime.fromtimestamp(i.end_ms / 1000, zone)
            flags = f" ({', '.join(sorted(i.flags))})" if i.flags else ""
            out.append(
                f"  {begin:%Y-%m-%d %H:%M} - {end:%H:%M} {i.value:>12.4f} {i.unit:<5} "
                f"{i.quality}{flags}"
            )
    return "\n".join(out) + "\n"
