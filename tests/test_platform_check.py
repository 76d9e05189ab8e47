"""`edge-agent platform check`: each step and its outcome, and a sentence on each failure."""

from __future__ import annotations

import asyncio
import io
import re
import sys
from pathlib import Path

import pytest

from agent.platform.check import check_platform
from agent.platform.config import PlatformConfig, PlatformMeter
from hil.platform_server import PlatformServer
from tests.test_platform_service import silent_platform

KEY = "0123456789abcdef"


def config(port: int, key_file: Path, **extra: object) -> PlatformConfig:
    return PlatformConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "building_id": "421000A001",
            "gateway_id": "01",
            "key_file": key_file,
            "timeout": 0.5,
            "meters": [PlatformMeter(meter="main", id=1)],
            **extra,
        }
    )


async def check(cfg: PlatformConfig) -> tuple[int, str]:
    out = io.StringIO()
    code = await check_platform(cfg, tz="Asia/Shanghai", out=out)
    return code, out.getvalue()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "platform.key"
    path.write_text(KEY + "\n", encoding="utf-8")
    return path


async def test_a_working_link_passes_every_step(key_file: Path) -> None:
    async with PlatformServer(key=KEY.encode(), secret=KEY, time_offset_s=30) as server:
        code, text = await check(config(server.port, key_file))
    assert code == 0, text
    assert "identity check   passed" in text
    offset = re.search(r"([+-][\d.]+) s from this gateway's clock", text)
    assert offset is not None, text
    assert abs(float(offset.group(1)) - 30) <= 1  # the stamp has whole seconds
    assert server.tally.heartbeats == 1


async def test_a_wrong_key_is_named(key_file: Path) -> None:
    async with PlatformServer(key=KEY.encode(), secret="another-secret!!") as server:
        code, text = await check(config(server.port, key_file))
    assert code == 1
    assert "identity check   FAILED: the platform refused the identity check" in text
    assert "check the key file" in text


async def test_a_crc_mismatch_says_which_settings_to_ask_about(key_file: Path) -> None:
    async with PlatformServer(key=KEY.encode(), secret=KEY) as server:
        server.faults.bad_reply = "bad-crc"
        code, text = await check(config(server.port, key_file))
    assert code == 1
    assert "identity check   FAILED: CRC mismatch" in text
    assert "crc_coverage, crc_order" in text


async def test_a_refused_connection_and_a_silent_platform(tmp_path: Path, key_file: Path) -> None:
    async with silent_platform() as port:
        code, text = await check(config(port, key_file))
    assert code == 1
    assert "identity check   FAILED: no answer from the platform within 0.5 s" in text
    assert "firewall" in text
    code, text = await check(config(port, key_file))  # the port is closed now
    assert code == 1
    assert "connect          FAILED: cannot connect to 127.0.0.1" in text


async def test_a_missing_key_file_stops_before_connecting(tmp_path: Path) -> None:
    code, text = await check(config(9, tmp_path / "nowhere.key"))
    assert code == 1
    assert "key files        FAILED: platform key_file" in text


async def test_the_command_line(tmp_path: Path, key_file: Path) -> None:
    site = tmp_path / "site.yaml"
    async with PlatformServer(key=KEY.encode(), secret=KEY) as server:
        site.write_text(
            "site: {id: office, name: Office}\n"
            "buses: {board: {kind: tcp, host: 127.0.0.1, port: 5020}}\n"
            "devices: [{name: m, bus: board, unit_id: 1, profile: eastron-sdm630}]\n"
            "energy: {meters: [{name: main, device: m, point: import_energy, role: main}]}\n"
            f"platform: {{host: 127.0.0.1, port: {server.port}, building_id: 421000A001,"
            f" gateway_id: '01', key_file: {key_file}, meters: [{{meter: main, id: 1}}]}}\n",
            encoding="utf-8",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "platform",
            "check",
            "--config",
            str(site),
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(20):
            stdout, _ = await proc.communicate()
    assert proc.returncode == 0, stdout
    assert b"the link works" in stdout
