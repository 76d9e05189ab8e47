"""China's public holidays and make-up workdays (调休) by year, read from the `holidays` package
in a child process.

Why a child: `import holidays` imports every country the package has (its ``__init__`` imports
``holidays.countries``, about 300 modules), which costs the agent about 10 MB of memory for the
life of the process, for a table of some thirty days a year. The child
(``python -m agent.hvac.china_days YEAR ...``) imports the package, prints the years' tables as
JSON and exits; the agent keeps only the tables. The package stays the source of truth: a table
is exactly its ``country_holidays("CN", years=YEAR, observed=..., language="zh_CN")`` days of
that year with their names, and its ``weekend_workdays`` of that year (tests compare the two).

`start` runs the child without waiting for it (the HVAC controller starts it when it is built,
so that it runs while the agent opens its devices); `table` waits for it when the table is first
needed. Should the child fail, the package is imported here instead (the memory is spent, the
calendar stays right) and the log says why.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from datetime import date
from pathlib import Path

__all__ = ["YearTable", "compute", "start", "table"]

log = logging.getLogger(__name__)

YearTable = tuple[dict[date, str], frozenset[date]]
"""(the days off with their names, the make-up workdays) of one year."""

# The child imports the package and computes a few years; far longer means something is wrong.
CHILD_TIMEOUT_S = 60.0
_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `agent` package


def compute(year: int, *, observed: bool) -> YearTable:
    """The table of ``year`` from the package, in this process. The names' language is pinned:
    by default the package follows the process locale."""
    import holidays  # the point of the module: only here, or in the child

    calendar = holidays.country_holidays("CN", years=year, observed=observed, language="zh_CN")
    closed = {day: name for day, name in calendar.items() if day.year == year}
    makeup = frozenset(day for day in calendar.weekend_workdays if day.year == year)
    return closed, makeup


class _Tables:
    """The tables read so far, and the children still computing some."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: dict[tuple[int, bool], YearTable] = {}
        self.running: list[tuple[frozenset[int], subprocess.Popen[bytes]]] = []

    def start(self, years: Iterable[int]) -> None:
        with self.lock:
            self._start_locked(years)

    def _start_locked(self, years: Iterable[int]) -> None:
        busy = {y for pending, _ in self.running for y in pending}
        wanted = frozenset(y for y in years if (y, True) not in self.done and y not in busy)
        if not wanted:
            return
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), path]))}
        try:
            child = subprocess.Popen(
                # -P: the working directory is not put on the path (it could shadow a module).
                [sys.executable, "-P", "-m", __name__, *map(str, sorted(wanted))],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            log.warning("holiday calendar: cannot start its reader (%s); reading it here", exc)
            return
        if not self.running and not self.done:
            atexit.register(self.wait_all)  # once: no child outlives the agent
        self.running.append((wanted, child))

    def table(self, year: int, *, observed: bool) -> YearTable:
        with self.lock:
            if (year, observed) not in self.done:
                if not any(year in pending for pending, _ in self.running):
                    self._start_locked([year])
                for pending, child in [r for r in self.running if year in r[0]]:
                    self.running.remove((pending, child))
                    self._collect(child)
            found = self.done.get((year, observed))
            if found is None:  # the child failed (logged): the package here, as a last resort
                found = self.done[(year, observed)] = compute(year, observed=observed)
            return found

    def _collect(self, child: subprocess.Popen[bytes]) -> None:
        try:
            out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            log.warning("holiday calendar: its reader took over %.0f s; reading it here",
                        CHILD_TIMEOUT_S)  # fmt: skip
            return
        if child.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            log.warning(
                "holiday calendar: its reader failed (exit %s: %s); reading it here",
                child.returncode,
                tail[0],
            )
            return
        for year, variants in json.loads(out).items():
            for key, (closed, makeup) in variants.items():
                self.done[(int(year), key == "observed")] = (
                    {date.fromisoformat(day): name for day, name in closed.items()},
                    frozenset(date.fromisoformat(day) for day in makeup),
                )

    def wait_all(self) -> None:
        """Reap every child still running (at exit: none is left behind)."""
        with self.lock:
            running, self.running = self.running, []
            for _, child in running:
                self._collect(child)


_TABLES = _Tables()


def start(years: Iterable[int]) -> None:
    """Start reading ``years`` (both variants of each) in a child, without waiting for it."""
    _TABLES.start(years)


def table(year: int, *, observed: bool) -> YearTable:
    """The table of ``year``: with the announced schedule (``observed``: days moved, make-up
    workdays) or the statutory days only. Waits for the child reading it (started now if
    need be)."""
    return _TABLES.table(year, observed=observed)


def _main(argv: list[str]) -> int:
    out: dict[str, dict[str, tuple[dict[str, str], list[str]]]] = {}
    for year in map(int, argv):
        out[str(year)] = {}
        for key, observed in (("observed", True), ("statutory", False)):
            closed, makeup = compute(year, observed=observed)
            out[str(year)][key] = (
                {day.isoformat(): name for day, name in sorted(closed.items())},
                sorted(day.isoformat() for day in makeup),
            )
    sys.stdout.write(json.dumps(out))  # ASCII (\\u escapes): whatever the locale's encoding
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
