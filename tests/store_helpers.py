"""What the store's fault and damage tests share: readings to fill a store, and `status` as a
technician runs it (a child process on the tree under test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import agent
from agent.core.record import Reading

# A child process imports the same tree as the tests.
ENV = {**os.environ, "PYTHONPATH": str(Path(agent.__file__).resolve().parent.parent)}


def readings(start: int, n: int, *, points: int = 20) -> list[Reading]:
    """Readings ``start`` .. ``start + n - 1`` of one device, spread over ``points`` points."""
    return [
        Reading("m1", f"p{i % points}", 1_700_000_000_000 + i, float(i), "W")
        for i in range(start, start + n)
    ]


def status_text(db: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--db", str(db)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
