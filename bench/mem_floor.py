"""What the agent's memory is made of before it reads a single meter: the floor of its stack.

Each stage runs in a fresh interpreter (as the unit runs it: its Environment= lines) and imports
one more layer on top of the last; the RSS after each, and what that layer added, are printed:

1. the interpreter alone;
2. the libraries the bare reference poller of bench/bench_agent.py also needs (asyncio with ssl,
   pymodbus's client, aiomqtt) and the standard modules every agent needs (sqlite3, json,
   logging);
3. PyYAML, then pydantic with one model validated (the user fixed pydantic; its compiled core
   and its own modules are the largest single layer);
4. the agent's config models (``agent.config.loader``), the running agent's code
   (``agent.daemon``), and the config of ``--meters`` meters with HVAC and energy loaded.

The running agent's peak at that size comes from ``bench.bench_agent --hvac-energy``; the
difference between the two is what the agent holds while it runs (clients, plans, the store,
buffers). So a memory target can be set against what the fixed stack costs on this machine.

    .venv/bin/python -m bench.mem_floor --meters 50
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.make_site import site_yaml
from hil.unit_env import unit_environment

ROOT = Path(__file__).resolve().parents[1]

# (label, statements added to the previous stages'); {config} is the site file's path.
STAGES: tuple[tuple[str, str], ...] = (
    ("python", ""),
    ("+ asyncio, ssl, pymodbus client, aiomqtt", "import asyncio, ssl, pymodbus.client, aiomqtt"),
    ("+ sqlite3, json, logging", "import sqlite3, json, logging"),
    ("+ PyYAML", "import yaml"),
    (
        "+ pydantic, one model validated",
        "from pydantic import BaseModel\nclass _One(BaseModel):\n    x: int\n_One(x=1)",
    ),
    ("+ the agent's config models", "import agent.config.loader"),
    ("+ the running agent's code", "import agent.daemon"),
    (
        "+ the site's config loaded",
        "from pathlib import Path\n"
        "agent.config.loader.load_config(Path({config!r}), check_files=False)",
    ),
)

_REPORT = (
    "\nfor _line in open('/proc/self/status'):\n"
    "    if _line.startswith(('VmRSS:', 'RssAnon:')):\n"
    "        print(int(_line.split()[1]))\n"
)


def stage_rss_kib(statements: str, *, runs: int) -> tuple[int, int]:
    """The smallest (RSS, of which heap) in KiB of ``runs`` fresh interpreters after
    ``statements``: the least the layers need (a larger figure is noise: a page touched by
    chance). The heap (RssAnon) is the process's own; the rest of the RSS is pages of the
    interpreter's and the libraries' files, shared and droppable under memory pressure."""
    env = {**os.environ, **unit_environment(), "PYTHONPATH": str(ROOT)}
    got = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", statements + _REPORT],
            capture_output=True, text=True, check=True, env=env, cwd=tempfile.gettempdir(),
            timeout=120,
        )  # fmt: skip
        rss, anon = (int(word) for word in done.stdout.split()[-2:])
        got.append((rss, anon))
    return min(got)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="interpreters per stage")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mem-floor-") as tmp:
        config = Path(tmp) / "site.yaml"
        ports = [1502]  # never connected: the config is only loaded
        config.write_text(
            site_yaml(args.meters, 1, ports, mqtt_url="mqtt://127.0.0.1:1883", hvac_energy=True),
            encoding="utf-8",
        )
        print(f"{'stage':<42} {'RSS MB':>7} {'added':>7} {'anon MB':>8}")
        code, before = "", 0
        for label, statements in STAGES:
            code += statements.format(config=str(config)) + "\n"
            kib, anon = stage_rss_kib(code, runs=args.runs)
            added = f"{(kib - before) / 1024:+7.1f}" if before else ""
            print(f"{label:<42} {kib / 1024:7.1f} {added:>7} {anon / 1024:8.1f}")
            before = kib


if __name__ == "__main__":
    main()
