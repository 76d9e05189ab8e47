"""BLE errors: an advert that cannot be decoded, a key that cannot be used, an adapter that is gone.

The tree is small on purpose: one base (`BleError`, a `DriverError`) and leaves that also inherit
the matching built-in, so a caller that only knows ``ValueError`` or ``ConnectionError`` still
catches them. Messages are built here; the data sits on attributes so the source can log or
count it.
"""

from __future__ import annotations

from pathlib import Path

from agent.core.errors import DriverError

__all__ = ["AdapterError", "BleError", "DecryptionError", "FormatError", "KeyFileError"]


class BleError(DriverError):
    """Base of every error the BLE driver raises on purpose."""


class FormatError(BleError, ValueError):
    """Service data that is not the advert format it should be (garbled, truncated, another
    format, a version we do not know). Never turned into a number."""

    def __init__(self, fmt: str, reason: str, raw: bytes = b"") -> None:
        self.format = fmt
        self.reason = reason
        self.raw = bytes(raw)
        message = f"{fmt}: {reason}"
        if raw:
            message += f" ({self.raw.hex(' ').upper()})"
        super().__init__(message)


class DecryptionError(FormatError):
    """An encrypted BTHome advert that cannot be read: no key, a key that does not fit (the
    message integrity check fails), or a plain advert from a sensor that has a key (a downgrade,
    refused as bthome-ble refuses it)."""

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        super().__init__("bthome", reason, raw)


class KeyFileError(BleError, ValueError):
    """A BTHome key file that cannot be read or does not hold 32 hex digits. The key itself is
    never put in the message."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"BTHome key file {path}: {problem}")


class AdapterError(BleError, ConnectionError):
    """The Bluetooth adapter cannot scan (absent, powered off, BlueZ not running, scan stopped)."""

    def __init__(self, adapter: str, reason: str) -> None:
        self.adapter = adapter
        self.reason = reason
        super().__init__(f"Bluetooth adapter {adapter} is unavailable: {reason}")
