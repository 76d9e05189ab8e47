"""The local command drop behind ``edge-agent override`` and ``edge-agent pulses set``: JSON
files in DATA_DIR/hvac-commands (the name from when only HVAC commands used it).

The CLI writes ``<id>.json`` (a temporary name, then an atomic rename), the service hands the
bytes to the controller's command path — the same validation as a command from MQTT —, writes
``<id>.reply.json`` and removes the command; the CLI waits for the reply and prints it.

The directory is the service's: the service creates it, group-writable and setgid (2770), so
that its own user, root, and members of its group (``sudo usermod -aG edge-agent tech``) may drop
commands, and every file in it belongs to the service's group whoever wrote it. The CLI never
creates it (a spool made by ``sudo`` would belong to root, and the service could not read it);
it explains in one sentence when the spool is missing or not writable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from agent.core.clock import system_clock
from agent.core.errors import AgentError

__all__ = [
    "SPOOL_DIR",
    "SpoolError",
    "cli_command",
    "cli_override",
    "prepare_spool",
    "serve_spool",
    "submit",
    "wait_reply",
]

log = logging.getLogger(__name__)

SPOOL_DIR = "hvac-commands"
REPLY_SUFFIX = ".reply.json"
REPLY_KEEP_S = 3600.0
MAX_FILE_BYTES = 8192
DEFAULT_REPLY_TIMEOUT_S = 10.0
SPOOL_MODE = 0o2770  # setgid, group-writable: see the module's docstring
FILE_MODE = 0o660  # the other side (service or CLI) reads it through the group, and removes it

Handler = Callable[[bytes], Awaitable[dict[str, Any]]]


class SpoolError(AgentError, PermissionError):
    """The command spool cannot be used from here; the message says what to do."""


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    # Whatever the writer's umask: the other side reads it through the shared group.
    temporary.chmod(FILE_MODE)
    os.replace(temporary, path)


def prepare_spool(spool: Path) -> None:
    """The service's side: create the spool (or fix its mode) as the module docstring says."""
    spool.mkdir(parents=True, exist_ok=True)
    spool.chmod(SPOOL_MODE)


def submit(spool: Path, command: dict[str, Any]) -> Path:
    """Drop ``command`` into the spool; returns its file. SpoolError when there is no spool
    (no agent ran with this data directory) or it is not writable by this user."""
    path = spool / f"{command['id']}.json"
    try:
        # Looking needs the data directory's group too (it is 0750): a PermissionError here is
        # the same problem as one on writing.
        present = spool.is_dir()
        if present:
            _write_atomic(path, json.dumps(command, ensure_ascii=False).encode("utf-8"))
    except PermissionError:
        raise SpoolError(
            f"this user may not write to the agent's command spool {spool}: run the command "
            f"as the service's user (sudo -u edge-agent edge-agent override ...) or as a "
            f"member of its group (sudo usermod -aG edge-agent $USER, then log in again)"
        ) from None
    if not present:
        raise SpoolError(
            f"there is no command spool at {spool}: is the agent running with this data "
            f"directory? (give it with --data-dir; the service's is /var/lib/edge-agent)"
        )
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
    try:
        await asyncio.to_thread(prepare_spool, spool)
    except OSError as exc:
        # E.g. a spool made by root before the service made its own: the rest of the agent runs
        # on; only local commands are not heard.
        log.warning(
            "local commands are off: the command spool %s cannot be made the service's (%s); "
            "remove it (sudo rm -r %s) and restart the service",
            spool,
            exc.strerror or exc,
            spool,
        )
        await stop.wait()
        return
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
    # The HVAC command model only here: the agent serves the spool for every site, with or
    # without HVAC, and need not load it for that.
    from agent.hvac.commands import make_command

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
    try:
        path = submit(spool, command)
    except SpoolError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
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
