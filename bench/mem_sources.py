"""Where the agent's memory goes per meter: tracemalloc of the agent run in this process.

Starts the simulated meters of bench/bench_agent.py (a child process), loads the site of
bench/make_site.py (explicit points on every meter, no uplink), then traces every allocation
made from building the agent on: after ``--seconds`` of polling (the plan learnt, the store's
point maps filled; with ``--restart``, read back from the file a first run filled) it prints
what is still held, by the line that allocated it, the total and the most held at once (a peak
RSS counts that).
The config is loaded before tracing starts: its models are the config's, not the sources'.

    nice -n 10 .venv/bin/python -m bench.mem_sources --meters 200 --lines 4
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from agent.config.loader import load_config_text
from agent.service import Agent
from bench.bench_agent import Meters
from bench.make_site import site_yaml


async def _run(agent: Agent, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def _measure(args: argparse.Namespace) -> None:
    meters, lines, seconds, top, group = args.meters, args.lines, args.seconds, args.top, args.by
    farm = Meters(meters, lines, 0.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = load_config_text(
                site_yaml(meters, lines, farm.ports), filename="site.yaml", check_files=False
            )
            if args.restart:  # a first run fills the file: the traced one opens it again
                await _run(Agent(config, data_dir=Path(tmp)), 3.0)
            gc.collect()
            tracemalloc.start(1)
            agent = Agent(config, data_dir=Path(tmp))
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(seconds)
            gc.collect()
            snap = tracemalloc.take_snapshot()
            peak = tracemalloc.get_traced_memory()[1]
            stop.set()
            await task
            tracemalloc.stop()
    finally:
        farm.close()
    snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.statistics(group)
    total = sum(s.size for s in stats)
    print(
        f"{meters} meters: {total / 1e6:.2f} MB held by what the agent allocated"
        f" (peak {peak / 1e6:.2f} MB)"
    )
    for s in stats[:top]:
        frame = s.traceback[0]
        print(f"{s.size / 1e3:9.1f} kB {s.count:7d}  {frame.filename}:{frame.lineno}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--by", choices=("lineno", "filename"), default="lineno")
    parser.add_argument("--restart", action="store_true", help="trace a second run, same store")
    args = parser.parse_args(argv)
    asyncio.run(_measure(args))


if __name__ == "__main__":
    main()
