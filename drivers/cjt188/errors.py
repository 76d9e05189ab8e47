"""CJ/T 188 errors: bytes that are not a frame, fields that are not BCD, unknown unit codes,
and a meter that answered with its abnormal-reply control code.

One base, `Cjt188Error`, so a caller can catch the whole driver at once; the leaves that describe
malformed input also inherit `ValueError`. Messages are built here from the data, which stays on
attributes for callers that log or count it.
"""

from __future__ import annotations

__all__ = [
    "AbnormalReplyError",
    "BcdError",
    "Cjt188Error",
    "FrameError",
    "UnitCodeError",
]


class Cjt188Error(Exception):
    """Base of every error the CJ/T 188 driver raises on purpose."""


class FrameError(Cjt188Error, ValueError):
    """Bytes that are not a usable CJ/T 188 frame, or a reply that does not fit its request."""

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        self.reason = reason
        self.raw = bytes(raw)
        shown = f": {self.raw.hex(' ')}" if self.raw else ""
        super().__init__(f"CJ/T 188 frame rejected, {reason}{shown}")


class BcdError(Cjt188Error, ValueError):
    """A field that must be BCD holds a nibble above 9."""

    def __init__(self, raw: bytes, offset: int, field: str = "") -> None:
        self.raw = bytes(raw)
        self.offset = offset
        self.field = field
        where = f" in {field}" if field else ""
        super().__init__(
            f"byte 0x{self.raw[offset]:02X} at offset {offset}{where} is not BCD"
            f" ({self.raw.hex(' ')})"
        )


class UnitCodeError(Cjt188Error, ValueError):
    """A unit code the table does not know, or one of the wrong quantity for its field."""

    def __init__(
        self,
        code: int,
        field: str,
        *,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        self.code = code
        self.field = field
        self.expected = expected
        self.got = got
        if expected is None or got is None:
            message = f"unknown CJ/T 188 unit code 0x{code:02X} for {field}"
        else:
            message = (
                f"CJ/T 188 unit code 0x{code:02X} is a unit of {got}, but {field} needs a unit"
                f" of {expected}"
            )
        super().__init__(message)


class AbnormalReplyError(Cjt188Error):
    """The meter answered with the abnormal bit (D6) set in its control code.

    The abnormal reply carries SER and the two status bytes ST instead of data (transcriptions
    of CJ/T 188-2004: ``68 T A0..A6 C L=03 SER ST ST CS 16``).
    """

    def __init__(self, address: str, control: int, ser: int | None, status: bytes) -> None:
        self.address = address
        self.control = control
        self.ser = ser
        self.status = bytes(status)
        st = self.status.hex(" ") if self.status else "none"
        super().__init__(
            f"meter {address} answered abnormal (control 0x{control:02X}, SER {ser}, ST {st})"
        )
