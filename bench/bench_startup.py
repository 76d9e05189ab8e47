"""Start-up benchmark: what the agent costs before it does any work, measured from outside.

- import: `python -c "import agent.daemon"`, the `edge-agent run` path before the config is
  read (a Modbus-only site), and the same with the parts a site with `hvac:` and `energy:`
  sections imports besides (`agent.hvac.controller`, `agent.energy.live`);
- validate: `edge-agent validate` of 200 meters with 35 explicit points each and of 200
  SDM630 profile meters (bench/make_site.py);
- first data: seconds from starting `edge-agent run` to the first reading at the broker, for
  10 and 50 simulated meters (a pymodbus child process and mosquitto on loopback, as in
  bench/bench_agent.py; ``--hvac-energy``: with HVAC zones and energy accounting too), and the
  agent's peak RSS by then.

The code is compiled first, as `pip install` does (bench/installed.py).

Each child is reaped with os.wait4, whose resource usage gives its CPU seconds (user + system)
and its peak resident set (ru_maxrss, getrusage(2)); the first-data case reads VmHWM from
/proc/<pid>/status (proc(5)) while the agent runs. Each figure is the median of --runs runs,
with the lowest and highest beside it: on a shared machine quote the median.

    nice -n 10 .venv/bin/python -m bench.bench_startup
    nice -n 10 .venv/bin/python -m bench.bench_startup --runs 7 --only import validate
    nice -n 10 .venv/bin/python -m bench.bench_startup --only first --meters 50 --hvac-energy
    git archive HEAD~3 agent drivers | tar -x -C /tmp/old && \
        nice -n 10 .venv/bin/python -m bench.bench_startup --code /tmp/old
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.bench_agent import Meters, Subscriber, mosquitto, status_mb, subscribed
from bench.installed import compile_code
from bench.make_site import HVAC_ZONES, site_yaml
from hil.unit_env import unit_environment

ROOT = Path(__file__).resolve().parents[1]
EDGE_AGENT = [sys.executable, "-m", "agent"]
IMPORTS = {
    "import (Modbus site)": "import agent.daemon",
    "import (+ HVAC, energy)": "import agent.daemon, agent.hvac.controller, agent.energy.live",
}


def _env() -> dict[str, str]:
    # as the unit runs the agent (its Environment= lines), the code chosen by BENCH_CODE
    return {
        **os.environ,
        **unit_environment(),
        "PYTHONPATH": os.environ.get("BENCH_CODE", str(ROOT)),
    }


def _reaped(cmd: Sequence[str]) -> tuple[float, float, float]:
    """Run ``cmd`` to its end: (wall s, CPU s, peak RSS MB) of that one process. It runs in the
    temp directory: `-c` and `-m` put the working directory first on the path, ahead of the
    code chosen by PYTHONPATH."""
    cwd = tempfile.gettempdir()
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    error = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {error[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _row(name: str, samples: list[tuple[float, ...]], heads: Sequence[str]) -> str:
    cells = []
    for i, head in enumerate(heads):
        values = [s[i] for s in samples]
        cells.append(
            f"{head} {statistics.median(values):6.3f} ({min(values):.3f}-{max(values):.3f})"
            if head != "MB"
            else f"{head} {statistics.median(values):5.1f} ({min(values):.1f}-{max(values):.1f})"
        )
    return f"{name:<28} " + "  ".join(cells)


def bench_imports(runs: int) -> None:
    for name, code in IMPORTS.items():
        samples = [_reaped([sys.executable, "-c", code]) for _ in range(runs)]
        print(_row(name, samples, ("wall s", "CPU s", "MB")), flush=True)


def bench_validate(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        sites = {
            "validate 200 explicit": site_yaml(200, 4, [15020, 15021, 15022, 15023]),
            "validate 200 SDM630": site_yaml(
                200, 4, [15020, 15021, 15022, 15023], profile="eastron-sdm630"
            ),
        }
        for name, text in sites.items():
            path = Path(tmp) / "site.yaml"
            path.write_text(text, encoding="utf-8")
            samples = [_reaped([*EDGE_AGENT, "validate", str(path)]) for _ in range(runs)]
            print(_row(name, samples, ("wall s", "CPU s", "MB")), flush=True)


async def _first_data(
    meters: Meters, count: int, mqtt_port: int, work: Path, *, hvac_energy: bool
) -> tuple[float, ...]:
    """One start of the agent: (seconds to the first reading at the broker, peak RSS MB)."""
    sub = Subscriber()
    data = work / f"data-{time.monotonic_ns()}"
    config = work / "site.yaml"
    url = f"mqtt://127.0.0.1:{mqtt_port}"
    config.write_text(
        site_yaml(count, 1, meters.ports, mqtt_url=url, hvac_energy=hvac_energy), "utf-8"
    )
    async with subscribed(mqtt_port, sub):
        started = time.monotonic()
        proc = subprocess.Popen(  # noqa: ASYNC220 - /proc needs its pid
            [*EDGE_AGENT, "--log-level", "warning", "run", "--config", str(config),
             "--data-dir", str(data)],
            cwd=work, env=_env(), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while sub.first_at is None and time.monotonic() - started < 30:
                if proc.poll() is not None:
                    raise RuntimeError(f"the agent exited with {proc.returncode}")
                await asyncio.sleep(0.01)
            rss = status_mb(proc.pid, "VmHWM")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    first = sub.first_at - started if sub.first_at is not None else float("nan")
    return first, rss


async def bench_first_data(runs: int, counts: Sequence[int], *, hvac_energy: bool) -> None:
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            meters = Meters(count, 1, 0.0)
            try:
                with mosquitto(Path(tmp)) as port:
                    samples = [
                        await _first_data(meters, count, port, Path(tmp), hvac_energy=hvac_energy)
                        for _ in range(runs)
                    ]
            finally:
                meters.close()
        name = f"first data, {count} meters" + (" +HVAC+energy" if hvac_energy else "")
        print(_row(name, samples, ("s", "MB")), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--meters", type=int, nargs="+", default=[10, 50])
    parser.add_argument(
        "--only", nargs="+", choices=["import", "validate", "first"],
        default=["import", "validate", "first"],
    )  # fmt: skip
    parser.add_argument(
        "--code", type=Path, default=ROOT,
        help="the directory the agent's packages are imported from (default: this checkout), "
        "e.g. a `git archive` of an older commit, to compare two versions",
    )  # fmt: skip
    parser.add_argument(
        "--hvac-energy", action="store_true",
        help=f"first data with HVAC zones and energy accounting too (at least {HVAC_ZONES} meters)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    os.environ["BENCH_CODE"] = str(args.code.resolve())  # the children's PYTHONPATH
    compile_code(args.code)  # as installed: bench/installed.py
    print("median (lowest-highest) of", args.runs, "runs", flush=True)
    if "import" in args.only:
        bench_imports(args.runs)
    if "validate" in args.only:
        bench_validate(args.runs)
    if "first" in args.only:
        asyncio.run(bench_first_data(args.runs, args.meters, hvac_energy=args.hvac_energy))


if __name__ == "__main__":
    main()
