"""What a start costs in memory is mostly what it imports: `edge-agent run` and `validate` of a
Modbus-only config load none of the packages that only other kinds of site need (holidays for
HVAC calendars, gpiozero for pins, bleak for BLE, cryptography for the platform and encrypted
adverts, ruamel.yaml for locating config errors); a site with HVAC reads its holiday calendar in
a child process, so not even it imports `holidays`. The module sets are asserted, never timings
(bench/bench_startup.py measures those)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.core.errors import StoreError
from agent.store import read_stats
from bench.bench_agent import Meters
from bench.make_site import HVAC_ZONES, site_yaml

# Packages (and our modules) a Modbus-only site never needs.
NOT_FOR_MODBUS = {
    "holidays",
    "gpiozero",
    "bleak",
    "dbus_fast",
    "cryptography",
    "ruamel",
    "agent.config.located",
    "agent.hvac.controller",
    "agent.hvac.commands",
    "agent.energy.live",
    "agent.platform.uplink",
    "drivers.ble.driver",
    "drivers.gpio.driver",
    "drivers.gpio.led",
}


# What `run` never needs, whatever the site: sqlite-utils (only to migrate a file an older
# version made), the `status` command's modules (the platform's summary, XML), and what only a
# config error or a `clock_trust: kernel` store uses. (`ctypes` itself is imported: the
# minute's malloc_trim (agent/core/heap.py) costs 0.3 MB of imports and gives back more; not
# `ctypes.util`, 0.7 MB more, which it does without.)
NOT_FOR_RUN = {
    "sqlite_utils",
    "agent.status",
    "agent.platform.summary",
    "agent.platform.messages",
    "xml",
    "difflib",
    "getpass",
    "ctypes.util",
    "drivers.ble.backend",
}


def _top_level(names: set[str]) -> set[str]:
    """The names, with every parent package of each (``ruamel.yaml.main`` gives ``ruamel``)."""
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def _run_and_list_modules(
    tmp_path: Path, meters: int, *, hvac_energy: bool = False
) -> dict[str, Any]:
    """`edge-agent run` of the installed agent, as systemd runs it, on ``meters`` simulated
    meters until the store holds readings; at its exit (after the SIGTERM it handles) it writes
    down every module it imported and the holiday tables it read (agent.hvac.china_days)."""
    sim = Meters(meters, 1, 0.0)
    try:
        config = tmp_path / "site.yaml"
        config.write_text(site_yaml(meters, 1, sim.ports, hvac_energy=hvac_energy), "utf-8")
        data = tmp_path / "data"
        out = tmp_path / "modules.json"
        code = (
            "import atexit, json, pathlib, sys\n"
            f"out = pathlib.Path({str(out)!r})\n"
            "def dump():\n"
            "    days = sys.modules.get('agent.hvac.china_days')\n"
            "    tables = sorted(days._TABLES.done) if days else []\n"
            "    out.write_text(json.dumps({'modules': list(sys.modules), 'tables': tables}))\n"
            "atexit.register(dump)\n"
            "from agent.cli import main\n"
            f"sys.exit(main(['run', '--config', {str(config)!r}, '--data-dir', {str(data)!r}]))"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            rows = 0
            while rows == 0 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
                if (data / "readings.db").exists():
                    with contextlib.suppress(StoreError):  # not yet created
                        rows = read_stats(data / "readings.db").rows
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    finally:
        sim.close()
    assert rows > 0, "the agent delivered no reading"
    found: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    found["modules"] = _top_level(set(found["modules"]))
    return found


def test_run_of_a_modbus_only_site_imports_no_optional_package(tmp_path: Path) -> None:
    imported = _run_and_list_modules(tmp_path, 2)["modules"]
    assert {"agent.service", "drivers.modbus.driver", "pymodbus"} <= imported  # it did run
    assert not imported & NOT_FOR_MODBUS, sorted(imported & NOT_FOR_MODBUS)
    assert not imported & NOT_FOR_RUN, sorted(imported & NOT_FOR_RUN)


def test_run_with_hvac_and_energy_reads_the_holidays_in_a_child(tmp_path: Path) -> None:
    found = _run_and_list_modules(tmp_path, HVAC_ZONES, hvac_energy=True)
    imported = found["modules"]
    assert {"agent.hvac.controller", "agent.energy.live"} <= imported  # both parts ran
    # The calendar came from the child (the package here would have imported `holidays`):
    # this year's and next year's, with and without the moved days.
    assert len(found["tables"]) == 4, found["tables"]
    unwanted = imported & ({"holidays"} | NOT_FOR_RUN)
    assert not unwanted, sorted(unwanted)


def test_validate_of_a_modbus_only_site_imports_no_optional_package(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(site_yaml(3, 1, [15020]), encoding="utf-8")
    code = (
        "import sys, json\nfrom agent.cli import main\n"
        f"code = main(['validate', {str(config)!r}])\n"
        "print(json.dumps([code, sorted(sys.modules)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    code_, modules = json.loads(out.stdout.splitlines()[-1])
    assert code_ == 0
    imported = _top_level(set(modules))
    assert "agent.config.model" in imported  # it did validate
    assert not imported & NOT_FOR_MODBUS, sorted(imported & NOT_FOR_MODBUS)


def test_a_config_error_is_still_located(tmp_path: Path) -> None:
    """The located path (ruamel.yaml) is still there when a config has a problem."""
    config = tmp_path / "site.yaml"
    config.write_text(site_yaml(1, 1, [15020]).replace("unit_id: 1", "unit_id: one"), "utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "validate", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "unit_id" in text)
    assert f"site.yaml:{line}:" in out.stderr + out.stdout, out.stderr
