"""The platform envelope, its CRC and its AES against a real captured frame, and round trips of
every shipped profile (property tests over sequences and payloads)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.platform.crypto import AesKey, decrypt, encrypt, md5_answer
from agent.platform.envelope import Frame, crc16_xmodem, decode_frame, encode_frame, read_frame
from agent.platform.errors import FrameError
from agent.platform.messages import parse_message
from agent.platform.profiles import SHIPPED, Md5Order, Padding, ProfileSettings

# A login frame captured from a collector in the field, as logged in the public C# collector
# "RenewEDSenderM" (Program.cs, comment "s vs 6441"): variant A, 224 bytes of AES payload.
CAPTURE = bytes.fromhex(
    "68681616e40000001692ec42AD4E729DCD81551ABC7C2983C86D3C6A58A862EAB7762371A0F6A3C83FBDC8EC"
    "79D54004F3249D83EE1D8BBE3C906270C99C44D6CF4C7B049B643A7DA312DCC0C5600F18FBB91ADF46080253"
    "2B9FD2C766EC60477242D78F9CAA0092DA2F1B0492D92951E9EF1E68096B7EA76C41ABF30EB177D316196693"
    "D66C3C8AB2C767ED461BABF65A472C57DE9C972B10EDE61E916F38D678C48ED447928E77EF77798D71F71B29"
    "AA4A2542C866B4A623FDC6F8838B2D3AD851EC9091C029072A49BB9DDFCCF2831858E339FE73534A65432E5A"
    "C65F3E0DF735510BCD64F8B7C2B1F2646441"
    "55aa55aa"
)
# The demonstration key of the same code base (key = IV), which decrypts the capture.
CAPTURE_KEY = AesKey(b"0000000000123456")
GUIDELINE_A = SHIPPED["guideline-a"]


def test_crc16_xmodem_check_value() -> None:
    # The catalogue's check value for CRC-16/XMODEM (CRC RevEng).
    assert crc16_xmodem(b"123456789") == 0x31C3


def test_the_captured_frame_decodes_and_its_crc_checks() -> None:
    frame = decode_frame(GUIDELINE_A, CAPTURE)
    assert frame.sequence == 0x42EC9216  # 16 92 ec 42, little-endian
    assert len(frame.payload) == 224
    assert crc16_xmodem(CAPTURE[:-6]) == 0x6441  # header through payload, stored big-endian


def test_the_captured_payload_decrypts_to_the_login_request() -> None:
    frame = decode_frame(GUIDELINE_A, CAPTURE)
    plain = decrypt(CAPTURE_KEY, frame.payload, Padding.ASCII_ZERO)
    message = parse_message(plain)
    assert (message.element, message.operation, message.type) == (
        "id_validate",
        "request",
        "request",
    )
    assert message.gateway_id == "1100000140202"


def test_re_encoding_the_capture_gives_the_same_bytes() -> None:
    frame = decode_frame(GUIDELINE_A, CAPTURE)
    plain = decrypt(CAPTURE_KEY, frame.payload, Padding.ASCII_ZERO)
    again = encrypt(CAPTURE_KEY, plain, Padding.ASCII_ZERO)
    assert encode_frame(GUIDELINE_A, Frame(frame.sequence, again)) == CAPTURE


def test_a_wrong_crc_is_named() -> None:
    broken = bytearray(CAPTURE)
    broken[20] ^= 0x01
    with pytest.raises(FrameError, match="CRC mismatch"):
        decode_frame(GUIDELINE_A, bytes(broken))


def test_the_capture_is_not_a_frame_of_the_java_or_b_variants() -> None:
    with pytest.raises(FrameError, match="CRC mismatch"):
        decode_frame(SHIPPED["guideline-a-java"], CAPTURE)
    with pytest.raises(FrameError, match="starts with"):
        decode_frame(SHIPPED["zhejiang-b"], CAPTURE)


@pytest.mark.parametrize("name", sorted(SHIPPED))
@given(sequence=st.integers(0, 2**32 - 1), payload=st.binary(max_size=300))
def test_every_shipped_envelope_round_trips(name: str, sequence: int, payload: bytes) -> None:
    profile = SHIPPED[name]
    wire = encode_frame(profile, Frame(sequence, payload))
    assert wire.startswith(profile.header_bytes)
    assert wire.endswith(profile.tail_bytes)
    assert decode_frame(profile, wire) == Frame(sequence, payload)


@pytest.mark.parametrize("padding", list(Padding))
@given(text=st.text(max_size=80))
def test_aes_round_trips_an_xml_document(padding: Padding, text: str) -> None:
    xml = f"<root>{text.replace('<', '').replace('>', '')}</root>".encode()
    key = AesKey(b"0123456789ABCDEF")
    sealed = encrypt(key, xml, padding)
    assert len(sealed) % 16 == 0
    assert decrypt(key, sealed, padding) == xml


def test_md5_answer_in_both_orders() -> None:
    # RFC 1321 test suite: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
    assert md5_answer("a", "bc", Md5Order.KEY_SEQUENCE) == "900150983cd24fb0d6963f7d28e17f72"
    assert md5_answer("c", "ab", Md5Order.SEQUENCE_KEY) == "900150983cd24fb0d6963f7d28e17f72"


async def test_a_length_beyond_the_profile_limit_is_refused_before_reading_it() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(GUIDELINE_A.header_bytes + (10 << 20).to_bytes(4, "little"))
    with pytest.raises(FrameError, match="more than"):
        await read_frame(GUIDELINE_A, reader)


def test_a_custom_profile_checks_its_bytes() -> None:
    with pytest.raises(ValueError, match="should match pattern"):
        ProfileSettings(header="6868161", tail="55aa55aa")
