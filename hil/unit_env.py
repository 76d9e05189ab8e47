"""The environment the systemd unit gives the agent, for the soak and the benchmarks.

Memory figures only mean something for the process as it runs in the field: the unit sets
``MALLOC_ARENA_MAX=2`` (glibc otherwise gives each thread that allocates its own arena, and
their touched pages stay resident), so a measured agent gets the same ``Environment=`` lines."""

from __future__ import annotations

from pathlib import Path

__all__ = ["UNIT_FILE", "unit_environment"]

UNIT_FILE = Path(__file__).resolve().parents[1] / "systemd" / "edge-agent.service"


def unit_environment(unit: Path = UNIT_FILE) -> dict[str, str]:
    """``Environment=NAME=value`` lines of ``unit`` (unquoted values only, as ours are);
    empty when the checkout has no unit file (an installed ``hil`` without the repo)."""
    try:
        text = unit.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    env: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if key == "Environment" and sep:
            name, eq, val = value.partition("=")
            if eq:
                env[name] = val
    return env
