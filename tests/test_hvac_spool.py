"""`edge-agent override` reaches the running agent through the spool and takes the same path
as an MQTT command: same validation, same reply."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pwd
import stat
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent.core.clock import system_clock
from agent.hvac.commands import CommandHandler
from agent.hvac.overrides import OverrideBook
from agent.hvac.program import HvacConfig
from agent.hvac.spool import cli_override, prepare_spool, serve_spool, submit
from agent.hvac.state import ScheduleContext

HVAC = """
zones:
  zone1: {device: d, setpoint: s, mode: m, on: o, programme: office}
programmes:
  office:
    workday: [{start: "07:30", level: comfort}, {start: "18:00", level: off}]
"""


@pytest.fixture
def handler() -> CommandHandler:
    hvac = HvacConfig.model_validate(YAML(typ="safe", pure=True).load(HVAC))
    return CommandHandler(hvac, overrides=OverrideBook())


async def serve(
    spool: Path, handler: CommandHandler, stop: asyncio.Event, handled: asyncio.Event | None = None
) -> None:
    context = ScheduleContext.for_site(handler.hvac, "Asia/Shanghai")

    async def handle(data: bytes) -> dict[str, Any]:
        if handled is not None:
            handled.set()
        return handler.evaluate(data, now=system_clock().wall(), context=context, source="cli")

    await serve_spool(spool, handle, stop=stop, interval=0.05)


async def test_set_and_clear_through_the_spool(tmp_path: Path, handler: CommandHandler) -> None:
    spool = tmp_path / "hvac-commands"
    stop = asyncio.Event()
    server = asyncio.create_task(serve(spool, handler, stop), name="test.spool")
    try:
        async with asyncio.timeout(5):
            while not spool.is_dir():  # noqa: ASYNC110 - the service makes it, no event says so
                await asyncio.sleep(0.01)
        out = io.StringIO()
        status = await asyncio.to_thread(
            cli_override, spool, "override", zone="zone1", setpoint=27.0, duration="2h", out=out
        )
        reply = json.loads(out.getvalue())
        assert (status, reply["ok"]) == (0, True), reply
        assert handler.overrides["zone1"].source == "cli"
        out = io.StringIO()
        status = await asyncio.to_thread(
            cli_override, spool, "override", zone="zone9", setpoint=27.0, out=out
        )
        assert status == 1
        assert "unknown zone 'zone9'" in json.loads(out.getvalue())["reason"]
        out = io.StringIO()
        status = await asyncio.to_thread(cli_override, spool, "clear", zone="zone1", out=out)
        assert status == 0
        assert "zone1" not in handler.overrides
        assert sorted(p.name for p in spool.iterdir()) == []  # nothing left behind
    finally:
        stop.set()
        await server


async def test_malformed_files_get_a_reply(tmp_path: Path, handler: CommandHandler) -> None:
    spool = tmp_path / "hvac-commands"
    spool.mkdir()
    (spool / "junk.json").write_bytes(b"\x00not json")
    stop, handled = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(spool, handler, stop, handled), name="test.spool")
    try:
        async with asyncio.timeout(5):
            await handled.wait()
    finally:
        stop.set()
        await server  # the reply is written before the loop looks at `stop` again
    reply = json.loads((spool / "junk.reply.json").read_text(encoding="utf-8"))
    assert (reply["ok"], reply["id"]) == (False, None)
    assert "not JSON" in reply["reason"]
    assert not (spool / "junk.json").exists()


def test_without_an_agent_the_cli_says_so_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = tmp_path / "hvac-commands"
    prepare_spool(spool)  # made by an agent that has stopped since
    status = cli_override(spool, "clear", zone="zone1", timeout=0.2)
    assert status == 1
    assert "did not answer" in capsys.readouterr().err
    assert list(spool.iterdir()) == []


def test_the_cli_never_makes_the_spool_and_says_why_it_cannot_use_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = tmp_path / "hvac-commands"
    assert cli_override(spool, "clear", zone="zone1", timeout=0.2) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"edge-agent: there is no command spool at {spool}: ")
    assert "--data-dir" in err
    assert not spool.exists(), "a spool made by the CLI (e.g. under sudo) would be root's"


async def test_the_service_makes_a_group_writable_setgid_spool(
    tmp_path: Path, handler: CommandHandler
) -> None:
    spool = tmp_path / "hvac-commands"
    stop = asyncio.Event()
    server = asyncio.create_task(serve(spool, handler, stop), name="test.spool")
    async with asyncio.timeout(5):
        while not spool.is_dir():  # noqa: ASYNC110 - the service makes it, no event says so
            await asyncio.sleep(0.01)
    stop.set()
    await server
    assert stat.S_IMODE(spool.stat().st_mode) == 0o2770


def test_a_user_outside_the_group_gets_one_sentence(tmp_path: Path) -> None:
    """The CLI run by a user who may not write the spool (as `sudo` used to make it, reversed):
    a forked child drops to nobody inside the spool (so it needs no other directory)."""
    spool = tmp_path / "hvac-commands"
    prepare_spool(spool)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            os.chdir(spool)
            sys.stderr = os.fdopen(write_end, "w")  # pytest's capture is not fd 2
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            else:
                os.chmod(".", 0o500)
            code = cli_override(Path("."), "clear", zone="zone1", timeout=0.2)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        err = pipe.read()
    assert os.waitstatus_to_exitcode(status) == 1, err
    assert err.startswith("edge-agent: this user may not write to the agent's command spool .: ")
    assert "sudo -u edge-agent edge-agent override" in err
    assert "sudo usermod -aG edge-agent" in err
    assert err.count("\n") == 1
    assert list(spool.iterdir()) == []


def test_submit_is_atomic(tmp_path: Path) -> None:
    path = submit(tmp_path, {"id": "c-1", "action": "clear"})
    assert path.name == "c-1.json"
    assert [p.name for p in tmp_path.iterdir()] == ["c-1.json"]
