"""Benchmark of the store and forward path (not a test): run by hand, report the figures.

For each site profile it stores one day of readings as the agent does (appends of one polling
round, committed in batches), then drains that day as backlog to a Mosquitto broker on loopback
with the uplink (no rate cap), in a child process so that its peak memory is the drain's own.
It reports:

- readings stored per second (synchronous=FULL, so one fsync per commit, on this disk);
- bytes per reading on disk (pages in use / rows, and file + WAL / rows) and per table;
- backfill rate to the loopback broker (readings per second, QoS 1, one batch in flight);
- peak memory (RSS) of the process while draining the day's backlog;
- the time one eviction round takes when nothing is synced (the worst case: a full scan).

    .venv/bin/python bench/bench_store.py                          # typical and demo sites
    .venv/bin/python bench/bench_store.py --profiles large         # 2,000 points per minute
    .venv/bin/python bench/bench_store.py --mqtt mqtt://127.0.0.1:1883 --dir /mnt/sdcard/bench

Profiles: typical = 100 points every 60 s (144,000 readings a day); demo = the demo site, 55
points every 2 s (2,376,000 a day); large = 2,000 points every 60 s (2,880,000 a day).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROFILES = {  # name: (points, seconds between polls)
    "typical": (100, 60),
    "demo": (55, 2),
    "large": (2000, 60),
}
DAY_S = 24 * 3600


def _status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: Linux carries that over
    exec from the forked parent, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def fill(db: Path, points: int, every_s: int) -> dict[str, float]:
    """Store one day of a site's readings the way the pollers hand them over."""
    from agent.core.record import Reading
    from agent.store import Store

    rng = random.Random(1)
    values = [rng.uniform(0, 50_000) for _ in range(points)]
    names = [
        (f"meter_{i // 20:03d}", f"point_{i % 20:02d}", "kWh" if i % 3 else "W")
        for i in range(points)
    ]
    start_ms = int(time.time() * 1000) - DAY_S * 1000
    rounds = DAY_S // every_s
    count = 0
    started = time.perf_counter()
    async with Store(db, max_bytes=None) as store:
        for r in range(rounds):
            ts = start_ms + r * every_s * 1000
            batch = []
            for i, (device, point, unit) in enumerate(names):
                values[i] += rng.uniform(0, 2.5)  # counters and powers move a little
                value = round(values[i], 2) if i % 4 else values[i]  # some float32-like noise
                batch.append(Reading(device, point, ts, value, unit))
            await store.append(batch)
            count += len(batch)
            if count % 10_000 < points:  # let the writer keep up, as slow polling does
                await store.flush()
        await store.flush()
        elapsed = time.perf_counter() - started
        stats = await store.stats()
    return {
        "readings": count,
        "stored_per_s": count / elapsed,
        "bytes_per_reading_used": stats.used_bytes / stats.rows,
        "bytes_per_reading_file": stats.bytes / stats.rows,
        "file_mib": stats.bytes / 2**20,
    }


def table_bytes(db: Path, rows: int) -> dict[str, float]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {
            name: size / rows
            for name, size in conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 3"
            )
        }


async def drain(db: Path, url: str, batch_size: int) -> dict[str, float]:
    """Publish every unsynced reading through the uplink's live path; runs in a child."""
    from agent.config.model import SiteInfo, UplinkConfig
    from agent.store import Store
    from agent.uplink import Uplink

    config = UplinkConfig(url=url, batch_size=batch_size, topic_prefix="bench")
    async with Store(db, max_bytes=None) as store:
        total = (await store.stats()).unsynced
        base = _status_mib("VmRSS")
        uplink = Uplink(
            config,
            site=SiteInfo(id="bench", name="bench"),
            gateway_id="gw1",
            store=store,
            birth={},
            backfill_rate=None,
        )
        started = time.perf_counter()
        task = asyncio.create_task(uplink.run())
        while (await store.stats()).unsynced:  # noqa: ASYNC110 - a benchmark polls
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "readings": total,
        "seconds": elapsed,
        "backfill_per_s": total / elapsed,
        "rss_before_mib": base,
        "peak_rss_mib": _status_mib("VmHWM"),
    }


async def evict_all_unsynced(db: Path) -> dict[str, float]:
    """One eviction round (2% of a 256 MiB budget) in a store where nothing is synced."""
    from agent.store import Store

    async with Store(db, max_bytes=None) as store:
        before = await store.stats()

        def one_round(writer: Any) -> float:
            count, free = writer._pages()
            started = time.perf_counter()
            writer.evict(count - free - 2048, reason="budget")
            return time.perf_counter() - started

        seconds = await store._call("evicting", one_round)
        after = await store.stats()
    return {"evicted": after.evicted_unsynced - before.evicted_unsynced, "seconds": seconds}


@contextlib.contextmanager
def broker(url: str | None, workdir: Path) -> Iterator[str]:
    if url is not None:
        yield url
        return
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profiles", default="typical,demo", help="comma-separated, of " + ", ".join(PROFILES)
    )
    parser.add_argument("--mqtt", default=None, help="broker URL (default: start mosquitto)")
    parser.add_argument("--batch-size", type=int, default=200, help="readings per message")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the stores go (the disk under test; default a temporary directory)",
    )
    parser.add_argument("--drain", type=Path, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--evict", type=Path, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.drain:
        print(json.dumps(asyncio.run(drain(args.drain, args.mqtt, args.batch_size))))
        return 0
    if args.evict:
        print(json.dumps(asyncio.run(evict_all_unsynced(args.evict))))
        return 0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, broker(args.mqtt, Path(tmp)) as url:
        print(
            f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
            f"stores in {tmp}, broker {url}, batch size {args.batch_size}"
        )
        for name in args.profiles.split(","):
            points, every = PROFILES[name]
            db = Path(tmp) / f"{name}.db"
            filled = asyncio.run(fill(db, points, every))
            tables = table_bytes(db, int(filled["readings"]))
            evict_copy = Path(tmp) / f"{name}-evict.db"
            shutil.copy(db, evict_copy)
            drained = run_child(
                "--drain", str(db), "--mqtt", url, "--batch-size", str(args.batch_size)
            )
            evicted = run_child("--evict", str(evict_copy))
            print(
                f"\n{name}: {points} points every {every} s, one day = "
                f"{filled['readings']:,.0f} readings"
            )
            print(f"  stored per second      {filled['stored_per_s']:,.0f}")
            print(
                f"  bytes per reading      {filled['bytes_per_reading_used']:.1f} in use, "
                f"{filled['bytes_per_reading_file']:.1f} with the WAL "
                f"({filled['file_mib']:.1f} MiB for the day)"
            )
            print(
                "  by table               "
                + ", ".join(f"{table} {size:.1f}" for table, size in tables.items())
            )
            print(
                f"  backfill to loopback   {drained['backfill_per_s']:,.0f} readings/s "
                f"({drained['readings']:,.0f} in {drained['seconds']:.1f} s)"
            )
            print(
                f"  peak memory draining   {drained['peak_rss_mib']:.0f} MiB RSS "
                f"({drained['rss_before_mib']:.0f} MiB before the drain)"
            )
            print(
                f"  eviction, all unsent   {evicted['evicted']:,.0f} readings in "
                f"{evicted['seconds'] * 1000:.0f} ms (one round, 8 MiB)"
            )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
