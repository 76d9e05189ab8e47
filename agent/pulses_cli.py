"""``edge-agent pulses set DEVICE VALUE``: align a pulse meter's counter to the meter's dial, on
the running agent, through the local command spool (the same path as an upstream
``set_counter`` command: checked, recorded with the value before and after, then applied).

Wired into agent.cli by ``add_commands(sub)`` and, for ``pulses``, ``dispatch(args)``.
"""

from __future__ import annotations

import argparse
import math
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from agent.commands.counters import set_counter_command
from agent.core.clock import system_clock
from agent.hvac.spool import DEFAULT_REPLY_TIMEOUT_S, SPOOL_DIR, cli_command
from agent.schedule_cli import _data_dir

__all__ = ["add_commands", "dispatch"]


def _dial(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"a meter's dial reads a number >= 0, not {text}")
    return value


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pulses set`` to the CLI's subcommands."""
    pulses = subparsers.add_parser("pulses", help="GPIO pulse meters on the running agent")
    actions = pulses.add_subparsers(dest="pulses_command", required=True, metavar="ACTION")
    setting = actions.add_parser(
        "set", help="align a pulse meter's counter to the meter's dial (audited)"
    )
    setting.add_argument("device", help="the pulse meter's device name")
    setting.add_argument("value", type=_dial, help="the dial, in the meter's unit (e.g. m3)")
    setting.add_argument(
        "--unit", default=None, help="the dial's unit; refused unless it is the meter's"
    )
    setting.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the agent's data directory (default $STATE_DIRECTORY or ./data)",
    )


def dispatch(args: argparse.Namespace) -> int:
    """Run ``pulses set``; 0 when the agent accepted, 1 otherwise."""
    timeout = DEFAULT_REPLY_TIMEOUT_S
    command = set_counter_command(
        args.device,
        args.value,
        command_id=f"cli-{uuid.uuid4().hex}",
        expires=system_clock().wall() + timedelta(seconds=max(2 * timeout, 60.0)),
        unit=args.unit,
    )
    spool = _data_dir(args.data_dir) / SPOOL_DIR
    return cli_command(spool, command, timeout=timeout, out=sys.stdout)
