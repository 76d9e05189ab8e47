"""A reply decoded at once (drivers.modbus.unpack) gives exactly what each point decoded through
the codec gives: every type, word order, byte order, offset, sentinel and scale, and the bad
readings (NaN, infinity, "not implemented") the same."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.record import Quality, Reading
from drivers.modbus.codec import encode
from drivers.modbus.plan import ReadRequest
from drivers.modbus.spec import ByteOrder, DataType, ModbusPoint, Table, WordOrder
from drivers.modbus.unpack import ReplyDecoder, decode_point

NUMBERS = [t for t in DataType if t not in (DataType.BIT, DataType.STRING)]
TS = 1_764_000_000_123


def _point(**fields: Any) -> ModbusPoint:
    return ModbusPoint.model_validate(fields)


def _one_by_one(
    request: ReadRequest, raw: list[int], word: WordOrder, byte: ByteOrder
) -> list[Reading]:
    return [
        decode_point("dev", name, point, request, raw, ts=TS,
                     word_order=point.word_order or word, byte_order=point.byte_order or byte)
        for name, point in request.points
    ]  # fmt: skip


@st.composite
def _requests(draw: st.DrawFn) -> tuple[ReadRequest, list[int]]:
    """A holding-register request over up to 12 points (overlapping ones too), and a reply."""
    points = []
    for i in range(draw(st.integers(1, 12))):
        data_type = draw(st.sampled_from([*NUMBERS, DataType.BIT, DataType.STRING]))
        fields: dict[str, Any] = {"register": 100 + draw(st.integers(0, 20)), "type": data_type,
                                  "unit": "W"}  # fmt: skip
        if data_type is DataType.BIT:
            fields["bit"] = draw(st.integers(0, 15))
        elif data_type is DataType.STRING:
            fields["length"] = draw(st.integers(1, 4))
        else:
            fields["word_order"] = draw(st.sampled_from([None, *WordOrder]))
            fields["byte_order"] = draw(st.sampled_from([None, *ByteOrder]))
            if draw(st.booleans()):
                fields["scale"] = draw(st.sampled_from([0.1, 0.01, 10.0, -1.0]))
                fields["offset"] = draw(st.sampled_from([0.0, -40.0, 2.5]))
            if data_type.is_integer and draw(st.booleans()):
                fields["not_available"] = draw(st.sampled_from([0, 0x7FFF, 0xFFFF]))
            if draw(st.integers(0, 5)) == 0:
                fields["scale_factor"] = "sf"
        points.append((f"p{i}", _point(**fields)))
    start = min(p.address for _, p in points)
    end = max(p.address + p.register_count for _, p in points)
    raw = draw(st.lists(st.integers(0, 0xFFFF), min_size=end - start, max_size=end - start))
    return ReadRequest(Table.HOLDING, start, end - start, tuple(points)), raw


def _same(a: list[Reading], b: list[Reading]) -> bool:
    def key(r: Reading) -> tuple[Any, ...]:
        nan = isinstance(r.value, float) and math.isnan(r.value)
        return (r.device, r.point, r.ts_ms, "nan" if nan else r.value, r.unit, r.quality)

    return [key(r) for r in a] == [key(r) for r in b]


@settings(max_examples=300, deadline=None)
@given(
    case=_requests(), word=st.sampled_from(list(WordOrder)), byte=st.sampled_from(list(ByteOrder))
)
def test_a_reply_decoded_at_once_is_each_point_decoded_alone(
    case: tuple[ReadRequest, list[int]], word: WordOrder, byte: ByteOrder
) -> None:
    request, raw = case
    got = ReplyDecoder("dev", request, word, byte).decode(raw, TS)
    assert _same(got, _one_by_one(request, raw, word, byte))


def _float_request(
    values: list[float], word: WordOrder = WordOrder.BIG
) -> tuple[ReadRequest, list[int]]:
    points = tuple(
        (f"f{i}", _point(register=2 * i, type="float32", unit="V")) for i in range(len(values))
    )
    raw = [r for v in values for r in encode(v, DataType.FLOAT32, word_order=word)]
    return ReadRequest(Table.HOLDING, 0, len(raw), points), raw


def test_nan_and_infinity_are_bad_readings_and_the_rest_good() -> None:
    request, raw = _float_request([230.5, math.nan, math.inf, -math.inf, 1.25])
    got = ReplyDecoder("dev", request, WordOrder.BIG, ByteOrder.BIG).decode(raw, TS)
    assert [(r.point, r.value, r.quality) for r in got] == [
        ("f0", 230.5, Quality.GOOD),
        ("f1", None, Quality.BAD),
        ("f2", None, Quality.BAD),
        ("f3", None, Quality.BAD),
        ("f4", 1.25, Quality.GOOD),
    ]
    assert {r.ts_ms for r in got} == {TS}


def test_word_swapped_floats_read_with_the_device_order() -> None:
    # Sungrow-style word order: the least significant register first.
    request, raw = _float_request([230.5, -12.75], word=WordOrder.LITTLE)
    assert raw[:2] == [0x8000, 0x4366]
    got = ReplyDecoder("dev", request, WordOrder.LITTLE, ByteOrder.BIG).decode(raw, TS)
    assert [r.value for r in got] == [230.5, -12.75]


def test_sentinel_scale_offset_and_scale_factor_points() -> None:
    points = (
        ("na", _point(register=0, type="int16", not_available=0x8000)),
        ("temp", _point(register=1, type="int16", scale=0.1, offset=-40.0, unit="C")),
        ("raw", _point(register=2, type="int16", scale=0.01, scale_factor="sf")),
        ("big", _point(register=3, type="uint32", byte_order="little")),
    )
    raw = [0x8000, 2201, 0xFFFE, 0x3412, 0x7856]
    request = ReadRequest(Table.HOLDING, 0, 5, points)
    got = ReplyDecoder("dev", request, WordOrder.BIG, ByteOrder.BIG).decode(raw, TS)
    assert [(r.value, r.quality) for r in got] == [
        (None, Quality.BAD),  # "not implemented"
        (180.1, Quality.GOOD),  # 2201 x 0.1 - 40, rounded as the codec rounds
        (-2, Quality.GOOD),  # kept raw: the scale factor is applied by the device client
        (0x12345678, Quality.GOOD),
    ]


def test_registers_that_are_not_16_bit_values_take_the_codec_path() -> None:
    request, _ = _float_request([1.0])
    decoder = ReplyDecoder("dev", request, WordOrder.BIG, ByteOrder.BIG)
    with pytest.raises(OverflowError):  # what the codec raises for it, as before
        decoder.decode([0x1_0000, 0], TS)


def test_coils_and_discrete_inputs_decode_as_bits() -> None:
    points = tuple((f"c{i}", _point(register=10 + i, table="coil", type="bit")) for i in range(3))
    request = ReadRequest(Table.COIL, 10, 3, points)
    got = ReplyDecoder("dev", request, WordOrder.BIG, ByteOrder.BIG).decode([True, False, True], TS)
    assert [(r.value, r.quality) for r in got] == [
        (True, Quality.GOOD),
        (False, Quality.GOOD),
        (True, Quality.GOOD),
    ]
