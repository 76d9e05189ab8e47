"""The local command drop behind ``edge-agent override`` and ``edge-agent pulses set``: JSON
files in DATA_DIR/hvac-commands (the name from when only HVAC commands used it).

The CLI writes ``<id>.json`` (a temporary name, then an atomic rename), the service hands the
bytes to the controller's command path — the same validation as a command from MQTT —, writes
``<id>.reply.json`` and removes the command; the CLI waits for the reply and prints it. The
directory is the service's: the CLI must run as the service's user (or root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from agent.core.clock import system_clock
from agent.hvac.commands import make_command

__all__ = ["SPOOL_DIR", "cli_command", "cli_override", "serve_spool", "submit", "wait_reply"]

SPOOL_DIR = "hvac-commands"
REPLY_SUFFIX = ".reply.json"
REPLY_KEEP_S = 3600.0
MAX_FILE_BYTES = 8192
DEFAULT_REPLY_TIMEOUT_S = 10.0

Handler = Callable[[bytes], Awaitable[dict[str, Any]]]


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def submit(spool: Path, command: dict[str, Any]) -> Path:
    """Drop ``command`` into the spool; returns its file."""
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{command['id']}.json"
    _write_atomic(path, json.dumps(command, ensure_ascii=False).encode("utf-8"))
    return path


def wait_reply(
    spool: Path, command_id: str, *, timeout: float, poll: float = 0.1
) -> dict[str, Any] | None:
    """The service's reply, or None when none came within ``timeout`` (blocking: for the CLI)."""
    reply = spool / f"{command_id}{REPLY_SUFFIX}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reply.exists():
            data: dict[str, Any] = json.loads(reply.read_text(encoding="utf-8"))
            reply.unlink(missing_ok=True)
            return data
        time.sleep(poll)
    return None


def _pending(spool: Path) -> list[Path]:
    if not spool.is_dir():
        return []
    return sorted(
        path
        for path in spool.iterdir()
        if path.name.endswith(".json")
        and not path.name.endswith(REPLY_SUFFIX)
        and not path.name.startswith(".")
    )


def _take(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    finally:
        path.unlink(missing_ok=True)
    return data


def _sweep(spool: Path, now: float) -> None:
    for path in spool.glob(f"*{REPLY_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > REPLY_KEEP_S:
                path.unlink()


async def serve_spool(
    spool: Path, handle: Handler, *, stop: asyncio.Event, interval: float = 0.5
) -> None:
    """Hand every dropped command to ``handle`` and write its reply, until ``stop`` is set."""
    while not stop.is_set():
        for path in await asyncio.to_thread(_pending, spool):
            try:
                data = await asyncio.to_thread(_take, path)
            except OSError:
                continue  # taken by someone else, or gone
            reply = await handle(data)
            name = path.name.removesuffix(".json")
            target = spool / f"{name}{REPLY_SUFFIX}"
            payload = json.dumps(reply, ensure_ascii=False).encode("utf-8")
            await asyncio.to_thread(_write_atomic, target, payload)
        # File times are the kernel's wall clock, so a reply's age is measured on that clock, not on
        # the agent's injected one (which a test run may shift).
        await asyncio.to_thread(_sweep, spool, time.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()


def cli_override(
    spool: Path,
    action: str,
    *,
    zone: str,
    setpoint: float | None = None,
    mode: str | None = None,
    until: datetime | None = None,
    duration: str | None = None,
    timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """``edge-agent override set|clear``: 0 when the agent accepted, 1 otherwise. A naive
    ``until`` is taken in this machine's local time."""
    if timeout is None:
        timeout = DEFAULT_REPLY_TIMEOUT_S
    if until is not None and until.tzinfo is None:
        until = until.astimezone()
    command = make_command(
        action,
        zone=zone,
        now=system_clock().wall(),
        setpoint=setpoint,
        mode=mode,
        until=until,
        duration=duration,
        ttl=max(timeout * 2, 60.0),
    )
    return cli_command(spool, command, timeout=timeout, out=out)


def cli_command(
    spool: Path, command: dict[str, Any], *, timeout: float, out: TextIO = sys.stdout
) -> int:
    """Drop ``command`` into the spool, wait for the agent's reply and print it: 0 when the
    agent accepted the command, 1 otherwise (or when it did not answer in time)."""
    path = submit(spool, command)
    reply = wait_reply(spool, command["id"], timeout=timeout)
    if reply is None:
        path.unlink(missing_ok=True)  # so that it cannot apply later, unexpectedly
        print(
            f"edge-agent: the agent did not answer within {timeout:g} s; is it running with "
            f"this data directory ({spool.parent})?",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(reply, ensure_ascii=False), file=out)
    return 0 if reply.get("ok") else 1
