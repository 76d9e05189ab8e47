"""The systemd unit: hardened (exposure at most 2.0), valid, and the agent still works under it.

``systemd-analyze`` comes from Debian's ``systemd`` package (scripts/test.sh installs it when it
is missing); it scores and verifies the unit file offline, without a running systemd.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

UNIT = ROOT / "systemd" / "edge-agent.service"
MAX_EXPOSURE = 2.0


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze not installed: run ./scripts/test.sh, which installs Debian's "
            "systemd package",
            pytrace=False,
        )
    return found


def _directives(section: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current = None
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def exposure(unit: Path) -> float:
    out = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, f"no exposure line in:\n{out.stdout}\n{out.stderr}"
    return float(match.group(1))


def test_the_unit_is_hardened_to_an_exposure_of_at_most_2() -> None:
    assert exposure(UNIT) <= MAX_EXPOSURE


def test_the_score_would_notice_a_weakened_unit(tmp_path: Path) -> None:
    # The parse above reads a real figure: dropping the system-call and capability lines moves it.
    text = UNIT.read_text(encoding="utf-8")
    weak = "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("SystemCallFilter=", "CapabilityBoundingSet=", "DevicePolicy="))
    )
    unit = tmp_path / "edge-agent.service"
    unit.write_text(weak + "\n", encoding="utf-8")
    assert exposure(unit) > MAX_EXPOSURE


def test_the_unit_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart= is executable: point it at the edge-agent installed here.
    exe = shutil.which("edge-agent", path=os.path.dirname(sys.executable))
    assert exe is not None
    text = UNIT.read_text(encoding="utf-8").replace("/opt/edge-agent/bin/edge-agent", exe)
    unit = tmp_path / "edge-agent.service"
    unit.write_text(text, encoding="utf-8")
    out = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Unknown key" not in out.stderr, out.stderr
    assert "Failed" not in out.stderr, out.stderr


def test_a_config_error_is_the_main_process_exit_status_and_stops_for_good() -> None:
    service = _directives("Service")
    # A check in ExecStartPre= exits 78 outside the main process: RestartPreventExitStatus=
    # would not see it and the unit would restart forever. `run` validates instead.
    assert "ExecStartPre" not in service
    assert service["ExecStart"][0].split()[1:3] == ["run", "--config"]
    assert service["RestartPreventExitStatus"] == ["78"]
    unit = _directives("Unit")
    assert "StartLimitBurst" in unit
    assert "StartLimitIntervalSec" in unit


def test_watchdog_reload_and_clock_ordering() -> None:
    service, unit = _directives("Service"), _directives("Unit")
    assert service["WatchdogSec"]
    assert service["NotifyAccess"] == ["main"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "time-sync.target" in unit["After"][0].split()
    # A group that does not exist on some OS would fail the start (216/GROUP).
    assert "SupplementaryGroups" not in service
    # Serial adapters, the Pi's UARTs and GPIO chips stay reachable behind the closed policy.
    allowed = {entry.split()[0] for entry in service["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyAMA", "char-ttyS", "char-gpiochip"} <= allowed
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    # gpiozero tells which Pi it runs on from /proc/device-tree or /proc/cpuinfo.
    assert "ProcSubset" not in service
    # lgpio makes its notification pipe in the working directory: it must be writable.
    assert service["WorkingDirectory"] == ["/run/edge-agent"]
    assert service["RuntimeDirectory"] == ["edge-agent"]


def test_every_directive_says_why() -> None:
    # Each group of directives in [Service] follows a comment (the unit is read by people
    # hardening or loosening it on site).
    block_commented = False
    section = None
    for number, line in enumerate(UNIT.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("["):
            section, block_commented = line, False
        elif not line.strip():
            block_commented = False
        elif line.startswith("#"):
            block_commented = True
        elif section == "[Service]":
            assert block_commented, f"line {number} has no comment above it: {line}"


PR_SET_MDWE = 65  # linux/prctl.h, Linux 6.3+
PR_MDWE_REFUSE_EXEC_GAIN = 1

_UNDER_MDWE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl({set_mdwe}, {refuse}, 0, 0, 0) == 0, ctypes.get_errno()
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit("W^X is not enforced: the check below would prove nothing")
import bleak, dbus_fast, serial  # the BLE and serial stacks of a gateway load too
from agent.cli import main
sys.exit(main(["demo", "--for", "2s", "--data-dir", sys.argv[1]]))
"""


def _mdwe_available() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_GET_MDWE (66) answers 0 where the kernel knows the switch, -1 (EINVAL) before 6.3.
    return bool(libc.prctl(66, 0, 0, 0, 0) >= 0)


def test_the_agent_runs_with_memory_that_is_never_writable_and_executable(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes: the kernel's own W^X switch (prctl PR_SET_MDWE, what systemd
    enforces) on a process that runs the whole simulated building: Modbus, SQLite, the GPIO
    pulse meter and the BLE sensors."""
    if not _mdwe_available():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    script = _UNDER_MDWE.format(set_mdwe=PR_SET_MDWE, refuse=PR_MDWE_REFUSE_EXEC_GAIN)
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"stopped cleanly: [1-9]\d* readings polled", out.stdout), out.stdout[-1000:]


def test_run_on_a_broken_config_exits_78_with_the_located_sentence(tmp_path: Path) -> None:
    """What the unit relies on: the main process itself exits EX_CONFIG (78), which
    RestartPreventExitStatus=78 turns into "stopped for good", and says what is wrong where."""
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: {id: x, name: X}\nbuses:\n  b: {kind: modbus_tcp, host: 127.0.0.1, prot: 502}\n",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 78
    assert f"{config}:3:42: buses.b.prot: unknown key 'prot' (did you mean 'port'?)" in out.stderr
    assert not data.exists(), "a refused config creates nothing"
