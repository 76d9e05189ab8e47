"""A soak: the demo building and the real agent for hours, faults on a schedule, RSS sampled.

    python -m hil.soak --hours 2 [--speed 2] [--sample 10] [--fault-every 300] [--fault-for 30]
                       [--workdir soak-data] [--csv soak-data/rss.csv] [--max-bytes 8MiB]

The simulated building (hil.server: Modbus TCP servers and the plant-room RS-485 line) and a real
Mosquitto broker run in this process; the agent runs in a child process (``--child``: the demo
config's agent with the demo's simulated Bluetooth sensors and GPIO pulses, publishing to the
broker), so that its RSS is its own. Every ``--sample`` seconds a CSV row records the agent's
VmRSS (/proc/PID/status), this process's and the broker's, and the counters; every
``--fault-every`` seconds one fault, in turn: the broker restarted, a device silent, the disk
refusing writes (hil.soak_faults), each for ``--fault-for`` seconds. The store's size budget
is squeezed for the whole run (``--max-bytes``), so eviction runs all along.

"Accelerated" honestly: the agent has no faster clock (its timers mix the injected clock with
asyncio's own), so the soak shortens the demo's poll intervals by ``--speed`` (2: Modbus every
second) and an hour of wall time stores as many readings as ``--speed`` hours of the demo.
Schedules, energy intervals and day boundaries still pass at the real rate.

The closing report: RSS at start, after one hour and at the end, the least-squares slope
(KiB/min) after the first hour, the agent's counters (polled, stored, published, lost by reason)
and a check that every reading polled is stored or counted lost under a reason that an injected
fault explains. Exit status 0 when that holds and the agent stopped cleanly, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import ctypes
import ctypes.util
import functools
import gc
import json
import linecache
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO, cast

from agent.core.clock import system_clock
from agent.core.durations import parse_duration
from agent.demo import _pulses, _retarget, _room_sensors, demo_config
from agent.service import Agent
from agent.status import status_report
from agent.store import read_stats
from drivers.ble.backend import FakeBackend
from drivers.ble.driver import BleDriver
from hil.building import Building
from hil.server import SimulatedBuilding
from hil.soak_faults import (
    FAULT_KINDS,
    Broker,
    DiskPressure,
    FaultKind,
    ScheduledFault,
    device_drop,
    fault_plan,
)
from hil.unit_env import unit_environment

__all__ = ["main", "rss_kib", "slope_kib_per_min"]

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
MIN_INTERVAL_S = 0.25  # no poll faster than this, whatever --speed says
AGENT_START_TIMEOUT_S = 60.0
AGENT_STOP_TIMEOUT_S = 60.0
# A fault the agent has not recovered from this long after it ended, and when the next fault or
# the end of the run comes, counts as not recovered.
RECOVERY_GRACE_S = 10.0
HOUR_S = 3600.0
# An error line of the agent's that says readings were lost ("store: 90 readings could not be
# written to ... and are lost"): the soak compares the sum with the store's counters.
_LOST = re.compile(rb"\b(\d+) readings?\b.*\blost\b")
# The devices a device drop silences, in turn: a Modbus TCP meter, the HVAC controller, the PV.
DROPPED_DEVICES = ("main_meter", "hvac_controller", "pv_inverter")
# The agent's own memory figures, as its counters name them; in the CSV with "agent_" before.
NATIVE_KEYS = (
    "sqlite_kib",
    "malloc_used_kib",
    "malloc_free_kib",
    "py_blocks",
    "pyarenas_kib",
    "pyblocks_kib",
    "pyfree_kib",
)
CSV_FIELDS = (
    "elapsed_s",
    "utc",
    "agent_rss_kib",
    "sim_rss_kib",
    "broker_rss_kib",
    "polled",
    "stored",
    "unsynced",
    "published",
    "lost_unstored",
    "dropped_unsent",
    "evicted_synced",
    "db_bytes",
    "fault",
    *(f"agent_{key}" for key in NATIVE_KEYS),
)


def rss_kib(pid: int) -> int | None:
    """The resident set of process ``pid`` in KiB (VmRSS), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])  # "VmRSS:    123456 kB"
    return None


def slope_kib_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, KiB) points, in KiB per minute (None: under 3 points)."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


# ---- the agent, in the child process --------------------------------------------------------


async def _child(spec: dict[str, Any]) -> int:
    """The demo's agent on the parent's simulated buses; counters as JSON lines on stdout."""
    # As `edge-agent run` logs (agent.cli), to stderr: the parent keeps it in WORKDIR/agent.log.
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    endpoints = {name: (host, port) for name, (host, port) in spec["endpoints"].items()}
    sim = SimpleNamespace(endpoints=endpoints, serial_ports=dict(spec["serial_ports"]))
    config = _retarget(
        demo_config(), cast(SimulatedBuilding, sim), spec["mqtt_url"], push_sources=True
    )
    speed = float(spec["speed"])
    devices = [
        d.model_copy(update={"interval": max(MIN_INTERVAL_S, interval / speed)})
        if isinstance(interval := getattr(d, "interval", None), float)
        else d
        for d in config.devices
    ]
    store = config.store.model_copy(update={"max_bytes": int(spec["max_bytes"])})
    config = config.model_copy(update={"devices": devices, "store": store})
    adverts = FakeBackend()
    agent = Agent(
        config,
        data_dir=Path(spec["data_dir"]),
        drivers={"ble": BleDriver(backend_factory=lambda _config: adverts)},
    )
    building = Building(seed=int(spec["seed"]) + 1)  # the room sensors' and pulses' own weather
    async with asyncio.TaskGroup() as group:
        run = group.create_task(agent.run(stop), name="soak[agent]")
        group.create_task(_room_sensors(agent, building, adverts, stop), name="soak[rooms]")
        group.create_task(_pulses(agent, building, stop), name="soak[pulses]")
        report = group.create_task(_report(agent, float(spec["sample"])), name="soak[report]")
        if spec.get("census"):
            group.create_task(
                _census(Path(spec["census_file"]), float(spec["census"]), stop),
                name="soak[census]",
            )
        if spec.get("mallocstats"):
            group.create_task(
                _mallocstats(Path(spec["mallocstats_file"]), float(spec["mallocstats"]), stop),
                name="soak[mallocstats]",
            )
        if spec.get("tracemalloc"):
            group.create_task(
                _trace(Path(spec["trace_file"]), float(spec["tracemalloc"]), stop),
                name="soak[tracemalloc]",
            )
        await run
        report.cancel()
    _emit(agent, final=True)
    return 0


class _Mallinfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (malloc.h), summed over every malloc arena."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _library(name: str, fallback: str) -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library(name) or fallback)


def _native_memory() -> dict[str, int | None]:
    """Where the agent's anonymous memory is: SQLite's own heap (sqlite3_memory_used), what
    malloc has handed out and what it holds free (glibc mallinfo2), Python's allocated blocks.
    None where this platform's libraries do not say (not glibc, a static SQLite)."""
    figures: dict[str, int | None] = {
        "sqlite_kib": None,
        "malloc_used_kib": None,
        "malloc_free_kib": None,
        "py_blocks": sys.getallocatedblocks(),
    }
    with contextlib.suppress(OSError, AttributeError):
        lib = _library("sqlite3", "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        figures["sqlite_kib"] = int(lib.sqlite3_memory_used()) // 1024
    with contextlib.suppress(OSError, AttributeError):
        libc = _library("c", "libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
        figures["malloc_used_kib"] = (info.uordblks + info.hblkhd) // 1024
        figures["malloc_free_kib"] = info.fordblks // 1024
    return figures


# Python's own allocator (pymalloc) takes 1 MiB arenas straight from mmap: neither malloc's
# figures nor the block count show them. sys._debugmallocstats() does, but only as text on the
# C stderr; the last figures read are kept here for the counters (None until the first).
_PYMALLOC: dict[str, int | None] = {"pyarenas_kib": None, "pyblocks_kib": None, "pyfree_kib": None}
_PYMALLOC_LINES = {
    "Total": "pyarenas_kib",  # the first "Total": the arenas' bytes (the second is the arena map)
    "# bytes in allocated blocks": "pyblocks_kib",
    "# bytes in available blocks": "pyfree_kib",
}


def pymalloc_figures(text: str) -> dict[str, int]:
    """The arenas' size, the bytes in used and in free blocks, from _debugmallocstats' text."""
    figures: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        key = _PYMALLOC_LINES.get(name.strip())
        if sep and key is not None and key not in figures:
            figures[key] = int(value.strip().replace(",", "")) // 1024
    return figures


def _debugmallocstats() -> str:
    """sys._debugmallocstats()'s text: it writes to file descriptor 2, lent to a file meanwhile
    (a log line from another thread in that instant lands in the dump, not in agent.log)."""
    with tempfile.TemporaryFile() as dump:
        saved = os.dup(2)
        sys.stderr.flush()
        try:
            os.dup2(dump.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        dump.seek(0)
        return dump.read().decode("utf-8", "replace")


async def _mallocstats(path: Path, every: float, stop: asyncio.Event) -> None:
    """pymalloc's statistics every ``every`` s: the figures into the counters, the whole text
    (size classes, pools, arenas) appended to ``path``."""
    while not stop.is_set():
        text = _debugmallocstats()
        _PYMALLOC.update(pymalloc_figures(text))
        # The disk fault refuses this too.
        with contextlib.suppress(OSError), path.open("a", encoding="utf-8") as out:
            out.write(f"# {system_clock().wall().isoformat()}\n{text}\n")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()


def census() -> collections.Counter[str]:
    """How many objects of each type the garbage collector tracks (containers and instances:
    not ints, floats or strings, which only what holds them shows)."""
    return collections.Counter(
        f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', '?')}"
        for kind in map(type, gc.get_objects())
    )


async def _census(path: Path, every: float, stop: asyncio.Event) -> None:
    """A census of the agent's objects every ``every`` s, each against the first (taken after
    one period, once start-up is done): the types whose count grew most, to ``path``. A type
    that grows at every census is held somewhere it should not be."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(every):
            await stop.wait()
    first = census()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()
        now = census()
        grown = sorted(((now[k] - first[k], k) for k in now.keys() | first.keys()), reverse=True)
        lines = [f"# {system_clock().wall().isoformat()} {now.total()} objects tracked"]
        lines += [f"{n:+7d} {now[k]:8d} {k}" for n, k in grown[:20] if n]
        with contextlib.suppress(OSError), path.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n\n")


def _counters(agent: Agent) -> dict[str, Any]:
    uplink = agent.uplink
    return {
        **_native_memory(),
        **_PYMALLOC,
        "polled": agent.readings_polled,
        "published": uplink.sent if uplink is not None else 0,
        "backfilled": uplink.backfilled if uplink is not None else 0,
        "connected": uplink.connected if uplink is not None else None,
        "online": {p.device.name: p.health.online for p in agent.pollers},
    }


def _emit(agent: Agent, *, final: bool = False) -> None:
    print(json.dumps({**_counters(agent), "final": final}), flush=True)


async def _report(agent: Agent, every: float) -> None:
    await agent.started.wait()
    while True:
        _emit(agent)
        await asyncio.sleep(every)


async def _trace(path: Path, every: float, stop: asyncio.Event) -> None:
    """tracemalloc snapshots every ``every`` s, each compared with the first (taken after one
    period, once start-up is done): the lines whose allocations grew most, to ``path``."""
    tracemalloc.start(12)
    await asyncio.sleep(every)
    first = tracemalloc.take_snapshot()
    # Not the tracer's own memory: its module, the source lines it reads (linecache), this loop.
    clean = tuple(
        tracemalloc.Filter(False, name)
        for name in (tracemalloc.__file__, linecache.__file__, __file__)
    )
    first = first.filter_traces(clean)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()
        snapshot = tracemalloc.take_snapshot().filter_traces(clean)
        lines = [f"# {system_clock().wall().isoformat()} traced {tracemalloc.get_traced_memory()}"]
        for stat in snapshot.compare_to(first, "traceback")[:15]:
            lines.append(f"{stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks")
            lines.extend(f"    {frame}" for frame in stat.traceback.format()[-8:])
        # A slow growth spread over many small sites shows only when summed by file.
        lines.append("by file:")
        lines.extend(
            f"  {stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks "
            f"{stat.traceback[0].filename}"
            for stat in snapshot.compare_to(first, "filename")[:12]
        )
        # The disk fault refuses this too.
        with contextlib.suppress(OSError), path.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n\n")


# ---- the soak, in this process ----------------------------------------------------------------


@dataclass
class _Run:
    """What the soak saw of the agent."""

    counters: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    log_lines: int = 0
    log_lost: int = 0  # readings the agent's error lines say were lost
    warnings: int = 0
    errors: int = 0
    tracebacks: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    samples: list[tuple[float, int]] = field(default_factory=list)
    sim_samples: list[tuple[float, int]] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    recovery: list[str] = field(default_factory=list)
    fault: str = ""  # the fault in progress
    quiet: asyncio.Event = field(default_factory=asyncio.Event)  # set while no fault is
    unrecovered: int = 0
    readers: list[asyncio.Task[None]] = field(default_factory=list)


async def _read_counters(stream: asyncio.StreamReader, run: _Run) -> None:
    async for raw in stream:
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if record.get("final"):
                run.final = record
            run.counters = record
            run.started.set()


async def _read_log(stream: asyncio.StreamReader, run: _Run, log_path: Path) -> None:
    with log_path.open("ab") as log_file:
        async for line in stream:
            run.log_lines += 1
            run.warnings += b"WARNING" in line
            run.errors += b"ERROR" in line or b"CRITICAL" in line
            run.tracebacks += b"Traceback (most recent call last)" in line
            if b"ERROR" in line and (lost := _LOST.search(line)):
                run.log_lost += int(lost.group(1))
            with contextlib.suppress(OSError):
                log_file.write(line)
                log_file.flush()


def _say(out: TextIO, text: str) -> None:
    print(f"[{system_clock().wall():%H:%M:%S}] {text}", file=out, flush=True)


async def _sample(
    run: _Run,
    *,
    pid: int,
    broker: Broker,
    db: Path,
    csv_path: Path,
    every: float,
    t0: float,
) -> None:
    loop = asyncio.get_running_loop()
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        while True:
            elapsed = loop.time() - t0
            agent_rss = rss_kib(pid)
            sim_rss = rss_kib(os.getpid())
            if agent_rss is None or sim_rss is None:
                return
            run.samples.append((elapsed, agent_rss))
            run.sim_samples.append((elapsed, sim_rss))
            stats = None
            with contextlib.suppress(Exception):  # a read that meets a busy store is skipped
                stats = await asyncio.to_thread(read_stats, db)
            counters = run.counters
            writer.writerow(
                [
                    f"{elapsed:.1f}",
                    f"{system_clock().wall():%Y-%m-%dT%H:%M:%SZ}",
                    agent_rss,
                    sim_rss,
                    rss_kib(broker.pid) if broker.pid is not None else "",
                    counters.get("polled", ""),
                    stats.last_seq if stats else "",
                    stats.unsynced if stats else "",
                    counters.get("published", ""),
                    stats.dropped if stats else "",
                    stats.evicted_unsynced if stats else "",
                    stats.evicted_synced if stats else "",
                    stats.bytes if stats else "",
                    run.fault,
                    *("" if counters.get(key) is None else counters[key] for key in NATIVE_KEYS),
                ]
            )
            out.flush()
            await asyncio.sleep(every)


def _noticed(fault: ScheduledFault, run: _Run, warnings_before: int) -> bool:
    """The agent shows the fault: the uplink down, the device offline, a store warning."""
    if fault.kind == "broker_restart":
        return run.counters.get("connected") is False
    if fault.kind == "device_drop":
        return run.counters.get("online", {}).get(fault.target) is False
    return run.warnings > warnings_before


def _recovered(fault: ScheduledFault, run: _Run, stored_before: int, db: Path) -> bool:
    counters = run.counters
    if fault.kind == "broker_restart":
        return bool(counters.get("connected"))
    if fault.kind == "device_drop":
        return bool(counters.get("online", {}).get(fault.target))
    with contextlib.suppress(Exception):
        return read_stats(db).last_seq > stored_before
    return False


async def _inject(
    plan: Sequence[ScheduledFault],
    run: _Run,
    *,
    sim: SimulatedBuilding,
    broker: Broker,
    pid: int,
    db: Path,
    t0: float,
    duration: float,
    out: TextIO,
) -> None:
    loop = asyncio.get_running_loop()
    for number, fault in enumerate(plan):
        await asyncio.sleep(max(0.0, t0 + fault.at - loop.time()))
        stored_before = (await asyncio.to_thread(read_stats, db)).last_seq
        _say(out, f"fault {number + 1}/{len(plan)}: {fault.label()} for {fault.lasting:g} s")
        run.fault = fault.label()
        run.quiet.clear()
        injected: contextlib.AbstractAsyncContextManager[Any]
        if fault.kind == "broker_restart":
            injected = broker.down()
        elif fault.kind == "device_drop":
            injected = device_drop(sim, fault.target)
        else:
            injected = DiskPressure(pid)
        warnings_before = run.warnings
        noticed = False
        async with injected:
            end = loop.time() + fault.lasting
            while loop.time() < end:
                noticed = noticed or _noticed(fault, run, warnings_before)
                await asyncio.sleep(min(0.2, max(0.0, end - loop.time())))
        run.fault = ""
        run.quiet.set()
        run.injected.append(fault.kind)
        ended = loop.time()
        # Until the next fault, or the end of the run.
        limit = t0 + (plan[number + 1].at if number + 1 < len(plan) else duration)
        limit = max(limit, ended + RECOVERY_GRACE_S)
        # A fault shorter than the agent's timeouts may be noticed only after it ended.
        recovered = False
        while loop.time() < limit:
            noticed = noticed or _noticed(fault, run, warnings_before)
            recovered = noticed and _recovered(fault, run, stored_before, db)
            if recovered:
                break
            await asyncio.sleep(0.2)
        took = loop.time() - ended
        verdict = (
            f"recovered {took:.1f} s after it ended"
            if recovered
            else f"NOT recovered {took:.0f} s after it ended"
        )
        run.unrecovered += not (noticed and recovered)
        verdict = ("noticed" if noticed else "NOT noticed") + f" by the agent, {verdict}"
        run.recovery.append(f"{fault.label()}: {verdict}")
        _say(out, f"fault {number + 1} ended: {verdict}")


async def _start_agent(
    spec: dict[str, Any], run: _Run, workdir: Path
) -> asyncio.subprocess.Process:
    """The agent in a child process, its counters and log read into ``run``; returns once it
    reports (or raises TimeoutError, the child killed)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil.soak",
        "--child",
        json.dumps(spec),
        cwd=PACKAGE_ROOT,  # the child runs this very hil (a checkout's, or the installed one)
        env={**os.environ, **unit_environment()},  # as the unit runs it: its memory is measured
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    run.readers = [
        asyncio.create_task(_read_counters(child.stdout, run)),
        asyncio.create_task(_read_log(child.stderr, run, workdir / "agent.log")),
    ]
    try:
        async with asyncio.timeout(AGENT_START_TIMEOUT_S):
            await run.started.wait()
    except TimeoutError:
        child.kill()
        await child.wait()
        raise
    return child


async def _stop_agent(child: asyncio.subprocess.Process, run: _Run) -> None:
    """SIGTERM, as systemd stops the service; SIGKILL if it does not stop in time."""
    if child.returncode is None:
        child.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(AGENT_STOP_TIMEOUT_S):
            await child.wait()
    except TimeoutError:
        child.kill()
        await child.wait()
    await asyncio.gather(*run.readers, return_exceptions=True)


async def _soak(args: argparse.Namespace, out: TextIO) -> int:
    workdir: Path = args.workdir
    data_dir = workdir / "data"
    db = data_dir / "readings.db"
    csv_path: Path = args.csv or workdir / "rss.csv"
    duration = _duration(args)
    plan = fault_plan(
        duration=duration,
        every=args.fault_every,
        lasting=args.fault_for,
        devices=DROPPED_DEVICES,
        first_at=args.first_fault,
        kinds=args.faults,
        drop_lasting=args.drop_for,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    run = _Run()
    run.quiet.set()
    async with (
        Broker(workdir / "broker") as broker,
        SimulatedBuilding(building=Building(seed=args.seed)) as sim,
    ):
        spec = {
            "endpoints": sim.endpoints,
            "serial_ports": sim.serial_ports,
            "mqtt_url": broker.url,
            "data_dir": str(data_dir),
            "speed": args.speed,
            "max_bytes": args.max_bytes,
            "seed": args.seed,
            "sample": min(args.sample, 1.0),
            "census": args.census,
            "census_file": str(workdir / "census.txt"),
            "mallocstats": args.mallocstats,
            "mallocstats_file": str(workdir / "mallocstats.txt"),
            "tracemalloc": args.tracemalloc,
            "trace_file": str(workdir / "tracemalloc.txt"),
        }
        try:
            child = await _start_agent(spec, run, workdir)
        except TimeoutError:
            _say(out, f"the agent did not start within {AGENT_START_TIMEOUT_S:g} s")
            return 1
        _say(
            out,
            f"soak: {duration / 60:g} min, agent pid {child.pid}, broker {broker.url}, "
            f"{len(plan)} faults planned, data in {data_dir}, samples to {csv_path}",
        )
        t0 = loop.time()
        sampler = asyncio.create_task(
            _sample(
                run,
                pid=child.pid,
                broker=broker,
                db=db,
                csv_path=csv_path,
                every=args.sample,
                t0=t0,
            )
        )
        injector = asyncio.create_task(
            _inject(
                plan,
                run,
                sim=sim,
                broker=broker,
                pid=child.pid,
                db=db,
                t0=t0,
                duration=duration,
                out=out,
            )
        )
        exited = asyncio.create_task(child.wait())
        stopped = asyncio.create_task(stop.wait())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await asyncio.wait([exited, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        longest = max((fault.lasting for fault in plan), default=0.0)
        # Let a fault in progress end (each undoes itself) and the agent recover from it, then
        # stop the agent cleanly. (Interrupted: only let the fault end.)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest + RECOVERY_GRACE_S + 1):
                await (run.quiet.wait() if stop.is_set() else asyncio.shield(injector))
        for task in (injector, sampler):
            task.cancel()
        await asyncio.gather(injector, sampler, return_exceptions=True)
        await _stop_agent(child, run)
        elapsed = loop.time() - t0
    status = await asyncio.to_thread(status_report, db) if db.exists() else None
    return _summary(
        run=run, status=status, exit_code=child.returncode, elapsed=elapsed, plan=plan, out=out
    )


def _summary(
    *,
    run: _Run,
    status: dict[str, Any] | None,
    exit_code: int | None,
    elapsed: float,
    plan: Sequence[ScheduledFault],
    out: TextIO,
) -> int:
    def at(seconds: float) -> str:
        near = [v for t, v in run.samples if t >= seconds]
        return f"{near[0]} KiB" if near else "n/a (run shorter)"

    def slope(points: Sequence[tuple[float, int]]) -> str:
        value = slope_kib_per_min([(t, float(v)) for t, v in points])
        return "n/a (too few samples)" if value is None else f"{value:+.1f} KiB/min"

    samples = run.samples
    after_hour = [(t, v) for t, v in samples if t >= HOUR_S]
    lines = [
        f"soak over: {elapsed / 60:.1f} min, agent exit status {exit_code}, "
        f"{len(samples)} RSS samples",
        f"agent RSS: start {samples[0][1] if samples else 'n/a'} KiB, after 1 h {at(HOUR_S)}, "
        f"end {samples[-1][1] if samples else 'n/a'} KiB",
        f"agent RSS slope: first 15 min {slope([p for p in samples if p[0] <= 900])}, "
        f"after the first hour {slope(after_hour)} ({len(after_hour)} samples), "
        f"last half {slope(samples[len(samples) // 2 :])}",
        f"simulator+soak process RSS: start "
        f"{run.sim_samples[0][1] if run.sim_samples else 'n/a'} KiB, end "
        f"{run.sim_samples[-1][1] if run.sim_samples else 'n/a'} KiB, "
        f"slope after the first hour {slope([p for p in run.sim_samples if p[0] >= HOUR_S])}",
        f"agent log: {run.log_lines} lines, {run.warnings} warnings, {run.errors} errors, "
        f"{run.tracebacks} tracebacks",
        f"faults injected: {len(run.injected)} of {len(plan)} planned "
        + ", ".join(f"{k} x{run.injected.count(k)}" for k in sorted(set(run.injected))),
    ]
    lines += [f"  {line}" for line in run.recovery]
    run.unrecovered += len(run.injected) - len(run.recovery)  # cut short by the end of the run
    if run.unrecovered:
        lines.append(f"{run.unrecovered} faults not noticed or not recovered from")
    final = run.final or run.counters
    ok = exit_code == 0 and run.final is not None and not run.unrecovered
    if status is None:
        lines.append("no store: the agent never wrote one")
        ok = False
    else:
        checked, balanced = _loss_check(run, status["buffer"], final, clean=run.final is not None)
        lines += checked
        ok = ok and balanced
    lines.append("verdict: " + ("OK" if ok else "FAILED"))
    print("\n".join(lines), file=out, flush=True)
    return 0 if ok else 1


def _loss_check(
    run: _Run, buf: dict[str, Any], final: dict[str, Any], *, clean: bool
) -> tuple[list[str], bool]:
    """Every reading polled is stored or counted lost under a reason an injected fault explains;
    every stored reading is published, evicted unsent or still waiting. Returns the report's
    lines and whether all of that holds."""
    polled = int(final.get("polled", 0))
    stored = int(buf["last_seq"])
    lost_unstored = int(buf["lost_unstored"])
    dropped_unsent = int(buf["dropped_unsent"])
    published = int(final.get("published", 0))
    lines = [
        f"agent counters: polled {polled}, stored {stored}, published {published} "
        f"(of them {final.get('backfilled', 0)} as backlog), still unsent {buf['unsynced']}",
        f"lost by reason: never stored (store could not write) {lost_unstored}, "
        f"evicted before sending (size budget) {dropped_unsent}; "
        f"evicted after sending (not lost) {buf['evicted_synced']}",
    ]
    ok = True
    if run.log_lost > lost_unstored + dropped_unsent:
        lines.append(
            f"the agent's log says {run.log_lost} readings were lost, the store counts "
            f"{lost_unstored + dropped_unsent}: LOST WITHOUT A COUNT"
        )
        ok = False
    if not clean:
        # Its last counters are from before it died: the balances below would not hold anyway.
        lines.append("the agent did not stop cleanly: counters from its last report, no balance")
        return lines, False
    unexplained = polled - stored - lost_unstored
    lines.append(
        f"polled - stored - counted lost = {unexplained}"
        + (" (nothing lost uncounted)" if unexplained == 0 else " LOST WITHOUT A COUNT")
    )
    if unexplained != 0:
        ok = False
    if lost_unstored and "disk_full" not in run.injected:
        lines.append("readings lost unstored without a disk fault: UNEXPLAINED")
        ok = False
    if dropped_unsent and "broker_restart" not in run.injected:
        lines.append("readings evicted unsent without a broker outage: UNEXPLAINED")
        ok = False
    if (accounted := published + dropped_unsent + int(buf["unsynced"])) < stored:
        lines.append(
            f"published + evicted unsent + unsent = {accounted} < stored {stored}: "
            "readings neither sent nor waiting"
        )
        ok = False
    return lines, ok


def _duration(args: argparse.Namespace) -> float:
    return float(args.hours * HOUR_S + args.minutes * 60 + args.seconds)


def _kinds(text: str) -> tuple[FaultKind, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if unknown := [k for k in kinds if k not in FAULT_KINDS]:
        raise argparse.ArgumentTypeError(
            f"no fault {', '.join(unknown)}; faults are {', '.join(FAULT_KINDS)}"
        )
    return cast(tuple[FaultKind, ...], kinds)


def _size(text: str) -> int:
    units = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text.removesuffix(suffix)) * factor)
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil.soak",
        description="Run the demo building and the agent for hours with faults injected.",
    )
    parser.add_argument("--hours", type=float, default=0.0)
    parser.add_argument("--minutes", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument(
        "--speed",
        type=float,
        default=2.0,
        help="poll the demo's devices this many times as often (default 2: Modbus every 1 s)",
    )
    parser.add_argument("--sample", type=float, default=10.0, help="RSS sample period, s")
    parser.add_argument("--fault-every", type=float, default=300.0, help="s between faults")
    parser.add_argument("--fault-for", type=float, default=30.0, help="s each fault lasts")
    parser.add_argument(
        "--drop-for",
        type=float,
        default=None,
        help="s a device drop lasts (default --fault-for); one shorter than the bus timeout "
        "plus a poll goes unnoticed, as it should",
    )
    parser.add_argument(
        "--faults",
        type=_kinds,
        default=FAULT_KINDS,
        metavar="KIND,...",
        help=f"the faults injected, in turn (default {','.join(FAULT_KINDS)}; empty: none)",
    )
    parser.add_argument(
        "--first-fault", type=float, default=None, help="s to the first fault (default: a period)"
    )
    parser.add_argument(
        "--max-bytes", type=_size, default=_size("8MiB"), help="the store's size budget"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("soak-data"))
    parser.add_argument("--csv", type=Path, default=None, help="default WORKDIR/rss.csv")
    parser.add_argument(
        "--tracemalloc",
        type=parse_duration,
        default=0.0,
        metavar="PERIOD",
        help="trace the agent's allocations; growth every PERIOD to WORKDIR/tracemalloc.txt",
    )
    parser.add_argument(
        "--census",
        type=parse_duration,
        default=0.0,
        metavar="PERIOD",
        help="count the agent's objects by type every PERIOD; the types that grew to "
        "WORKDIR/census.txt",
    )
    parser.add_argument(
        "--mallocstats",
        type=parse_duration,
        default=0.0,
        metavar="PERIOD",
        help="read Python's allocator statistics (arenas, pools) every PERIOD: figures to the "
        "CSV, the whole text to WORKDIR/mallocstats.txt",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.child is not None:
        return asyncio.run(_child(json.loads(args.child)))
    if _duration(args) <= 0:
        parser.error("give a duration: --hours, --minutes or --seconds")
    if not args.speed > 0:
        parser.error("--speed must be positive")
    args.workdir = args.workdir.resolve()  # the child runs elsewhere
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    return asyncio.run(_soak(args, out))


if __name__ == "__main__":
    sys.exit(main())
