"""Every point of one reply decoded at once: a read request's layout, worked out once.

A plan's requests are the same objects cycle after cycle (drivers.modbus.planner keeps the
plan), so what decoding a point needs (its byte offset in the reply, a compiled struct, its
sentinel, scale and offset) is worked out once per request here, and a reply costs one
``struct.pack`` of its registers plus one ``unpack_from`` per point. Per point, through
drivers.modbus.codec, it was a list slice, a pack and an unpack, and several look-ups: about
half of the driver's CPU per reading at 50 meters (bench/bench_decode.py).

Word and byte order come out of two views of the reply: the registers packed big-endian (as on
the wire) and the same registers with their two bytes swapped. A value read big-endian from the
first is the Modbus convention (most significant word first, Modbus application protocol
v1.1b3, 4.2); read little-endian from the second it is word-swapped (least significant word
first, bytes in each word as sent); the other two combinations are the byte-swapped ones. This
gives exactly what ``codec.decode`` gives for every type, word order and byte order
(tests/test_modbus_unpack.py compares the two).

Bits (coils, discrete inputs, a bit of a register) and strings keep the per-point path of
drivers.modbus.codec, as does a reply whose registers are not 16-bit values.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

from agent.core.record import Quality, Reading, Value
from drivers.modbus.codec import decode, raw_bits, raw_to_engineering
from drivers.modbus.plan import ReadRequest
from drivers.modbus.shared import SharedTable
from drivers.modbus.spec import ByteOrder, DataType, ModbusPoint, WordOrder

__all__ = ["ReplyDecoder", "decode_point"]

_CODES = {
    DataType.INT16: ("h", "H"),
    DataType.UINT16: ("H", "H"),
    DataType.INT32: ("i", "I"),
    DataType.UINT32: ("I", "I"),
    DataType.INT64: ("q", "Q"),
    DataType.UINT64: ("Q", "Q"),
    DataType.FLOAT32: ("f", "I"),
    DataType.FLOAT64: ("d", "Q"),
}

_GOOD, _BAD = Quality.GOOD, Quality.BAD
_isfinite = math.isfinite

Unpacker = Callable[[Any, int], tuple[Any, ...]]

# Compiled formats, shared by every decoder (a few kinds of value, many points: 200 meters
# would otherwise hold a struct per point, about 2 MB).
_STRUCTS: dict[str, struct.Struct] = {}
_UNPACKERS: dict[str, Unpacker] = {}


def _struct(fmt: str) -> struct.Struct:
    compiled = _STRUCTS.get(fmt)
    if compiled is None:
        compiled = _STRUCTS[fmt] = struct.Struct(fmt)
    return compiled


def _unpacker(fmt: str) -> Unpacker:
    """The compiled ``unpack_from`` of ``fmt`` (one bound method per format, not per point)."""
    unpack = _UNPACKERS.get(fmt)
    if unpack is None:
        unpack = _UNPACKERS[fmt] = _struct(fmt).unpack_from
    return unpack


def decode_point(
    device: str,
    name: str,
    point: ModbusPoint,
    request: ReadRequest,
    raw: Sequence[int] | Sequence[bool],
    *,
    ts: int,
    word_order: WordOrder,
    byte_order: ByteOrder,
) -> Reading:
    """The reading of one point from a reply, through drivers.modbus.codec (bits, strings,
    and any point of a reply the fast path cannot take). A point with a `scale_factor` keeps
    its raw value (the device client scales it once the cycle's SF readings are in)."""
    offset = point.address - request.address
    if request.table.is_bits:
        value: Value = bool(raw[offset])
    else:
        regs = [int(r) for r in raw[offset : offset + point.register_count]]
        if point.not_available is not None and point.not_available == raw_bits(
            regs, word_order=word_order, byte_order=byte_order
        ):
            # The device says it has no value here (SunSpec "not implemented").
            return Reading(device, name, ts, None, point.unit, _BAD)
        value = decode(
            regs, point.type, word_order=word_order, byte_order=byte_order, bit=point.bit
        )
        if point.scale_factor is None:
            value = raw_to_engineering(value, point.scale, point.offset)
    if isinstance(value, float) and not _isfinite(value):
        # NaN or infinity from a float register is not a measurement.
        return Reading(device, name, ts, None, point.unit, _BAD)
    return Reading(device, name, ts, value, point.unit, _GOOD)


class _Layout:
    """What decoding one request's reply needs, worked out once for every device that reads
    an equal request (planned requests of devices with equal points are one object,
    drivers.modbus.planner): 7,000 points of 200 meters held 1.8 MB of these per device."""

    __slots__ = ("__weakref__", "all_slow", "fields", "pack_big", "pack_swapped", "request",
                 "uses_swapped")  # fmt: skip

    def __init__(self, request: ReadRequest, word_order: WordOrder, byte_order: ByteOrder) -> None:
        self.request = request  # held: the table's key names it by id()
        self.pack_big = _struct(f">{request.count}H").pack
        self.pack_swapped = _struct(f"<{request.count}H").pack
        # Per point: (name, unit, unpack of the value or None for the codec's path, byte
        # offset, from the swapped view, unpack of the raw bits or None, sentinel, scale,
        # offset, whether scale and offset apply, the point itself).
        self.fields = tuple(
            _field(request, name, point, word_order, byte_order) for name, point in request.points
        )
        self.uses_swapped = any(f[4] for f in self.fields)
        self.all_slow = all(f[2] is None for f in self.fields)


_LAYOUTS: SharedTable[_Layout] = SharedTable()


def _field(
    request: ReadRequest, name: str, point: ModbusPoint, word: WordOrder, byte: ByteOrder
) -> tuple[Any, ...]:
    codes = None if request.table.is_bits else _CODES.get(point.type)
    if codes is None:
        return (name, point.unit, None, 0, False, None, None, 1.0, 0.0, False, point)
    word = point.word_order or word
    byte = point.byte_order or byte
    endian = "<" if word is WordOrder.LITTLE else ">"
    swapped = (word is WordOrder.LITTLE) != (byte is ByteOrder.LITTLE)
    value_code, bits_code = codes
    sentinel = point.not_available
    bits = _unpacker(endian + bits_code) if sentinel is not None else None
    scaled = point.scale_factor is None and not (point.scale == 1.0 and point.offset == 0.0)
    return (
        name,
        point.unit,
        _unpacker(endian + value_code),
        2 * (point.address - request.address),
        swapped,
        bits,
        sentinel,
        point.scale,
        point.offset,
        scaled,
        point,
    )


class ReplyDecoder:
    """How to turn one request's reply into readings; ``decode(raw, ts)`` per reply."""

    __slots__ = ("_byte_order", "_layout", "_word_order", "device", "request")

    def __init__(
        self, device: str, request: ReadRequest, word_order: WordOrder, byte_order: ByteOrder
    ) -> None:
        self.device = device
        self.request = request
        self._word_order = word_order
        self._byte_order = byte_order
        self._layout = _LAYOUTS.get(
            (id(request), word_order, byte_order),
            lambda: _Layout(request, word_order, byte_order),
        )

    def decode(self, raw: Sequence[int] | Sequence[bool], ts: int) -> list[Reading]:
        """One reading per point of the request, in its order, stamped ``ts``."""
        device = self.device
        layout = self._layout
        if layout.all_slow:
            return self._decode_slowly(raw, ts)
        try:
            big = layout.pack_big(*raw)
            swapped = layout.pack_swapped(*raw) if layout.uses_swapped else big
        except struct.error:  # not 16-bit registers: the codec's path says what is wrong
            return self._decode_slowly(raw, ts)
        out: list[Reading] = []
        append = out.append
        fields = layout.fields
        for name, unit, unpack, at, swap, bits, sentinel, scale, offset, scaled, point in fields:
            if unpack is None:
                append(self._decode_one(name, point, raw, ts))
                continue
            view = swapped if swap else big
            if bits is not None and bits(view, at)[0] == sentinel:
                # The device says it has no value here (SunSpec "not implemented").
                append(Reading(device, name, ts, None, unit, _BAD))
                continue
            value = unpack(view, at)[0]
            if scaled:
                value = raw_to_engineering(value, scale, offset)
            if type(value) is float and not _isfinite(value):
                # NaN or infinity from a float register is not a measurement.
                append(Reading(device, name, ts, None, unit, _BAD))
            else:
                append(Reading(device, name, ts, value, unit, _GOOD))
        return out

    def _decode_slowly(self, raw: Sequence[int] | Sequence[bool], ts: int) -> list[Reading]:
        return [self._decode_one(field[0], field[-1], raw, ts) for field in self._layout.fields]

    def _decode_one(
        self, name: str, point: ModbusPoint, raw: Sequence[int] | Sequence[bool], ts: int
    ) -> Reading:
        word = point.word_order or self._word_order
        byte = point.byte_order or self._byte_order
        return decode_point(
            self.device, name, point, self.request, raw, ts=ts, word_order=word, byte_order=byte
        )
