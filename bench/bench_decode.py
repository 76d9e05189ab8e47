"""Micro-benchmark of the per-point path, without any I/O: what one meter-cycle costs in Python.

The agent's CPU per delivered point (bench/bench_agent.py) is the sum of the wire (pymodbus and
the sockets, as for the bare reference) and what the agent adds per reading. This times the
part it adds, each stage alone, on the benchmark's meter (35 float32 points in four requests,
bench/make_site.py):

- read: ``ModbusDeviceClient.read`` of every point against a bus that answers from memory
  (planning, decoding, quality checks, Reading objects);
- store: ``Store.append`` of one cycle's readings plus its share of the writer's commit
  (a real SQLite file in a temp dir, one commit per 50 cycles as at 50 meters), which also
  hands the commit's readings to the uplink and marks the last acknowledged batch synced;
- uplink: after each commit, taking its readings as the uplink does (from memory; an older
  copy of the code, given with ``--code``, reads them back from the file), encoding its
  payload, marking it synced (a transaction of its own in an older copy).

The read is timed on the wall clock (one thread, no I/O); the store and the uplink in CPU time
of the process (the writer thread's included, its waits not).

    .venv/bin/python -m bench.bench_decode            # microseconds per meter-cycle (35 points)
    .venv/bin/python -m bench.bench_decode --code /tmp/base   # another copy, to compare

Figures are per cycle of one meter, best of ``--repeat`` runs; the machine's noise is large on a
shared host, so compare two versions in turn, several times.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.make_site import point_registers

POINTS = len(point_registers())


def _meter_values(address: int, count: int) -> list[int]:
    words: list[int] = []
    for i in range(count // 2):
        words += struct.unpack(">HH", struct.pack(">f", 230.0 + (address + 2 * i) / 10))
    return words


class _MemoryBus:
    """A bus that answers every read at once, from a fixed register image."""

    def __init__(self) -> None:
        from agent.core.links import TcpLinkConfig

        self.spec = TcpLinkConfig(kind="modbus_tcp", host="127.0.0.1", port=502)
        self.name = "memory"
        self.requests = 0

    async def read(
        self, *, device: str, unit_id: int, table: Any, address: int, count: int
    ) -> list[int]:
        self.requests += 1
        return _meter_values(address, count)


def _device(name: str = "m000") -> Any:
    from drivers.modbus.spec import ModbusDevice

    points = {p: {"register": r, "type": "float32", "unit": "W"} for p, r in point_registers()}
    return ModbusDevice.model_validate(
        {"name": name, "bus": "line0", "unit_id": 1, "interval": "1s", "points": points}
    )


def _best(fn: Any, cycles: int, repeat: int) -> float:
    """Microseconds per cycle, best of ``repeat``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(cycles)
        best = min(best, time.perf_counter() - start)
    return best / cycles * 1e6


async def _bench_read(cycles: int, repeat: int) -> float:
    from drivers.modbus.device import ModbusDeviceClient

    client = ModbusDeviceClient(_device(), _MemoryBus())  # type: ignore[arg-type]
    names = list(client.points)
    assert len(await client.read(names)) == POINTS
    # Keep the values off the timing: the bus answers from a cache of register lists.
    replies: dict[tuple[int, int], list[int]] = {}

    async def cached(**kw: Any) -> list[int]:
        key = (kw["address"], kw["count"])
        if key not in replies:
            replies[key] = _meter_values(*key)
        return list(replies[key])

    client.bus.read = cached  # type: ignore[method-assign]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(cycles):
            await client.read(names)
        best = min(best, time.perf_counter() - start)
    return best / cycles * 1e6


async def _bench_store_and_uplink(cycles: int, repeat: int) -> tuple[float, float]:
    from agent.core.record import Reading
    from agent.store import Store
    from agent.uplink import encode_readings

    # stamped as the device client stamps them: one time per reply (four replies a cycle)
    batch = [Reading("m000", p, 1_764_000_000_000 + int(p[1]), 230.5 + i, "W") for i, (p, _) in
             enumerate(point_registers())]  # fmt: skip
    per_commit = 50  # cycles per commit: 50 meters, one commit a second
    store_best = uplink_best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        async with Store(Path(tmp) / "bench.db", batch_window=3600, batch_max=10**6,
                         max_pending=10**7) as store:  # fmt: skip
            # As the uplink does: live readings from memory when the store keeps them
            # (committed_after; an older copy of the code has none), else read back.
            live = store.last_seq + 1
            store.uplink_connected(live)
            from_memory = getattr(store, "committed_after", None)
            for _ in range(repeat):
                store_cpu = uplink_cpu = 0.0
                sent = 0
                for done in range(1, cycles + 1):
                    start = time.process_time()  # CPU of both threads (the writer's too)
                    await store.append(batch)
                    if done % per_commit and done != cycles:
                        store_cpu += time.process_time() - start
                        continue
                    await store.flush()  # a commit (with the marks of the last batch, if folded)
                    store_cpu += time.process_time() - start
                    # the uplink's turn after each commit: take it, encode it, mark it synced
                    start = time.process_time()
                    rows = from_memory(live, per_commit * POINTS) if from_memory else None
                    if rows is None:
                        rows = await store.unsynced(per_commit * POINTS, from_seq=live)
                    payload = encode_readings("site", "gw", rows)
                    assert payload
                    await store.mark_synced([r.seq for r in rows])
                    live = rows[-1].seq + 1
                    sent += len(rows)
                    uplink_cpu += time.process_time() - start
                start = time.process_time()
                await store.flush()  # the last marks
                store_cpu += time.process_time() - start
                assert sent == cycles * POINTS, sent
                store_best = min(store_best, store_cpu)
                uplink_best = min(uplink_best, uplink_cpu)
    return store_best / cycles * 1e6, uplink_best / cycles * 1e6


async def main_async(cycles: int, repeat: int) -> None:
    read = await _bench_read(cycles, repeat)
    store, uplink = await _bench_store_and_uplink(cycles, repeat)
    print(f"per meter-cycle of {POINTS} points, best of {repeat} x {cycles} cycles:")
    print(f"  read (plan, decode, readings): {read:8.1f} us")
    print(f"  store (append + commit):       {store:8.1f} us CPU (both threads)")
    print(f"  uplink (take, encode, mark synced): {uplink:8.1f} us CPU (both threads)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--code", type=Path, default=None, help="import agent/ and drivers/ here")
    args = parser.parse_args(argv)
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
    asyncio.run(main_async(args.cycles, args.repeat))


if __name__ == "__main__":
    main()
