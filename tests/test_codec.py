"""Register codec: round trips for every data type, word order and byte order, and known vectors."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import decode, encode, raw_to_engineering
from drivers.modbus.spec import ByteOrder, DataType, WordOrder

INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
orders = st.sampled_from(list(WordOrder))
byte_orders = st.sampled_from(list(ByteOrder))


@given(data=st.data(), word_order=orders, byte_order=byte_orders)
def test_integers_round_trip(
    data: st.DataObject, word_order: WordOrder, byte_order: ByteOrder
) -> None:
    data_type = data.draw(st.sampled_from(list(INT_RANGES)))
    low, high = INT_RANGES[data_type]
    value = data.draw(st.integers(low, high))
    regs = encode(value, data_type, word_order=word_order, byte_order=byte_order)
    assert len(regs) == data_type.registers
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, data_type, word_order=word_order, byte_order=byte_order) == value


@given(value=st.floats(width=32, allow_nan=False), word_order=orders, byte_order=byte_orders)
def test_float32_round_trip(value: float, word_order: WordOrder, byte_order: ByteOrder) -> None:
    regs = encode(value, DataType.FLOAT32, word_order=word_order, byte_order=byte_order)
    assert decode(regs, DataType.FLOAT32, word_order=word_order, byte_order=byte_order) == value


@given(value=st.floats(allow_nan=False), word_order=orders, byte_order=byte_orders)
def test_float64_round_trip(value: float, word_order: WordOrder, byte_order: ByteOrder) -> None:
    regs = encode(value, DataType.FLOAT64, word_order=word_order, byte_order=byte_order)
    assert decode(regs, DataType.FLOAT64, word_order=word_order, byte_order=byte_order) == value


@given(
    text=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
    byte_order=byte_orders,
)
def test_string_round_trip(text: str, byte_order: ByteOrder) -> None:
    regs = encode(text, DataType.STRING, byte_order=byte_order, length=10)
    assert len(regs) == 10
    assert decode(regs, DataType.STRING, byte_order=byte_order) == text


def test_float32_known_vector_high_word_first() -> None:
    # 230.5 V as an Eastron SDM630 serves it: IEEE 754 0x43668000, high word first.
    assert struct.pack(">f", 230.5) == bytes.fromhex("43668000")
    assert decode([0x4366, 0x8000], DataType.FLOAT32) == 230.5
    assert decode([0x8000, 0x4366], DataType.FLOAT32, word_order=WordOrder.LITTLE) == 230.5


def test_uint32_word_swapped_known_vector() -> None:
    # Sungrow serves 32-bit counters low word first: 0x0001_86A0 = 100000 is [0x86A0, 0x0001].
    assert decode([0x86A0, 0x0001], DataType.UINT32, word_order=WordOrder.LITTLE) == 100_000
    assert decode([0x0001, 0x86A0], DataType.UINT32) == 100_000


def test_bits_inside_a_register() -> None:
    assert decode([0b1000_0000_0000_0100], DataType.BIT, bit=2) is True
    assert decode([0b1000_0000_0000_0100], DataType.BIT, bit=15) is True
    assert decode([0b1000_0000_0000_0100], DataType.BIT, bit=0) is False


def test_wrong_register_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="takes 2 registers"):
        decode([1], DataType.FLOAT32)


def test_scaling_gives_clean_decimals() -> None:
    assert raw_to_engineering(2201, 0.1, 0.0) == 220.1
    assert raw_to_engineering(12345, 0.01, 0.0) == 123.45
    assert raw_to_engineering(-5, 0.1, 0.0) == -0.5
    assert raw_to_engineering(7, 1.0, 0.0) == 7
    assert raw_to_engineering(True, 0.1, 0.0) is True
    assert math.isnan(raw_to_engineering(float("nan"), 2.0, 0.0))  # type: ignore[arg-type]
