"""The HVAC commands' arguments, as agent.cli wires them (add_commands / dispatch)."""

from __future__ import annotations

import argparse
from datetime import date, datetime
from pathlib import Path

import pytest

from agent.schedule_cli import COMMANDS, add_commands, dispatch


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="edge-agent")
    add_commands(root.add_subparsers(dest="command", required=True))
    return root


def test_schedule_preview_arguments() -> None:
    args = parser().parse_args(
        ["schedule", "preview", "--config", "site.yaml", "--from", "2026-01-01", "--days", "3"]
    )
    assert (args.command, args.config, args.start, args.days, args.json) == (
        "schedule",
        Path("site.yaml"),
        date(2026, 1, 1),
        3,
        False,
    )
    assert args.command in COMMANDS


def test_override_arguments() -> None:
    args = parser().parse_args(
        ["override", "set", "--zone", "zone1", "--setpoint", "27", "--mode", "cool", "--for", "2h"]
    )
    assert (args.zone, args.setpoint, args.mode, args.duration, args.until) == (
        "zone1",
        27.0,
        "cool",
        "2h",
        None,
    )
    until = (
        parser()
        .parse_args(
            ["override", "set", "--zone", "z", "--setpoint", "27", "--until", "2026-07-01T18:00"]
        )
        .until
    )
    assert until == datetime(2026, 7, 1, 18)  # naive: taken in the machine's local time


def test_for_and_until_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(
            ["override", "set", "--zone", "z", "--for", "1h", "--until", "2026-07-01T18:00"]
        )
    assert "not allowed with argument" in capsys.readouterr().err


def test_override_without_a_running_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("agent.hvac.spool.DEFAULT_REPLY_TIMEOUT_S", 0.2)
    args = parser().parse_args(["override", "clear", "--zone", "z", "--data-dir", str(tmp_path)])
    assert dispatch(args) == 1
    # No agent ever ran there: no spool (the CLI does not make one), and the sentence says so.
    assert "is the agent running with this data directory?" in capsys.readouterr().err
