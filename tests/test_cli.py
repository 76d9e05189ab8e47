"""The technician's commands, in-process and as the installed console script."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli import EX_CONFIG, main
from agent.core.errors import StoreError
from agent.store import read_stats

EDGE_AGENT = [sys.executable, "-m", "agent"]
DEMO_YAML = Path(__file__).resolve().parents[1] / "config" / "demo.yaml"
RECORD_KEYS = {"seq", "device", "point", "ts", "value", "unit", "quality"}


def _export(data_dir: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        [*EDGE_AGENT, "export", "--data-dir", str(data_dir), "--format", "jsonl"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=data_dir.parent,  # not the checkout: import the installed agent, as on a gateway
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_validate_accepts_the_demo_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEMO_YAML)]) == 0
    assert "ok: site jz-demo-office, 10 devices" in capsys.readouterr().out


def test_validate_reports_located_errors_and_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text(
        "site: {id: s1, name: S}\n"
        "buses:\n"
        "  b1: {kind: modbus_tcp, host: 127.0.0.1}\n"
        "devices:\n"
        "  - name: m1\n"
        "    bus: b1\n"
        "    points:\n"
        "      active_power: {register: 70000, type: float32}\n",
        encoding="utf-8",
    )
    assert main(["validate", str(bad)]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"{bad}:8:")
    assert "devices[0].points.active_power.register:" in err[0]
    assert "Traceback" not in err[0]


def test_missing_config_file_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == EX_CONFIG
    err = capsys.readouterr().err.strip()
    assert "nope.yaml" in err
    assert len(err.splitlines()) == 1


def test_schema_is_json_schema_with_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) >= {"site", "gateway", "store", "uplink", "buses", "devices"}
    point = schema["$defs"]["ModbusPoint"]["properties"]
    assert "register" in point  # the YAML key, not the Python attribute name
    assert point["register"]["description"].startswith("Protocol address")


def test_export_without_a_buffer_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--data-dir", str(tmp_path)]) == 1
    assert "there is no buffer at" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("edge-agent", path=os.path.dirname(sys.executable))
    assert exe is not None, "the edge-agent console script is not installed beside this Python"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.startswith("edge-agent ")


@pytest.mark.slow
def test_demo_stores_every_device_and_point_and_exports_records(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    run = subprocess.run(  # noqa: PLW1510 - the return code is asserted with stderr shown
        [*EDGE_AGENT, "demo", "--for", "7s", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "stopped cleanly" in run.stdout
    records = _export(data)
    assert records, "the demo stored nothing"
    assert all(set(r) == RECORD_KEYS for r in records)
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs)), "seq must be strictly increasing"
    devices = {r["device"] for r in records}
    assert devices >= {
        "main_meter",
        "lighting_meter",
        "hvac_meter",
        "hvac_controller",
        "pv_inverter",
        "power_meter",  # DL/T 645 and CJ/T 188, on the simulated plant-room RS-485 line
        "water_meter",
        "zone1_room",  # BTHome adverts through the fake scanner boundary
        "zone2_room",
        "canteen_hot_water",  # a reed switch on a mock GPIO pin
    }
    counts: dict[tuple[object, object], int] = {}
    for r in records:
        counts[(r["device"], r["point"])] = counts.get((r["device"], r["point"]), 0) + 1
    assert len(counts) >= 20
    slower = ("power_meter", "water_meter", "zone1_room", "zone2_room", "canteen_hot_water")
    every_2s = {k: n for k, n in counts.items() if k[0] not in slower}
    assert min(every_2s.values()) >= 2, "every point polled every 2 s must be read more than once"
    good = [r for r in records if r["quality"] == "good"]
    assert len(good) == len(records), [r for r in records if r["quality"] != "good"][:3]
    # Physically sensible: Chinese low-voltage supply, 220 V phase to neutral.
    voltages = [
        r["value"] for r in good if r["device"] == "main_meter" and r["point"] == "voltage_l1"
    ]
    assert all(200 < float(v) < 240 for v in voltages)  # type: ignore[arg-type]


def _has_rows(db: Path) -> bool:
    """Whether the demo's store holds a reading yet (its file exists a moment before its
    tables: a look in between finds no table, which is no reading yet)."""
    try:
        return db.exists() and read_stats(db).rows > 0
    except StoreError:
        return False


@pytest.mark.slow
def test_demo_stops_cleanly_on_sigterm_and_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.Popen(
        [*EDGE_AGENT, "demo", "--data-dir", str(data)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        db = data / "readings.db"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _has_rows(db):
            time.sleep(0.2)
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    # Every reading polled before SIGTERM was committed at the clean stop, and is exported.
    line = next(x for x in stdout.splitlines() if x.startswith("stopped cleanly"))
    polled = int(line.split(":")[1].split()[0])
    stored = int(line.split(";")[1].split()[0])
    assert polled > 0
    assert stored == polled
    assert len(_export(data)) == polled


def test_status_reports_buffer_and_devices(tmp_path: Path) -> None:
    import asyncio

    from agent.core.clock import system_clock
    from agent.core.record import Quality, Reading
    from agent.status import status_report
    from agent.store import Store

    async def fill() -> None:
        async with Store(tmp_path / "readings.db", batch_window=0.01) as store:
            ts = system_clock().now_ms()
            await store.append(
                [
                    Reading("m1", "active_power", ts, 12.5, "W"),
                    Reading("m1", "voltage_l1", ts, None, "V", Quality.BAD),
                    Reading("m2", "active_power", ts, 3.0, "W"),
                ]
            )
            await store.add_event("energy.alert", {"state": "raised", "key": "quota:q:100"})
            for _ in range(10):  # audit and interval records are events too, but not alerts
                await store.add_event("hvac.write", {"zone": "zone1"})

    asyncio.run(fill())
    report = status_report(tmp_path / "readings.db")
    assert report["buffer"]["rows"] == 3
    assert report["buffer"]["unsynced"] == 3
    assert report["last_sync"] is None
    assert report["devices"]["m1"]["health"] == "1 points failing"
    assert report["devices"]["m2"]["health"] == "ok"
    assert [a["kind"] for a in report["alerts"]] == ["energy.alert"]
    out = subprocess.run(
        [*EDGE_AGENT, "status", "--data-dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "3 readings, 3 not yet sent" in out


@pytest.mark.slow
async def test_demo_with_mqtt_publishes_every_stored_record(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    data = tmp_path / "demo"
    async with mqtt_subscribe(mosquitto, "bea/jz-demo-office/gw1/#") as sub:
        proc = await asyncio.create_subprocess_exec(
            *EDGE_AGENT,
            "demo",
            "--for",
            "6s",
            "--data-dir",
            str(data),
            "--mqtt",
            mosquitto.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, stderr.decode()
        stored = {r["seq"]: r for r in _export(data)}
        assert stored

        def got_all(messages: list[Any]) -> bool:
            return stored.keys() <= _seqs(messages)

        messages = await sub.wait_for(got_all, within=20)
    received: dict[int, dict[str, Any]] = {}
    for message in messages:
        if message.topic.matches("bea/jz-demo-office/gw1/readings"):
            for record in json.loads(bytes(message.payload))["readings"]:
                received[record["seq"]] = record
    assert received == stored  # every stored record arrived, exactly as stored
    status = [bytes(m.payload) for m in messages if m.topic.matches("bea/+/+/status")]
    assert status[0] == b"online"
    assert status[-1] == b"offline"  # a clean stop says so; the last will covers a crash


def _seqs(messages: list[Any]) -> set[int]:
    seqs: set[int] = set()
    for message in messages:
        if message.topic.matches("bea/+/+/readings"):
            seqs.update(r["seq"] for r in json.loads(bytes(message.payload))["readings"])
    return seqs
