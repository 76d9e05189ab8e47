"""``edge-agent``: the service and the technician's commands.

Exit status: 0 success, 1 a runtime failure explained in one sentence, 2 bad command-line
usage, 78 (EX_CONFIG, sysexits.h) a config that cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from agent import __version__
from agent.core.errors import AgentError, ConfigError

__all__ = ["main"]

EX_CONFIG = 78
DEFAULT_DATA_DIR = Path("./data")
# The commands that agent.commission and agent.schedule_cli add. Importing those modules costs
# about a quarter of a second (pymodbus, every device driver, the HVAC models), so they are
# registered only when the command line may name one of them (or names no command: --help).
_CORE_COMMANDS = frozenset(
    {"run", "validate", "schema", "demo", "export", "energy", "comfort", "sync"}
)
# `status` and `store check` (agent.status) read the platform's and the store's summaries,
# whose modules cost `run` about 1.3 MB: registered unless the command line names another.
_STATUS_COMMANDS = frozenset({"status", "store"})


def _default_data_dir() -> Path:
    # Under systemd, StateDirectory= sets STATE_DIRECTORY (e.g. /var/lib/edge-agent).
    state = os.environ.get("STATE_DIRECTORY")
    return Path(state.split(":")[0]) if state else DEFAULT_DATA_DIR


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Building Edge Agent: Modbus meters, HVAC and PV to a durable buffer and MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("EDGE_AGENT_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log detail (default info)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the service on a site config")
    run.add_argument("--config", required=True, type=Path, help="site config (YAML)")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the buffer lives (default $STATE_DIRECTORY or ./data)",
    )

    validate = sub.add_parser(
        "validate", help="check a site config; exit 0, or 78 with located errors"
    )
    validate.add_argument("file", type=Path)

    sub.add_parser("schema", help="print the JSON Schema of the site config (for editors)")

    demo = sub.add_parser("demo", help="run the agent on a simulated building, with a live view")
    demo.add_argument(
        "--for",
        dest="duration",
        default=None,
        help="stop after this long, e.g. 20s or 5m (default: until Ctrl-C)",
    )
    demo.add_argument("--data-dir", type=Path, default=Path("./demo-data"))
    demo.add_argument(
        "--mqtt", default=None, metavar="URL", help="also publish, e.g. mqtt://127.0.0.1:1883"
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        # Faster than 1 makes the simulated counters outrun the wall clock that stamps the
        # readings, so energy intervals rightly reject their steps as spikes.
        help="simulated seconds per real second (default 1)",
    )

    export = sub.add_parser("export", help="print stored reading records, one per line")
    export.add_argument("--data-dir", type=Path, default=None)
    export.add_argument(
        "--db", type=Path, default=None, help="the database file (default DATA_DIR/readings.db)"
    )
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--since", default=None, metavar="T", help="ISO 8601 time, inclusive")
    export.add_argument("--until", default=None, metavar="T", help="ISO 8601 time, exclusive")
    export.add_argument("--device", default=None)

    energy = sub.add_parser(
        "energy", help="consumption by type and sub-item, PV, tce, CO2, quota use, completeness"
    )
    energy.add_argument("--config", required=True, type=Path, help="site config (YAML)")
    energy.add_argument("--data-dir", type=Path, default=None)
    energy.add_argument("--db", type=Path, default=None)
    energy.add_argument("--period", choices=["day", "month"], default="day")
    energy.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="DATE",
        help="first day or month, e.g. 2026-07-01 or 2026-07 (default: the current one)",
    )
    energy.add_argument("--count", type=int, default=1, help="number of periods (default 1)")
    energy.add_argument("--csv", action="store_true", help="one row per figure, for spreadsheets")
    energy.add_argument(
        "--intervals",
        action="store_true",
        help="each meter's base intervals (e.g. 15 min, in m3 or kWh) instead of the totals",
    )

    comfort = sub.add_parser(
        "comfort",
        help="per zone and day: occupied hours cooled below 26 °C / heated above 20 °C",
    )
    comfort.add_argument("--config", required=True, type=Path, help="site config (YAML)")
    comfort.add_argument("--data-dir", type=Path, default=None)
    comfort.add_argument("--db", type=Path, default=None)
    comfort.add_argument(
        "--from", dest="start", type=date.fromisoformat, default=None, metavar="DATE",
        help="first day, e.g. 2026-07-01 (default: today in the site's time zone)",
    )  # fmt: skip
    comfort.add_argument("--days", type=int, default=1, help="number of days (default 1)")
    comfort.add_argument("--csv", action="store_true", help="one row per zone and day")

    words = set(argv) if argv is not None else _STATUS_COMMANDS  # None: every command
    others = _CORE_COMMANDS.union(*_MODULE_COMMANDS.values())
    if words & _STATUS_COMMANDS or not words & others:
        from agent.status import add_commands as add_store_commands

        add_store_commands(sub)  # status, store check
    sync = sub.add_parser(
        "sync", help="push every reading not yet sent; exit 0 only when the broker has them all"
    )
    sync.add_argument("--data-dir", type=Path, default=None)
    sync.add_argument(
        "--mqtt", default=None, metavar="URL", help="broker (default: where the agent published)"
    )
    sync.add_argument(
        "--config", type=Path, default=None, metavar="FILE", help="site config with the uplink"
    )
    demo.add_argument(
        "--platform", action="store_true", help="also report to the reference energy platform"
    )
    _add_module_commands(sub, argv)
    return parser


# Commands that live with their own module, which adds them to the parser: imported only when
# the command line may name one of them, so `run` and `validate` start without them.
_MODULE_COMMANDS = {
    "agent.commission": frozenset({"read", "scan"}),
    "agent.schedule_cli": frozenset({"schedule", "override"}),
    "agent.install": frozenset({"install", "uninstall"}),
    "agent.pulses_cli": frozenset({"pulses"}),
    "agent.platform.check": frozenset({"platform"}),
    "agent.savings_cli": frozenset({"savings"}),
}


def _add_module_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], argv: Sequence[str] | None
) -> None:
    """The commands of `_MODULE_COMMANDS`, unless ``argv`` names a core command only."""
    words = set(argv) if argv is not None else set()  # None: every command
    named = set().union(*_MODULE_COMMANDS.values())
    if words & (_CORE_COMMANDS | _STATUS_COMMANDS) and not words & named:
        return
    for module in _MODULE_COMMANDS:
        if module == "agent.platform.check":
            from agent.config.loader import load_config
            from agent.platform.check import add_commands

            add_commands(sub, load=load_config)
        else:
            importlib.import_module(module).add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pymodbus logs every failed request at error level; the pollers log device state once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EX_CONFIG
    except AgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-agent export | head`
        sys.stderr.close()
        return 0


def _dispatch(args: argparse.Namespace) -> int:  # noqa: PLR0912 -- one branch per command
    command = args.command
    if command == "validate":
        from agent.config.loader import load_config

        config = load_config(args.file)
        print(
            f"{args.file}: ok: site {config.site.id}, {len(config.devices)} devices, "
            f"{sum(len(d.point_names()) for d in config.devices)} points"
        )
        return 0
    if command == "schema":
        from agent.config.reference import json_schema

        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return 0
    if command == "run":
        from agent.config.loader import load_config

        config = load_config(args.config)  # a config error exits 78 from the main process
        return _run_until_signal(
            _run_service(config, args.config, args.data_dir or _default_data_dir()),
            reload=True,
        )
    if command == "demo":
        from agent.core.durations import parse_duration
        from agent.demo import run_demo

        try:
            duration = parse_duration(args.duration) if args.duration else None
        except ValueError as exc:
            print(f"edge-agent demo: --for: {exc}", file=sys.stderr)
            return 2
        return _run_until_signal(
            lambda stop: run_demo(
                stop,
                data_dir=args.data_dir,
                mqtt_url=args.mqtt,
                duration=duration,
                speed=args.speed,
                platform=args.platform,
            )
        )
    if command == "export":
        from agent.export import export

        return export(
            _db_path(args),
            fmt=args.format,
            since=args.since,
            until=args.until,
            device=args.device,
            out=sys.stdout,
        )
    if command == "energy":
        from agent.config.loader import load_config
        from agent.energy.command import print_energy_report

        config = load_config(args.config, check_files=False)  # reads the buffer only
        code = print_energy_report(
            config.energy,
            site=config.site,
            db=_db_path(args),
            period=args.period,
            start=args.start,
            count=args.count,
            as_csv=args.csv,
            intervals=args.intervals,
            out=sys.stdout,
        )
        _platform_rates(args)
        return code
    if command == "comfort":
        from agent.comfort import comfort_command

        return comfort_command(args, db=_db_path(args))
    if command == "savings":
        from agent.savings_cli import dispatch as savings_dispatch

        return savings_dispatch(args, db=_db_path(args))
    if command == "sync":
        from agent.sync import sync_command

        return sync_command(
            args.data_dir or _default_data_dir(), mqtt_url=args.mqtt, config_path=args.config
        )
    if command in ("status", "store"):
        from agent.status import dispatch as store_dispatch

        return store_dispatch(args, db=_db_path(args))
    if command in _DISPATCHERS:  # commands whose module parses and runs them
        run_module: Callable[[argparse.Namespace], int] = importlib.import_module(
            _DISPATCHERS[command]
        ).dispatch
        return run_module(args)
    if command in ("read", "scan"):
        from agent.commission import dispatch

        return asyncio.run(dispatch(args))
    # `edge-agent platform ...` (agent.platform.check) brings its own handler.
    handler = getattr(args, "handler", None)
    assert handler is not None, command
    return int(handler(args))


def _platform_rates(args: argparse.Namespace) -> None:
    """After `edge-agent energy` (not in CSV): the platform's reporting rate, if there is one."""
    from agent.core.clock import system_clock
    from agent.platform.summary import print_platform_rates

    if not args.csv:
        print_platform_rates(_db_path(args), out=sys.stdout, now_ms=system_clock().now_ms())


_DISPATCHERS = {
    "schedule": "agent.schedule_cli",
    "override": "agent.schedule_cli",
    "install": "agent.install",
    "uninstall": "agent.install",
    "pulses": "agent.pulses_cli",
}


def _db_path(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return Path(args.db)
    return (args.data_dir or _default_data_dir()) / "readings.db"


def _run_service(config, config_path: Path, data_dir: Path):  # type: ignore[no-untyped-def]
    import faulthandler

    from agent.daemon import run_service

    # systemd's watchdog kills a hung agent with SIGABRT: the journal then shows every
    # thread's stack, i.e. where the event loop was stuck.
    faulthandler.enable()
    return lambda stop, reload: run_service(
        config, config_path=config_path, data_dir=data_dir, stop=stop, reload=reload
    )


def _run_until_signal(start, *, reload: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Run ``start(stop_event)`` until it returns or SIGINT/SIGTERM asks it to stop cleanly;
    with ``reload``, ``start(stop_event, reload_event)`` and SIGHUP sets the second."""

    async def runner() -> int:
        stop, reloading = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if reload:
            loop.add_signal_handler(signal.SIGHUP, reloading.set)
        result = await (start(stop, reloading) if reload else start(stop))
        return int(result or 0)

    return asyncio.run(runner())
