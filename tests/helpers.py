"""Small shared test helpers (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_YAML = ROOT / "config" / "demo.yaml"
