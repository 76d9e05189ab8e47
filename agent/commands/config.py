"""The ``commands`` section of the site config: who may send commands, and how many."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agent.core.configbase import ConfigModel
from agent.core.durations import Duration

__all__ = ["CommandsConfig"]


class CommandsConfig(ConfigModel):
    """Upstream and local commands (HVAC overrides, pulse counter settings)."""

    secret_file: Path | None = None
    """File holding the shared secret of signed commands: when given, every command from MQTT
    must carry a good `sig` (HMAC-SHA256 over its RFC 8785 canonical JSON; docs/payload.md).
    Commands from the local CLI need none: the spool directory's permissions guard them."""
    per_sender: int = Field(default=100, ge=1, le=10_000)
    """Commands one sender may send within `window`; more are refused until the window moves
    on, so one sender's junk cannot lock out another's commands."""
    window: Duration = Field(default=600.0, gt=0)
    """The window of `per_sender`."""
    trust_clock: bool = False
    """Check command expiry without systemd-timesyncd's sync flag, on a gateway without an
    hvac section (with one, hvac.trust_clock decides): only with a battery-backed RTC."""
