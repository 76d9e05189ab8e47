"""Small shared test helpers (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_YAML = ROOT / "config" / "demo.yaml"


def find_program(name: str, *, debian_path: str) -> str:
    """A real peer the tests need (mosquitto, socat): on PATH or where Debian installs it.

    Missing is a failure, never a skip: CI must not pass by testing less.
    """
    found = shutil.which(name) or (debian_path if os.access(debian_path, os.X_OK) else None)
    if found is None:
        pytest.fail(
            f"{name} not installed: run ./scripts/test.sh (the README's test command), "
            "which installs it",
            pytrace=False,
        )
    return found
