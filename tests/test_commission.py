"""`edge-agent read` and `edge-agent scan` against the simulated building, over Modbus TCP on
loopback and over RTU on a socat pty pair."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.commission import (
    CommissioningError,
    add_commands,
    dispatch,
    parse_endpoint,
    parse_units,
)
from hil.building import Building
from hil.devices import building_devices
from hil.rtu import SimulatedRtuLine
from hil.server import SimulatedBuilding
from tests.helpers import DEMO_YAML, ROOT
from tests.serial_pair import SerialPair, serial_pair

# A July weekday late morning (PV producing); the clock never moves, so values are exact.
FROZEN_AT = datetime(2025, 7, 15, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
# The demo site's devices that use a shipped profile: (device, bus, unit, profile).
DEMO_PROFILES = [
    ("main_meter", "switchboard", 1, "eastron-sdm630"),
    ("lighting_meter", "switchboard", 2, "acrel-adw300"),
    ("hvac_meter", "switchboard", 3, "chint-dtsu666"),
    ("pv_inverter", "pv", 1, "sungrow-sg"),
]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edge-agent")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def _run(*argv: str) -> tuple[int, str, str]:
    """Run a command in-process; returns (exit status, stdout, stderr)."""
    args = _parse(list(argv))
    out, err = io.StringIO(), io.StringIO()
    status = await args.commission(args, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def _expected(device: str) -> dict[str, float]:
    """What each point of a device must read as: the building's value through its register
    encoding (so float32 and integer scaling round exactly as on the wire)."""
    building = Building(clock=lambda: FROZEN_AT)
    model = next(d for d in building_devices() if d.name == device)
    values = model.read(building)
    return {name: p.decode(p.encode(values[name])) for name, p in model.point_map().items()}


@pytest.fixture
async def building() -> AsyncIterator[SimulatedBuilding]:
    async with SimulatedBuilding(building=Building(clock=lambda: FROZEN_AT)) as sim:
        yield sim


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


def _tcp(sim: SimulatedBuilding, bus: str) -> str:
    host, port = sim.endpoints[bus]
    return f"{host}:{port}"


@pytest.mark.parametrize(("device", "bus", "unit", "profile"), DEMO_PROFILES)
async def test_read_json_gives_every_point_of_a_demo_profile(
    building: SimulatedBuilding, device: str, bus: str, unit: int, profile: str
) -> None:
    status, out, err = await _run(
        "read", "--profile", profile, "--tcp", _tcp(building, bus), "--unit", str(unit), "--json"
    )
    assert status == 0, err
    values = json.loads(out)
    expected = _expected(device)
    assert set(values) == set(expected)
    for name, value in values.items():
        assert value == pytest.approx(expected[name]), name


async def test_read_prints_a_table_and_the_minimal_plan(building: SimulatedBuilding) -> None:
    status, out, _ = await _run(
        "read", "--profile", "eastron-sdm630", "--tcp", _tcp(building, "switchboard"),
        "--unit", "1", "--explain",
    )  # fmt: skip
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["point", "value", "unit", "quality"]
    row = next(line.split() for line in lines if line.startswith("voltage_l1 "))
    assert row[2:] == ["V", "good"]
    assert float(row[1]) == pytest.approx(_expected("main_meter")["voltage_l1"], rel=1e-6)
    assert "20 of 20 points good" in out
    # The done-when: a lenient SDM630 is read in the minimum, 3 requests.
    assert "total: 3 requests" in out


async def test_read_of_a_strict_device_splits_and_still_gives_every_value(tmp_path: Path) -> None:
    async with SimulatedBuilding(strict=True, building=Building(clock=lambda: FROZEN_AT)) as sim:
        status, out, err = await _run(
            "read", "--profile", "eastron-sdm630", "--tcp", _tcp(sim, "switchboard"),
            "--unit", "1", "--json", "--explain",
        )  # fmt: skip
    assert status == 0, err
    values = json.loads(out)
    assert values == pytest.approx(_expected("main_meter"))
    # With --json the explanation goes to stderr; it shows what the device taught.
    assert "read plan" in err
    assert "exception 02" in err


async def test_read_a_configured_device(building: SimulatedBuilding, tmp_path: Path) -> None:
    text = DEMO_YAML.read_text(encoding="utf-8")
    for bus, default in (("switchboard", 5020), ("hvac", 5021), ("pv", 5022)):
        text = text.replace(f"port: {default}", f"port: {building.endpoints[bus][1]}")
    site = tmp_path / "site.yaml"
    site.write_text(text, encoding="utf-8")
    status, out, err = await _run(
        "read", "--config", str(site), "--device", "hvac_controller", "--json"
    )
    assert status == 0, err
    assert json.loads(out) == pytest.approx(_expected("hvac_controller"))

    status, _, err = await _run("read", "--config", str(site), "--device", "hvac_controler")
    assert status == 2
    assert "did you mean 'hvac_controller'" in err


async def test_unknown_profile_is_a_usage_error_with_a_suggestion() -> None:
    status, out, err = await _run(
        "read", "--profile", "eastron-sdm360", "--tcp", "127.0.0.1:1", "--unit", "1"
    )
    assert status == 2
    assert out == ""
    assert "no shipped profile 'eastron-sdm360' (did you mean 'eastron-sdm630'?)" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tcp", "127.0.0.1:1", "--unit", "1", "--baud", "9600"], "apply only to --serial"),
        (["--tcp", "127.0.0.1:1"], "--unit"),
        (["--serial", "/dev/null", "--unit", "248"], "not a unit id"),
    ],
)
async def test_usage_errors_exit_2(argv: list[str], message: str) -> None:
    status, _, err = await _run("read", "--profile", "eastron-sdm630", *argv)
    assert status == 2
    assert message in err


async def test_a_silent_device_is_one_sentence(building: SimulatedBuilding) -> None:
    building.set_offline("pv_inverter")
    with pytest.raises(CommissioningError, match=r"unit 1 on .* did not answer \(no answer"):
        await _run(
            "read", "--profile", "sungrow-sg", "--tcp", _tcp(building, "pv"),
            "--unit", "1", "--timeout", "0.2",
        )  # fmt: skip
    # Behind a gateway, a missing unit is the gateway's exception 0B, not silence.
    with pytest.raises(CommissioningError, match="the gateway says exception 11"):
        await _run(
            "read", "--profile", "eastron-sdm630", "--tcp", _tcp(building, "switchboard"),
            "--unit", "7",
        )  # fmt: skip


async def test_an_unreachable_bus_is_one_sentence() -> None:
    with pytest.raises(CommissioningError, match=r"^cannot connect to 127\.0\.0\.1:1$"):
        await _run("read", "--profile", "eastron-sdm630", "--tcp", "127.0.0.1:1", "--unit", "1")
    with pytest.raises(CommissioningError, match=r"^cannot connect to 127\.0\.0\.1:1$"):
        await _run("scan", "--tcp", "127.0.0.1:1", "--units", "1-3")


async def test_scan_finds_exactly_the_switchboard_meters(building: SimulatedBuilding) -> None:
    status, out, _ = await _run(
        "scan", "--tcp", _tcp(building, "switchboard"), "--units", "1-10", "--json"
    )
    assert status == 0
    assert json.loads(out) == [1, 2, 3]
    # Without a gateway an absent unit is silent: it costs one short timeout.
    status, out, _ = await _run(
        "scan", "--tcp", _tcp(building, "hvac"), "--units", "1-3", "--timeout", "0.1s"
    )
    assert status == 0
    assert out.splitlines()[0].startswith("unit 1: answers")
    assert out.splitlines()[-1].startswith("1 units answer on")


async def test_read_and_scan_over_a_serial_line(pair: SerialPair) -> None:
    agent_end, device_end = pair
    async with SimulatedRtuLine(device_end, building=Building(clock=lambda: FROZEN_AT)) as line:
        status, out, err = await _run(
            "read", "--profile", "chint-dtsu666", "--serial", agent_end,
            "--baud", "9600", "--parity", "N", "--stopbits", "1", "--unit", "3", "--json",
        )  # fmt: skip
        assert status == 0, err
        assert json.loads(out) == pytest.approx(_expected("hvac_meter"))

        line.set_offline("lighting_meter")
        status, out, _ = await _run(
            "scan", "--serial", agent_end, "--units", "1-5", "--timeout", "0.1", "--json"
        )
        assert status == 0
        assert json.loads(out) == [1, 3]


def test_unit_lists_and_endpoints_parse() -> None:
    assert parse_units("1-3,7,2") == (1, 2, 3, 7)
    assert parse_endpoint("192.168.1.5:1502") == ("192.168.1.5", 1502)
    assert parse_endpoint("meter.local") == ("meter.local", 502)
    assert parse_endpoint("[::1]:5020") == ("::1", 5020)
    for bad in ("", "1-", "3-1", "x", "1-300"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_units(bad)
    for bad in ("host:", "host:0", "host:99999", "[::1]x", ":502"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_endpoint(bad)


async def test_dispatch_runs_the_registered_command(building: SimulatedBuilding) -> None:
    args = _parse(["scan", "--tcp", _tcp(building, "switchboard"), "--units", "2", "--json"])
    assert args.command == "scan"
    assert await dispatch(args) == 0


async def test_python_m_agent_read(building: SimulatedBuilding) -> None:
    from agent import cli

    commands = next(
        action.choices
        for action in cli._parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    if "read" not in commands:
        pytest.skip("edge-agent read is not wired into agent/cli.py yet")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "read", "--profile", "acrel-adw300",
        "--tcp", _tcp(building, "switchboard"), "--unit", "2", "--json",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == pytest.approx(_expected("lighting_meter"))
