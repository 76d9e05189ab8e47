"""A wheel carries everything a gateway needs: the demo config, the profiles, the simulator."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from drivers.modbus.profiles import profile_names
from tests.helpers import ROOT


@pytest.mark.slow
def test_wheel_carries_configs_profiles_and_simulator(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("building_edge_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "agent/site_configs/demo.yaml" in names
    for profile in profile_names():
        assert f"drivers/modbus/profiles/{profile}.yaml" in names
    assert {"hil/server.py", "hil/building.py", "hil/devices.py", "agent/cli.py"} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "edge-agent = agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith("tests/") for n in names)
    # pyproject lists packages explicitly (config/ is mapped into agent.site_configs), so a new
    # subpackage left out of that list would be missing on a gateway: every module must be here.
    for top in ("agent", "drivers", "hil"):
        for module in (ROOT / top).rglob("*.py"):
            assert module.relative_to(ROOT).as_posix() in names, f"{module} is not in the wheel"
