"""CJ/T 188 link layer: published frames byte for byte, round trips, resync, rejects, DI order.

The golden frames are the independent truth: real or published captures whose checksums were
recomputed by hand, never output of this codec.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cjt188.errors import AbnormalReplyError, FrameError
from drivers.cjt188.frame import (
    C_READ_ADDRESS,
    C_READ_DATA,
    DI_READ_ADDRESS,
    DI_READ_DATA,
    WILDCARD_ADDRESS,
    Frame,
    FrameDecoder,
    MeterKind,
    checksum,
    classify_meter_type,
    decode_di,
    detect_di_order,
    encode_address,
    encode_di,
    encode_frame,
    is_reply_to,
    parse_data_reply,
    read_address_request,
    read_data_request,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# --- golden frames -------------------------------------------------------------------------------

# A cold-water meter's 901F reply from public code (the DI sent swapped, 1F 90; SER 04):
# 68.00 m3. The "00 ... 00" of the published frame is the 9 zero bytes of clock and status.
COLD_WATER_68 = _hex(
    "FE FE 68 10 26 13 06 07 00 33 78 81 16 1F 90 04 00 68 00 00 2C 00 00 00 00 2C"
    + " 00" * 9
    + " 73 16"
)
# aixiwang/python_cjt188 (comments of python_cjt188.py): the request and its reply, 1000.10 m3.
AIXIWANG_REQUEST = _hex("68 10 12 00 00 00 00 00 00 01 03 90 1F 00 3D 16")
AIXIWANG_REPLY = _hex(
    "FE FE FE 68 10 12 00 00 00 00 00 00 81 16 90 1F 00 10 00 10 00 2C 10 00 10 00 2C"
    + " 00" * 7
    + " 00 FF 67 16"
)
# The read-address broadcast (aixiwang; cnblogs.com/cj94/p/18534598).
READ_ADDRESS_BROADCAST = _hex("FE FE FE FE 68 AA AA AA AA AA AA AA AA 03 03 81 0A 00 49 16")
# Secondary: the reply to it in cnblogs.com/cj94/p/18534598 (CS recomputed: F5).
READ_ADDRESS_REPLY = _hex("FE FE FE FE 68 10 18 02 12 20 20 00 00 83 03 81 0A 00 F5 16")
# A widely reposted example reply (cnblogs.com/yangykaifa/p/7010777) whose CS is wrong: the
# bytes sum to 13H, the frame says 08H.
REPOSTED_BAD_CHECKSUM = _hex(
    "FE FE FE FE 68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C"
    " 31 01 22 11 05 15 20 21 84 08 16"
)


def test_the_cold_water_capture_decodes_to_its_fields() -> None:
    decoder = FrameDecoder()
    [frame] = decoder.feed(COLD_WATER_68)
    assert frame.meter_type == 0x10
    assert frame.address == "78330007061326"  # meter 0007061326 of maker 7833
    assert frame.control == 0x81
    assert frame.is_reply
    assert not frame.is_abnormal
    assert frame.function == C_READ_DATA
    assert len(frame.data) == 0x16
    reply = parse_data_reply(frame)
    assert reply.di_order == "swapped"
    assert reply.ser == 4
    assert reply.body[:5] == _hex("00 68 00 00 2C")
    assert not decoder.rejects
    assert decoder.noise_bytes == 0


def test_the_aixiwang_request_is_built_byte_for_byte() -> None:
    request = read_data_request("00000000000012", 0x10, di_order="standard", ser=0)
    assert encode_frame(request, preamble=0) == AIXIWANG_REQUEST
    assert FrameDecoder().feed(AIXIWANG_REQUEST) == [request]


def test_the_aixiwang_reply_answers_its_request() -> None:
    request = read_data_request("00000000000012", 0x10)
    [reply] = FrameDecoder().feed(AIXIWANG_REPLY)
    assert is_reply_to(reply, request)
    split = parse_data_reply(reply, di_order="standard", ser=0)
    assert split.body[:10] == _hex("10 00 10 00 2C 10 00 10 00 2C")
    assert split.body[-2:] == _hex("00 FF")


def test_the_read_address_broadcast_is_built_byte_for_byte() -> None:
    request = read_address_request()
    assert request.meter_type == 0xAA
    assert request.address == WILDCARD_ADDRESS
    assert encode_frame(request, preamble=4) == READ_ADDRESS_BROADCAST


def test_the_published_read_address_reply_gives_the_meter_address() -> None:
    [reply] = FrameDecoder().feed(READ_ADDRESS_REPLY)
    assert is_reply_to(reply, read_address_request())
    assert reply.control == C_READ_ADDRESS | 0x80
    assert reply.address == "00002020120218"  # meter 2020120218, maker code 0000
    assert reply.meter_type == 0x10
    assert parse_data_reply(reply, di=DI_READ_ADDRESS, di_order="standard").body == b""


def test_the_reposted_frame_with_a_wrong_checksum_is_rejected() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(REPOSTED_BAD_CHECKSUM) == []
    assert decoder.rejects == {"checksum": 1}
    assert checksum(REPOSTED_BAD_CHECKSUM[4:-2]) == 0x13


# --- round trips ---------------------------------------------------------------------------------

frames = st.builds(
    Frame,
    meter_type=st.integers(0, 255),
    address=st.binary(min_size=7, max_size=7).map(lambda b: b[::-1].hex().upper()),
    control=st.integers(0, 255),
    data=st.binary(max_size=0x64),
)


@given(frame=frames, preamble=st.integers(0, 8))
def test_a_frame_survives_encode_and_decode(frame: Frame, preamble: int) -> None:
    wire = encode_frame(frame, preamble=preamble)
    assert wire[:preamble] == b"\xfe" * preamble
    assert FrameDecoder().feed(wire) == [frame]


@given(frame_list=st.lists(frames, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 600)))
def test_frames_fed_in_any_chunks_come_out_whole_and_in_order(
    frame_list: list[Frame], cuts: list[int]
) -> None:
    wire = b"".join(encode_frame(f, preamble=2) for f in frame_list)
    bounds = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    decoder = FrameDecoder()
    out: list[Frame] = []
    for start, stop in itertools.pairwise(bounds):
        out += decoder.feed(wire[start:stop])
    assert out == frame_list
    assert decoder.pending == 0
    assert not decoder.rejects


@given(
    frame=frames,
    noise=st.binary(max_size=40).map(lambda b: bytes(x for x in b if x != 0x68)),
)
def test_noise_before_a_frame_is_skipped_and_counted(frame: Frame, noise: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(noise + encode_frame(frame, preamble=3)) == [frame]
    assert decoder.noise_bytes == sum(1 for b in noise if b != 0xFE)


@given(address=st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_an_address_is_14_digits_low_byte_first(address: str) -> None:
    raw = encode_address(address)
    assert len(raw) == 7
    assert raw[0] == int(address[12:14], 16)
    assert raw[::-1].hex() == address


@pytest.mark.parametrize("bad", ["", "123", "1234567890123A", "123456789012345", "AAAAAAAAAAAAAB"])
def test_an_address_that_is_not_14_digits_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="14 decimal digits"):
        encode_address(bad)


# --- resync and rejects --------------------------------------------------------------------------


def test_a_truncated_frame_before_a_good_one_is_counted_and_the_good_one_kept() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(COLD_WATER_68[:20] + AIXIWANG_REPLY) == FrameDecoder().feed(AIXIWANG_REPLY)
    assert decoder.rejects == {"truncated": 1}


def test_a_bad_checksum_is_counted_and_the_next_frame_still_found() -> None:
    damaged = bytearray(COLD_WATER_68)
    damaged[-2] ^= 0x01
    decoder = FrameDecoder()
    [frame] = decoder.feed(bytes(damaged) + AIXIWANG_REPLY)
    assert frame.address == "00000000000012"
    assert decoder.rejects == {"checksum": 1}


def test_a_damaged_data_byte_fails_the_checksum() -> None:
    damaged = bytearray(COLD_WATER_68)
    damaged[18] = 0x69  # 68.00 m3 becomes 69.00 m3 on the way
    decoder = FrameDecoder()
    assert decoder.feed(bytes(damaged)) == []
    assert decoder.rejects == {"checksum": 1}


def test_a_wrong_end_byte_is_counted() -> None:
    damaged = bytearray(AIXIWANG_REPLY)
    damaged[-1] = 0x17
    decoder = FrameDecoder()
    assert decoder.feed(bytes(damaged)) == []
    assert decoder.rejects["end_byte"] == 1
    assert "checksum" not in decoder.rejects


def test_a_length_above_the_limit_is_noise() -> None:
    decoder = FrameDecoder(max_data_length=0x30)
    frame = Frame(0x10, "00000000000001", 0x81, bytes(0x31))
    assert decoder.feed(encode_frame(frame)) == []
    assert decoder.rejects["length"] == 1
    assert FrameDecoder().feed(encode_frame(frame)) == [frame]  # the default limit is 64H


def test_noise_holding_a_start_byte_does_not_hide_the_frame() -> None:
    decoder = FrameDecoder()
    noise = _hex("00 68 13 68 FF 55 68")
    [frame] = decoder.feed(noise + AIXIWANG_REPLY + _hex("68 00"))
    assert frame.address == "00000000000012"
    assert decoder.pending == 2  # "68 00" may be the start of another frame
    decoder.flush()
    assert decoder.pending == 0
    assert decoder.rejects["truncated"] >= 1


def test_a_frame_cut_short_by_a_silent_meter_is_counted_when_flushed() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(AIXIWANG_REPLY[:-5]) == []
    assert decoder.pending > 0
    decoder.flush()
    assert decoder.rejects == {"truncated": 1}


# --- DI order and replies ------------------------------------------------------------------------


def test_di_orders() -> None:
    assert encode_di(DI_READ_DATA, "standard") == _hex("90 1F")
    assert encode_di(DI_READ_DATA, "swapped") == _hex("1F 90")
    assert encode_di(DI_READ_ADDRESS, "standard") == _hex("81 0A")
    assert decode_di(_hex("1F 90"), "swapped") == DI_READ_DATA
    assert detect_di_order(_hex("90 1F 00")) == "standard"
    assert detect_di_order(_hex("1F 90 00")) == "swapped"
    assert detect_di_order(_hex("81 0A 00")) is None
    assert detect_di_order(_hex("81 0A 00"), DI_READ_ADDRESS) == "standard"


@pytest.mark.parametrize("order", ["standard", "swapped"])
def test_a_request_carries_the_device_di_order(order: str) -> None:
    request = read_data_request("78330007061326", 0x10, di_order=order, ser=7)  # type: ignore[arg-type]
    assert detect_di_order(request.data) == order
    assert request.data[2] == 7


def test_a_reply_in_the_other_di_order_is_refused_when_the_order_is_set() -> None:
    [frame] = FrameDecoder().feed(COLD_WATER_68)  # sent 1F 90
    assert parse_data_reply(frame, di_order="swapped").ser == 4
    with pytest.raises(FrameError, match="not 901F in standard order"):
        parse_data_reply(frame, di_order="standard")


def test_a_reply_with_another_di_or_ser_is_refused() -> None:
    [frame] = FrameDecoder().feed(COLD_WATER_68)
    with pytest.raises(FrameError, match="not D120"):
        parse_data_reply(frame, di=0xD120)
    with pytest.raises(FrameError, match="does not echo"):
        parse_data_reply(frame, ser=5)
    request_like = Frame(0x10, "78330007061326", C_READ_DATA, frame.data)
    with pytest.raises(FrameError, match="request"):
        parse_data_reply(request_like)


def test_an_abnormal_reply_raises_with_ser_and_status() -> None:
    abnormal = Frame(0x10, "78330007061326", 0xC1, _hex("05 40 00"))
    [frame] = FrameDecoder().feed(encode_frame(abnormal))
    with pytest.raises(AbnormalReplyError) as caught:
        parse_data_reply(frame)
    assert caught.value.ser == 5
    assert caught.value.status == _hex("40 00")
    assert caught.value.address == "78330007061326"
    assert "abnormal" in str(caught.value)


def test_a_reply_matches_only_its_request() -> None:
    request = read_data_request("78330007061326", 0x10)
    [reply] = FrameDecoder().feed(COLD_WATER_68)
    assert is_reply_to(reply, request)
    assert not is_reply_to(reply, read_data_request("78330007061327", 0x10))
    assert not is_reply_to(request, request)  # a request is no reply
    assert not is_reply_to(reply, read_address_request(address="78330007061326"))


# --- meter types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meter_type", "kind"),
    [
        (0x10, "water_cold"),
        (0x11, "water_hot"),
        (0x12, "water_cold"),
        (0x13, "water_cold"),
        (0x19, "water_cold"),
        (0x20, "heat"),
        (0x21, "heat"),
        (0x22, "heat"),
        (0x25, "heat"),  # what real heat meters answer with
        (0x29, "heat"),
        (0x30, "gas"),
        (0x39, "gas"),
        (0x0F, "other"),
        (0x1A, "other"),
        (0x40, "other"),
        (0xAA, "other"),
    ],
)
def test_meter_types_are_classified_by_range(meter_type: int, kind: MeterKind) -> None:
    assert classify_meter_type(meter_type) == kind


def test_the_type_ranges_are_a_table_to_override() -> None:
    ranges: tuple[tuple[int, int, MeterKind], ...] = ((0x10, 0x13, "water_hot"),)
    assert classify_meter_type(0x12, ranges=ranges) == "water_hot"
    assert classify_meter_type(0x20, ranges=ranges) == "other"
