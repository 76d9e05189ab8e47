"""Platform profiles: every way the energy-monitoring platforms' upload protocol differs, named.

The collector protocol (persistent TCP, a binary envelope around an XML document, an MD5
challenge, AES-128-CBC) is implemented differently from one platform to the next, and its primary
texts (the 2008 MOHURD transmission guideline, JGJ/T 285-2014 Appendix E) were not available when
this was written. So each choice is a setting here, the shipped profiles hold the variants seen in
public implementations, and ``custom`` takes every setting from the site config, filled in from
the platform operator's interface document (docs/platform.md says which question settles each).

Sources of the shipped profiles (public code, summarised in docs/platform.md):
- ``guideline-a``: envelope ``68 68 16 16 | len u32 LE | seq u32 LE | payload | CRC | 55 AA 55 AA``
  as in a real captured login frame of the C# collector "RenewEDSenderM" (CRC-16/XMODEM over the
  bytes from the header through the payload, stored big-endian, checked in
  tests/test_platform_envelope.py); MD5 over key + sequence as in two public Java servers.
- ``guideline-a-java``: the same envelope as a public Java collector builds it (the CRC over the
  sequence and payload only, stored little-endian), PKCS#5 padding and only data messages
  encrypted as the typed-packet Java server does.
- ``zhejiang-b``: header and tail swapped (``55 AA 55 AA`` first) as in the Node.js platform and
  collector with Zhejiang building ids; MD5 over sequence + key (the Node server's
  ``sequence + salt``), GB2312 XML and the ``report_ack`` acknowledgement.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import Field, field_validator

from agent.core.configbase import ConfigModel
from agent.core.suggest import did_you_mean

__all__ = [
    "CUSTOM",
    "SHIPPED",
    "AckStyle",
    "CrcCoverage",
    "Encrypted",
    "Md5Order",
    "Padding",
    "ProfileSettings",
    "profile_names",
    "shipped_profile",
]

CUSTOM = "custom"
HEX4 = r"^[0-9A-Fa-f]{8}$"


class CrcCoverage(enum.StrEnum):
    """Which bytes the CRC-16 is computed over."""

    FRAME = "frame"  # from the first header byte through the last payload byte (the capture)
    SEQ_PAYLOAD = "seq+payload"  # the instruction sequence and the payload (the Java client)


class Encrypted(enum.StrEnum):
    """Which messages travel AES-encrypted."""

    ALL = "all"  # every message, the identity check included
    DATA = "data"  # energy reports and their acks only; login and heartbeat in clear
    NONE = "none"  # nothing (a test platform, or one behind a VPN)


class Padding(enum.StrEnum):
    """How a plaintext is filled to a whole AES block."""

    ZERO = "zero"  # 0x00 bytes, none when already whole (the older style)
    PKCS7 = "pkcs7"  # PKCS#5/#7: n bytes of value n, a whole block when already whole
    ASCII_ZERO = "ascii-zero"  # the character '0' (0x30), as the captured RenewED frame pads


class Md5Order(enum.StrEnum):
    """What the identity check hashes."""

    KEY_SEQUENCE = "key+sequence"
    SEQUENCE_KEY = "sequence+key"


class AckStyle(enum.StrEnum):
    """How the platform acknowledges a report."""

    DATA_ACK = "data-ack"  # <data operation="report|continuous"><time/><ack>OK</ack></data>
    REPORT_ACK = "report-ack"  # <report_config operation="report_ack"><report_ack>pass</...>


class ProfileSettings(ConfigModel):
    """How one platform frames, encrypts, hashes, encodes and acknowledges."""

    header: str = Field(pattern=HEX4)
    """The 4 bytes that open a frame, as 8 hex digits, e.g. 68681616."""
    tail: str = Field(pattern=HEX4)
    """The 4 bytes that close a frame, e.g. 55AA55AA."""
    length_order: Literal["little", "big"] = "little"
    """Byte order of the 4-byte length field (it counts the sequence and the payload)."""
    sequence_order: Literal["little", "big"] = "little"
    """Byte order of the 4-byte instruction sequence (指令序号)."""
    crc_coverage: CrcCoverage = CrcCoverage.FRAME
    """Bytes under the CRC-16/XMODEM: frame (header through payload) or seq+payload."""
    crc_order: Literal["little", "big"] = "big"
    """Byte order of the 2-byte CRC on the wire."""
    encrypted: Encrypted = Encrypted.ALL
    """Which messages are AES-128-CBC encrypted: all, data (reports and acks) or none."""
    padding: Padding = Padding.ZERO
    """Filling of the last AES block: zero, pkcs7 or ascii-zero."""
    md5_order: Md5Order = Md5Order.KEY_SEQUENCE
    """Input of the identity check's MD5: key+sequence or sequence+key (lowercase hex out)."""
    encoding: Literal["utf-8", "gb2312"] = "utf-8"
    """Text encoding of the XML (and its declaration); GB2312 where the platform asks for it."""
    ack: AckStyle = AckStyle.DATA_ACK
    """How reports are acknowledged: data-ack (<ack>OK</ack>) or report-ack (report_ack pass)."""
    error_measured: str = Field(default="0", max_length=8)
    """Value of a function's error attribute for a measured value."""
    error_estimated: str = Field(default="1", max_length=8)
    """Value of the error attribute for a value the accounting marked estimated or partial."""
    max_frame_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20)
    """Longest frame accepted from the platform; a longer length field drops the connection."""

    @field_validator("header", "tail", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        # YAML reads an unquoted 68681616 as a number; the bytes are what was written.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("header", "tail")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @property
    def header_bytes(self) -> bytes:
        return bytes.fromhex(self.header)

    @property
    def tail_bytes(self) -> bytes:
        return bytes.fromhex(self.tail)


SHIPPED: dict[str, ProfileSettings] = {
    "guideline-a": ProfileSettings(header="68681616", tail="55aa55aa"),
    "guideline-a-java": ProfileSettings(
        header="68681616",
        tail="55aa55aa",
        crc_coverage=CrcCoverage.SEQ_PAYLOAD,
        crc_order="little",
        encrypted=Encrypted.DATA,
        padding=Padding.PKCS7,
    ),
    "zhejiang-b": ProfileSettings(
        header="55aa55aa",
        tail="68681616",
        crc_coverage=CrcCoverage.SEQ_PAYLOAD,
        crc_order="little",
        md5_order=Md5Order.SEQUENCE_KEY,
        encoding="gb2312",
        ack=AckStyle.REPORT_ACK,
    ),
}


def profile_names() -> tuple[str, ...]:
    """The shipped profiles, then ``custom``."""
    return (*SHIPPED, CUSTOM)


def shipped_profile(name: str) -> ProfileSettings:
    """A shipped profile by name, or ValueError with the names there are."""
    try:
        return SHIPPED[name]
    except KeyError:
        known = profile_names()
        raise ValueError(
            f"no platform profile is named {name!r}{did_you_mean(name, known)}; "
            f"the profiles are: {', '.join(known)}"
        ) from None
