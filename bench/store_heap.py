"""SQLite's own heap while the store takes batches of every size: the prepared statements.

The writer inserts readings by statements of many rows, and a connection keeps the last 128
statements it prepared, each with a program as long as its rows. This appends batches of
``--sizes`` different sizes (shuffled, seeded), committing each, and prints SQLite's heap
(``sqlite3_memory_used()``) as new sizes come up: flat when the statements have a few fixed
shapes, megabytes when every size has its own. ``--code DIR`` runs another checkout's store
(e.g. a ``git archive`` of an older commit) for a before/after.

    .venv/bin/python -m bench.store_heap
    .venv/bin/python -m bench.store_heap --code /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def _measure(sizes: int, every: int) -> None:
    from agent.core.record import Reading
    from agent.store import Store

    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    order = list(range(1, sizes + 1))
    random.Random(1).shuffle(order)
    with tempfile.TemporaryDirectory(prefix="store-heap-") as tmp:
        async with Store(Path(tmp) / "readings.db", batch_window=0.01) as store:
            ts = 1_790_000_000_000
            print(f"{'batch sizes seen':>16} {'SQLite heap KiB':>16}")
            for seen, size in enumerate(order, 1):
                ts += 1000
                batch = [Reading("meter", f"p{i % 35}", ts, float(i), "kW") for i in range(size)]
                await store.append(batch)
                await store.flush()
                if seen % every == 0 or seen == len(order):
                    print(f"{seen:16d} {lib.sqlite3_memory_used() // 1024:16,d}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, default=300, help="batch sizes 1..N, each once")
    parser.add_argument("--every", type=int, default=50, help="print after this many sizes")
    parser.add_argument("--code", type=Path, help="run this checkout's agent instead")
    args = parser.parse_args(argv)
    if args.code is not None:
        env = {**os.environ, "PYTHONPATH": f"{args.code}{os.pathsep}{ROOT}"}
        cmd = [sys.executable, "-m", "bench.store_heap", "--sizes", str(args.sizes),
               "--every", str(args.every)]  # fmt: skip
        raise SystemExit(
            subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), check=False).returncode
        )
    asyncio.run(_measure(args.sizes, args.every))


if __name__ == "__main__":
    main()
