"""The agent's small error tree.

One base, a family per area, leaves that also inherit the matching built-in so that callers
who only know the built-in still catch them. Messages are built here; data sits on attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: errors must import nothing at run time
    from agent.core.record import Reading

__all__ = [
    "AgentError",
    "ConfigError",
    "ConfigIssue",
    "DeviceUnavailableError",
    "DriverError",
    "StoreError",
    "StoreInUseError",
    "UplinkError",
]


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One located problem in a config file."""

    file: str
    line: int | None  # 1-based; None when the problem is the file as a whole
    column: int | None  # 1-based
    path: str  # e.g. "devices[2].points.active_power.register"; "" for the whole file
    message: str  # a plain sentence

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(AgentError, ValueError):
    """A config file that cannot be used; carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class DriverError(AgentError):
    """A device protocol failed."""


class DeviceUnavailableError(DriverError, ConnectionError):
    """A device did not answer (timeout, refused, broken connection). ``readings`` holds what
    the device answered in the same cycle before it fell silent, so nothing read is lost."""

    def __init__(self, device: str, reason: str, *, readings: Sequence[Reading] = ()) -> None:
        self.device = device
        self.reason = reason
        self.readings = tuple(readings)
        super().__init__(f"device {device!r} is unavailable: {reason}")


class StoreError(AgentError, OSError):
    """The local buffer could not be read or written."""


class StoreInUseError(StoreError):
    """Another process writes the store (agent/store/lock.py): the service waits for it to
    end, a command run by hand says so and stops."""


class UplinkError(AgentError, ConnectionError):
    """The MQTT uplink failed."""
