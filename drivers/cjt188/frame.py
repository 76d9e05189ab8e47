"""The CJ/T 188 link layer: frames to bytes and back, request builders, meter-type classes.

A pure codec (standard library only, no I/O) so the driver, the tools and the tests share it.

Frame (CJ/T 188-2004 as deployed)::

    [FE ...] 68 T A0 A1 A2 A3 A4 A5 A6 C L DATA(L bytes) CS 16

- T is the meter type; A0..A6 the address, 14 BCD digits, low byte first (often a 5-byte meter
  number then a 2-byte maker code: ``44 33 22 11 00 33 78`` is meter 0011223344 of maker 7833);
  C the control code; L the data length; CS the sum mod 256 of every byte from 68 to the last
  data byte. Unlike DL/T 645 there is no +33H scrambling. Sources: hftangyu.com/563.html; the
  transcription of the standard at cnblogs.com/cj94/p/18534595 (2-4 FE before a frame, L at
  most 64H for reads, control bits); `aixiwang/python_cjt188` python_cjt188.py (encoder,
  decoder, a captured request/response pair).
- C: D7 set in a reply, D6 set in an abnormal reply, D5..D0 the function: read data 01,
  read address 03, write data 04, read key version 09, write address 15, write motor sync 16
  (`xijunzhou/sdqr_energy_node_class-20180705` Src/meter/cj188.h; aixiwang; transcription).
- DATA of a read starts with the two-byte data identifier DI and a sequence byte SER that the
  meter echoes. Which DI byte goes first differs between real meters (below), so the order is a
  per-device setting, `DiOrder`, and a reply's order can be detected (`detect_di_order`).

The address is handled as text, the 14 digits as printed on the meter ("78330007061326" for the
bytes ``26 13 06 07 00 33 78``); a decoded frame spells its address bytes as hex the same way, so
the wildcard ``AA`` x 7 reads "AAAAAAAAAAAAAA" and any bytes survive a decode/encode round trip.

`FrameDecoder` takes bytes as they arrive, skips any number of FE (and noise) before a frame,
and counts what it rejects, by reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final, Literal

from drivers.cjt188.errors import AbnormalReplyError, FrameError

__all__ = [
    "ABNORMAL_BIT",
    "C_READ_ADDRESS",
    "C_READ_DATA",
    "C_READ_KEY_VERSION",
    "C_WRITE_ADDRESS",
    "C_WRITE_DATA",
    "C_WRITE_MOTOR_SYNC",
    "DEFAULT_PREAMBLE",
    "DI_ORDERS",
    "DI_READ_ADDRESS",
    "DI_READ_DATA",
    "END",
    "MAX_DATA_LENGTH",
    "METER_TYPE_RANGES",
    "PREAMBLE",
    "REPLY_BIT",
    "START",
    "WILDCARD_ADDRESS",
    "WILDCARD_TYPE",
    "DataReply",
    "DiOrder",
    "Frame",
    "FrameDecoder",
    "MeterKind",
    "checksum",
    "classify_meter_type",
    "decode_di",
    "detect_di_order",
    "encode_address",
    "encode_di",
    "encode_frame",
    "is_reply_to",
    "parse_data_reply",
    "read_address_request",
    "read_data_request",
]

START: Final = 0x68
END: Final = 0x16
PREAMBLE: Final = 0xFE

# The transcription asks for 2-4 FE before a frame (they wake M-Bus level converters); the
# captured read-address requests (aixiwang, cnblogs cj94) send 4. A default, not a constant.
DEFAULT_PREAMBLE: Final = 4

# "L <= 64H when reading" (transcription, cnblogs cj94). A longer L is taken as noise.
MAX_DATA_LENGTH: Final = 0x64

C_READ_DATA: Final = 0x01
C_READ_ADDRESS: Final = 0x03
C_WRITE_DATA: Final = 0x04
C_READ_KEY_VERSION: Final = 0x09
C_WRITE_ADDRESS: Final = 0x15
C_WRITE_MOTOR_SYNC: Final = 0x16
REPLY_BIT: Final = 0x80
ABNORMAL_BIT: Final = 0x40
_FUNCTION_MASK: Final = 0x3F

DI_READ_DATA: Final = 0x901F  # "read metering data": the 901F layouts in `drivers.cjt188.data`
DI_READ_ADDRESS: Final = 0x810A

# The broadcast address: "only for point-to-point links" (transcription, cnblogs cj94), i.e.
# a read-address request only works with a single meter on the line.
WILDCARD_ADDRESS: Final = "AAAAAAAAAAAAAA"
WILDCARD_TYPE: Final = 0xAA

_HEADER = 11  # 68 T A0..A6 C L
_TRAILER = 2  # CS 16

DiOrder = Literal["standard", "swapped"]
"""DI byte order on the wire.

- "standard": high byte first, ``90 1F`` (and ``81 0A`` for read address). ng-gateway.com's
  CJ/T 188 notes (southward/cjt188/address-di.html) give this order for the 2004 edition; a JY
  heat meter and the aixiwang test pair send it, and every captured read-address request does.
- "swapped": low byte first, ``1F 90``. That page gives it for the 2018 edition, but many
  2004-era meters send it too (the Sanext heat meter behind ioBroker.sanext, several Chinese
  water meters, the 68.00 m3 capture in the tests).
"""

DI_ORDERS: Final[tuple[DiOrder, ...]] = ("standard", "swapped")

MeterKind = Literal["water_cold", "water_hot", "heat", "gas", "other"]

# T ranges, first match wins. Codes from ng-gateway.com (southward/cjt188/address-di.html) and
# hftangyu.com/563.html: 10H cold water, 11H domestic hot water, 12H direct-drinking water,
# 13H reclaimed water, 20H heat meter (heat), 21H (cooling), 22H (heat + cooling, 2018),
# 30H gas. Real heat meters answer with T = 25H, so each class is a range (10H-19H, 20H-29H,
# 30H-39H), not an exact code. Which codes besides 11H carry hot water is not documented: a
# table to override, not a fact.
METER_TYPE_RANGES: Final[tuple[tuple[int, int, MeterKind], ...]] = (
    (0x11, 0x11, "water_hot"),
    (0x10, 0x19, "water_cold"),
    (0x20, 0x29, "heat"),
    (0x30, 0x39, "gas"),
)


def classify_meter_type(
    meter_type: int,
    *,
    ranges: tuple[tuple[int, int, MeterKind], ...] = METER_TYPE_RANGES,
) -> MeterKind:
    """The class of a meter type byte T: water_cold, water_hot, heat, gas or other."""
    for low, high, kind in ranges:
        if low <= meter_type <= high:
            return kind
    return "other"


def checksum(data: bytes | bytearray) -> int:
    """CS: the sum mod 256 of the bytes from 68 to the last data byte."""
    return sum(data) & 0xFF


def encode_address(address: str) -> bytes:
    """The 7 address bytes, low byte first, for 14 digits or the wildcard "AAAAAAAAAAAAAA".

    Raises ValueError for anything else (a config or caller mistake, not a wire error).
    """
    text = address.strip().upper()
    if len(text) != 14 or not (text.isdigit() or text == WILDCARD_ADDRESS):
        raise ValueError(
            f"a CJ/T 188 address is 14 decimal digits (or {WILDCARD_ADDRESS}), not {address!r}"
        )
    return bytes.fromhex(text)[::-1]


def _address_text(raw: bytes) -> str:
    return raw[::-1].hex().upper()


def encode_di(di: int, order: DiOrder) -> bytes:
    """A data identifier as two bytes in the device's order."""
    if not 0 <= di <= 0xFFFF:
        raise ValueError(f"a DI is two bytes, not 0x{di:X}")
    return di.to_bytes(2, "big" if order == "standard" else "little")


def decode_di(raw: bytes, order: DiOrder) -> int:
    """A data identifier from its two bytes in the given order."""
    return int.from_bytes(raw[:2], "big" if order == "standard" else "little")


def detect_di_order(data: bytes, di: int = DI_READ_DATA) -> DiOrder | None:
    """Which order the first two data bytes carry ``di`` in; None if in neither.

    A scan sends a read in one order and then the other; the reply's own order tells which
    the meter uses (a meter that does not understand the order stays silent or answers
    abnormal).
    """
    for order in DI_ORDERS:
        if len(data) >= 2 and data[:2] == encode_di(di, order):
            return order
    return None


@dataclass(frozen=True, slots=True)
class Frame:
    """One CJ/T 188 frame, without preamble, checksum and end byte."""

    meter_type: int
    address: str  # 14 hex digits, high byte first as printed: "78330007061326"
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY_BIT)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ABNORMAL_BIT)

    @property
    def function(self) -> int:
        """The control code without the reply and abnormal bits (01 read data, 03 ...)."""
        return self.control & _FUNCTION_MASK

    @property
    def address_bytes(self) -> bytes:
        return bytes.fromhex(self.address)[::-1]


def encode_frame(frame: Frame, *, preamble: int = DEFAULT_PREAMBLE) -> bytes:
    """The frame on the wire: ``preamble`` FE bytes, 68 ... CS 16."""
    if preamble < 0:
        raise ValueError(f"preamble is a count of FE bytes, not {preamble}")
    if not 0 <= frame.meter_type <= 0xFF or not 0 <= frame.control <= 0xFF:
        raise ValueError("meter type and control code are single bytes")
    if len(frame.data) > 0xFF:
        raise ValueError(f"a CJ/T 188 frame holds at most 255 data bytes, not {len(frame.data)}")
    address = bytes.fromhex(frame.address)[::-1]
    if len(address) != 7:
        raise ValueError(f"a CJ/T 188 address is 7 bytes, not {frame.address!r}")
    body = bytes([START, frame.meter_type, *address, frame.control, len(frame.data)]) + frame.data
    return bytes([PREAMBLE]) * preamble + body + bytes([checksum(body), END])


def read_data_request(
    address: str,
    meter_type: int,
    *,
    di_order: DiOrder = "standard",
    ser: int = 0,
    di: int = DI_READ_DATA,
) -> Frame:
    """A read-data request (C = 01, L = 3: DI, SER); 901F by default.

    The aixiwang capture ``68 10 12 00 00 00 00 00 00 01 03 90 1F 00 3D 16`` is
    ``read_data_request("00000000000012", 0x10)`` with no preamble.
    """
    if not 0 <= ser <= 0xFF:
        raise ValueError(f"SER is one byte, not {ser}")
    data = encode_di(di, di_order) + bytes([ser])
    return Frame(meter_type, _address_text(encode_address(address)), C_READ_DATA, data)


def read_address_request(
    *,
    di_order: DiOrder = "standard",
    ser: int = 0,
    meter_type: int = WILDCARD_TYPE,
    address: str = WILDCARD_ADDRESS,
) -> Frame:
    """Read address (C = 03, DI 810A), to the wildcard type and address by default.

    Only one meter may be on the line: every meter answers the wildcard. The published
    request is ``FE FE FE FE 68 AA AA AA AA AA AA AA AA 03 03 81 0A 00 49 16`` (aixiwang;
    cnblogs cj94), i.e. the "standard" order. The meter answers C = 83 with its type and
    address in the header and DI, SER as data.
    """
    if not 0 <= ser <= 0xFF:
        raise ValueError(f"SER is one byte, not {ser}")
    data = encode_di(DI_READ_ADDRESS, di_order) + bytes([ser])
    return Frame(meter_type, _address_text(encode_address(address)), C_READ_ADDRESS, data)


def is_reply_to(reply: Frame, request: Frame) -> bool:
    """Whether ``reply`` answers ``request``: a reply, same function, same address.

    A request to the wildcard address accepts any address. The meter type is not compared:
    real heat meters answer with T = 25H whatever class code they were asked with.
    """
    if not reply.is_reply or reply.function != request.function:
        return False
    return request.address in (WILDCARD_ADDRESS, reply.address)


@dataclass(frozen=True, slots=True)
class DataReply:
    """The data field of a normal reply to a read, split."""

    di: int
    di_order: DiOrder
    ser: int
    body: bytes  # what follows DI and SER


def parse_data_reply(
    reply: Frame,
    *,
    di: int = DI_READ_DATA,
    di_order: DiOrder | None = None,
    ser: int | None = None,
) -> DataReply:
    """Split a reply's data into DI, SER and body, checking them.

    ``di_order`` None accepts either order and reports the one found (a scan); ``ser`` None
    does not compare the echoed sequence number. An abnormal reply raises AbnormalReplyError
    (its data is SER and ST: transcription at cnblogs.com/cj94/p/18534595 and the KingDa
    firmware's error-reply struct, `CaiYongCode/KingDa-NBWaterMeterCode-BC95`
    USER/inc/CJT-188-2004.h); anything else that does not fit raises FrameError.
    """
    if not reply.is_reply:
        raise FrameError(f"control 0x{reply.control:02X} is a request, not a reply")
    if reply.is_abnormal:
        echoed = reply.data[0] if reply.data else None
        raise AbnormalReplyError(reply.address, reply.control, echoed, reply.data[1:3])
    if len(reply.data) < 3:
        raise FrameError(f"a reply to a read carries DI and SER, got {len(reply.data)} bytes")
    order = detect_di_order(reply.data, di) if di_order is None else di_order
    if order is None or reply.data[:2] != encode_di(di, order):
        wanted = "either order" if di_order is None else f"{di_order} order"
        raise FrameError(
            f"reply DI {reply.data[:2].hex(' ')} is not {di:04X} in {wanted}", reply.data
        )
    if ser is not None and reply.data[2] != ser:
        raise FrameError(f"reply SER {reply.data[2]} does not echo the request's {ser}")
    return DataReply(di=di, di_order=order, ser=reply.data[2], body=bytes(reply.data[3:]))


class FrameDecoder:
    """Frames out of a byte stream, fed as it arrives.

    ``feed(chunk)`` returns the frames completed by the chunk. Any number of FE before a frame
    is accepted; other bytes outside a frame are noise (counted in ``noise_bytes``). A frame
    candidate starts at 68 and is rejected, with its reason counted in ``rejects``, when:

    - ``length``: its L is above ``max_data_length`` (the 68 was noise);
    - ``end_byte``: the byte after CS is not 16;
    - ``checksum``: CS does not match (the whole candidate is dropped);
    - ``truncated``: a complete valid frame starts inside it (it was cut off), or `flush`
      discarded it unfinished.

    After a reject the decoder resynchronises on the next 68, so a valid frame after noise or
    a broken frame is still found.
    """

    def __init__(self, *, max_data_length: int = MAX_DATA_LENGTH) -> None:
        if not 0 <= max_data_length <= 0xFF:
            raise ValueError(f"max_data_length is 0-255, not {max_data_length}")
        self.max_data_length = max_data_length
        self.rejects: Counter[str] = Counter()
        self.noise_bytes = 0
        self.frames = 0
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back: the start of a frame still arriving."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames: list[Frame] = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def flush(self) -> None:
        """Forget a partial frame (after a reply timeout, say), counting it as truncated."""
        if self._buf:
            if START in self._buf:
                self.rejects["truncated"] += 1
            else:
                self.noise_bytes += sum(1 for b in self._buf if b != PREAMBLE)
        self._buf.clear()

    def _next(self) -> Frame | None:
        buf = self._buf
        while True:
            skip = buf.find(START)
            skipped = buf if skip < 0 else buf[:skip]
            self.noise_bytes += sum(1 for b in skipped if b != PREAMBLE)
            if skip < 0:
                buf.clear()
                return None
            del buf[:skip]
            verdict, size = self._check(0)
            if verdict == "ok":
                frame = self._frame_at(0, size)
                del buf[:size]
                self.frames += 1
                return frame
            if verdict == "length":
                self.rejects["length"] += 1
                del buf[:1]
                continue
            # The candidate is incomplete or broken: if a valid frame starts inside it, the
            # candidate was cut off (a truncated frame, or noise with a 68 in it).
            inner = self._valid_frame_after(0, len(buf) if verdict == "incomplete" else size)
            if inner is not None:
                self.rejects["truncated"] += 1
                del buf[:inner]
                continue
            if verdict == "incomplete":
                return None
            self.rejects[verdict] += 1
            # A bad checksum in a well-framed candidate is a damaged frame: its inside is not
            # a frame start. A wrong end byte means the framing itself was wrong: rescan.
            del buf[: size if verdict == "checksum" else 1]

    def _check(self, start: int) -> tuple[str, int]:
        buf = self._buf
        if len(buf) - start < _HEADER:
            return "incomplete", 0
        length = buf[start + _HEADER - 1]
        if length > self.max_data_length:
            return "length", 0
        size = _HEADER + length + _TRAILER
        if len(buf) - start < size:
            return "incomplete", size
        if buf[start + size - 1] != END:
            return "end_byte", size
        if checksum(buf[start : start + size - 2]) != buf[start + size - 2]:
            return "checksum", size
        return "ok", size

    def _valid_frame_after(self, start: int, stop: int) -> int | None:
        position = self._buf.find(START, start + 1, stop)
        while position >= 0:
            if self._check(position)[0] == "ok":
                return position
            position = self._buf.find(START, position + 1, stop)
        return None

    def _frame_at(self, start: int, size: int) -> Frame:
        raw = bytes(self._buf[start : start + size])
        return Frame(
            meter_type=raw[1],
            address=_address_text(raw[2:9]),
            control=raw[9],
            data=raw[_HEADER : size - _TRAILER],
        )
