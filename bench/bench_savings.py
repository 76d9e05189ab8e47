"""What the savings report's optional extra (OpenDSM) costs: disk, import, memory, fit time.

    .venv/bin/python bench/bench_savings.py            # in a venv with '.[savings]'
    .venv/bin/python bench/bench_savings.py --days 365 --repeat 3

Run by hand (not a test). Printed:

- **site-packages**: the size on disk of the venv's site-packages (the agent alone is about
  85 MB; with the extra about 1.2 GB), walked file by file;
- **import opendsm daily model**: wall time of ``python -c "from opendsm.eemeter.models.daily
  import DailyModel"`` minus ``python -c pass`` in fresh subprocesses (median of ``--repeat``
  after a warm-up run), and the peak RSS of such a process (``ru_maxrss`` of the children);
- **fit**: wall time of `agent.savings.model.fit_baseline` on ``--days`` days of the simulated
  office (`hil.retrofit`, China calendar), each repeat in this process; the first repeat of a
  fresh venv includes numba compiling (and caching) its functions, the later ones do not;
- **predict**: wall time of predicting the next ``--days`` days with that fit.

The working tree is imported (its root is put first on ``sys.path``), not an installed copy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.hvac.calendar import DayKind, HolidayCalendar  # noqa: E402
from agent.savings.model import fit_baseline  # noqa: E402
from hil.retrofit import simulate_days  # noqa: E402


def _size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while walking
                total += (Path(folder) / name).stat().st_size
    return total


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    site = Path(sysconfig.get_paths()["purelib"])
    print(f"site-packages: {_size(site) / 1e6:,.0f} MB ({site})")

    code = "from opendsm.eemeter.models.daily import DailyModel"
    _wall(code)  # warm-up: the file cache, numba's cache index
    base = statistics.median(_wall("pass") for _ in range(args.repeat))
    heavy = statistics.median(_wall(code) for _ in range(args.repeat))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"import opendsm daily model: {heavy - base:.2f} s; child peak RSS {rss:.0f} MB")

    calendar = HolidayCalendar()

    def working(day: date) -> bool:
        return calendar.day(day).kind is DayKind.WORKDAY

    first = date(2025, 1, 1)
    days = simulate_days(first, 2 * args.days, working=working, seed=5)
    temps = {d.day: d.mean_c for d in days}
    flags = {d.day: d.working for d in days}
    energy = {d.day: d.total_kwh for d in days[: args.days]}
    later = [first + timedelta(days=args.days + n) for n in range(args.days)]
    for n in range(args.repeat):
        start = time.perf_counter()
        fit = fit_baseline("bench", energy, temps, flags, tz="Asia/Shanghai", electricity=True)
        fitted = time.perf_counter() - start
        start = time.perf_counter()
        fit.predict(later, temps, flags)
        predicted = time.perf_counter() - start
        print(
            f"fit {args.days} days (repeat {n + 1}): {fitted:.2f} s; "
            f"predict {args.days} days: {predicted:.2f} s"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process's peak RSS after fitting: {peak:.0f} MB")


if __name__ == "__main__":
    main()
