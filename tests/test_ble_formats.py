"""BLE advert formats against real adverts published with their decoded values, plus garbled
input and round trips.

Sources of the vectors:
- BTHome v2 adverts from bthome-ble's tests (tests/test_parser_v2.py,
  github.com/Bluetooth-Devices/bthome-ble; the first is an ATC_8D18B2 sensor, A4:C1:38:8D:18:B2),
  plain and encrypted (key 231d39c1d7cc1ab1aee224cd096db932 is bthome.io/encryption's example);
- pvvx custom and atc1441 adverts of real LYWSD03MMC units from Theengs Decoder's tests
  (tests/BLE/test_ble.cpp, github.com/theengs/decoder), with the values that test expects.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.errors import DecryptionError, FormatError
from drivers.ble.formats import (
    BTHOME_UUID,
    ENVIRONMENTAL_SENSING_UUID,
    bthome_carried_mac,
    decode,
    decode_atc1441,
    decode_bthome,
    decode_pvvx,
    encode_atc1441,
    encode_bthome,
    encode_pvvx,
    normalise_mac,
    service_data_from_ad,
)

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
ENCRYPTED_MAC = "54:48:E6:8F:80:A5"


def _bthome(hexdata: str) -> dict[str, bytes]:
    return {BTHOME_UUID: bytes.fromhex(hexdata)}


def _legacy(hexdata: str) -> dict[str, bytes]:
    return {ENVIRONMENTAL_SENSING_UUID: bytes.fromhex(hexdata)}


# ---- BTHome v2 -------------------------------------------------------------------------------


def test_bthome_temperature_humidity() -> None:
    decoded = decode(_bthome("40 02 CA 09 03 BF 13"), mac="A4:C1:38:8D:18:B2")
    assert decoded.format == "bthome"
    assert decoded.values == {"temperature": 25.06, "humidity": 50.55}  # not the rounded 25.1
    assert decoded.packet_id is None
    assert not decoded.encrypted
    assert not decoded.trigger


def test_the_same_advert_from_its_raw_bytes_on_the_air() -> None:
    # flags (02 01 06), then service data 0xFCD2: length 0A, type 16, UUID D2 FC, payload
    raw = bytes.fromhex("02 01 06 0A 16 D2 FC 40 02 CA 09 03 BF 13")
    service_data = service_data_from_ad(raw)
    assert service_data == {BTHOME_UUID: bytes.fromhex("40 02 CA 09 03 BF 13")}
    assert decode(service_data).values == {"temperature": 25.06, "humidity": 50.55}


def test_packet_id_battery_temperature_humidity() -> None:
    decoded = decode(_bthome("40 00 09 01 5d 02 5d 09 03 b7 18"))
    assert decoded.packet_id == 9
    assert decoded.values == {"battery": 93, "temperature": 23.97, "humidity": 63.27}


def test_reading_stops_at_an_unknown_object_id() -> None:
    decoded = decode(_bthome("40 01 5d fe 5d 09 03 b7 18"))
    assert decoded.values == {"battery": 93}  # the humidity after FE is not trusted
    assert decoded.stopped_at == 0xFE


def test_a_command_whose_reserved_bits_are_set_stops_the_reading() -> None:
    # bthome.io/format: the command's length byte keeps its top 3 bits reserved (0); set, they
    # may mean a length we do not know, so the temperature after it is not trusted
    decoded = decode_bthome(bytes.fromhex("40 01 5d 3b 21 03 05 45 e1 00"))
    assert decoded.values == {"battery": 93}
    assert decoded.stopped_at == 0x3B


def test_voltage_is_the_battery_voltage() -> None:
    assert decode(_bthome("40 0c 02 0c")).values == {"battery_voltage": 3.074}


def test_objects_this_driver_does_not_use_are_stepped_over() -> None:
    # pressure (04, 3 bytes), text (53, length-prefixed), then a 0.1 °C temperature (45)
    decoded = decode_bthome(bytes.fromhex("40 04 13 8a 01 45 e1 00"))
    assert decoded.values == {"temperature": 22.5}
    decoded = decode_bthome(bytes.fromhex("40 2e 34 53 03 61 62 63 57 f6"))
    assert decoded.values == {"humidity": 52, "temperature": -10}


def test_mac_carried_in_the_payload() -> None:
    data = _bthome("42 b2 18 8d 38 c1 a4 04 13 8a 01")  # pressure only
    decoded = decode(data)
    assert decoded.mac == "A4:C1:38:8D:18:B2"
    assert decoded.values == {}
    assert bthome_carried_mac(data) == "A4:C1:38:8D:18:B2"
    assert bthome_carried_mac(_bthome("40 02 CA 09 03 BF 13")) is None


def test_encrypted_with_the_published_key() -> None:
    data = _bthome("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14")
    decoded = decode(data, mac=ENCRYPTED_MAC, key=KEY)
    assert decoded.values == {"temperature": 25.06, "humidity": 50.55}
    assert decoded.encrypted
    assert decoded.counter == 0x33221100
    assert decoded.packet_id == 0x33221100  # no packet id object: the counter tells packets apart


def test_encrypted_with_the_mac_in_the_payload() -> None:
    data = _bthome("43 a5 80 8f e6 48 54 f1 96 c0 6f fb 49 00 11 22 33 f0 8e cb de")
    decoded = decode(data, mac="11:22:33:44:55:66", key=KEY)  # the carried MAC makes the nonce
    assert decoded.mac == ENCRYPTED_MAC
    assert decoded.values == {"temperature": 25.06, "humidity": 50.55}


@pytest.mark.parametrize(
    ("hexdata", "key", "mac", "words"),
    [
        ("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", bytes(16), ENCRYPTED_MAC, "does not fit"),
        ("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 15", KEY, ENCRYPTED_MAC, "does not fit"),
        ("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", KEY, "54:48:E6:8F:80:A6", "does not fit"),
        ("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", None, ENCRYPTED_MAC, "no key_file"),
        ("40 02 CA 09 03 BF 13", KEY, ENCRYPTED_MAC, "refused"),
    ],
    ids=["wrong key", "tampered tag", "other sender", "no key", "plain advert with a key"],
)
def test_encrypted_adverts_that_cannot_be_trusted(
    hexdata: str, key: bytes | None, mac: str, words: str
) -> None:
    with pytest.raises(DecryptionError, match=words):
        decode(_bthome(hexdata), mac=mac, key=key)


def test_a_sensor_with_a_key_refuses_legacy_formats() -> None:
    with pytest.raises(DecryptionError):
        decode(_legacy("5601cf38c1a44008bd13470c64cc0f"), key=KEY)


@pytest.mark.parametrize(
    ("hexdata", "words"),
    [
        ("", "empty"),
        ("20 02 CA 09", "version 1"),
        ("60 02 CA 09", "version 3"),
        ("40 02 CA", "needs 2 bytes"),
        ("40 53", "lacks its length"),
        ("40 53 05 61 62", "needs 5 bytes"),
        ("40 3B", "lacks its length"),
        ("40 3B 02 03 05", "needs 3 bytes"),  # the opcode and 2 argument bytes
        ("42 b2 18 8d", "MAC it says"),
        ("40 03 11 27", "humidity 100.01 is outside"),
        ("40 01 65", "battery 101 is outside"),
    ],
)
def test_garbled_bthome_is_an_error_never_a_number(hexdata: str, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        decode_bthome(bytes.fromhex(hexdata))


def test_full_humidity_is_plausible() -> None:
    assert decode_bthome(bytes.fromhex("40 03 10 27")).values == {"humidity": 100.0}


def test_encrypted_needs_the_sender() -> None:
    with pytest.raises(FormatError, match="sender's MAC"):
        decode_bthome(bytes.fromhex("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14"), key=KEY)
    with pytest.raises(FormatError, match="too short"):
        decode_bthome(bytes.fromhex("41 a4 72 66 c9 5f 73 00"), mac=ENCRYPTED_MAC, key=KEY)


# ---- pvvx custom and atc1441 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexdata", "mac", "values", "counter"),
    [
        ("5601cf38c1a44008bd13470c64cc0f", "A4:C1:38:CF:01:56",
         {"temperature": 21.12, "humidity": 50.53, "battery": 100, "battery_voltage": 3.143}, 0xCC),
        ("628f5238c1a48307e4128f0b64b40f", "A4:C1:38:52:8F:62",
         {"temperature": 19.23, "humidity": 48.36, "battery": 100, "battery_voltage": 2.959}, 0xB4),
        ("5601cf38c1a462fdbd13470c64cc0f", "A4:C1:38:CF:01:56",
         {"temperature": -6.7, "humidity": 50.53, "battery": 100, "battery_voltage": 3.143}, 0xCC),
        ("2fdedf38c1a47c090d11350c644b05", "A4:C1:38:DF:DE:2F",
         {"temperature": 24.28, "humidity": 43.65, "battery": 100, "battery_voltage": 3.125}, 0x4B),
    ],
)  # fmt: skip
def test_pvvx_custom_adverts(
    hexdata: str, mac: str, values: dict[str, float], counter: int
) -> None:
    decoded = decode(_legacy(hexdata), mac=mac)
    assert decoded.format == "pvvx"
    assert decoded.values == values
    assert decoded.mac == mac
    assert decoded.packet_id == counter
    # the capture form, with the UUID still in front (17 bytes), reads the same
    assert decode_pvvx(bytes.fromhex("1a18" + hexdata)).values == values


@pytest.mark.parametrize(
    ("hexdata", "values"),
    [
        ("a4c138d5d49801453e510b7b62",
         {"temperature": 32.5, "humidity": 62, "battery": 81, "battery_voltage": 2.939}),
        ("a4c138d5d498ffd33e510b7b62",
         {"temperature": -4.5, "humidity": 62, "battery": 81, "battery_voltage": 2.939}),
    ],
)  # fmt: skip
def test_atc1441_adverts(hexdata: str, values: dict[str, float]) -> None:
    decoded = decode(_legacy(hexdata), mac="a4:c1:38:d5:d4:98")
    assert decoded.format == "atc1441"
    assert decoded.values == values
    assert decoded.mac == "A4:C1:38:D5:D4:98"
    assert decoded.packet_id == 0x62
    assert decode_atc1441(bytes.fromhex("1a18" + hexdata)).values == values


def test_a_configured_format_ignores_the_others() -> None:
    both = {**_bthome("40 02 CA 09 03 BF 13"), **_legacy("a4c138d5d49801453e510b7b62")}
    assert decode(both).format == "bthome"
    assert decode(both, fmt="atc1441").format == "atc1441"
    with pytest.raises(FormatError, match="0xFCD2"):
        decode(_legacy("a4c138d5d49801453e510b7b62"), fmt="bthome")
    with pytest.raises(FormatError, match="15"):
        decode(_legacy("a4c138d5d49801453e510b7b62"), fmt="pvvx")


@pytest.mark.parametrize(
    ("service_data", "mac", "words"),
    [
        (_legacy("a4c138d5d49801453e510b7b"), None, "neither pvvx"),
        (_legacy("5601cf38c1a44008bd13470c64cc0f00"), None, "neither pvvx"),
        (_legacy("5601cf38c1a44008bd13470c64cc0f"), "A4:C1:38:CF:01:57", "advert is from"),
        (_legacy("a4c138d5d49801453e510b7b62"), "A4:C1:38:D5:D4:99", "advert is from"),
        (_legacy("5601cf38c1a44008bd33470c64cc0f"), None, "humidity 132.45 is outside"),
        (_legacy("a4c138d5d4987fff3e510b7b62"), None, "temperature 3276.7 is outside"),
        ({"0000180f-0000-1000-8000-00805f9b34fb": b"\x64"}, None, "no service data"),
        ({}, None, "no service data"),
    ],
)
def test_garbled_legacy_adverts(
    service_data: dict[str, bytes], mac: str | None, words: str
) -> None:
    with pytest.raises(FormatError, match=words):
        decode(service_data, mac=mac)


def test_short_service_data_keys_are_understood() -> None:
    assert decode({"fcd2": bytes.fromhex("40 02 CA 09 03 BF 13")}).format == "bthome"
    assert decode({"0x181A": bytes.fromhex("a4c138d5d49801453e510b7b62")}).format == "atc1441"


def test_raw_adverts_that_run_past_their_end() -> None:
    with pytest.raises(FormatError, match="past the end"):
        service_data_from_ad(bytes.fromhex("02 01 06 0A 16 D2 FC 40"))
    with pytest.raises(FormatError, match="no UUID"):
        service_data_from_ad(bytes.fromhex("02 16 D2"))
    assert service_data_from_ad(bytes.fromhex("02 01 06 00 00 00")) == {}


@pytest.mark.parametrize("text", ["a4:c1:38:8d:18:b2", "A4-C1-38-8D-18-B2", " A4:C1:38:8D:18:B2 "])
def test_mac_spellings(text: str) -> None:
    assert normalise_mac(text) == "A4:C1:38:8D:18:B2"


@pytest.mark.parametrize("text", ["A4:C1:38:8D:18", "A4C1388D18B2", "G4:C1:38:8D:18:B2", ""])
def test_not_macs(text: str) -> None:
    with pytest.raises(ValueError, match="not a MAC"):
        normalise_mac(text)


# ---- round trips -----------------------------------------------------------------------------

_macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b))
_centi_temperature = st.integers(-6000, 12500).map(lambda n: round(n * 0.01, 2))
_centi_humidity = st.integers(0, 10000).map(lambda n: round(n * 0.01, 2))
_battery = st.integers(0, 100)
_millivolts = st.integers(0, 6000).map(lambda n: round(n * 0.001, 3))


@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "temperature": _centi_temperature,
            "humidity": _centi_humidity,
            "battery": _battery,
            "battery_voltage": _millivolts,
        },
    ),
    packet_id=st.none() | st.integers(0, 255),
    mac=_macs,
    key=st.none() | st.binary(min_size=16, max_size=16),
    counter=st.integers(0, 2**32 - 1),
    include_mac=st.booleans(),
    trigger=st.booleans(),
)
def test_bthome_round_trip(
    *,
    values: dict[str, float],
    packet_id: int | None,
    mac: str,
    key: bytes | None,
    counter: int,
    include_mac: bool,
    trigger: bool,
) -> None:
    data = encode_bthome(
        values,
        packet_id=packet_id,
        key=key,
        mac=mac,
        counter=counter,
        include_mac=include_mac,
        trigger=trigger,
    )
    if key is not None and not values and packet_id is None:
        with pytest.raises(FormatError):  # nothing to encrypt makes no valid advert
            decode_bthome(data, mac=mac, key=key)
        return
    decoded = decode_bthome(data, mac=mac, key=key)
    assert decoded.values == values
    assert decoded.encrypted is (key is not None)
    assert decoded.trigger is trigger
    assert decoded.mac == (mac if include_mac else None)
    expected_id = packet_id if packet_id is not None else (counter if key is not None else None)
    assert decoded.packet_id == expected_id
    if key is not None:
        other = bytes(b ^ 0x01 for b in key)
        with pytest.raises(DecryptionError):
            decode_bthome(data, mac=mac, key=other)


@given(
    mac=_macs,
    temperature=st.integers(-6000, 12500).map(lambda n: round(n * 0.01, 2)),
    humidity=_centi_humidity,
    battery=_battery,
    battery_voltage=_millivolts,
    counter=st.integers(0, 255),
    flags=st.integers(0, 255),
)
def test_pvvx_round_trip(
    *,
    mac: str,
    temperature: float,
    humidity: float,
    battery: int,
    battery_voltage: float,
    counter: int,
    flags: int,
) -> None:
    data = encode_pvvx(
        mac=mac,
        temperature=temperature,
        humidity=humidity,
        battery=battery,
        battery_voltage=battery_voltage,
        counter=counter,
        flags=flags,
    )
    decoded = decode({ENVIRONMENTAL_SENSING_UUID: data}, mac=mac)
    assert decoded.format == "pvvx"
    assert decoded.values == {
        "temperature": temperature,
        "humidity": humidity,
        "battery": battery,
        "battery_voltage": battery_voltage,
    }
    assert (decoded.packet_id, decoded.mac) == (counter, mac)


@given(
    mac=_macs,
    temperature=st.integers(-600, 1250).map(lambda n: round(n * 0.1, 1)),
    humidity=st.integers(0, 100),
    battery=_battery,
    battery_voltage=_millivolts,
    counter=st.integers(0, 255),
)
def test_atc1441_round_trip(
    *,
    mac: str,
    temperature: float,
    humidity: int,
    battery: int,
    battery_voltage: float,
    counter: int,
) -> None:
    data = encode_atc1441(
        mac=mac,
        temperature=temperature,
        humidity=humidity,
        battery=battery,
        battery_voltage=battery_voltage,
        counter=counter,
    )
    decoded = decode({ENVIRONMENTAL_SENSING_UUID: data}, mac=mac)
    assert decoded.format == "atc1441"
    assert decoded.values == {
        "temperature": temperature,
        "humidity": humidity,
        "battery": battery,
        "battery_voltage": battery_voltage,
    }
    assert (decoded.packet_id, decoded.mac) == (counter, mac)


@given(st.binary(max_size=40))
def test_arbitrary_bytes_decode_or_raise_format_error(data: bytes) -> None:
    for service_data in ({BTHOME_UUID: data}, {ENVIRONMENTAL_SENSING_UUID: data}):
        try:
            decoded = decode(service_data, mac="A4:C1:38:00:00:01")
        except FormatError:
            continue
        for point, value in decoded.values.items():
            assert point in {"temperature", "humidity", "battery", "battery_voltage"}
            assert isinstance(value, int | float)


def test_encoding_checks_its_input() -> None:
    with pytest.raises(ValueError, match="no point"):
        encode_bthome({"pressure": 1000.0})
    with pytest.raises(ValueError, match="mac"):
        encode_bthome({"temperature": 20.0}, key=KEY)
    with pytest.raises(ValueError, match="mac"):
        encode_bthome({"temperature": 20.0}, include_mac=True)
