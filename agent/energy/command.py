"""`edge-agent energy`: the report read from the local buffer (the only I/O in agent.energy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from agent.core.clock import system_clock
from agent.core.errors import AgentError
from agent.core.record import StoredReading
from agent.energy.config import EnergyConfig
from agent.energy.intervals import thin_rows
from agent.energy.report import (
    SiteLike,
    energy_report,
    parse_period_start,
    render_csv,
    render_text,
    report_window,
)

__all__ = ["print_energy_report"]

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
    out: TextIO,
    now: int | None = None,
) -> int:
    """Print the report of `count` periods from `start` (default: the current period)."""
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
