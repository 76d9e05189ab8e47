"""The DL/T 645 frame: addresses, control codes, encoding, and an incremental decoder.

Pure codec, stdlib only, no I/O: the driver owns the serial line and feeds what it reads to a
`FrameDecoder`. Both editions share the frame; they differ in control codes and DI width.

Frame (the standard's "帧格式" section as transcribed by the sources below; the 1997 edition
has the same layout; the standards' own text was not available to us)::

    [FE ...]  68  A0..A5  68  C  L  DATA (L bytes, each +33H)  CS  16

- FE: wake-up preamble. Masters send 4 (the test-tool write-up "DL/T 645多功能电能表通信协议
  测试方法", juejin.cn/post/6996100518367985701); meters answer with 0 to 4 depending on the
  vendor, so the decoder skips any number of them.
- A0..A5: the address, 12 BCD digits, low byte first (real capture of meter 000000000161 in
  public code: it goes on the wire as ``61 01 00 00 00 00``). 99..99 is the broadcast address
  (no reply); AAH bytes are wildcards (缩位寻址), and all-AA with 13H reads the address of the
  only meter on a point-to-point link (cnblogs.com/windowsxpxp/p/18467018 "DLT645-2007 协议快速
  入门"; PyPI ``dlt645`` ``BroadcastAddr``).
- C: control code: bit 7 direction (1 = from the meter), bit 6 abnormal reply, bit 5 follow-up
  frames, bits 4-0 function (same cnblogs source; the 1997 transcriptions define the same bits).
- L: data length. DATA bytes are sent +33H and multi-byte fields low byte first (same sources;
  every real capture decodes this way).
- CS: sum mod 256 of every byte from the first 68 to the last DATA byte; the preamble is not
  summed (PyPI ``dlt645`` test ``test_preamble_is_not_included_in_checksum``; recomputed on the
  real captures).
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from drivers.dlt645.errors import AbnormalReplyError, FrameError, error_reasons

__all__ = [
    "BROADCAST_ADDRESS",
    "DI_LENGTH",
    "WILDCARD_ADDRESS",
    "Frame",
    "FrameDecoder",
    "Function",
    "Reject",
    "Version",
    "decode_address",
    "encode_address",
    "encode_frame",
    "function_code",
    "has_follow_up",
    "is_abnormal",
    "is_from_meter",
    "parse_address_reply",
    "parse_read_reply",
    "read_address_request",
    "read_follow_up_request",
    "read_request",
    "reply_control",
]

Version = Literal["2007", "1997"]

START: Final = 0x68
END: Final = 0x16
PREAMBLE_BYTE: Final = 0xFE
SCRAMBLE: Final = 0x33  # added to every DATA byte on the wire
HEADER_LENGTH: Final = 10  # 68 A0..A5 68 C L
OVERHEAD: Final = 12  # header + CS + 16

# The DI is 4 bytes (DI3..DI0) in 2007 and 2 bytes (DI1 DI0) in 1997: the 2007 foreword lists
# "数据标识由原来的2字节改为4字节" among its changes (transcribed on renrendoc.com/p-9947793.html).
DI_LENGTH: Final[dict[Version, int]] = {"2007": 4, "1997": 2}

BROADCAST_ADDRESS: Final = "999999999999"  # time sync and freeze only; meters never reply
WILDCARD_ADDRESS: Final = "AAAAAAAAAAAA"  # 13H read-address on a point-to-point link

_DIRECTION_BIT: Final = 0x80
_ABNORMAL_BIT: Final = 0x40
_FOLLOW_UP_BIT: Final = 0x20
_FUNCTION_MASK: Final = 0x1F
_MAX_KEPT_PREAMBLE: Final = 8
# Rejects after which the candidate's claimed length (and so its span) was plausible.
_SPAN_KNOWN: Final = frozenset({"checksum", "end byte", "address"})


class Function(enum.IntEnum):
    """Function codes (control bits 4-0) of the requests this codec builds or recognises.

    2007: the standard's control-code table as transcribed by cnblogs.com/windowsxpxp/p/18467018
    and the PyPI ``dlt645`` ``CtrlCode``; 13H and D1H also appear in real frames. 1997: read
    01H, follow-up 02H, write 04H (``wangjianghua/DLMR-PDA`` ``APP/DL645.h``;
    ``KTS-Intek/DLT645`` ``dlt645defines.h``).
    """

    BROADCAST_TIME_SYNC = 0x08
    READ = 0x11
    READ_FOLLOW_UP = 0x12
    READ_ADDRESS = 0x13
    WRITE = 0x14
    WRITE_ADDRESS = 0x15
    FREEZE = 0x16
    CHANGE_BAUD_RATE = 0x17
    CHANGE_PASSWORD = 0x18
    CLEAR_MAX_DEMAND = 0x19
    CLEAR_METER = 0x1A
    CLEAR_EVENTS = 0x1B
    READ_1997 = 0x01
    READ_FOLLOW_UP_1997 = 0x02
    WRITE_1997 = 0x04


_READ: Final[dict[Version, Function]] = {"2007": Function.READ, "1997": Function.READ_1997}
_FOLLOW_UP: Final[dict[Version, Function]] = {
    "2007": Function.READ_FOLLOW_UP,
    "1997": Function.READ_FOLLOW_UP_1997,
}


def is_from_meter(control: int) -> bool:
    """Bit 7: the frame goes from the meter (slave) to the master."""
    return bool(control & _DIRECTION_BIT)


def is_abnormal(control: int) -> bool:
    """Bit 6: an abnormal reply (D1H to a 2007 read, C1H to a 1997 read); DATA is an error word."""
    return bool(control & _ABNORMAL_BIT)


def has_follow_up(control: int) -> bool:
    """Bit 5: more data follows (B1H); read the rest with the follow-up function."""
    return bool(control & _FOLLOW_UP_BIT)


def function_code(control: int) -> int:
    """Bits 4-0: the function, the same in a request and its replies (11H for 91H/B1H/D1H)."""
    return control & _FUNCTION_MASK


def reply_control(function: int, *, abnormal: bool = False, follow_up: bool = False) -> int:
    """The control code a meter answers ``function`` with: 11H -> 91H, B1H, or D1H."""
    if not 0 <= function <= _FUNCTION_MASK:
        raise ValueError(f"a function code is 5 bits, not {function:#x}")
    control = _DIRECTION_BIT | function
    if abnormal:
        control |= _ABNORMAL_BIT
    if follow_up:
        control |= _FOLLOW_UP_BIT
    return control


def _is_address_byte(byte: int) -> bool:
    return byte == 0xAA or (byte >> 4 <= 9 and byte & 0x0F <= 9)


def encode_address(address: str) -> bytes:
    """12 decimal digits (most significant first) to 6 bytes BCD, low byte first.

    A byte may also be ``AA``, the wildcard of short addressing (缩位寻址): ``AAAAAAAAAAAA``
    is the all-wildcard address of the 13H read-address request.
    """
    text = address.strip().upper()
    if len(text) != 12:
        raise ValueError(f"a DL/T 645 address has 12 digits, not {address!r}")
    pairs = [text[i : i + 2] for i in range(0, 12, 2)]
    if not all(p == "AA" or p.isdigit() for p in pairs) or not text.isascii():
        raise ValueError(f"a DL/T 645 address is decimal digits (or AA wildcards): {address!r}")
    return bytes.fromhex(text)[::-1]


def decode_address(raw: bytes) -> str:
    """6 address bytes (low byte first) to the 12-character address; FrameError if not BCD/AA."""
    if len(raw) != 6:
        raise FrameError(f"an address is 6 bytes, not {len(raw)}", raw)
    if not all(_is_address_byte(b) for b in raw):
        raise FrameError("address is neither BCD nor AA wildcard", raw)
    return raw[::-1].hex().upper()


def _scramble(data: bytes) -> bytes:
    return bytes((b + SCRAMBLE) & 0xFF for b in data)


def _unscramble(data: bytes) -> bytes:
    return bytes((b - SCRAMBLE) & 0xFF for b in data)


def encode_frame(address: str, control: int, data: bytes, *, preamble: int = 4) -> bytes:
    """A complete frame; ``data`` is given plain and scrambled (+33H) here.

    ``preamble`` is the count of FE wake-up bytes in front (4 is what masters send; meters
    answer with 0-4).
    """
    if not 0 <= control <= 0xFF:
        raise ValueError(f"a control code is one byte, not {control}")
    if len(data) > 0xFF:
        raise ValueError(f"L is one byte: at most 255 data bytes, not {len(data)}")
    if preamble < 0:
        raise ValueError(f"the preamble count cannot be negative ({preamble})")
    body = bytes([START, *encode_address(address), START, control, len(data)]) + _scramble(data)
    return bytes([PREAMBLE_BYTE]) * preamble + body + bytes([sum(body) & 0xFF, END])


def _di_bytes(di: int, version: Version) -> bytes:
    width = DI_LENGTH[version]
    if not 0 <= di < 1 << (8 * width):
        raise ValueError(f"a DL/T 645-{version} DI is {width} bytes, not {di:#x}")
    return di.to_bytes(width, "little")  # DI0 first on the wire: 00010000 goes as 00 00 01 00


def read_request(address: str, di: int, *, version: Version = "2007", preamble: int = 4) -> bytes:
    """Read one data identifier: 11H with DI3..DI0 (2007) or 01H with DI1 DI0 (1997)."""
    return encode_frame(address, _READ[version], _di_bytes(di, version), preamble=preamble)


def read_follow_up_request(
    address: str, di: int, sequence: int, *, version: Version = "2007", preamble: int = 4
) -> bytes:
    """Read the next frame of a reply that came with the follow-up bit (B1H).

    2007: 12H with the DI and a one-byte frame sequence number. The payload layout was seen
    only in transcriptions (cnblogs.com/windowsxpxp/p/18467018), not in a real capture, and
    1997 (02H) is sent here with the DI alone: both are defaults to check on a real meter.
    """
    payload = _di_bytes(di, version)
    if version == "2007":
        if not 0 <= sequence <= 0xFF:
            raise ValueError(f"the frame sequence number is one byte, not {sequence}")
        payload += bytes([sequence])
    return encode_frame(address, _FOLLOW_UP[version], payload, preamble=preamble)


def read_address_request(*, preamble: int = 4) -> bytes:
    """13H to the all-AA address (2007 only): ``68 AA AA AA AA AA AA 68 13 00 DF 16``.

    Only one meter may be on the line: every meter answers it (cnblogs.com/windowsxpxp/p/
    18467018; the frame appears verbatim in many unrelated code bases).
    """
    return encode_frame(WILDCARD_ADDRESS, Function.READ_ADDRESS, b"", preamble=preamble)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``data`` is unscrambled; ``raw`` is the frame from 68 to 16."""

    address: str
    control: int
    data: bytes
    raw: bytes
    preamble: int = 0  # FE bytes seen right in front of it

    @property
    def is_from_meter(self) -> bool:
        return is_from_meter(self.control)

    @property
    def is_abnormal(self) -> bool:
        return is_abnormal(self.control)

    @property
    def has_follow_up(self) -> bool:
        return has_follow_up(self.control)

    @property
    def function(self) -> int:
        return function_code(self.control)

    @property
    def error_word(self) -> int | None:
        """The error word of an abnormal reply (None for any other frame)."""
        if self.is_abnormal and self.is_from_meter and len(self.data) >= 1:
            return self.data[0]
        return None

    @property
    def error_reasons(self) -> tuple[str, ...]:
        word = self.error_word
        return () if word is None else error_reasons(word)

    def __repr__(self) -> str:
        return (
            f"Frame(address={self.address!r}, control={self.control:02X}H,"
            f" data={self.data.hex(' ').upper()!r})"
        )


def parse_read_reply(frame: Frame, di: int, *, version: Version = "2007") -> bytes:
    """The value bytes of a normal reply to a read of ``di`` (still BCD, low byte first).

    Raises AbnormalReplyError for D1H/C1H, and FrameError when the frame is not a reply to
    this read (wrong function, direction, or a DI echo that is not ``di``).
    """
    function = _READ[version]
    if not frame.is_from_meter or frame.function != function:
        raise FrameError(f"not a reply to a {version} read ({frame.control:02X}H)", frame.raw)
    if frame.is_abnormal:
        word = frame.error_word
        if word is None:
            raise FrameError("abnormal reply without an error word", frame.raw)
        raise AbnormalReplyError(word, control=frame.control, address=frame.address)
    width = DI_LENGTH[version]
    echoed = int.from_bytes(frame.data[:width], "little")
    if len(frame.data) < width or echoed != di:
        raise FrameError(f"reply echoes DI {frame.data[:width][::-1].hex().upper()}", frame.raw)
    return frame.data[width:]


def parse_address_reply(frame: Frame) -> str:
    """The address a meter reports in its 93H reply to 13H (DATA = the address, low byte first)."""
    if frame.control != reply_control(Function.READ_ADDRESS):
        raise FrameError(f"not a read-address reply ({frame.control:02X}H)", frame.raw)
    return decode_address(frame.data[:6])


@dataclass(frozen=True, slots=True)
class Reject:
    """Bytes the decoder threw away, and why (for a driver's log)."""

    reason: str  # "noise", "no second 68", "length", "checksum", "end byte", "address", "truncated"
    raw: bytes


@dataclass(kw_only=True)
class FrameDecoder:
    """Turns a byte stream into frames, resynchronising after noise and broken frames.

    ``feed`` returns the frames completed by a chunk and keeps a partial frame for the next
    chunk. Leading FE bytes are skipped. A candidate (a 68) is dropped, and the search goes on
    from the next byte, when its second 68, length, checksum, end byte or address is wrong, or
    when it is still incomplete but a complete valid frame already starts after it (it was cut
    short, or it was noise that happened to contain 68). Every drop is counted in
    ``reject_counts`` and the latest ``max_rejects`` are kept in ``rejects``.

    ``max_data_length``: L above this is rejected at once instead of waiting for up to 255
    bytes. The default 255 accepts any frame; 200 is the limit for reads that transcriptions of
    the standard give (cnblogs.com/windowsxpxp/p/18467018), set it where meters are known.
    """

    max_data_length: int = 255
    max_rejects: int = 64
    rejects: deque[Reject] = field(init=False, repr=False)
    reject_counts: Counter[str] = field(init=False, default_factory=Counter)
    rejected_bytes: int = field(init=False, default=0)
    _buffer: bytearray = field(init=False, default_factory=bytearray, repr=False)
    _shadow: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.max_data_length <= 0xFF:
            raise ValueError(f"max_data_length is 0-255, not {self.max_data_length}")
        self.rejects = deque(maxlen=self.max_rejects)

    @property
    def pending(self) -> bytes:
        """Bytes held back as the start of a frame not yet complete."""
        return bytes(self._buffer)

    @property
    def reject_count(self) -> int:
        return sum(self.reject_counts.values())

    def reset(self) -> int:
        """Forget a partial frame (after a reply timeout); returns how many bytes were dropped."""
        dropped = len(self._buffer)
        if bytes(self._buffer).strip(bytes([PREAMBLE_BYTE])):
            self._reject("truncated", bytes(self._buffer))
        self._buffer.clear()
        self._shadow = 0
        return dropped

    def take_rejects(self) -> list[Reject]:
        """The rejects recorded since the last call (the counters keep counting)."""
        taken = list(self.rejects)
        self.rejects.clear()
        return taken

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames: list[Frame] = []
        buf = self._buffer
        while True:
            start = buf.find(START)
            if start < 0:
                # Keep a trailing run of FE: it may be the preamble of a frame still to come.
                fe_run = len(buf) - len(buf.rstrip(bytes([PREAMBLE_BYTE])))
                self._drop(len(buf) - min(fe_run, _MAX_KEPT_PREAMBLE), "noise")
                return frames
            preamble = self._drop(start, "noise")
            outcome = self._candidate(buf, 0)
            if isinstance(outcome, Frame):
                del buf[: len(outcome.raw)]
                self._shadow = 0
                frames.append(replace(outcome, preamble=preamble))
                continue
            if outcome is None:  # incomplete: wait, unless a complete frame already follows
                later = self._later_frame(buf)
                if later is None:
                    if preamble:  # keep its FE so the count survives to the next chunk
                        buf[:0] = bytes([PREAMBLE_BYTE]) * preamble
                    return frames
                self._drop(self._before_preamble(later), "truncated")
                continue
            # A broken candidate: resync at the next 68 after its first byte, since its length
            # byte may be the broken part. A span it claimed stays "its" bytes (the shadow), so
            # 68s inside its data do not count as further rejects.
            following = buf.find(START, 1)
            cut = self._before_preamble(following) if following > 0 else len(buf)
            span = OVERHEAD + buf[9] if outcome in _SPAN_KNOWN else 0
            self._drop(cut, outcome, shown=bytes(buf[:span]) if span else None)
            self._shadow = max(self._shadow, span - cut)

    def _before_preamble(self, at: int) -> int:
        """``at`` moved back over the FE bytes in front of it (never to 0: progress is made)."""
        while at > 1 and self._buffer[at - 1] == PREAMBLE_BYTE:
            at -= 1
        return at

    def _drop(self, count: int, reason: str, *, shown: bytes | None = None) -> int:
        """Drop ``count`` leading bytes as rejected for ``reason``; FE bytes only are preamble.

        ``shown`` is what the reject records, when that is more than the dropped bytes (the
        whole broken frame, of which only the part up to the next 68 is dropped at once).
        Returns how many FE bytes ended the dropped bytes (the preamble of what follows).
        """
        if count <= 0:
            return 0
        dropped = bytes(self._buffer[:count])
        del self._buffer[:count]
        fe = bytes([PREAMBLE_BYTE])
        body = dropped.rstrip(fe) if reason == "noise" else dropped
        preamble = len(dropped) - len(body)
        if body.strip(fe):
            if self._shadow > 0:  # still inside the span of the last rejected candidate
                self.rejected_bytes += len(body)
            else:
                self._reject(reason, body if shown is None else shown, counted=len(body))
        self._shadow = max(0, self._shadow - count)
        return preamble

    def _reject(self, reason: str, raw: bytes, *, counted: int | None = None) -> None:
        self.rejects.append(Reject(reason, raw))
        self.reject_counts[reason] += 1
        self.rejected_bytes += len(raw) if counted is None else counted

    def _candidate(self, buf: bytearray, at: int) -> Frame | str | None:
        """The frame starting at ``buf[at]`` (a 68), a reject reason, or None if incomplete."""
        available = len(buf) - at
        if available >= 8 and buf[at + 7] != START:
            return "no second 68"
        if available < HEADER_LENGTH:
            return None
        length = buf[at + 9]
        if length > self.max_data_length:
            return "length"
        total = OVERHEAD + length
        if available < total:
            return None
        body_end = at + HEADER_LENGTH + length
        if sum(buf[at:body_end]) & 0xFF != buf[body_end]:
            return "checksum"
        if buf[body_end + 1] != END:
            return "end byte"
        address = bytes(buf[at + 1 : at + 7])
        if not all(_is_address_byte(b) for b in address):
            return "address"
        return Frame(
            address=address[::-1].hex().upper(),
            control=buf[at + 8],
            data=_unscramble(bytes(buf[at + HEADER_LENGTH : body_end])),
            raw=bytes(buf[at : body_end + 2]),
        )

    def _later_frame(self, buf: bytearray) -> int | None:
        """Where a complete valid frame starts after the incomplete candidate at 0, if any."""
        at = buf.find(START, 1)
        while at > 0:
            if isinstance(self._candidate(buf, at), Frame):
                return at
            at = buf.find(START, at + 1)
        return None
