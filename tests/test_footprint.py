"""What a start costs in memory is mostly what it imports: `edge-agent run` and `validate` of a
Modbus-only config load none of the packages that only other kinds of site need (holidays for
HVAC calendars, gpiozero for pins, bleak for BLE, cryptography for the platform and encrypted
adverts, ruamel.yaml for locating config errors). The module sets are asserted, never timings
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

from agent.core.errors import StoreError
from agent.store import read_stats
from bench.bench_agent import Meters
from bench.make_site import site_yaml

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


def _top_level(names: set[str]) -> set[str]:
    """The names, with every parent package of each (``ruamel.yaml.main`` gives ``ruamel``)."""
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def test_run_of_a_modbus_only_site_imports_no_optional_package(tmp_path: Path) -> None:
    meters = Meters(2, 1, 0.0)
    try:
        config = tmp_path / "site.yaml"
        config.write_text(site_yaml(2, 1, meters.ports), encoding="utf-8")
        data = tmp_path / "data"
        modules = tmp_path / "modules.json"
        # `edge-agent run` of the installed agent, as systemd runs it, writing down at its exit
        # (after the SIGTERM it handles) every module it imported.
        code = (
            "import atexit, json, pathlib, sys\n"
            f"out = pathlib.Path({str(modules)!r})\n"
            "atexit.register(lambda: out.write_text(json.dumps(list(sys.modules))))\n"
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
        meters.close()
    assert rows > 0, "the agent delivered no reading"
    imported = _top_level(set(json.loads(modules.read_text(encoding="utf-8"))))
    assert {"agent.service", "drivers.modbus.driver", "pymodbus"} <= imported  # it did run
    assert not imported & NOT_FOR_MODBUS, sorted(imported & NOT_FOR_MODBUS)


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
