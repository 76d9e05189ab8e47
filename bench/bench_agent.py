"""End-to-end benchmark: the real agent against simulated Modbus TCP meters and a real broker.

For each case (10, 50 and 200 meters by default; 200 on 4 lines) it starts, on loopback:
- the meters: a child process serving pymodbus TCP servers, one per line, each meter a unit id
  with 35 float32 points in four clusters (bench/make_site.py), optionally ``--latency-ms``
  before every reply, counting the requests it answers;
- mosquitto on a free port (as tests/conftest.py does);
- the agent: ``edge-agent run`` on a generated config in a temp dir (1 s poll), or the bare
  reference (bench/reference_poller.py: 4 coalesced reads per meter, publish, store nothing);
and, after a warm-up, measures over the window, from this process (the subscriber):

- pts/CPU-s: readings delivered to the broker per CPU-second of the poller process
  (user + system from /proc/<pid>/stat; the meters and the broker are not counted);
- RSS MB: the poller's peak resident set (VmHWM); anon MB: the part of its resident set at the
  end of the window that is its own heap (RssAnon), the rest being pages of the interpreter's
  and the libraries' files (libpython, libcrypto, pydantic's core), which the kernel shares and
  can drop and read again under pressure;
- lag p50/p95: MQTT receive time minus the reading's ``ts``;
- req/cyc: requests the meters answered per meter-cycle delivered (35 readings);
- pts/s: readings delivered per second, and the nominal rate (meters x 35 / interval);
- first data: seconds from starting the process to its first delivered reading;
- per meter: the fewest and most readings one meter delivered in the window, and how many meters
  were starved (delivered less than half the mean: a saturated line must be shared in turn);
- backlog: readings the agent's store still held unsent at the end of the window (its own
  `edge-agent status --json`): it stays small while the uplink gets its turn, and grows without
  end when polling starves it (the reference stores nothing: "-").

After the runs of one size, the agent's delivered pts/s as a share of the reference's in the same
run (``agent/ref``): what the saturated-line and fairness checks of issue #14 compare.

Run it from the checkout, in the agent's venv, niced on a shared machine. The agent runs this
checkout's code (``--code DIR`` runs another copy of agent/ and drivers/, e.g. a `git archive`
of an older commit, to compare two versions in turn). Short windows give indicative figures
only; 60 s and two runs per case are what the issue's table used:

    nice -n 10 .venv/bin/python -m bench.bench_agent                 # 10, 50, 200 meters
    nice -n 10 .venv/bin/python -m bench.bench_agent --meters 10 --latency-ms 5 --window 30
    nice -n 10 .venv/bin/python -m bench.bench_agent --meters 50 --lines 1 --latency-ms 5 \
        --which agent reference --batch-window 250ms

The saturated line (50 meters at 5 ms per request on one connection: about 1,450 points/s of the
nominal 1,750 is all the line can carry) and a saturating poll load (no latency, 10 connections,
every meter polled every 20 ms: far more than one process can poll, store and publish, so the
question is whether the store and the uplink still get their turn: delivered pts/s, lag and the
unsent backlog say):

    nice -n 10 .venv/bin/python -m bench.bench_agent --meters 50 --lines 1 --latency-ms 5
    nice -n 10 .venv/bin/python -m bench.bench_agent --meters 50 --lines 10 --interval 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiomqtt

from bench.installed import compile_code
from bench.make_site import CLUSTERS, POINTS_PER_METER, meter_layout, site_yaml
from hil.net import free_port
from hil.unit_env import unit_environment

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the meters (a child process) -------------------------------------------------------------


async def serve_meters(meters: int, lines: int, latency: float) -> None:
    """Serve every line; print the ports as one JSON line; answer "count" on stdin with the
    number of requests served so far; stop when stdin closes."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    served = 0

    async def action(*_: object) -> None:
        nonlocal served
        served += 1
        if latency:
            await asyncio.sleep(latency)

    def meter(unit: int) -> SimDevice:
        holding = []
        for start, count in CLUSTERS:
            words: list[int] = []
            for i in range(count):
                words += struct.unpack(">HH", struct.pack(">f", 230.0 + unit + i / 10))
            holding.append(SimData(address=start, values=words, datatype=DataType.REGISTERS))
        bits = [SimData(address=0, count=16, values=False, datatype=DataType.BITS)]
        none = [SimData(address=0, count=1, datatype=DataType.INVALID)]
        return SimDevice(id=unit, simdata=(bits, bits, holding, none), action=action)  # type: ignore[arg-type]

    units: list[list[int]] = [[] for _ in range(lines)]
    for _, line, unit in meter_layout(meters, lines):
        units[line].append(unit)
    servers = []
    for line_units in units:
        server = ModbusTcpServer(context=[meter(u) for u in line_units], address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        servers.append(server)
    ports = [s.transport.sockets[0].getsockname()[1] for s in servers]  # type: ignore[union-attr]
    print(json.dumps({"ports": ports}), flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while line := await reader.readline():
        if line.strip() == b"count":
            print(json.dumps({"requests": served}), flush=True)
    for server in servers:
        await server.shutdown()


class Meters:
    """The meters' child process."""

    def __init__(self, meters: int, lines: int, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_agent", "--serve-meters", str(meters),
             "--lines", str(lines), "--latency-ms", str(latency * 1e3)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True,
            stderr=subprocess.DEVNULL,  # pymodbus's traces of requests cut short at the end
        )  # fmt: skip
        self.ports: list[int] = json.loads(self._line())["ports"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulated meters did not start")
        return line

    def requests(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(json.loads(self._line())["requests"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- the broker --------------------------------------------------------------------------------


@contextlib.contextmanager
def mosquitto(workdir: Path):  # type: ignore[no-untyped-def]
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"user {os.environ.get('USER') or 'root'}\nmax_queued_messages 100000\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# -- measuring ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (proc(5))


def status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status (VmHWM: peak resident set; RssAnon: its heap)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Subscriber:
    """Every readings message: lag per reading, and counts inside the window."""

    counting: bool = False
    first_at: float | None = None
    points: int = 0
    lags: list[float] = field(default_factory=list)
    per_device: dict[str, int] = field(default_factory=dict)

    def take(self, payload: bytes) -> None:
        now = time.time()
        if self.first_at is None:
            self.first_at = time.monotonic()
        if not self.counting:
            return
        counts = self.per_device
        for reading in json.loads(payload)["readings"]:
            ts = datetime.fromisoformat(reading["ts"].replace("Z", "+00:00")).timestamp()
            self.lags.append(now - ts)
            self.points += 1
            counts[reading["device"]] = counts.get(reading["device"], 0) + 1


@contextlib.asynccontextmanager
async def subscribed(port: int, sub: Subscriber) -> AsyncIterator[None]:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-sub") as client:
        await client.subscribe("bench/+/+/readings", qos=0)

        async def pump() -> None:
            async for message in client.messages:
                sub.take(bytes(message.payload))  # type: ignore[arg-type]

        task = asyncio.create_task(pump())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Case:
    meters: int
    lines: int
    latency: float
    which: str
    interval: float = 1.0


@dataclass
class Result:
    case: Case
    pts_per_cpu_s: float
    rss_mb: float
    anon_mb: float
    lag_p50: float
    lag_p95: float
    req_per_cycle: float
    pts_per_s: float
    first_data: float
    per_meter_min: int
    per_meter_max: int
    starved: int
    backlog: int | None


def spread(counts: dict[str, int], names: Sequence[str]) -> tuple[int, int, int]:
    """(fewest, most, starved) readings per meter over ``names``; a meter never heard of counts
    0, and a meter is starved when it delivered less than half the mean."""
    got = [counts.get(name, 0) for name in names]
    if not got:
        return 0, 0, 0
    mean = sum(got) / len(got)
    return min(got), max(got), sum(1 for n in got if n < mean / 2)


def unsent_backlog(work: Path) -> int | None:
    """Readings the agent's store holds unsent (``edge-agent status --json``), or None."""
    agent = Path(sys.executable).with_name("edge-agent")
    done = subprocess.run(
        [str(agent), "status", "--json", "--data-dir", str(work / "data")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return None
    return int(json.loads(done.stdout)["buffer"]["unsynced"])


def _command(
    case: Case,
    work: Path,
    ports: list[int],
    mqtt_port: int,
    batch: str | None,
    *,
    hvac_energy: bool = False,
) -> list[str]:
    if case.which == "reference":
        return [sys.executable, "-m", "bench.reference_poller", "--mqtt", f"127.0.0.1:{mqtt_port}",
                "--meters", str(case.meters), "--ports", *map(str, ports),
                "--interval", str(case.interval)]  # fmt: skip
    config = work / "site.yaml"
    config.write_text(
        site_yaml(case.meters, case.lines, ports, mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}",
                  batch_window=batch, interval=f"{case.interval * 1e3:g}ms",
                  hvac_energy=hvac_energy),
        encoding="utf-8",
    )  # fmt: skip
    agent = Path(sys.executable).with_name("edge-agent")
    return [str(agent), "--log-level", "warning", "run", "--config", str(config),
            "--data-dir", str(work / "data")]  # fmt: skip


async def run_case(
    case: Case,
    *,
    warmup: float,
    window: float,
    batch: str | None,
    code: Path = ROOT,
    hvac_energy: bool = False,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        work = Path(tmp)
        meters = Meters(case.meters, case.lines, case.latency)
        try:
            with mosquitto(work) as mqtt_port:
                sub = Subscriber()
                async with subscribed(mqtt_port, sub):
                    cmd = _command(
                        case, work, meters.ports, mqtt_port, batch, hvac_energy=hvac_energy
                    )
                    started = time.monotonic()
                    env = {
                        **os.environ,
                        **unit_environment(),  # both as the unit runs the agent
                        "PYTHONPATH": str(code if case.which == "agent" else ROOT),
                    }
                    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, env=env)  # noqa: ASYNC220 - /proc needs its pid
                    try:
                        await asyncio.sleep(warmup)
                        if proc.poll() is not None:
                            raise RuntimeError(f"{case.which} exited with {proc.returncode}")
                        cpu0, req0 = cpu_seconds(proc.pid), meters.requests()
                        sub.counting = True
                        t0 = time.monotonic()
                        await asyncio.sleep(window)
                        sub.counting = False
                        elapsed = time.monotonic() - t0
                        cpu = cpu_seconds(proc.pid) - cpu0
                        requests = meters.requests() - req0
                        rss = status_mb(proc.pid, "VmHWM")
                        anon = status_mb(proc.pid, "RssAnon")
                        backlog = (
                            await asyncio.to_thread(unsent_backlog, work)
                            if case.which == "agent"
                            else None
                        )
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        try:
                            proc.wait(timeout=15)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
        finally:
            meters.close()
    lags = sorted(sub.lags) or [float("nan")]
    names = [name for name, _, _ in meter_layout(case.meters, case.lines)]
    fewest, most, starved = spread(sub.per_device, names)
    return Result(
        case=case,
        pts_per_cpu_s=sub.points / cpu if cpu else float("nan"),
        rss_mb=rss,
        anon_mb=anon,
        lag_p50=statistics.median(lags),
        lag_p95=lags[min(len(lags) - 1, int(0.95 * len(lags)))],
        req_per_cycle=requests / (sub.points / POINTS_PER_METER) if sub.points else float("nan"),
        pts_per_s=sub.points / elapsed,
        first_data=(sub.first_at - started) if sub.first_at is not None else float("nan"),
        per_meter_min=fewest,
        per_meter_max=most,
        starved=starved,
        backlog=backlog,
    )


def _row(r: Result) -> str:
    c = r.case
    nominal = c.meters * POINTS_PER_METER / c.interval
    backlog = "-" if r.backlog is None else f"{r.backlog:,}"
    return (
        f"{c.which:<9} {c.meters:>6} {c.lines:>5} {c.latency * 1e3:>6.0f} "
        f"{r.pts_per_cpu_s:>10,.0f} "
        f"{r.rss_mb:>7.1f} {r.anon_mb:>7.1f} "
        f"{r.lag_p50:>7.3f} {r.lag_p95:>7.3f} {r.req_per_cycle:>8.2f} "
        f"{r.pts_per_s:>8,.0f}/{nominal:<7,.0f} {r.first_data:>6.2f} "
        f"{r.per_meter_min:>6,}/{r.per_meter_max:<6,} {r.starved:>7} {backlog:>8}"
    )


HEADER = (
    f"{'poller':<9} {'meters':>6} {'lines':>5} {'lat ms':>6} {'pts/CPU-s':>10} {'RSS MB':>7} "
    f"{'anon MB':>7} {'lag p50':>7} {'lag p95':>7} {'req/cyc':>8} {'pts/s / nominal':>16} "
    f"{'first':>6} "
    f"{'per meter':>13} {'starved':>7} {'backlog':>8}"
)


def _ratio(results: Sequence[Result]) -> str | None:
    """The agent's delivered pts/s as a share of the reference's, when both ran."""
    by = {r.case.which: r for r in results}
    if "agent" not in by or "reference" not in by or not by["reference"].pts_per_s:
        return None
    share = by["agent"].pts_per_s / by["reference"].pts_per_s
    return (
        f"agent/ref {by['agent'].case.meters} meters: {share * 100:.1f} % of the reference's "
        f"delivered pts/s ({by['agent'].pts_per_s:,.0f} / {by['reference'].pts_per_s:,.0f})"
    )


async def main_async(args: argparse.Namespace) -> None:
    compile_code(args.code)  # as installed: bench/installed.py
    print(HEADER, flush=True)
    for meters in args.meters:
        lines = args.lines or max(1, meters // 50)
        results = []
        for which in args.which:
            case = Case(meters, lines, args.latency_ms / 1e3, which, args.interval)
            result = await run_case(
                case,
                warmup=args.warmup,
                window=args.window,
                batch=args.batch_window,
                code=args.code,
                hvac_energy=args.hvac_energy,
            )
            results.append(result)
            print(_row(result), flush=True)
        if (ratio := _ratio(results)) is not None:
            print(ratio, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--lines", type=int, default=0, help="default: one per 50 meters")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before the window")
    parser.add_argument("--which", nargs="+", choices=["agent", "reference"],
                        default=["agent", "reference"])  # fmt: skip
    parser.add_argument("--batch-window", default=None, help="the agent's store.batch_window")
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="the directory the agent's packages are imported from (default: this checkout)",
    )
    parser.add_argument(
        "--hvac-energy",
        action="store_true",
        help="the agent's site has HVAC zones and energy accounting too (bench/make_site.py)",
    )
    parser.add_argument("--serve-meters", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_meters:
        asyncio.run(serve_meters(args.serve_meters, args.lines or 1, args.latency_ms / 1e3))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
