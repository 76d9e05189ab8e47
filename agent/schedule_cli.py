"""The technician's HVAC commands: ``edge-agent schedule preview`` and ``edge-agent override``.

Wired into agent.cli by ``add_commands(sub)`` and, for these command names, ``dispatch(args)``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from agent.core.clock import system_clock

__all__ = ["COMMANDS", "add_commands", "dispatch"]

COMMANDS = ("schedule", "override")
DEFAULT_DATA_DIR = Path("./data")


def _data_dir(given: Path | None) -> Path:
    # As agent.cli: under systemd, StateDirectory= sets STATE_DIRECTORY.
    if given is not None:
        return given
    state = os.environ.get("STATE_DIRECTORY")
    return Path(state.split(":")[0]) if state else DEFAULT_DATA_DIR


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``schedule preview`` and ``override set|clear`` to the CLI's subcommands."""
    schedule = subparsers.add_parser("schedule", help="HVAC schedules: what the agent would apply")
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    preview = actions.add_parser(
        "preview", help="the setpoints per zone and time, with the reason for each"
    )
    preview.add_argument("--config", required=True, type=Path, help="site config (YAML)")
    preview.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        default=None,
        metavar="DATE",
        help="first day, YYYY-MM-DD (default: today)",
    )
    preview.add_argument("--days", type=int, default=7, help="how many days (default 7)")
    preview.add_argument("--json", action="store_true", help="print JSON")

    override = subparsers.add_parser(
        "override", help="set or clear a temporary HVAC override on the running agent"
    )
    kinds = override.add_subparsers(dest="override_command", required=True, metavar="ACTION")
    set_ = kinds.add_parser("set", help="run a zone at a setpoint and/or mode for a while")
    set_.add_argument("--zone", required=True)
    set_.add_argument("--setpoint", type=float, default=None, help="°C")
    set_.add_argument(
        "--mode",
        choices=["cool", "heat", "fan", "off", "on"],
        default=None,
        help="on: a switch zone's (a relay or coil on the HVAC calendar)",
    )
    how_long = set_.add_mutually_exclusive_group()
    how_long.add_argument(
        "--for",
        dest="duration",
        default=None,
        metavar="DURATION",
        help="e.g. 90m or 2h (default: until the next schedule boundary)",
    )
    how_long.add_argument(
        "--until",
        type=datetime.fromisoformat,
        default=None,
        metavar="TIME",
        help="ISO 8601; without an offset, this machine's local time",
    )
    clear = kinds.add_parser("clear", help="end a zone's override")
    clear.add_argument("--zone", required=True)
    for parser in (set_, clear):
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="the agent's data directory (default $STATE_DIRECTORY or ./data)",
        )


def dispatch(args: argparse.Namespace) -> int:
    """Run ``schedule`` or ``override``; the exit status."""
    if args.command == "schedule":

        return run_preview(
            args.config, start=args.start, days=args.days, as_json=args.json, out=sys.stdout
        )
    from agent.hvac.spool import SPOOL_DIR, cli_override

    spool = _data_dir(args.data_dir) / SPOOL_DIR
    if args.override_command == "clear":
        return cli_override(spool, "clear", zone=args.zone)
    return cli_override(
        spool,
        "override",
        zone=args.zone,
        setpoint=args.setpoint,
        mode=args.mode,
        until=args.until,
        duration=args.duration,
    )


def run_preview(
    config_path: Path,
    *,
    start: date | None,
    days: int,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    """The CLI command: load the site config, print the preview; the exit status."""
    from agent.config.loader import load_config
    from agent.hvac.calendar import HolidayCalendar
    from agent.hvac.preview import EX_CONFIG, format_rows, preview_rows, to_json
    from agent.hvac.program import HvacConfig
    from agent.hvac.state import ScheduleContext

    config = load_config(config_path)  # ConfigError is reported by the CLI
    hvac: HvacConfig | None = getattr(config, "hvac", None)
    if hvac is None:
        print(f"{config_path}: the config has no `hvac` section to preview", file=sys.stderr)
        return EX_CONFIG
    tz = config.site.timezone
    if start is None:
        start = system_clock().wall().astimezone(ScheduleContext.for_site(hvac, tz).tz).date()
    rows = preview_rows(hvac, tz, start=start, days=days)
    calendar = HolidayCalendar(hvac.calendar)
    warnings: list[str] = []
    for offset in range(days):
        for message in calendar.warnings(start + timedelta(days=offset)):
            if message not in warnings:
                warnings.append(message)
    out.write(to_json(rows, warnings) + "\n" if as_json else format_rows(rows, warnings))
    return 0
