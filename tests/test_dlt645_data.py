"""DL/T 645 values: the catalogue, BCD with sign and validation, blocks, and the profiles.

Golden values come from real captured replies (meter 000000000161, 2007; meter 000000000003,
1997, from a vendor manual), with their values as published: 000000.26 kWh, 100.1 V,
4.999 A, 0.2512 kW, 0.4331 kvar, 0.5006 kVA, PF 0.501; 100 V.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.dlt645 import (
    BcdError,
    DataEntry,
    FrameDecoder,
    FrameError,
    Kind,
    ProfileError,
    UnknownDataIdError,
    block_catalogue,
    catalogue,
    decode_bcd,
    decode_block,
    decode_value,
    encode_bcd,
    encode_value,
    format_di,
    load_profile,
    lookup,
    lookup_block,
    lookup_point,
    parse_di,
    parse_profile,
    parse_read_reply,
    profile_names,
    split_block,
)
from drivers.dlt645.frame import Version


def hx(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# Real replies of meter 000000000161 and what the published log says they hold, in the agent's
# units (power kW -> W, kvar -> var, kVA -> VA).
GOLDEN_2007 = [
    ("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16", "import_energy", 0.26, "kWh"),
    ("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16", "voltage_l1", 100.1, "V"),
    ("68 61 01 00 00 00 00 68 91 07 33 34 35 35 CC 7C 33 16 16", "current_l1", 4.999, "A"),
    ("68 61 01 00 00 00 00 68 91 07 33 33 36 35 45 58 33 6B 16", "active_power", 251.2, "W"),
    ("68 61 01 00 00 00 00 68 91 07 33 33 37 35 64 76 33 A9 16", "reactive_power", 433.1, "var"),
    ("68 61 01 00 00 00 00 68 91 07 33 33 38 35 39 83 33 8C 16", "apparent_power", 500.6, "VA"),
    ("68 61 01 00 00 00 00 68 91 06 33 33 39 35 34 38 09 16", "power_factor", 0.501, ""),
]

REQUIRED_POINTS = [
    "import_energy",
    *(f"import_energy_t{n}" for n in range(1, 5)),
    "export_energy",
    *(f"export_energy_t{n}" for n in range(1, 5)),
    *(f"voltage_l{n}" for n in range(1, 4)),
    *(f"current_l{n}" for n in range(1, 4)),
    "active_power",
    *(f"active_power_l{n}" for n in range(1, 4)),
    "reactive_power",
    "apparent_power",
    "power_factor",
    *(f"power_factor_l{n}" for n in range(1, 4)),
    "frequency",
]
VERSIONS: list[Version] = ["2007", "1997"]


def reply_value(raw: bytes, di: int, version: Version = "2007") -> bytes:
    (frame,) = FrameDecoder().feed(raw)
    return parse_read_reply(frame, di, version=version)


# --- golden values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "point", "value", "unit"), GOLDEN_2007)
def test_captured_2007_values(reply: str, point: str, value: float, unit: str) -> None:
    entry = lookup_point(point, "2007")
    decoded = decode_value(entry, reply_value(hx(reply), entry.di))
    assert decoded == value
    assert isinstance(decoded, float)
    assert entry.unit == unit


def test_captured_values_are_physically_consistent() -> None:
    # The capture's own sanity check: S ~ V I, S ~ sqrt(P^2 + Q^2), PF ~ P / S.
    values: dict[str, float] = {}
    for raw, point, _, _ in GOLDEN_2007:
        entry = lookup_point(point, "2007")
        values[point] = float(decode_value(entry, reply_value(hx(raw), entry.di)))
    s = values["apparent_power"]
    assert values["voltage_l1"] * values["current_l1"] == pytest.approx(s, rel=0.002)
    assert math.hypot(values["active_power"], values["reactive_power"]) == pytest.approx(
        s, rel=0.002
    )
    assert values["active_power"] / s == pytest.approx(values["power_factor"], rel=0.005)


def test_captured_1997_voltage() -> None:
    entry = lookup(0xB611, "1997")
    raw = reply_value(hx("68 03 00 00 00 00 00 68 81 04 44 E9 33 34 EC 16"), 0xB611, "1997")
    assert decode_value(entry, raw) == 100.0
    assert entry.point == "voltage_l1"


def test_captured_non_bcd_value_raises() -> None:
    # A real frame with a valid checksum whose energy value holds 0E: invalid data.
    raw = reply_value(hx("68 18 06 36 04 00 91 68 91 08 33 33 34 33 33 33 41 33 F9 16"), 0x00010000)
    with pytest.raises(BcdError) as caught:
        decode_value(lookup(0x00010000, "2007"), raw)
    assert caught.value.offset == 2
    assert caught.value.byte == 0x0E
    assert isinstance(caught.value, ValueError)


# --- BCD, sign, ASCII ------------------------------------------------------------------------


@pytest.mark.parametrize("byte", [0x0A, 0xA0, 0x9F, 0xFF, 0x3C])
def test_any_nibble_above_nine_raises(byte: int) -> None:
    for offset in range(3):
        raw = bytearray(b"\x12\x34\x05")
        raw[offset] = byte
        with pytest.raises(BcdError):
            decode_bcd(bytes(raw))


def test_signed_fields_use_the_top_bit() -> None:
    power = lookup_point("active_power", "2007")
    assert encode_value(power, -251.2) == hx("12 25 80")
    assert decode_value(power, hx("12 25 80")) == -251.2
    pf = lookup_point("power_factor", "2007")
    assert decode_value(pf, hx("01 85")) == -0.501
    current = lookup_point("current_l1", "2007")
    assert decode_value(current, hx("99 49 80")) == -4.999


def test_unsigned_fields_read_the_top_bit_as_a_digit() -> None:
    assert decode_value(lookup_point("import_energy", "2007"), hx("00 00 00 80")) == 800000.0
    assert decode_value(lookup_point("voltage_l1", "2007"), hx("00 80")) == 800.0
    with pytest.raises(ValueError, match="unsigned"):
        encode_value(lookup_point("import_energy", "2007"), -1.0)


def test_out_of_range_and_wrong_types_raise() -> None:
    power = lookup_point("active_power", "2007")
    assert encode_value(power, 79999.9) == hx("99 99 79")
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(power, 80000.0)
    with pytest.raises(ValueError, match="finite"):
        encode_value(power, math.nan)
    with pytest.raises(TypeError):
        encode_value(power, "1")
    with pytest.raises(TypeError):
        encode_value(lookup_point("meter_number", "2007"), 1)
    with pytest.raises(ValueError, match="12 digits"):
        encode_value(lookup_point("meter_number", "2007"), "123")
    with pytest.raises(FrameError, match="2 bytes"):
        decode_value(lookup_point("voltage_l1", "2007"), hx("00 10 00"))


def test_values_round_to_the_format() -> None:
    assert encode_value(lookup_point("voltage_l1", "2007"), 230.04) == hx("00 23")
    assert encode_value(lookup_point("active_power", "2007"), 0.05) == hx("00 00 00")


def test_ascii_parameters_are_sent_reversed() -> None:
    # Meter 000006605518's rated-voltage bytes read "V0.022", i.e. "220.0V" reversed.
    entry = lookup(0x04000404, "2007")
    assert entry.kind is Kind.ASCII
    assert decode_value(entry, b"V0.022") == "220.0V"
    assert encode_value(entry, "220.0V") == b"V0.022"
    assert decode_value(entry, encode_value(entry, "5A")) == "5A"
    with pytest.raises(FrameError, match="ASCII"):
        decode_value(entry, b"\xff" * 6)


def test_digits_keep_their_leading_zeros() -> None:
    entry = lookup(0x04000402, "2007")
    assert decode_value(entry, hx("18 55 60 06 00 00")) == "000006605518"
    date = lookup(0x04000101, "2007")
    assert decode_value(date, hx("06 29 12 18")) == "18122906"  # 2018-12-29, Saturday
    pulses = lookup(0x04000409, "2007")
    assert decode_value(pulses, hx("00 12 00")) == 1200


# --- round trips (hypothesis) ----------------------------------------------------------------

all_entries = [e for v in VERSIONS for e in catalogue(v).values()]
numeric = [e for e in all_entries if e.kind in (Kind.NUMBER, Kind.INTEGER)]


def _value_for(entry: DataEntry, steps: int) -> float | int:
    if entry.kind is Kind.INTEGER:
        return steps * int(entry.scale)
    return float(Decimal(steps).scaleb(-entry.decimals) * Decimal(str(entry.scale)))


@given(data=st.data())
def test_numbers_round_trip(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(numeric))
    low = -entry.max_magnitude if entry.signed else 0
    steps = data.draw(st.integers(low, entry.max_magnitude))
    value = _value_for(entry, steps)
    raw = encode_value(entry, value)
    assert len(raw) == entry.length
    assert decode_value(entry, raw) == value
    assert encode_value(entry, decode_value(entry, raw)) == raw


bcd_bytes = st.tuples(st.integers(0, 9), st.integers(0, 9)).map(lambda d: d[0] << 4 | d[1])


@given(data=st.data())
def test_valid_bytes_round_trip(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(all_entries))
    if entry.kind is Kind.ASCII:
        printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
        text = data.draw(st.text(printable, max_size=entry.length))
        assert decode_value(entry, encode_value(entry, text)) == text
        return
    raw = bytearray(data.draw(st.lists(bcd_bytes, min_size=entry.length, max_size=entry.length)))
    if entry.signed:
        raw[-1] &= 0x7F  # the magnitude's top digit is 0-7
        if any(raw) and data.draw(st.booleans()):  # a negative zero encodes as plain zero
            raw[-1] |= 0x80
    assert encode_value(entry, decode_value(entry, bytes(raw))) == bytes(raw)


@given(value=st.integers(-(8 * 10**7 - 1), 8 * 10**7 - 1))
def test_bcd_round_trip(value: int) -> None:
    raw = encode_bcd(value, 4, signed=True)
    assert decode_bcd(raw, signed=True) == value
    assert raw[-1] & 0x80 == (0x80 if value < 0 else 0)


# --- catalogue -------------------------------------------------------------------------------


@pytest.mark.parametrize("point", REQUIRED_POINTS)
def test_every_required_point_is_in_the_2007_catalogue(point: str) -> None:
    entry = lookup_point(point, "2007")
    assert entry.unit in {"kWh", "V", "A", "W", "var", "VA", "", "Hz"}


@pytest.mark.parametrize("version", VERSIONS)
def test_catalogue_is_consistent(version: Version) -> None:
    entries = catalogue(version)
    assert len({e.point for e in entries.values()}) == len(entries)  # point names unique
    for di, entry in entries.items():
        assert (entry.di, entry.version) == (di, version)
        assert entry.source
        assert 0 <= di < 1 << (32 if version == "2007" else 16)
        digits = sum(c.isalpha() for c in entry.format)
        assert digits <= 2 * entry.length, entry
        if entry.standard_unit in {"kW", "kvar", "kVA"}:
            assert entry.scale == 1000
            assert entry.unit == entry.standard_unit.removeprefix("k")
        if entry.unit == "kWh":
            assert not entry.signed
    for block in block_catalogue(version).values():
        assert block.source
        for member in block.members:
            assert entries[member].length == block.member_length


def test_units_scale_to_the_published_ones() -> None:
    assert lookup_point("active_power", "2007").unit == "W"
    assert lookup_point("reactive_power", "2007").unit == "var"
    assert lookup_point("apparent_power", "2007").unit == "VA"
    assert lookup_point("active_power", "2007").standard_unit == "kW"
    assert lookup_point("active_power", "1997").scale == 1000


def test_lookups_of_unknown_keys() -> None:
    with pytest.raises(UnknownDataIdError, match="02990000"):
        lookup(0x02990000, "2007")
    with pytest.raises(UnknownDataIdError, match="B6FF"):
        lookup_block(0xB6FF, "1997")
    with pytest.raises(LookupError):
        lookup_point("voltage_l4", "2007")
    assert format_di(0x0201FF00, "2007") == "0201FF00"
    assert parse_di("02-01-01-00", "2007") == 0x02010100  # Neuron's point syntax
    assert parse_di("b611", "1997") == 0xB611
    with pytest.raises(ValueError, match="8 hex digits"):
        parse_di("B611", "2007")


# --- blocks ----------------------------------------------------------------------------------


def test_voltage_block_splits_into_phases() -> None:
    block = lookup_block(0x0201FF00, "2007")
    values = decode_block(block, hx("01 23 02 23 03 23"))
    assert values == {0x02010100: 230.1, 0x02010200: 230.2, 0x02010300: 230.3}


def test_power_block_has_the_total_first() -> None:
    block = lookup_block(0x0203FF00, "2007")
    raw = hx("00 00 03 00 00 01 00 00 01 00 00 81")  # 3 kW; 1, 1 and -1 kW
    assert decode_block(block, raw) == {
        0x02030000: 3000.0,
        0x02030100: 1000.0,
        0x02030200: 1000.0,
        0x02030300: -1000.0,
    }


def test_energy_block_follows_the_meters_tariff_count() -> None:
    block = lookup_block(0x0001FF00, "2007")
    two_tariffs = hx("00 10 00 00 00 04 00 00 00 06 00 00")
    assert decode_block(block, two_tariffs) == {
        0x00010000: 10.0,
        0x00010100: 4.0,
        0x00010200: 6.0,
    }
    eight_tariffs = bytes(4 * 9)  # further tariffs are left out
    assert len(decode_block(block, eight_tariffs)) == 5


def test_bad_block_lengths() -> None:
    with pytest.raises(FrameError, match="2-byte members"):
        split_block(lookup_block(0x0201FF00, "2007"), hx("01 23 02"))
    with pytest.raises(FrameError, match="3 members"):
        split_block(lookup_block(0x0201FF00, "2007"), bytes(8))
    with pytest.raises(FrameError):
        split_block(lookup_block(0x0201FF00, "2007"), b"")
    # A single-phase meter may answer phase A only.
    assert decode_block(lookup_block(0x0201FF00, "2007"), hx("01 23")) == {0x02010100: 230.1}


def test_1997_blocks() -> None:
    block = lookup_block(0xB61F, "1997")
    assert decode_block(block, hx("20 02 21 02 22 02")) == {
        0xB611: 220.0,
        0xB612: 221.0,
        0xB613: 222.0,
    }
    assert len(lookup_block(0x901F, "1997").members) * 4 == 20


# --- profiles --------------------------------------------------------------------------------


def test_shipped_profiles() -> None:
    assert set(profile_names()) == {"dlt645-2007-3phase", "dlt645-2007-1phase", "dlt645-1997"}
    for name in profile_names():
        profile = load_profile(name)
        table = catalogue(profile.version)
        for point, entry in profile.entries.items():
            assert entry.point == point
            assert table[entry.di].point == point  # shipped profiles keep the catalogue's names
        for block in profile.blocks:
            assert profile.block_points(block)
    three = load_profile("dlt645-2007-3phase")
    assert set(REQUIRED_POINTS) <= set(three.points)
    assert three.points["voltage_l1"] == 0x02010100
    assert load_profile("dlt645-1997").points["voltage_l1"] == 0xB611


def test_profile_decodes_blocks_to_its_points() -> None:
    profile = load_profile("dlt645-2007-1phase")
    block = lookup_block(0x0001FF00, "2007")
    raw = hx("00 10 00 00") * 5
    assert profile.decode_block(block, raw) == {
        "import_energy": 10.0,
        "import_energy_t1": 10.0,
        "import_energy_t2": 10.0,
        "import_energy_t3": 10.0,
        "import_energy_t4": 10.0,
    }
    assert profile.point_for(0x02010200) is None


PROFILE = """
protocol: dlt645
version: "2007"
description: test meter
source: test
blocks: ["0203FF00"]
points:
  active_power: "02030000"
  current_l1: "02020100"
signed: {current_l1: false}
"""


def test_profile_signed_override() -> None:
    profile = parse_profile(PROFILE, name="test")
    assert profile.entries["active_power"].signed
    assert not profile.entries["current_l1"].signed
    assert decode_value(profile.entries["current_l1"], hx("00 00 80")) == 800.0
    assert profile.decode_block(lookup_block(0x0203FF00, "2007"), bytes(12)) == {
        "active_power": 0.0
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("dlt645", "modbus"), "protocol"),
        (('"2007"', '"2010"'), "version"),
        (('"02030000"', '"02990000"'), "not in the 2007 catalogue"),
        (('"02030000"', '"0203000"'), "8 hex digits"),
        (('"02030000"', "02030000"), "quoted string"),
        (('"02020100"', '"02030000"'), "already read"),
        (('"0203FF00"', '"0201FF00"'), "none of the points"),
        (('"0203FF00"', '"0209FF00"'), "not a 2007 block"),
        (("current_l1: false", "voltage_l1: false"), "not a point"),
        (("current_l1: false", "current_l1: 0"), "true or false"),
        (("description: test meter", "descr: test meter"), "unknown keys"),
        (("points:", "points: []\nx:"), "unknown keys"),
        (("source: test", "source: ''"), "source"),
    ],
)
def test_broken_profiles_are_refused(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in PROFILE
    with pytest.raises(ProfileError, match=message):
        parse_profile(PROFILE.replace(old, new, 1), name="broken")


def test_profile_of_the_other_edition() -> None:
    text = PROFILE.replace('"2007"', '"1997"')
    with pytest.raises(ProfileError, match="4 hex digits"):
        parse_profile(text, name="broken")
    with pytest.raises(ProfileError, match="not valid YAML"):
        parse_profile("points: [", name="broken")
    with pytest.raises(KeyError):
        load_profile("no-such-profile")
