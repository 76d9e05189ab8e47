"""The technician's commissioning commands: ``edge-agent read`` and ``edge-agent scan``.

    edge-agent read --profile eastron-sdm630 --tcp 192.168.1.50:502 --unit 1
    edge-agent read --profile chint-dtsu666 --serial /dev/ttyUSB0 --baud 9600 --unit 3 --json
    edge-agent read --config site.yaml --device main_meter --explain
    edge-agent scan --serial /dev/ttyUSB0 --baud 9600 --parity E --units 1-32

`read` reads every point of a device once through the agent's own poller, so it meets devices
exactly as the service will: a read the device refuses (exception 02 for a span over undefined
registers, 03 for a read too long, or a short reply) is split and every point still read. When
the first read taught the planner something, it reads again until nothing new is learned
(bounded), so the values come from the plan the service will use and ``--explain`` shows that
plan with its cost and what the device taught.

`scan` sends one small read to each unit id: a unit that answers with data or with any Modbus
exception is there; silence, or a gateway's 0x0A / 0x0B, means nothing is.

Wiring, in agent/cli.py: ``add_commands(sub)`` where the parser is built, and
``if command in COMMANDS: return asyncio.run(dispatch(args))`` in the dispatcher. Exit status:
0 done, 1 a failure told in one sentence (an AgentError, or points that could not be read),
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from agent.commission_meters import (
    METER_BAUDS,
    METER_PARITY,
    meter_config,
    read_meter,
    scan_meters,
)
from agent.core.configbase import DeviceConfigBase
from agent.core.durations import parse_duration
from agent.core.errors import AgentError
from agent.core.links import Link, SerialLinkConfig, TcpLinkConfig
from agent.core.record import Quality, Reading
from agent.core.suggest import did_you_mean
from agent.sources.registry import all_profiles, protocol_of_profile, protocols
from drivers.ble.backend import ScannerBackend
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.device import ModbusDeviceClient
from drivers.modbus.errors import (
    EXCEPTION_NAMES,
    DeviceUnavailableError,
    ModbusExceptionError,
    ShortReplyError,
)
from drivers.modbus.planner import Lesson, Plan
from drivers.modbus.spec import ModbusDevice, Table

__all__ = [
    "COMMANDS",
    "CommissioningError",
    "add_commands",
    "dispatch",
    "parse_endpoint",
    "parse_units",
    "run_read",
    "run_scan",
]

COMMANDS = ("read", "scan")

READ_TIMEOUT_S = 1.0
# Sensors advertise every few seconds (2.5 s for pvvx firmware's default): 20 s hears each
# several times.
BLE_SCAN_S = 20.0
# A unit that is there answers a one-register read within tens of milliseconds, even behind a
# gateway at 9600 baud: 0.2 s per silent unit keeps a scan of 1-247 under a minute.
SCAN_TIMEOUT_S = 0.2
# Reads of one `read` at most: the first, then more while each teaches the planner something
# (a refused merge, a length cap being narrowed down).
MAX_POLLS = 4
# Exception codes a Modbus TCP gateway sends for a unit that is not there (Modbus application
# protocol v1.1b3, section 7): 0x0A gateway path unavailable, 0x0B target failed to respond.
GATEWAY_NOBODY = (0x0A, 0x0B)
SERIAL_UNITS = range(1, 248)  # 0 is broadcast; 248-255 are reserved on a serial line
TCP_UNITS = range(256)  # a TCP device may use 0 or 255 for "this device"


class CommissioningError(AgentError):
    """A commissioning command could not do its job (the device or the bus did not answer)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


# ---- argument parsing ---------------------------------------------------------------------------


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, port 502; ``[v6addr]:PORT``) for argparse."""
    host, port = text, "502"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (port 1-65535)")
    return host, int(port)


def parse_units(text: str) -> tuple[int, ...]:
    """Unit ids as ``1-10,20,30-32`` for argparse, in the order given, each once."""
    units: dict[int, None] = {}
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of unit ids like 1-10,20")
        low, high = int(first), int(last) if dash else int(first)
        if low > high or high > max(TCP_UNITS):
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a range of unit ids 0-255")
        units.update(dict.fromkeys(range(low, high + 1)))
    return tuple(units)


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return seconds


def _bus_options(
    parser: argparse.ArgumentParser, *, with_config: bool, with_ble: bool = False
) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--tcp", type=parse_endpoint, metavar="HOST:PORT", help="a Modbus TCP device or gateway"
    )
    where.add_argument("--serial", metavar="PORT", help="an RS-485 adapter, e.g. /dev/ttyUSB0")
    if with_ble:
        where.add_argument(
            "--ble",
            nargs="?",
            const="hci0",
            metavar="ADAPTER",
            help="list the Bluetooth room sensors around (adapter default hci0)",
        )
    if with_config:
        where.add_argument(
            "--config", type=Path, metavar="FILE", help="a site config (use with --device)"
        )
    line = parser.add_argument_group("serial line (with --serial)")
    line.add_argument("--baud", type=int, metavar="N", help="bit/s (default 9600)")
    line.add_argument("--parity", choices=["N", "E", "O"], help="parity (default N)")
    line.add_argument("--stopbits", type=int, choices=[1, 2], help="stop bits (default 1)")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``read`` and ``scan`` to the CLI's subcommands."""
    read = subparsers.add_parser(
        "read",
        help="read every point of a device once (commissioning)",
        description="Read every point of a shipped profile, or of a device in a site config, "
        "once, and print name, value, unit and quality.",
    )
    _bus_options(read, with_config=True)
    read.add_argument("--profile", metavar="NAME", help="a shipped device profile")
    read.add_argument("--unit", type=int, metavar="N", help="the device's unit id (Modbus)")
    read.add_argument(
        "--address",
        metavar="DIGITS",
        help="the meter's address (DL/T 645: 12 digits; CJ/T 188: 14), with a meter profile",
    )
    read.add_argument("--device", metavar="NAME", help="a device of the --config file")
    read.add_argument(
        "--timeout", type=_duration, metavar="S", help="wait per request (default 1s, or the bus's)"
    )
    read.add_argument("--json", action="store_true", help="print one JSON object name -> value")
    read.add_argument("--explain", action="store_true", help="print the read plan and its cost")
    read.set_defaults(commission=run_read)

    scan = subparsers.add_parser(
        "scan",
        help="find which unit ids answer on a bus",
        description="Send one small read to each unit id; a unit that answers with data or with "
        "a Modbus exception is there.",
    )
    _bus_options(scan, with_config=False, with_ble=True)
    scan.add_argument(
        "--for",
        dest="listen",
        type=_duration,
        default=BLE_SCAN_S,
        metavar="DURATION",
        help=f"with --ble: how long to listen (default {BLE_SCAN_S:g}s)",
    )
    scan.add_argument(
        "--protocol",
        choices=protocols(),
        default="modbus",
        help="modbus (default): try each unit id; dlt645 or cjt188: find a lone meter's "
        "address (with --serial), trying 2400, 1200, 4800 and 9600 bit/s unless --baud",
    )
    scan.add_argument(
        "--units",
        type=parse_units,
        default=tuple(SERIAL_UNITS),
        metavar="LIST",
        help="unit ids to try, e.g. 1-10,20 (default 1-247)",
    )
    scan.add_argument(
        "--timeout",
        type=_duration,
        default=SCAN_TIMEOUT_S,
        metavar="S",
        help=f"wait per unit (default {SCAN_TIMEOUT_S:g}s)",
    )
    scan.add_argument("--json", action="store_true", help="print the unit ids as a JSON list")
    scan.set_defaults(commission=run_scan)


async def dispatch(args: argparse.Namespace) -> int:
    """Run the command ``add_commands`` registered for ``args`` (the CLI's entry point).

    The commands tell what they found in their own words; below debug level the driver's
    warnings (a device unavailable, a bus down) would only say it twice.
    """
    command: Callable[[argparse.Namespace], Awaitable[int]] = args.commission
    driver_log = logging.getLogger("drivers.modbus")
    level = driver_log.level
    if getattr(args, "log_level", "info") != "debug":
        driver_log.setLevel(logging.ERROR)
    try:
        return await command(args)
    finally:
        driver_log.setLevel(level)


class _UsageError(Exception):
    """Bad command-line usage found after parsing; becomes exit status 2."""


def _usage(command: str, message: str, err: TextIO) -> int:
    print(f"edge-agent {command}: {message}", file=err)
    return 2


def _bus_spec(args: argparse.Namespace, timeout: float) -> TcpLinkConfig | SerialLinkConfig:
    """The bus of --tcp / --serial and the line options."""
    line_options = (args.baud, args.parity, args.stopbits)
    if args.serial is None:
        if any(option is not None for option in line_options):
            raise _UsageError("--baud, --parity and --stopbits apply only to --serial")
        host, port = args.tcp
        return TcpLinkConfig(kind="modbus_tcp", host=host, port=port, timeout=timeout)
    if args.baud is not None and args.baud <= 0:
        raise _UsageError(f"--baud {args.baud} is not a baud rate")
    return SerialLinkConfig(
        kind="modbus_rtu",
        port=args.serial,
        baudrate=args.baud or 9600,
        parity=args.parity or "N",
        stopbits=args.stopbits or 1,
        timeout=timeout,
    )


def _check_unit(unit: int, spec: TcpLinkConfig | SerialLinkConfig) -> None:
    allowed = SERIAL_UNITS if isinstance(spec, SerialLinkConfig) else TCP_UNITS
    if unit not in allowed:
        raise _UsageError(
            f"unit {unit} is not a unit id on this bus ({allowed.start}-{allowed.stop - 1})"
        )


# ---- read ---------------------------------------------------------------------------------------


@dataclass
class _ReadResult:
    readings: dict[str, Reading]  # the freshest good reading of each point, else the last one
    polls: int
    requests: int  # requests sent in all
    first_plan: Plan
    plan: Plan  # the plan the next cycle would use
    lessons: list[Lesson]
    exception_codes: dict[int, int]  # how often the device answered each exception code


async def run_read(
    args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``edge-agent read``: read every point of one device once and print them."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        target, spec, bus_name = _read_target(args)
    except _UsageError as exc:
        return _usage("read", str(exc), err)
    if not isinstance(target, ModbusDevice):
        return await read_meter(target, spec, as_json=args.json, out=out, err=err)
    device = target
    result = await _read_device(device, spec, bus_name)
    readings = [result.readings[name] for name in device.points if name in result.readings]
    bad = [r.point for r in readings if r.quality is not Quality.GOOD]
    where = f"unit {device.unit_id} on {_where(spec)}"
    if args.json:
        print(json.dumps({r.point: r.value for r in readings}, ensure_ascii=False), file=out)
    else:
        _print_table(readings, out)
        polls = f" in {result.polls} reads" if result.polls > 1 else ""
        print(
            f"{len(readings) - len(bad)} of {len(readings)} points good from {where}, "
            f"{result.requests} requests{polls}",
            file=out,
        )
    if args.explain:
        _print_explain(result, out=err if args.json else out)
    if bad:
        why = f"; the device answered {_refusals(result.exception_codes)}"
        if len(bad) == len(readings):
            why += " (is this the right profile? datasheet register 40001 is address 0)"
        print(
            f"edge-agent read: {len(bad)} of {len(readings)} points could not be read from "
            f"{where}: {', '.join(bad)}{why if result.exception_codes else ''}",
            file=err,
        )
        return 1
    return 0


def _config_target(
    args: argparse.Namespace,
) -> tuple[DeviceConfigBase, TcpLinkConfig | SerialLinkConfig, str]:
    """A device of a site config (``--config FILE --device NAME``)."""
    if args.profile is not None or args.unit is not None or args.address is not None:
        raise _UsageError("--profile, --unit and --address come from the config with --config")
    if args.baud is not None or args.parity is not None or args.stopbits is not None:
        raise _UsageError("the serial line settings come from the config with --config")
    if args.device is None:
        raise _UsageError("--config needs --device NAME, the device to read")
    from agent.config.loader import load_config

    config = load_config(args.config)  # a ConfigError is reported by the CLI, exit 78
    devices = {d.name: d for d in config.devices}
    if args.device not in devices:
        hint = did_you_mean(args.device, devices)
        known = ", ".join(devices) or "none"
        raise _UsageError(
            f"{args.config} has no device {args.device!r}{hint}; its devices are: {known}"
        )
    device = devices[args.device]
    spec = config.buses[device.bus]
    if not isinstance(spec, TcpLinkConfig | SerialLinkConfig):
        raise _UsageError(
            f"device {args.device!r} is not on a field bus; `read` reads Modbus, DL/T 645 "
            "and CJ/T 188 devices"
        )
    if args.timeout is not None:
        spec = spec.model_copy(update={"timeout": args.timeout})
    return device, spec, device.bus


def _read_target(
    args: argparse.Namespace,
) -> tuple[DeviceConfigBase, TcpLinkConfig | SerialLinkConfig, str]:
    if args.config is not None:
        return _config_target(args)
    if args.device is not None:
        raise _UsageError("--device names a device of a site config: use it with --config")
    if args.profile is None:
        raise _UsageError("say what to read: --profile NAME, or --config FILE --device NAME")
    protocol = protocol_of_profile(args.profile)
    if protocol is None:
        every = [name for names in all_profiles().values() for name in names]
        hint = did_you_mean(args.profile, every)
        raise _UsageError(
            f"there is no shipped profile {args.profile!r}{hint}; "
            f"the profiles are: {', '.join(every)}"
        )
    if protocol != "modbus":
        return _meter_target(args, protocol)
    if args.address is not None:
        raise _UsageError("--address is a meter's (DL/T 645, CJ/T 188); Modbus takes --unit")
    if args.unit is None:
        raise _UsageError("--profile needs --unit N, the device's unit id")
    spec = _bus_spec(args, args.timeout or READ_TIMEOUT_S)
    _check_unit(args.unit, spec)
    device = ModbusDevice(
        name=f"unit{args.unit}", bus="cli", unit_id=args.unit, profile=args.profile
    )
    return device, spec, "cli"


def _meter_target(
    args: argparse.Namespace, protocol: str
) -> tuple[DeviceConfigBase, SerialLinkConfig, str]:
    """A DL/T 645 or CJ/T 188 meter named on the command line."""
    if args.serial is None:
        raise _UsageError(f"a {protocol} meter is read on a serial line: give --serial PORT")
    if args.unit is not None:
        raise _UsageError(f"--unit is Modbus's; a {protocol} meter takes --address")
    if args.address is None:
        raise _UsageError(f"--profile {args.profile} needs --address, the meter's address")
    try:
        device = meter_config(
            protocol,
            profile=args.profile,
            address=args.address,
            baud=args.baud or METER_BAUDS[0],
            parity=args.parity or METER_PARITY,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    parity: Literal["N", "E", "O"] = args.parity or METER_PARITY
    line = SerialLinkConfig(
        kind="serial",
        port=args.serial,
        baudrate=args.baud or METER_BAUDS[0],
        parity=parity,
        stopbits=args.stopbits or 1,
        timeout=args.timeout or READ_TIMEOUT_S,
    )
    return device, line, "cli"


class _WatchedBus(ModbusBusClient):
    """The bus, counting the exception codes devices answer, so that `read` can say why."""

    def __init__(self, name: str, spec: TcpLinkConfig | SerialLinkConfig) -> None:
        super().__init__(Link(name, spec))
        self.exception_codes: Counter[int] = Counter()

    async def read(
        self, *, device: str, unit_id: int, table: Table, address: int, count: int
    ) -> list[int] | list[bool]:
        try:
            return await super().read(
                device=device, unit_id=unit_id, table=table, address=address, count=count
            )
        except ModbusExceptionError as exc:
            self.exception_codes[exc.code] += 1
            raise


async def _read_device(
    device: ModbusDevice, spec: TcpLinkConfig | SerialLinkConfig, bus_name: str
) -> _ReadResult:
    async with _WatchedBus(bus_name, spec) as bus:
        poller = ModbusDeviceClient(device, bus)
        first_plan = poller.plan()
        latest: dict[str, Reading] = {}
        polls = 0
        silent: str | None = None  # why the device stopped answering, if it did
        while polls < MAX_POLLS:
            known = list(poller.quirks.lessons)
            polls += 1
            try:
                readings = await poller.read()
            except DeviceUnavailableError as exc:
                silent, readings = exc.reason, list(exc.readings)
            for reading in readings:
                held = latest.get(reading.point)
                if (
                    held is None
                    or reading.quality is Quality.GOOD
                    or held.quality is not Quality.GOOD
                ):
                    latest[reading.point] = reading
            if silent is not None or poller.quirks.lessons == known:
                break  # silent, or nothing new learned: the plan has settled
        if not any(r.quality is Quality.GOOD for r in latest.values()):
            if bus.exception_codes and set(bus.exception_codes) <= set(GATEWAY_NOBODY):
                code = bus.exception_codes.most_common(1)[0][0]
                raise CommissioningError(
                    f"unit {device.unit_id} on {bus.where} did not answer: the gateway says "
                    f"exception {code:02d} ({EXCEPTION_NAMES[code]}); check the unit id"
                )
            if silent is not None:
                raise CommissioningError(_silence(device, bus, silent))
        return _ReadResult(
            readings=latest,
            polls=polls,
            requests=bus.requests,
            first_plan=first_plan,
            plan=poller.plan(),
            lessons=list(poller.quirks.lessons),
            exception_codes=dict(bus.exception_codes),
        )


def _silence(device: ModbusDevice, bus: ModbusBusClient, reason: str) -> str:
    if not bus.is_connected:
        return reason  # the bus itself: "cannot connect to ...", "serial port ... not present"
    settings = (
        "the unit id, the wiring (A/B) and the line settings (baud rate, parity)"
        if isinstance(bus.spec, SerialLinkConfig)
        else "the unit id and the address"
    )
    return f"unit {device.unit_id} on {bus.where} did not answer ({reason}): check {settings}"


def _refusals(codes: dict[int, int]) -> str:
    """``exception 02 (illegal data address) to 3 reads, ...``"""
    return ", ".join(
        f"exception {code:02d} ({EXCEPTION_NAMES.get(code, 'unknown exception')}) to "
        f"{count} read{'s' if count > 1 else ''}"
        for code, count in sorted(codes.items())
    )


def _where(spec: TcpLinkConfig | SerialLinkConfig) -> str:
    if isinstance(spec, TcpLinkConfig):
        return f"{spec.host}:{spec.port}"
    return spec.port


def _format_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.7g}"  # a float32 register carries about 7 significant digits
    return str(value)


def _print_table(readings: Sequence[Reading], out: TextIO) -> None:
    rows = [("point", "value", "unit", "quality")]
    rows += [(r.point, _format_value(r.value), r.unit, r.quality.label) for r in readings]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            row[1].rjust(widths[1]),
            row[2].ljust(widths[2]),
            row[3],
        ]
        print("  ".join(cells).rstrip(), file=out)


def _print_explain(result: _ReadResult, *, out: TextIO) -> None:
    print("", file=out)
    print("read plan (what the agent asks each cycle):", file=out)
    print(result.plan.explain(), file=out)
    if result.lessons:
        print(
            f"the first read planned {len(result.first_plan.requests)} requests; what the device "
            f"refused brought it to {len(result.plan.requests)} "
            "(the agent keeps these lessons per device)",
            file=out,
        )


# ---- scan ---------------------------------------------------------------------------------------


async def scan_ble(
    adapter: str,
    *,
    seconds: float,
    as_json: bool,
    out: TextIO,
    backend: ScannerBackend | None = None,
) -> int:
    """``edge-agent scan --ble``: the sensors heard on ``adapter`` within ``seconds``, with
    MAC, format, signal and decoded values, so a technician can write the config. ``backend``
    replaces the radio (tests: drivers.ble.backend.FakeBackend)."""
    from drivers.ble.backend import BleakBackend
    from drivers.ble.errors import AdapterError
    from drivers.ble.scan import scan

    radio = backend if backend is not None else BleakBackend(adapter, passive=True)
    try:
        found = await scan(radio, seconds=seconds)
    except AdapterError as exc:
        raise CommissioningError(str(exc)) from exc
    if as_json:
        rows = [{"mac": f.mac, "format": f.format, "rssi": f.rssi, **f.values} for f in found]
        print(json.dumps(rows, ensure_ascii=False), file=out)
    else:
        for sensor in found:
            print(f"{sensor.mac}  {sensor.describe()}", file=out)
        print(f"{len(found)} sensors heard on {adapter} in {seconds:g} s", file=out)
    return 0 if found else 1


async def run_scan(
    args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``edge-agent scan``: find which unit ids answer on a bus."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.ble is not None:
        return await scan_ble(args.ble, seconds=args.listen, as_json=args.json, out=out)
    if args.protocol != "modbus":
        return await scan_meters(args, args.protocol, out=out, err=err)
    try:
        spec = _bus_spec(args, args.timeout)
        for unit in args.units:
            _check_unit(unit, spec)
    except _UsageError as exc:
        return _usage("scan", str(exc), err)
    found: dict[int, str] = {}
    started = time.monotonic()
    async with ModbusBusClient(Link("scan", spec)) as bus:
        try:
            await bus.connect()
        except DeviceUnavailableError as exc:
            raise CommissioningError(exc.reason) from exc
        for unit in args.units:
            answer = await _probe(bus, unit)
            if answer is not None:
                found[unit] = answer
                if not args.json:
                    print(f"unit {unit}: {answer}", file=out, flush=True)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(list(found)), file=out)
    scanned = f"{len(args.units)} unit ids in {elapsed:.1f} s"
    if not found:
        print(
            f"edge-agent scan: no unit answered on {_where(spec)} ({scanned})"
            + (": check the wiring (A/B), baud rate and parity" if args.serial else ""),
            file=err,
        )
        return 1
    if not args.json:
        units = ", ".join(str(unit) for unit in found)
        print(f"{len(found)} units answer on {_where(spec)}: {units} ({scanned})", file=out)
    return 0


async def _probe(bus: ModbusBusClient, unit: int) -> str | None:
    """How ``unit`` answers a one-register read of holding register 0, or None if it does not."""
    try:
        await bus.read(device=f"unit{unit}", unit_id=unit, table=Table.HOLDING, address=0, count=1)
    except ModbusExceptionError as exc:
        if exc.code in GATEWAY_NOBODY:
            return None
        name = EXCEPTION_NAMES.get(exc.code, "unknown exception")
        return f"answers, with exception {exc.code:02d} ({name})"
    except ShortReplyError:
        return "answers, with a short reply"
    except DeviceUnavailableError:
        return None
    return "answers, with data"
