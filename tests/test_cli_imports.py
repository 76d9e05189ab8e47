"""`edge-agent` imports only what the command needs: the commissioning and HVAC commands (and
pymodbus, the device drivers, the HVAC models behind them) not for `validate` or `run`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from agent import cli

CONFIG = Path(__file__).parent / "configs" / "valid.yaml"
HEAVY = [
    "agent.commission",
    "agent.commission_meters",
    "agent.schedule_cli",
    "agent.platform.check",
    "drivers.modbus.bus",
]


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_importing_the_cli_loads_no_command_module() -> None:
    loaded = _modules_after("import agent.cli")
    assert not loaded & {*HEAVY, "agent.config.model", "agent.hvac.program", "pydantic", "holidays"}


def test_validate_loads_neither_commissioning_nor_hvac() -> None:
    loaded = _modules_after(
        f"from agent.cli import main\nassert main(['validate', {str(CONFIG)!r}]) == 0"
    )
    assert "agent.config.model" in loaded  # it did validate
    assert not loaded & set(HEAVY)


def test_commission_and_hvac_commands_still_parse() -> None:
    args = cli._parser(["read", "--help"])
    names = next(a for a in args._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"read", "scan", "schedule", "override", "validate"} <= set(names)


def test_the_lazy_command_lists_match_what_the_modules_register() -> None:
    full = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    core = next(
        a for a in cli._parser(["validate"])._actions if isinstance(a, argparse._SubParsersAction)
    )
    assert set(core.choices) == cli._CORE_COMMANDS
    assert set(full.choices) - set(core.choices) == cli._STATUS_COMMANDS.union(
        *cli._MODULE_COMMANDS.values()
    )
    status = next(
        a for a in cli._parser(["status"])._actions if isinstance(a, argparse._SubParsersAction)
    )
    assert set(status.choices) == cli._CORE_COMMANDS | cli._STATUS_COMMANDS
