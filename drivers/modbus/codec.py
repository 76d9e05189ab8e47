"""Registers to values and back, for every data type, byte order and word order.

Modbus carries 16-bit registers, each big-endian on the wire. A 32- or 64-bit value spans
several registers whose order is the device's choice: "big" word order puts the most
significant register first (the Modbus convention; Eastron, Chint), "little" puts it last
(Sungrow's "word-swapped" values). A few devices also swap the two bytes inside a register.

SunSpec-style scale factors (value = raw x 10^SF, SF read from another register) combine with
a point's own scale through `scale_with_exponent`; "not implemented" sentinels are compared
against the registers' raw bits (`raw_bits`), as the SunSpec specification writes them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import Decimal

from drivers.modbus.spec import ByteOrder, DataType, WordOrder

__all__ = [
    "decode",
    "encode",
    "engineering_to_raw",
    "raw_bits",
    "raw_to_engineering",
    "scale_with_exponent",
]

_STRUCT = {
    data_type: struct.Struct(fmt)
    for data_type, fmt in (
        (DataType.INT16, ">h"),
        (DataType.UINT16, ">H"),
        (DataType.INT32, ">i"),
        (DataType.UINT32, ">I"),
        (DataType.INT64, ">q"),
        (DataType.UINT64, ">Q"),
        (DataType.FLOAT32, ">f"),
        (DataType.FLOAT64, ">d"),
    )
}


def _swap_bytes(register: int) -> int:
    return ((register & 0xFF) << 8) | (register >> 8)


# Registers to big-endian bytes, by register count: one struct call instead of a join of
# per-register conversions (this runs for every point of every reply).
_REGISTER_STRUCTS = {n: struct.Struct(f">{n}H") for n in (1, 2, 4)}


def _to_bytes(registers: Sequence[int], word_order: WordOrder, byte_order: ByteOrder) -> bytes:
    regs = registers
    if byte_order is ByteOrder.LITTLE:
        regs = [_swap_bytes(r) for r in regs]
    if word_order is WordOrder.LITTLE:
        regs = regs[::-1]
    packer = _REGISTER_STRUCTS.get(len(regs))
    if packer is not None:
        try:  # not contextlib.suppress: a context manager per point costs as much as the pack
            return packer.pack(*regs)
        except struct.error:
            pass  # not a register's value: the per-register path below raises for it
    return b"".join(r.to_bytes(2, "big") for r in regs)  # also long strings


def _from_bytes(data: bytes, word_order: WordOrder, byte_order: ByteOrder) -> list[int]:
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if word_order is WordOrder.LITTLE:
        regs.reverse()
    if byte_order is ByteOrder.LITTLE:
        regs = [_swap_bytes(r) for r in regs]
    return regs


def decode(
    registers: Sequence[int],
    data_type: DataType,
    *,
    word_order: WordOrder = WordOrder.BIG,
    byte_order: ByteOrder = ByteOrder.BIG,
    bit: int | None = None,
) -> int | float | bool | str:
    """The raw value held by ``registers`` (exactly the registers of one point)."""
    if data_type is DataType.BIT:
        if bit is None:
            raise ValueError("a bit inside a register needs its index")
        return bool((registers[0] >> bit) & 1)
    if data_type is DataType.STRING:
        # Text is stored in register order, two characters each, padded with NUL or spaces;
        # word order does not apply to strings, byte order does.
        raw = _to_bytes(registers, WordOrder.BIG, byte_order)
        return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").rstrip()
    layout = _STRUCT[data_type]
    expected = layout.size // 2
    if len(registers) != expected:
        raise ValueError(f"{data_type.value} takes {expected} registers, got {len(registers)}")
    (value,) = layout.unpack(_to_bytes(registers, word_order, byte_order))
    return value  # type: ignore[no-any-return]


def encode(
    value: int | float | bool | str,
    data_type: DataType,
    *,
    word_order: WordOrder = WordOrder.BIG,
    byte_order: ByteOrder = ByteOrder.BIG,
    length: int | None = None,
) -> list[int]:
    """Registers holding ``value`` (the inverse of :func:`decode`; bits are written as 0/1)."""
    if data_type is DataType.BIT:
        return [1 if value else 0]
    if data_type is DataType.STRING:
        if length is None:
            raise ValueError("a string needs its length in registers")
        data = str(value).encode("ascii")[: 2 * length].ljust(2 * length, b"\x00")
        return _from_bytes(data, WordOrder.BIG, byte_order)
    number = value if data_type in (DataType.FLOAT32, DataType.FLOAT64) else int(value)
    return _from_bytes(_STRUCT[data_type].pack(number), word_order, byte_order)


def raw_to_engineering(
    raw: int | float | bool | str, scale: float, offset: float
) -> float | int | bool | str:
    """Apply scale and offset; integers stay integers when scale is 1 and offset 0."""
    if (scale == 1.0 and offset == 0.0) or isinstance(raw, bool | str):
        return raw  # the common case first: nothing to apply
    value = raw * scale + offset
    # Scaled integers (e.g. 2201 x 0.1) should read 220.1, not 220.10000000000002.
    if isinstance(raw, int) and math.isfinite(value):
        digits = max(0, -math.floor(math.log10(abs(scale)))) + 6 if scale else 6
        return round(value, min(digits, 15))
    return value


def engineering_to_raw(value: float, scale: float, offset: float) -> float:
    """Inverse of :func:`raw_to_engineering`, for writes (the caller rounds for integer types)."""
    return (value - offset) / scale


def raw_bits(
    registers: Sequence[int],
    *,
    word_order: WordOrder = WordOrder.BIG,
    byte_order: ByteOrder = ByteOrder.BIG,
) -> int:
    """The registers of one value as a single unsigned number (most significant word first
    once word and byte order are undone): what a "not implemented" sentinel is compared to."""
    return int.from_bytes(_to_bytes(registers, word_order, byte_order), "big")


def scale_with_exponent(scale: float, exponent: int) -> float:
    """``scale x 10^exponent`` computed in decimal, so 0.001 with exponent -2 is exactly the
    float nearest 1e-05 (not 1.0000000000000001e-05) and scaled integers round cleanly."""
    return float(Decimal(repr(scale)).scaleb(exponent))
