"""The binary envelope around each XML message: header, length, sequence, payload, CRC, tail.

Layout (variant A of the platforms' collector protocol; other variants swap header and tail or
change byte orders and CRC coverage, which the profile says):

    header(4) | length u32 (= 4 + len(payload)) | sequence u32 | payload | CRC-16 | tail(4)

The CRC is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection), the algorithm the
public implementations and the captured frame agree on (catalogue entry "CRC-16/XMODEM" in Greg
Cook's CRC RevEng catalogue, check value 0x31C3 for "123456789").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agent.platform.errors import FrameError
from agent.platform.profiles import CrcCoverage, ProfileSettings

__all__ = ["Frame", "crc16_xmodem", "decode_frame", "encode_frame", "read_frame"]

_SEQ_LEN = 4


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _crc_table()


def crc16_xmodem(data: bytes, crc: int = 0) -> int:
    """CRC-16/XMODEM of ``data`` (``crc`` continues an earlier part)."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class Frame:
    """One message on the wire: its instruction sequence and its (possibly encrypted) payload."""

    sequence: int
    payload: bytes


def _crc_of(profile: ProfileSettings, head: bytes, body: bytes) -> bytes:
    """The CRC bytes of a frame whose header+length is ``head`` and seq+payload is ``body``."""
    covered = head + body if profile.crc_coverage is CrcCoverage.FRAME else body
    return crc16_xmodem(covered).to_bytes(2, profile.crc_order)


def encode_frame(profile: ProfileSettings, frame: Frame) -> bytes:
    body = frame.sequence.to_bytes(_SEQ_LEN, profile.sequence_order) + frame.payload
    head = profile.header_bytes + len(body).to_bytes(4, profile.length_order)
    return head + body + _crc_of(profile, head, body) + profile.tail_bytes


def _check_length(profile: ProfileSettings, length: int) -> None:
    if length < _SEQ_LEN:
        raise FrameError(f"the frame's length field says {length} bytes, fewer than a sequence")
    if length > profile.max_frame_bytes:
        raise FrameError(
            f"the frame's length field says {length} bytes, more than the "
            f"{profile.max_frame_bytes} this profile accepts"
        )


def _finish(profile: ProfileSettings, head: bytes, rest: bytes) -> Frame:
    """The frame from its header+length and everything after (body, CRC, tail)."""
    body, crc, tail = rest[:-6], rest[-6:-4], rest[-4:]
    if tail != profile.tail_bytes:
        raise FrameError(f"the frame ends in {tail.hex()}, not the profile's tail {profile.tail}")
    expected = _crc_of(profile, head, body)
    if crc != expected:
        raise FrameError(
            f"CRC mismatch: the frame carries {crc.hex()}, its bytes give {expected.hex()} "
            f"(profile: CRC over {profile.crc_coverage.value}, {profile.crc_order}-endian)"
        )
    return Frame(int.from_bytes(body[:_SEQ_LEN], profile.sequence_order), body[_SEQ_LEN:])


def decode_frame(profile: ProfileSettings, data: bytes) -> Frame:
    """The frame in ``data`` (exactly one), or FrameError saying what is wrong."""
    if data[:4] != profile.header_bytes:
        raise FrameError(f"the frame starts with {data[:4].hex()}, not {profile.header}")
    length = int.from_bytes(data[4:8], profile.length_order)
    _check_length(profile, length)
    if len(data) != 8 + length + 6:
        raise FrameError(f"the frame has {len(data)} bytes; its length field needs {length + 14}")
    return _finish(profile, data[:8], data[8:])


async def read_frame(profile: ProfileSettings, reader: asyncio.StreamReader) -> Frame:
    """The next frame from the stream (the caller bounds the wait).

    A wrong header, a length beyond the profile's limit or a bad CRC raises FrameError: the
    stream is then out of step, and the caller drops the connection rather than hunt for the
    next header. The end of the stream raises IncompleteReadError.
    """
    head = await reader.readexactly(8)
    if head[:4] != profile.header_bytes:
        raise FrameError(f"the platform sent {head[:4].hex()} where a frame header was due")
    length = int.from_bytes(head[4:8], profile.length_order)
    _check_length(profile, length)
    return _finish(profile, head, await reader.readexactly(length + 6))
