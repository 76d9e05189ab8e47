"""Frames and bus time per cycle of a three-phase DL/T 645-2007 meter: block identifiers against
single identifiers.

    .venv/bin/python bench/bench_dlt645.py [--cycles 5] [--baud 2400]

Reads every point of the `dlt645-2007-3phase` profile from the simulated meter (hil, over an
in-process pty line) through the agent's own driver, once with block reads and once without,
and prints frames per cycle, bytes each way, and the bus time those bytes take at the given
speed on a real line: 11 bits a character (start, 8 data, even parity, stop: DL/T 645-2007's
physical layer), plus the meter's reply delay per frame. No public text we could read states
that delay, so it is an assumption here (50 ms by default, `--reply-ms`). On a pty the bytes
pass at once, so wall time here would measure only the machine; the bus time is computed from
what was actually sent and received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from agent.core.clock import system_clock
from agent.core.links import Link, SerialLinkConfig
from agent.core.serial_port import LineClient
from drivers.dlt645.device import Dlt645Meter
from drivers.dlt645.spec import Dlt645Device
from hil.building import Building
from hil.field_line import POWER_METER_ADDRESS, SimulatedFieldLine

BITS_PER_CHAR = 11


async def measure(*, blocks: bool, cycles: int, baud: int, reply_ms: float) -> dict[str, float]:
    async with SimulatedFieldLine(Building()) as field, contextlib.AsyncExitStack() as stack:
        line = SerialLinkConfig(
            kind="serial", port=field.port, baudrate=baud, parity="E", timeout=1.0
        )
        link = await stack.enter_async_context(Link("bench", line))
        client = LineClient(link, protocol="meters")
        stack.push_async_callback(client.aclose)
        config = Dlt645Device(
            protocol="dlt645",
            name="meter",
            bus="bench",
            address=POWER_METER_ADDRESS,
            profile="dlt645-2007-3phase",
            blocks=blocks,
        )
        meter = Dlt645Meter(config, client, clock=system_clock())
        await meter.read()  # the first cycle learns what the meter refuses
        frames, sent, received = meter.frames, client.bytes_sent, client.bytes_received
        for _ in range(cycles):
            readings = await meter.read()
            assert all(r.quality.label == "good" for r in readings), readings
        per_frames = (meter.frames - frames) / cycles
        per_sent = (client.bytes_sent - sent) / cycles
        per_received = (client.bytes_received - received) / cycles
        wire_s = (per_sent + per_received) * BITS_PER_CHAR / baud
        return {
            "points": len(readings),
            "frames": per_frames,
            "bytes_sent": per_sent,
            "bytes_received": per_received,
            "bus_ms": (wire_s + per_frames * reply_ms / 1000) * 1000,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--baud", type=int, default=2400)
    parser.add_argument(
        "--reply-ms", type=float, default=50.0, help="the meter's delay before it answers"
    )
    args = parser.parse_args()
    print(
        f"DL/T 645-2007 three-phase meter, {args.baud} bit/s 8E1, "
        f"{args.reply_ms:g} ms reply delay per frame, mean of {args.cycles} cycles"
    )
    print(f"  {'reads':<20} {'points':>6} {'frames':>7} {'bytes out':>9} {'bytes in':>9} "
          f"{'bus ms':>8}")  # fmt: skip
    for label, blocks in (("block identifiers", True), ("single identifiers", False)):
        r = asyncio.run(
            measure(blocks=blocks, cycles=args.cycles, baud=args.baud, reply_ms=args.reply_ms)
        )
        print(
            f"  {label:<20} {r['points']:>6.0f} {r['frames']:>7.1f} {r['bytes_sent']:>9.0f} "
            f"{r['bytes_received']:>9.0f} {r['bus_ms']:>8.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
