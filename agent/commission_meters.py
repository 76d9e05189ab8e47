"""Commissioning meters that carry their own address on a serial line (DL/T 645, CJ/T 188):
``edge-agent read --address`` and ``edge-agent scan --protocol``.

    edge-agent read --profile dlt645-2007-3phase --serial /dev/ttyUSB0 --address 000000000161
    edge-agent read --profile cjt188-water --serial /dev/ttyUSB0 --address 00000000000012 --json
    edge-agent scan --protocol dlt645 --serial /dev/ttyUSB0

`read` opens the device exactly as the service does (the registry's driver on a link), reads
every point once and prints name, value, unit and quality; ``--json`` prints point -> value.
`scan` asks the driver to find a lone meter's address; with no ``--baud`` it tries the speeds
meters are sold with (2400 first, then 1200, 4800, 9600) until one answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from typing import Any, Literal, TextIO, cast

from pydantic import TypeAdapter, ValidationError

from agent.core.clock import system_clock
from agent.core.configbase import DeviceConfigBase
from agent.core.errors import AgentError, DeviceUnavailableError
from agent.core.links import Link, SerialLinkConfig, TcpLinkConfig
from agent.core.record import Quality, Reading
from agent.core.serial_port import SerialSettings
from agent.core.source import Scanner
from agent.sources.compose import open_devices
from agent.sources.registry import device_config_type, driver_for

__all__ = ["METER_BAUDS", "meter_config", "read_meter", "scan_meters"]

# The speeds DL/T 645 and CJ/T 188 meters ship with, the usual one first: 2400 8E1 is the common
# factory setting of 2007 meters (vendor manuals), and collectors that discover meters cycle
# 1200, 2400, 4800 and 9600 (the open-source dlt645 C library's baud_rate_list).
METER_BAUDS = (2400, 1200, 4800, 9600)
METER_PARITY: Literal["E"] = "E"


def meter_config(
    protocol: str, *, profile: str, address: str, baud: int | None, parity: str | None
) -> DeviceConfigBase:
    """A device config for a command-line read, validated like a site config's."""
    raw: dict[str, Any] = {
        "protocol": protocol,
        "name": "cli",
        "bus": "cli",
        "address": address,
        "profile": profile,
    }
    if baud is not None:
        raw["baudrate"] = baud
    if parity is not None:
        raw["parity"] = parity
    try:
        config = TypeAdapter(device_config_type()).validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{e['loc'][-1]!s}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise ValueError(problems) from None
    return cast(DeviceConfigBase, config)


async def read_meter(
    device: DeviceConfigBase,
    line: TcpLinkConfig | SerialLinkConfig,
    *,
    as_json: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """Read every point of ``device`` once; 0 when all are good."""
    async with contextlib.AsyncExitStack() as stack:
        link = await stack.enter_async_context(Link(device.bus, line))
        opened = await open_devices(
            [device], {device.bus: link}, stack=stack, clock=system_clock()
        )
        meter = opened[device.name]
        try:
            readings = await meter.read(list(meter.points))
        except DeviceUnavailableError as exc:
            raise AgentError(
                f"{device.protocol} meter {getattr(device, 'address', '')} on {link.where} did "
                f"not answer ({exc.reason}): check the address, the wiring (A/B) and the line "
                "settings (baud rate, parity)"
            ) from exc
    _print(readings, as_json=as_json, out=out)
    bad = [r.point for r in readings if r.quality is not Quality.GOOD]
    if bad:
        print(
            f"edge-agent read: {len(bad)} of {len(readings)} points could not be read: "
            f"{', '.join(bad)} (refused by the meter, or not numbers)",
            file=err,
        )
        return 1
    return 0


def _print(readings: Sequence[Reading], *, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps({r.point: r.value for r in readings}, ensure_ascii=False), file=out)
        return
    rows = [("point", "value", "unit", "quality")]
    rows += [
        (r.point, "-" if r.value is None else f"{r.value:.7g}" if isinstance(r.value, float)
         else str(r.value), r.unit, r.quality.label)
        for r in readings
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3]]
        print("  ".join(cells).rstrip(), file=out)
    good = sum(r.quality is Quality.GOOD for r in readings)
    print(f"{good} of {len(readings)} points good", file=out)


async def scan_meters(
    args: argparse.Namespace, protocol: str, *, out: TextIO, err: TextIO
) -> int:
    """``edge-agent scan --protocol P --serial PORT``: the address of a lone meter."""
    if args.serial is None:
        print(f"edge-agent scan: --protocol {protocol} needs --serial PORT", file=err)
        return 2
    driver = driver_for(protocol)
    if not hasattr(driver, "scan"):
        print(f"edge-agent scan: the {protocol} driver cannot scan", file=err)
        return 2
    scanner = cast(Scanner, driver)
    bauds = (args.baud,) if args.baud is not None else METER_BAUDS
    parity: Literal["N", "E", "O"] = args.parity or METER_PARITY
    for baud in bauds:
        settings = SerialSettings(baud, parity, args.stopbits or 1, 8)
        line = SerialLinkConfig(
            kind="serial",
            port=args.serial,
            baudrate=baud,
            parity=parity,
            stopbits=args.stopbits or 1,
            timeout=args.timeout,
        )
        async with Link("scan", line) as link:
            found = await scanner.scan(link, settings=settings, wait=max(args.timeout, 0.5))
        if found:
            if args.json:
                print(json.dumps([{"address": f.address, "detail": f.detail} for f in found]),
                      file=out)  # fmt: skip
            else:
                for meter in found:
                    print(f"address {meter.address}: {meter.detail}", file=out)
            return 0
        if not args.json:
            print(f"nothing answered at {settings.describe()}", file=out, flush=True)
    print(
        f"edge-agent scan: no {protocol} meter answered on {args.serial} "
        f"({', '.join(str(b) for b in bauds)} bit/s, parity {parity}): check the wiring (A/B), "
        "that the meter is alone on the line, and its parity",
        file=err,
    )
    return 1
