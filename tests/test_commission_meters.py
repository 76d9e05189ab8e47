"""Commissioning meters that carry their own address (agent.commission_meters): the installed
``edge-agent read --address`` and ``edge-agent scan --protocol`` run as a technician runs them,
against the simulated DL/T 645 and CJ/T 188 meters on a socat pty pair.

The commands run as subprocesses of the installed entry point (``pip install .`` first), so the
packaged profiles are what they read. Bad usage is checked in-process through `agent.cli.main`:
it exits before any I/O.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import cli
from hil.cjt188_meter import SimulatedCjt188Line, SimulatedCjt188Meter
from hil.dlt645_meter import SimulatedDlt645Line, SimulatedMeter
from tests.serial_pair import SerialPair, serial_pair
from tests.test_cjt188_driver import WATER_VALUES
from tests.test_dlt645_driver import VALUES_2007

DLT645_METER = "000000000161"
WATER_METER = "00000000000012"
EDGE_AGENT = Path(sys.executable).with_name("edge-agent")
WITHIN_S = 30.0  # a bound for one command, far above what it takes


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "pty") as made:
        yield made


async def edge_agent(*argv: str) -> tuple[int, str, str]:
    """Run the installed ``edge-agent``; (exit status, stdout, stderr)."""
    if not EDGE_AGENT.exists():
        pytest.fail(f"{EDGE_AGENT} is missing: install the agent (pip install .)", pytrace=False)
    proc = await asyncio.create_subprocess_exec(
        str(EDGE_AGENT),
        "--log-level",
        "warning",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WITHIN_S):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_sentence(text: str) -> str:
    """The only line of ``text`` (a user sees a sentence, never a traceback)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def water_meter(*, di_order: str = "swapped", silent: bool = False) -> SimulatedCjt188Meter:
    return SimulatedCjt188Meter(
        address=WATER_METER,
        meter_type=0x10,
        di_order="swapped" if di_order == "swapped" else "standard",
        values=WATER_VALUES,
        silent=silent,
    )


# --- read --------------------------------------------------------------------------------------


async def test_read_prints_every_point_of_a_dlt645_meter(pair: SerialPair) -> None:
    agent_end, device_end = pair
    async with SimulatedDlt645Line(device_end, [SimulatedMeter(DLT645_METER, VALUES_2007)]):
        status, out, err = await edge_agent(
            "read", "--profile", "dlt645-2007-3phase", "--serial", agent_end,
            "--address", DLT645_METER, "--json",
        )  # fmt: skip
    assert status == 0, err
    assert json.loads(out) == VALUES_2007


async def test_read_prints_every_point_of_a_cjt188_meter(pair: SerialPair) -> None:
    agent_end, device_end = pair
    async with SimulatedCjt188Line(device_end, meters=[water_meter(di_order="swapped")]):
        status, out, err = await edge_agent(
            "read", "--profile", "cjt188-water", "--serial", agent_end,
            "--address", WATER_METER,
        )  # fmt: skip
    assert status == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert rows["volume"] == ["1234.56", "m3", "good"]
    assert rows["status_valve_closed"] == ["1", "good"]
    assert out.splitlines()[-1] == "5 of 5 points good"


async def test_read_of_a_silent_meter_fails_in_one_sentence(pair: SerialPair) -> None:
    agent_end, device_end = pair
    meter = SimulatedMeter(DLT645_METER, VALUES_2007, fault="silent")
    async with SimulatedDlt645Line(device_end, [meter]):
        status, out, err = await edge_agent(
            "read", "--profile", "dlt645-2007-3phase", "--serial", agent_end,
            "--address", DLT645_METER, "--timeout", "0.2",
        )  # fmt: skip
    assert status == 1
    assert out == ""
    sentence = one_sentence(err)
    assert sentence.startswith(f"edge-agent: dlt645 meter {DLT645_METER} on {agent_end} did not")
    assert "check the address" in sentence


# --- scan --------------------------------------------------------------------------------------


async def test_scan_finds_the_lone_dlt645_meter(pair: SerialPair) -> None:
    agent_end, device_end = pair
    async with SimulatedDlt645Line(device_end, [SimulatedMeter(DLT645_METER, VALUES_2007)]):
        status, out, err = await edge_agent(
            "scan", "--protocol", "dlt645", "--serial", agent_end, "--json"
        )
    assert status == 0, err
    (found,) = json.loads(out)
    assert found["address"] == DLT645_METER
    assert found["detail"] == "DL/T 645-2007 meter at 2400 8E1, import energy 12345.67 kWh"


@pytest.mark.parametrize("di_order", ["standard", "swapped"])
async def test_scan_finds_the_lone_cjt188_meter_and_its_di_order(
    pair: SerialPair, di_order: str
) -> None:
    agent_end, device_end = pair
    async with SimulatedCjt188Line(device_end, meters=[water_meter(di_order=di_order)]):
        status, out, err = await edge_agent("scan", "--protocol", "cjt188", "--serial", agent_end)
    assert status == 0, err
    assert one_sentence(out) == (
        f"address {WATER_METER}: CJ/T 188 water_cold meter (type 10H) at 2400 8E1, "
        f"di_order: {di_order}"
    )


@pytest.mark.parametrize("protocol", ["dlt645", "cjt188"])
async def test_scan_tries_every_speed_when_nothing_answers(pair: SerialPair, protocol: str) -> None:
    agent_end, device_end = pair
    if protocol == "dlt645":
        meter = SimulatedMeter(DLT645_METER, VALUES_2007, fault="silent")
        line: SimulatedDlt645Line | SimulatedCjt188Line = SimulatedDlt645Line(device_end, [meter])
    else:
        line = SimulatedCjt188Line(device_end, meters=[water_meter(silent=True)])
    async with line:
        status, out, err = await edge_agent(
            "scan", "--protocol", protocol, "--serial", agent_end, "--timeout", "0.1"
        )
    assert status == 1
    assert out.splitlines() == [
        f"nothing answered at {baud} 8E1" for baud in (2400, 1200, 4800, 9600)
    ]
    assert one_sentence(err).startswith(
        f"edge-agent scan: no {protocol} meter answered on {agent_end} "
        "(2400, 1200, 4800, 9600 bit/s, parity E): check the wiring"
    )


# --- bad usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["read", "--profile", "eastron-sdm630", "--serial", "/dev/ttyX", "--address",
             DLT645_METER],
            "edge-agent read: --address is a meter's (DL/T 645, CJ/T 188); Modbus takes --unit",
        ),
        (
            ["read", "--profile", "dlt645-2007-3phase", "--tcp", "127.0.0.1:502", "--address",
             DLT645_METER],
            "edge-agent read: a dlt645 meter is read on a serial line: give --serial PORT",
        ),
        (
            ["read", "--profile", "dlt645-2007-3phase", "--serial", "/dev/ttyX"],
            "edge-agent read: --profile dlt645-2007-3phase needs --address",
        ),
        (
            ["read", "--profile", "dlt645-2007-3phase", "--serial", "/dev/ttyX", "--address",
             DLT645_METER, "--unit", "3"],
            "edge-agent read: --unit is Modbus's; a dlt645 meter takes --address",
        ),
        (
            ["read", "--profile", "dlt645-2007-3phase", "--serial", "/dev/ttyX", "--address",
             "161"],
            "edge-agent read: --address: '161' is not a DL/T 645 address",
        ),
        (
            ["read", "--profile", "cjt188-water", "--serial", "/dev/ttyX", "--address",
             DLT645_METER],
            f"edge-agent read: --address: '{DLT645_METER}' is not a CJ/T 188 address",
        ),
        (
            ["scan", "--protocol", "cjt188", "--tcp", "127.0.0.1:502"],
            "edge-agent scan: --protocol cjt188 needs --serial PORT",
        ),
    ],
)  # fmt: skip
def test_bad_usage_exits_2_with_one_sentence(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_sentence(err).startswith(says)
