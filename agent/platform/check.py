"""``edge-agent platform check --config FILE``: commission the platform link on site.

Connects once, passes the identity check, sends one heartbeat, and prints each step with its
outcome; a failing step gets a sentence on what it most likely means (a refused connection, no
answer, a CRC mismatch, a wrong key), so a technician can settle it with the platform operator.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TextIO

from agent.core.clock import Clock, system_clock
from agent.core.errors import AgentError
from agent.platform.config import PlatformConfig
from agent.platform.errors import AuthRefusedError, FrameError, PlatformError, ProtocolError
from agent.platform.session import PlatformSession

__all__ = ["add_commands", "check_platform"]


class _Site(Protocol):
    """What the check needs of a site config (agent.config.model.SiteConfig, which imports
    this package, so it is described here rather than imported)."""

    @property
    def platform(self) -> PlatformConfig | None: ...

    @property
    def site(self) -> _SiteInfo: ...


class _SiteInfo(Protocol):
    @property
    def timezone(self) -> str: ...


def _hint(exc: PlatformError, config: PlatformConfig) -> str:
    """What the failure most likely means, for the technician."""
    text = str(exc)
    if isinstance(exc, AuthRefusedError):
        return ""  # its message says what to check
    if isinstance(exc, FrameError) and "CRC" in text:
        return (
            " The platform frames differently: ask the operator which bytes the CRC covers and "
            "its byte order (profile settings crc_coverage, crc_order)."
        )
    if isinstance(exc, FrameError):
        return " The platform's envelope differs: check the profile's header and tail bytes."
    if isinstance(exc, ProtocolError) and ("padding" in text or "not valid" in text):
        return " The reply did not decrypt: the key (or IV) in the key file is probably wrong."
    if isinstance(exc, ProtocolError):
        return " Check the profile (its XML encoding and ack style) with the operator."
    if "no answer" in text:
        return (
            f" A firewall may drop the traffic, or the platform ignores frames it cannot read: "
            f"check the profile ({config.profile}) and the key."
        )
    if "cannot connect" in text:
        return " Check the host and port with the operator, and the gateway's network route."
    return ""


async def check_platform(
    config: PlatformConfig, *, tz: str, out: TextIO, clock: Clock | None = None
) -> int:
    """Print each step and its outcome; 0 when every step passed, 1 otherwise."""
    clock = clock if clock is not None else system_clock()
    where = f"{config.host}:{config.port}"
    out.write(f"platform {where}, building {config.building_id}, gateway {config.gateway_id}, ")
    out.write(f"profile {config.profile}\n")

    def step(name: str, outcome: str) -> None:
        out.write(f"  {name:<16} {outcome}\n")

    try:
        config.aes_key()
        config.secret()
    except PlatformError as exc:
        step("key files", f"FAILED: {exc}")
        return 1
    step("key files", "ok")
    session = PlatformSession(config, tz=tz, clock=clock)
    stage = "connect"
    try:
        async with session:
            step(stage, "ok")
            stage = "identity check"
            stamp = await session.login()
            step(
                stage, "passed" + (f" (platform time {stamp:%Y-%m-%d %H:%M:%S} UTC)" * bool(stamp))
            )
            stage = "heartbeat"
            reading = await session.heartbeat()
            step(
                stage,
                f"answered: platform time {reading.platform:%Y-%m-%d %H:%M:%S} UTC, "
                f"{reading.offset_s:+.1f} s from this gateway's clock",
            )
    except PlatformError as exc:
        step(stage, f"FAILED: {exc}.{_hint(exc, config)}")
        return 1
    out.write("the link works: the agent can report to this platform\n")
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    load: Callable[[Path], _Site],
) -> None:
    """``edge-agent platform check --config FILE``; ``load`` reads a site config (the CLI's
    loader, handed in: the config package imports this one)."""
    platform = sub.add_parser("platform", help="the energy-monitoring platform link")
    actions = platform.add_subparsers(dest="platform_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="connect once, pass the identity check, send a heartbeat; print each step"
    )
    check.add_argument("--config", required=True, type=Path, help="site config (YAML)")

    def run(args: argparse.Namespace) -> int:
        config = load(args.config)
        if config.platform is None:
            raise AgentError(f"{args.config} has no `platform:` section")
        return asyncio.run(check_platform(config.platform, tz=config.site.timezone, out=sys.stdout))

    check.set_defaults(handler=run)
