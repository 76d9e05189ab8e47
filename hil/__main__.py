"""Run the simulated building until SIGINT or SIGTERM.

    python -m hil [--host 127.0.0.1] [--switchboard-port N] [--hvac-port N] [--pv-port N]
                  [--speed X] [--seed N] [--strict] [--status SECONDS]

The default ports (5020-5022) are fixed so a demo config can name them; 0 picks free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from hil.building import Building
from hil.devices import BUSES
from hil.field_line import POWER_METER_ADDRESS, WATER_METER_ADDRESS
from hil.server import SimulatedBuilding

DEFAULT_PORTS = {"switchboard": 5020, "hvac": 5021, "pv": 5022}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil", description="Serve a simulated office building over Modbus TCP."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    for bus in BUSES:
        parser.add_argument(
            f"--{bus.name}-port",
            type=int,
            default=DEFAULT_PORTS[bus.name],
            help=f"port of the {bus.description} (default {DEFAULT_PORTS[bus.name]}; 0 = free)",
        )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per wall-clock second"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the building's noise")
    parser.add_argument(
        "--strict", action="store_true", help="unmapped registers answer exception 02"
    )
    parser.add_argument(
        "--status", type=float, default=0.0, help="print a status line every N seconds (0 = off)"
    )
    return parser


def _print_endpoints(sim: SimulatedBuilding) -> None:
    for bus, (host, port) in sim.endpoints.items():
        units = ", ".join(
            f"unit {device.unit_id} {device.name}"
            for device in sim.devices.values()
            if device.bus == bus
        )
        print(f"{bus}: {host}:{port} ({units})", flush=True)
    for bus, path in sim.serial_ports.items():
        print(
            f"{bus}: serial {path} (DL/T 645 meter {POWER_METER_ADDRESS}, "
            f"CJ/T 188 water meter {WATER_METER_ADDRESS}; 2400 8E1)",
            flush=True,
        )


def _status_line(building: Building) -> str:
    building.update()
    energy = building.energy()
    return (
        f"{building.local_time:%Y-%m-%d %H:%M} outdoor {building.outdoor_temperature:.1f} °C"
        f" | main {building.main_power_kw:.1f} kW, lighting {building.lighting_power_kw:.1f},"
        f" hvac {building.hvac_power_kw:.1f}, pv {building.pv_power_kw:.1f}"
        f" | import {energy.main_import:.1f} kWh"
    )


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ports = {bus.name: int(getattr(args, f"{bus.name}_port")) for bus in BUSES}
    building = Building(speed=args.speed, seed=args.seed)
    async with SimulatedBuilding(
        host=args.host, ports=ports, building=building, strict=args.strict
    ) as sim:
        _print_endpoints(sim)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.status or None):
                    await stop.wait()
            if not stop.is_set():
                print(_status_line(building), flush=True)
    print("stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.speed > 0:
        _parser().error("--speed must be positive")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
