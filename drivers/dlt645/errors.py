"""DL/T 645 errors: a malformed frame, a non-BCD value, a meter's abnormal reply.

The tree is small on purpose: one base (`Dlt645Error`) and leaves that also inherit the matching
built-in, so a caller that only knows ``ValueError`` or ``LookupError`` still catches them.
Messages are built here; the data sits on attributes so a driver can log or count it.

The error word of an abnormal reply (control code with bit 6 set, e.g. D1H; L = 1) is decoded
bit by bit into named reasons. Bit meanings: the DL/T 645-2007 error-word table (异常应答帧
错误信息字), as transcribed by the PyPI package ``dlt645`` 3.2.0 (``ErrorCode``,
``600888/dlt645`` on GitHub), and the real reply ``D1 01 35`` (error word 02H, "no requested
data") captured from several meters in public code. The 1997 edition's abnormal reply (C1H) is
taken to carry the same word; only transcriptions of that edition say so.
"""

from __future__ import annotations

__all__ = [
    "ERROR_WORD_BITS",
    "AbnormalReplyError",
    "BcdError",
    "Dlt645Error",
    "FrameError",
    "ProfileError",
    "UnknownDataIdError",
    "error_reasons",
]

# Bit -> reason (see the module docstring for the sources).
ERROR_WORD_BITS: dict[int, str] = {
    0: "other error",  # 其他错误
    1: "no requested data",  # 无请求数据: the usual answer to an unsupported DI
    2: "password error or unauthorised",  # 密码错/未授权
    3: "baud rate cannot be changed",  # 通信速率不能更改
    4: "too many year time zones",  # 年时区数超
    5: "too many daily time slots",  # 日时段数超
    6: "too many tariffs",  # 费率数超
    7: "reserved",  # 保留
}


def error_reasons(error_word: int) -> tuple[str, ...]:
    """The named reasons set in an abnormal reply's error word, lowest bit first."""
    if not 0 <= error_word <= 0xFF:
        raise ValueError(f"an error word is one byte, not {error_word}")
    return tuple(reason for bit, reason in ERROR_WORD_BITS.items() if error_word >> bit & 1)


class Dlt645Error(Exception):
    """Base of every error the DL/T 645 codec raises on purpose."""


class FrameError(Dlt645Error, ValueError):
    """Bytes that are not the frame (or the reply) they should be."""

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        self.reason = reason
        self.raw = bytes(raw)
        message = reason if not raw else f"{reason}: {self.raw.hex(' ').upper()}"
        super().__init__(message)


class BcdError(Dlt645Error, ValueError):
    """A value byte has a nibble above 9: the meter sent invalid data (never convert it)."""

    def __init__(self, raw: bytes, offset: int) -> None:
        self.raw = bytes(raw)
        self.offset = offset  # index in ``raw`` (wire order, low byte first) of the bad byte
        self.byte = self.raw[offset]
        super().__init__(
            f"byte {self.byte:02X} at offset {offset} of {self.raw.hex(' ').upper()} is not BCD"
        )


class AbnormalReplyError(Dlt645Error):
    """The meter answered with an abnormal reply (control bit 6 set) and an error word."""

    def __init__(self, error_word: int, *, control: int, address: str = "") -> None:
        self.error_word = error_word
        self.control = control
        self.address = address
        self.reasons = error_reasons(error_word)
        who = f"meter {address}" if address else "the meter"
        because = ", ".join(self.reasons) if self.reasons else "no reason given"
        super().__init__(
            f"{who} answered abnormal reply {control:02X}H with error word"
            f" {error_word:02X}H ({because})"
        )


class UnknownDataIdError(Dlt645Error, LookupError):
    """A data identifier (or point name) the catalogue of that protocol version does not hold."""

    def __init__(self, key: int | str, version: str) -> None:
        self.key = key
        self.version = version
        shown = f"{key:0{8 if version == '2007' else 4}X}" if isinstance(key, int) else repr(key)
        super().__init__(f"DL/T 645-{version} catalogue has no {shown}")


class ProfileError(Dlt645Error, ValueError):
    """A DL/T 645 profile that cannot be used (unknown DI, wrong width, bad layout)."""

    def __init__(self, profile: str, problem: str) -> None:
        self.profile = profile
        self.problem = problem
        super().__init__(f"DL/T 645 profile {profile!r}: {problem}")
