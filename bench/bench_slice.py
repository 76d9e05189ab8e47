"""Benchmark of the foundation slice: Modbus poll -> SQLite store (-> MQTT when a broker is given).

Runs the agent on the simulated building with every device polled as fast as the interval
allows, for a fixed time, then reports readings stored per second, Modbus requests per second,
and the process's peak memory. Run by hand (not part of the test suite):

    .venv/bin/python bench/bench_slice.py --seconds 20 --interval 0.05
    .venv/bin/python bench/bench_slice.py --seconds 20 --interval 0.05 --mqtt mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

from agent.config.model import UplinkConfig
from agent.demo import _retarget, demo_config
from agent.service import Agent
from agent.store import read_stats
from hil.server import SimulatedBuilding


async def bench(
    seconds: float, interval: float, mqtt: str | None, data_dir: Path
) -> dict[str, float]:
    async with SimulatedBuilding() as sim:
        config = _retarget(demo_config(), sim, mqtt)
        devices = [d.model_copy(update={"interval": interval}) for d in config.devices]
        config = config.model_copy(update={"devices": devices})
        if mqtt:
            config = config.model_copy(update={"uplink": UplinkConfig(url=mqtt, batch_size=500)})
        agent = Agent(config, data_dir=data_dir)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await agent.started.wait()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        requests = sum(link.turns for link in agent.links.values())
        stop.set()
        await task
    stats = read_stats(agent.db_path)
    points = sum(len(d.point_names()) for d in config.devices)
    return {
        "points": points,
        "readings": agent.readings_polled,
        "readings_per_s": agent.readings_polled / elapsed,
        "requests_per_s": requests / elapsed,
        "unsynced_at_end": stats.unsynced,
        "bytes_per_reading": stats.bytes / max(stats.rows, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--interval", type=float, default=0.05, help="poll interval of every device"
    )
    parser.add_argument("--mqtt", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(bench(args.seconds, args.interval, args.mqtt, Path(tmp)))
    print(
        f"python {sys.version.split()[0]}, {args.seconds:g} s, "
        f"device interval {args.interval:g} s, mqtt {'on' if args.mqtt else 'off'}"
    )
    for key, value in result.items():
        print(f"  {key:<18} {value:,.1f}" if isinstance(value, float) else f"  {key:<18} {value:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
