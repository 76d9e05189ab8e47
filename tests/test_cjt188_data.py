"""CJ/T 188 901F replies: the published captures decode to their documented values; BCD, unit
codes and status bits; encode/decode round trips; the shipped profiles.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cjt188.data import (
    HEAT_LAYOUT,
    POINT_UNITS,
    STATUS_BITS_LOW_ORDER,
    STATUS_POINTS,
    UNIT_CODES,
    WATER_LAYOUT,
    bcd_to_int,
    decode_901f,
    decode_901f_response,
    decode_meter_clock,
    encode_901f_response,
    heat_layout,
    int_to_bcd,
    layout_for,
    unit_code,
)
from drivers.cjt188.errors import BcdError, FrameError, UnitCodeError
from drivers.cjt188.frame import (
    DI_ORDERS,
    DiOrder,
    Frame,
    FrameDecoder,
    MeterKind,
    classify_meter_type,
    parse_data_reply,
)
from drivers.cjt188.profiles import load_profile, profile_names, profile_text


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _points_of(wire: bytes) -> dict[str, float | int]:
    [frame] = FrameDecoder().feed(wire)
    return decode_901f_response(frame.data, kind=classify_meter_type(frame.meter_type))


# --- the published captures ----------------------------------------------------------------------


def test_the_cold_water_capture_reads_68_m3() -> None:
    # Public code: a cold-water meter (T 10H, DI sent 1F 90, SER 04); PROTOCOLS reference 2.5.
    wire = _hex(
        "FE FE 68 10 26 13 06 07 00 33 78 81 16 1F 90 04 00 68 00 00 2C 00 00 00 00 2C"
        + " 00" * 9
        + " 73 16"
    )
    assert _points_of(wire) == {
        "volume": 68.0,
        "volume_settlement": 0.0,
        "status_valve_closed": 0,
        "status_valve_abnormal": 0,
        "status_battery_low": 0,
    }


def test_the_aixiwang_reply_reads_1000_10_m3() -> None:
    # aixiwang/python_cjt188: DI 90 1F, both volumes 1000.10 m3, clock zero, ST 00 FF.
    wire = _hex(
        "FE FE FE 68 10 12 00 00 00 00 00 00 81 16 90 1F 00 10 00 10 00 2C 10 00 10 00 2C"
        + " 00" * 7
        + " 00 FF 67 16"
    )
    points = _points_of(wire)
    assert points["volume"] == 1000.10
    assert points["volume_settlement"] == 1000.10
    assert points["status_valve_closed"] == 0
    assert points["status_battery_low"] == 0


def test_a_secondary_published_reply_reads_2_m3() -> None:
    # cnblogs.com/cj94/p/18534598 (CS recomputed: 85): 00 02 00 00 2C is 000002.00 m3.
    wire = _hex(
        "FE FE FE FE 68 10 18 02 12 20 20 00 00 81 16 90 1F 00 00 02 00 00 2C 00 02 00 00 2C"
        " 00 00 00 00 00 00 00 00 FF 85 16"
    )
    assert _points_of(wire)["volume"] == 2.0


# A heat-meter data field written out by hand from the documented layout (not a capture: no
# heat capture could be re-verified): DI 1F 90, SER 01, then
#   67 45 23 01 05   settlement-day heat 12345.67 kWh
#   35 12 00 00 08   current heat 12.35 MWh = 12350 kWh
#   50 05 00 00 17   power 5.50 kW = 5500 W
#   21 43 00 00 35   flow rate 0.4321 m3/h (XXXX.XXXX)
#   45 23 01 00 2C   volume 123.45 m3
#   43 65 00         supply 65.43 degC
#   10 42 00         return 42.10 degC
#   60 87 00         8760 h
#   00 30 08 29 11 26 20   the meter's clock, 2026-11-29 08:30:00
#   60 00            ST: valve closed (40), battery low (20)
HEAT_DATA = _hex(
    "1F 90 01"
    " 67 45 23 01 05  35 12 00 00 08  50 05 00 00 17  21 43 00 00 35  45 23 01 00 2C"
    " 43 65 00  10 42 00  60 87 00  00 30 08 29 11 26 20  60 00"
)


def test_a_heat_reply_decodes_every_point_in_published_units() -> None:
    assert len(HEAT_DATA) == 0x2E
    assert decode_901f_response(HEAT_DATA, kind="heat", di_order="swapped") == {
        "heat_energy_settlement": 12345.67,
        "heat_energy": 12350.0,
        "power": 5500.0,
        "flow_rate": 0.4321,
        "volume": 123.45,
        "flow_temperature": 65.43,
        "return_temperature": 42.10,
        "operating_hours": 8760.0,
        "status_valve_closed": 1,
        "status_valve_abnormal": 0,
        "status_battery_low": 1,
    }


def test_the_meter_clock_is_not_a_point_but_can_be_read_for_logs() -> None:
    split = parse_data_reply(_frame(HEAT_DATA))
    clock = split.body[HEAT_LAYOUT.body_length - 9 : HEAT_LAYOUT.body_length - 2]
    assert decode_meter_clock(clock) == "2026-11-29 08:30:00"
    assert decode_meter_clock(bytes(7)) is None  # many meters leave it zero
    assert decode_meter_clock(_hex("31 01 22 11 05 15 20")) == "2015-05-11 22:01:31"
    assert decode_meter_clock(_hex("00 00 00 32 13 26 20")) is None  # 32nd of month 13
    assert decode_meter_clock(_hex("AA 00 00 01 01 26 20")) is None  # not BCD


def _frame(data: bytes) -> Frame:
    """A 901F reply from a heat meter (T 25H, as real ones answer) carrying ``data``."""
    return Frame(0x25, "00000000000001", 0x81, data)


def test_a_flow_rate_with_other_decimals_is_a_layout_option() -> None:
    layout = heat_layout(flow_rate_decimals=3, first_field="cooling_energy")
    points = decode_901f(HEAT_DATA[3:], layout=layout)
    assert points["flow_rate"] == 4.321
    assert points["cooling_energy"] == 12345.67
    assert "heat_energy_settlement" not in points


# --- BCD, unit codes, status ---------------------------------------------------------------------


def _water_body(volume: str = "00 68 00 00 2C", settlement: str = "00 00 00 00 2C") -> bytes:
    return _hex(volume + settlement) + bytes(9)


def test_a_nibble_above_9_raises_bcd_error_naming_the_field() -> None:
    with pytest.raises(BcdError) as caught:
        decode_901f(_water_body(volume="00 6A 00 00 2C"), layout=WATER_LAYOUT)
    assert caught.value.field == "volume"
    assert caught.value.offset == 1
    assert isinstance(caught.value, ValueError)
    body = bytearray(HEAT_DATA[3:])
    body[25] = 0xF3  # the supply temperature's low byte
    with pytest.raises(BcdError, match="flow_temperature"):
        decode_901f(bytes(body), layout=HEAT_LAYOUT)


def test_a_non_bcd_clock_does_not_fail_the_reading() -> None:
    body = bytearray(_water_body())
    body[10:17] = b"\xff" * 7  # some meters end with FF
    assert decode_901f(bytes(body), layout=WATER_LAYOUT)["volume"] == 68.0


def test_an_unknown_unit_code_raises() -> None:
    with pytest.raises(UnitCodeError, match="unknown CJ/T 188 unit code 0x3F for volume") as caught:
        decode_901f(_water_body(volume="00 68 00 00 3F"), layout=WATER_LAYOUT)
    assert caught.value.code == 0x3F


def test_a_unit_of_the_wrong_quantity_raises() -> None:
    with pytest.raises(UnitCodeError, match="unit of energy") as caught:
        decode_901f(_water_body(settlement="00 68 00 00 05"), layout=WATER_LAYOUT)
    assert (caught.value.expected, caught.value.got) == ("volume", "energy")


@pytest.mark.parametrize(
    ("first_field", "expected_kwh"),
    [
        ("67 45 23 01 05", 12345.67),  # kWh
        ("00 00 10 00 02", 1.0),  # 1000.00 Wh
        ("00 01 00 00 08", 1000.0),  # 1.00 MWh
        ("00 01 00 00 0A", 100_000.0),  # 1.00 x 100 MWh
        ("00 00 00 36 01", 0.1),  # 360000.00 J
        ("00 00 36 00 0B", 1.0),  # 3600.00 kJ
        ("60 03 00 00 0E", 1.0),  # 3.60 MJ
        ("00 01 00 00 11", 1e9 / 3.6e6),  # 1.00 GJ
        ("00 01 00 00 13", 1e11 / 3.6e6),  # 1.00 x 100 GJ
    ],
)
def test_energy_unit_codes_convert_to_kwh(first_field: str, expected_kwh: float) -> None:
    body = _hex(first_field) + HEAT_DATA[8:]
    value = decode_901f(body, layout=HEAT_LAYOUT)["heat_energy_settlement"]
    assert value == pytest.approx(expected_kwh, rel=1e-12)


@pytest.mark.parametrize(
    ("field", "raw", "point", "expected"),
    [
        ("power", "56 34 12 00 14", "power", 1234.56),  # W
        ("power", "50 05 00 00 17", "power", 5500.0),  # kW
        ("power", "25 01 00 00 1A", "power", 1_250_000.0),  # MW
        ("flow", "00 50 00 00 32", "flow_rate", 0.0005),  # 0.5000 L/h
        ("flow", "00 50 00 00 35", "flow_rate", 0.5),  # m3/h
        ("volume", "00 00 10 00 29", "volume", 1.0),  # 1000.00 L
    ],
)
def test_power_flow_and_volume_codes_convert(
    field: str, raw: str, point: str, expected: float
) -> None:
    offset = {"power": 13, "flow": 18, "volume": 23}[field]
    data = bytearray(HEAT_DATA)
    data[offset : offset + 5] = _hex(raw)
    assert decode_901f_response(bytes(data), kind="heat")[point] == pytest.approx(expected)


def test_the_unit_table_names_units_and_scales() -> None:
    gj = unit_code(0x11, quantity="energy", field="heat_energy")
    assert gj.symbol == "GJ"
    assert gj.scale == Fraction(10**9, 3_600_000)  # kWh in a GJ, exactly
    assert gj.evidence == "unconfirmed"
    assert UNIT_CODES[0x2C].symbol == "m3"
    assert UNIT_CODES[0x05].evidence == "corroborated"
    custom = {0x99: UNIT_CODES[0x2C]}
    assert unit_code(0x99, quantity="volume", field="volume", table=custom).symbol == "m3"


@pytest.mark.parametrize(
    ("st0", "closed", "abnormal", "battery"),
    [
        (0x00, 0, 0, 0),
        (0x40, 1, 0, 0),
        (0xC0, 0, 1, 0),
        (0x80, 0, 1, 0),  # a valve code cj188.h does not name: not open, not closed
        (0x20, 0, 0, 1),
        (0x60, 1, 0, 1),
        (0x1F, 0, 0, 0),  # the other bits are not the valve's or the battery's
    ],
)
def test_status_bits(st0: int, closed: int, abnormal: int, battery: int) -> None:
    body = _water_body()[:-2] + bytes([st0, 0xFF])
    points = decode_901f(body, layout=WATER_LAYOUT)
    assert [points[p] for p in STATUS_POINTS] == [closed, abnormal, battery]


def test_the_low_order_status_reading_is_an_option() -> None:
    body = _water_body()[:-2] + bytes([0x05, 0x00])  # valve 01 closed, battery D2
    points = decode_901f(body, layout=WATER_LAYOUT, status_bits=STATUS_BITS_LOW_ORDER)
    assert [points[p] for p in STATUS_POINTS] == [1, 0, 1]


def test_a_short_body_is_refused_and_extra_bytes_ignored() -> None:
    with pytest.raises(FrameError, match="19 bytes, got 18"):
        decode_901f(_water_body()[:-1], layout=WATER_LAYOUT)
    assert decode_901f(_water_body() + b"\x00\x01", layout=WATER_LAYOUT)["volume"] == 68.0


def test_a_reply_with_the_wrong_di_is_refused() -> None:
    with pytest.raises(FrameError, match="901F"):
        decode_901f_response(_hex("90 1F 00") + _water_body(), kind="gas", di_order="swapped")
    assert decode_901f_response(_hex("90 1F 00") + _water_body(), kind="gas")["volume"] == 68.0


def test_other_meter_types_have_no_layout() -> None:
    assert layout_for("water_hot") is WATER_LAYOUT
    assert layout_for("gas") is WATER_LAYOUT
    assert layout_for("heat") is HEAT_LAYOUT
    with pytest.raises(ValueError, match="no 901F layout"):
        layout_for("other")


@given(size=st.integers(1, 6), data=st.data())
def test_bcd_round_trip(size: int, data: st.DataObject) -> None:
    value = data.draw(st.integers(0, 10 ** (2 * size) - 1))
    raw = int_to_bcd(value, size)
    assert len(raw) == size
    assert bcd_to_int(raw) == value


def test_bcd_is_low_byte_first() -> None:
    assert bcd_to_int(_hex("10 00 10 00")) == 100010
    assert int_to_bcd(100010, 4) == _hex("10 00 10 00")
    with pytest.raises(ValueError, match="does not fit"):
        int_to_bcd(10**8, 4)


# --- encode/decode round trips -------------------------------------------------------------------


def _fixed(places: int, digits: int) -> st.SearchStrategy[float]:
    top = Decimal(10**digits - 1).scaleb(-places)
    return st.decimals(min_value=0, max_value=top, places=places).map(float)


valves = st.sampled_from(
    [
        {"status_valve_closed": 0, "status_valve_abnormal": 0},
        {"status_valve_closed": 1, "status_valve_abnormal": 0},
        {"status_valve_closed": 0, "status_valve_abnormal": 1},
    ]
)
water_points = st.builds(
    lambda v, s, valve, battery: {
        "volume": v,
        "volume_settlement": s,
        **valve,
        "status_battery_low": battery,
    },
    _fixed(2, 8),
    _fixed(2, 8),
    valves,
    st.integers(0, 1),
)
heat_points = st.builds(
    lambda e1, e2, kw100, flow, vol, t1, t2, hours, valve, battery: {
        "heat_energy_settlement": e1,
        "heat_energy": e2,
        "power": float(kw100 * 10),  # XXXXXX.XX kW in W
        "flow_rate": flow,
        "volume": vol,
        "flow_temperature": t1,
        "return_temperature": t2,
        "operating_hours": float(hours),
        **valve,
        "status_battery_low": battery,
    },
    _fixed(2, 8),
    _fixed(2, 8),
    st.integers(0, 10**8 - 1),
    _fixed(4, 8),
    _fixed(2, 8),
    _fixed(2, 6),
    _fixed(2, 6),
    st.integers(0, 999_999),
    valves,
    st.integers(0, 1),
)
orders = st.sampled_from(DI_ORDERS)


@given(
    points=water_points,
    kind=st.sampled_from(["water_cold", "water_hot", "gas"]),
    order=orders,
    ser=st.integers(0, 255),
)
def test_water_and_gas_round_trip(
    points: dict[str, float | int], kind: MeterKind, order: DiOrder, ser: int
) -> None:
    data = encode_901f_response(points, kind=kind, di_order=order, ser=ser)
    assert len(data) == 0x16
    assert parse_data_reply(_frame(data), di_order=order, ser=ser).ser == ser
    assert decode_901f_response(data, kind=kind, di_order=order) == points


@given(points=heat_points, order=orders, ser=st.integers(0, 255))
def test_heat_round_trip(points: dict[str, float | int], order: DiOrder, ser: int) -> None:
    data = encode_901f_response(points, kind="heat", di_order=order, ser=ser)
    assert len(data) == 0x2E
    assert decode_901f_response(data, kind="heat", di_order=order) == points


def _codes_for(quantity: str) -> list[int]:
    return [code for code, unit in UNIT_CODES.items() if unit.quantity == quantity]


@given(
    digits=st.lists(st.integers(0, 10**8 - 1), min_size=5, max_size=5),
    small=st.lists(st.integers(0, 999_999), min_size=3, max_size=3),
    energy=st.lists(st.sampled_from(_codes_for("energy")), min_size=2, max_size=2),
    power=st.sampled_from(_codes_for("power")),
    flow=st.sampled_from(_codes_for("flow_rate")),
    volume=st.sampled_from(_codes_for("volume")),
    st0=st.sampled_from([0x00, 0x40, 0xC0, 0x20, 0x60, 0xE0]),
)
def test_every_unit_code_decodes_exactly_to_the_field_resolution(
    *,
    digits: list[int],
    small: list[int],
    energy: list[int],
    power: int,
    flow: int,
    volume: int,
    st0: int,
) -> None:
    """encode(decode(body)) == body: no unit conversion loses a digit of what the meter sent."""
    codes = [energy[0], energy[1], power, flow, volume]
    body = b"".join(int_to_bcd(d, 4) + bytes([c]) for d, c in zip(digits, codes, strict=True))
    body += b"".join(int_to_bcd(s, 3) for s in small) + bytes(7) + bytes([st0, 0])
    data = _hex("90 1F 00") + body
    points = decode_901f_response(data, kind="heat", di_order="standard")
    unit_codes = dict(zip(HEAT_LAYOUT.points[:5], codes, strict=True))
    assert encode_901f_response(points, kind="heat", unit_codes=unit_codes) == data


def test_encode_refuses_what_a_meter_cannot_send() -> None:
    with pytest.raises(ValueError, match="needs volume_settlement"):
        encode_901f_response({"volume": 1.0}, kind="water_cold")
    with pytest.raises(ValueError, match="no point power"):
        encode_901f_response({"volume": 1.0, "volume_settlement": 0, "power": 1}, kind="gas")
    with pytest.raises(ValueError, match="does not fit"):
        encode_901f_response({"volume": 1e6, "volume_settlement": 0}, kind="gas")
    both = {"volume": 1, "volume_settlement": 0, "status_valve_closed": 1}
    with pytest.raises(ValueError, match="not both"):
        encode_901f_response({**both, "status_valve_abnormal": 1}, kind="gas")
    with pytest.raises(UnitCodeError):
        encode_901f_response(both, kind="gas", unit_codes={"volume": 0x05})


def test_encode_writes_the_meter_clock_and_vendor_status() -> None:
    data = encode_901f_response(
        {"volume": 68, "volume_settlement": 0},
        kind="water_cold",
        di_order="swapped",
        ser=4,
        meter_clock="2015-05-11 22:01:31",
        status_vendor=0xFF,
    )
    assert data == _hex("1F 90 04 00 68 00 00 2C 00 00 00 00 2C 31 01 22 11 05 15 20 00 FF")


# --- profiles ------------------------------------------------------------------------------------


def test_the_shipped_profiles() -> None:
    assert set(profile_names()) >= {"cjt188-water", "cjt188-heat", "cjt188-gas"}
    water, heat, gas = (load_profile(f"cjt188-{n}") for n in ("water", "heat", "gas"))
    assert (water.kind, heat.kind, gas.kind) == ("water_cold", "heat", "gas")
    assert (water.meter_type, heat.meter_type, gas.meter_type) == (0x10, 0x20, 0x30)
    assert heat.point_names == (*HEAT_LAYOUT.points, *STATUS_POINTS)
    assert water.point_names == gas.point_names == (*WATER_LAYOUT.points, *STATUS_POINTS)


@pytest.mark.parametrize("name", ["cjt188-water", "cjt188-heat", "cjt188-gas"])
def test_a_profile_cites_its_source_and_matches_the_codec(name: str) -> None:
    text = profile_text(name)
    assert "# Source: " in text
    assert "shared" not in text  # cite the public sources, not a local folder
    profile = load_profile(name)
    assert profile.di_order in DI_ORDERS
    assert profile.source
    for point in profile.points:
        assert POINT_UNITS[point.name] == point.unit
    sample = encode_901f_response(
        dict.fromkeys(layout_for(profile.kind).points, 1), kind=profile.kind
    )
    assert set(decode_901f_response(sample, kind=profile.kind)) == set(profile.point_names)


def test_an_unknown_profile_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        load_profile("cjt188-electricity")
