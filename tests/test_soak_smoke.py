"""The soak harness (hil.soak) runs, injects each fault once and reports: an 11-second soak.

The figures of a real soak (hours) are in docs/soak.md; this only proves the machinery: a real
Mosquitto restarted, a simulated meter silenced, the agent's file-size limit squeezed to EFBIG,
and the closing report's RSS figures, counters and loss check.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from hil.soak import pymalloc_figures, slope_kib_per_min
from hil.soak_faults import FAULT_KINDS, fault_plan
from tests.helpers import find_program

ROOT = Path(__file__).resolve().parents[1]


def test_soak_injects_each_fault_once_and_reports(tmp_path: Path) -> None:
    find_program("mosquitto", debian_path="/usr/sbin/mosquitto")  # missing is a failure
    rss_csv = tmp_path / "rss.csv"
    # A device drop must outlast the bus timeout (1 s) and a poll to be noticed at all.
    # fmt: off
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hil.soak",
            "--seconds", "10.7",
            "--first-fault", "0.3",
            "--fault-every", "3",
            "--fault-for", "1",
            "--drop-for", "2.2",
            "--faults", "broker_restart,disk_full,device_drop",
            "--sample", "0.5",
            "--mallocstats", "2s",
            "--census", "3s",
            "--workdir", str(tmp_path / "soak"),
            "--csv", str(rss_csv),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # fmt: on
    report = done.stdout
    assert done.returncode == 0, f"{report}\n{done.stderr}"
    for kind in ("broker_restart", "disk_full", "device_drop(main_meter)"):
        assert f"  {kind}: noticed by the agent, recovered" in report, report
    assert "faults injected: 3 of 3 planned" in report
    assert "polled - stored - counted lost = 0 (nothing lost uncounted)" in report
    assert "verdict: OK" in report
    # The disk fault really refused the agent's writes, and it said so in its log.
    agent_log = (tmp_path / "soak" / "agent.log").read_text(encoding="utf-8")
    assert "store: cannot write to" in agent_log
    assert "is unavailable" in agent_log  # the silenced meter
    with rss_csv.open(encoding="utf-8") as rows:
        samples = list(csv.DictReader(rows))
    assert len(samples) >= 15
    assert all(int(row["agent_rss_kib"]) > 10_000 for row in samples)
    assert {row["fault"] for row in samples} >= {"broker_restart", "disk_full"}
    assert int(samples[-1]["stored"]) > int(samples[0]["stored"])
    # Python's allocator, read in the agent: its arenas hold its used blocks.
    arenas, used = int(samples[-1]["agent_pyarenas_kib"]), int(samples[-1]["agent_pyblocks_kib"])
    assert 1024 <= used < arenas
    dumps = (tmp_path / "soak" / "mallocstats.txt").read_text(encoding="utf-8")
    assert dumps.count("# arenas allocated current") >= 3
    # A census of the agent's objects, against the first (at 3 s): at least one after it.
    census = (tmp_path / "soak" / "census.txt").read_text(encoding="utf-8")
    assert " objects tracked\n" in census


def test_pymalloc_figures_read_the_arenas_not_the_arena_map() -> None:
    text = """\
# arenas allocated current         =                    3

# bytes in allocated blocks        =            2,048,000
# bytes in available blocks        =              102,400
# bytes lost to arena alignment    =               32,768
Total                              =            3,145,728

# bytes lost to arena map root     =              262,144
Total                              =              655,360
"""
    assert pymalloc_figures(text) == {
        "pyblocks_kib": 2000,
        "pyfree_kib": 100,
        "pyarenas_kib": 3072,
    }


def test_slope_is_least_squares_in_kib_per_minute() -> None:
    # 2 KiB every 10 s is 12 KiB/min, whatever the noise around the line.
    points = [(t, 1000 + 0.2 * t + (3 if i % 2 else -3)) for i, t in enumerate(range(0, 600, 10))]
    slope = slope_kib_per_min(points)
    assert slope == pytest.approx(12.0, abs=0.1)
    assert slope_kib_per_min(points[:2]) is None


def test_fault_plan_takes_the_kinds_in_turn_and_ends_before_the_run() -> None:
    plan = fault_plan(duration=3600, every=300, lasting=30, devices=("a", "b"))
    assert [f.kind for f in plan[:3]] == list(FAULT_KINDS)
    assert [f.target for f in plan if f.kind == "device_drop"][:2] == ["a", "b"]
    assert all(f.at + 2 * f.lasting <= 3600 for f in plan)
    assert len(plan) == 11  # at 300, 600, ... 3300 s
    with pytest.raises(ValueError, match="must end before the next"):
        fault_plan(duration=60, every=10, lasting=10)
