"""The advert formats of BLE room sensors: pure parsers and encoders, no I/O.

A sensor's reading arrives as the *service data* of a BLE advertisement (AD type 0x16, "Service
Data - 16-bit UUID", Bluetooth Core Specification Supplement part A 1.11): the UUID, then the
format's bytes. bleak hands it over as ``{"0000fcd2-0000-1000-8000-00805f9b34fb": b"..."}`` with
the UUID already stripped; `service_data_from_ad` gets the same from raw advertising bytes.

Three formats, all sent by the pvvx firmware for LYWSD03MMC-class thermometers (selectable on the
sensor; github.com/pvvx/ATC_MiThermometer README, "Bluetooth Advertising Formats"):

- **BTHome v2** (UUID 0xFCD2; bthome.io/format, bthome.io/encryption). The first byte is the
  device information: bit 0 encrypted, bit 1 the sender's MAC follows (for senders with a random
  address; read as bthome-ble 3.x reads it), bit 2 trigger-based, bits 5-7 the version (2). Then
  ``object id, value`` pairs, little-endian, ordered by id; a receiver stops at the first id it
  does not know, because its length is unknown. Encrypted adverts are AES-CCM with a 16-byte key
  and a 4-byte tag; the nonce is MAC (6 bytes, as written) + UUID (D2 FC) + device information
  byte + the 4-byte counter, and the payload ends with the counter and the tag.
- **pvvx custom** (UUID 0x181A, 15 bytes, little-endian; pvvx README "Custom format"): MAC
  (reversed), temperature int16 x0.01 °C, humidity uint16 x0.01 %, battery mV uint16, battery
  %, measurement counter, flags. Legacy: pvvx firmware 6.0 and later sends BTHome only (README
  changelog, 6.0).
- **atc1441** (UUID 0x181A, 13 bytes, big-endian; github.com/atc1441/ATC_MiThermometer README,
  "Advertising format of the custom firmware"): MAC (as written), temperature int16 x0.1 °C,
  humidity %, battery %, battery mV, frame counter. Legacy as well.

A captured advert sometimes keeps the UUID in front of the 0x181A payload (``1A 18`` + 15 or
13 bytes, i.e. 17 or 15 bytes): both forms are read. Whatever cannot be read, or reads outside
what the quantity can physically be, raises `FormatError`; a wrong number is never returned.
Encrypted BTHome needs ``cryptography`` (imported only when a key is used).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from drivers.ble.errors import DecryptionError, FormatError

if TYPE_CHECKING:  # imported at run time only when a key is used (see _cipher)
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

__all__ = [
    "BTHOME_UUID",
    "BTHOME_UUID16",
    "ENVIRONMENTAL_SENSING_UUID",
    "ENVIRONMENTAL_SENSING_UUID16",
    "FORMATS",
    "KEY_LENGTH",
    "Decoded",
    "FormatChoice",
    "FormatName",
    "bthome_carried_mac",
    "decode",
    "decode_atc1441",
    "decode_bthome",
    "decode_pvvx",
    "encode_atc1441",
    "encode_bthome",
    "encode_pvvx",
    "find_service_data",
    "normalise_mac",
    "service_data_from_ad",
    "uuid128",
]

FormatName = Literal["bthome", "pvvx", "atc1441"]
FormatChoice = Literal["auto", "bthome", "pvvx", "atc1441"]
FORMATS: Final[tuple[FormatName, ...]] = ("bthome", "pvvx", "atc1441")

BTHOME_UUID16: Final = 0xFCD2
ENVIRONMENTAL_SENSING_UUID16: Final = 0x181A  # the GATT service UUID pvvx and atc1441 reuse
KEY_LENGTH: Final = 16  # AES-128


def uuid128(uuid16: int) -> str:
    """The 128-bit form of a 16-bit UUID, as bleak writes service data keys."""
    return f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"


BTHOME_UUID: Final = uuid128(BTHOME_UUID16)
ENVIRONMENTAL_SENSING_UUID: Final = uuid128(ENVIRONMENTAL_SENSING_UUID16)

# What a room sensor's quantity can physically be; a value outside is garbage, not a reading.
# (The SHTC3 of the LYWSD03MMC measures -40..125 °C; the battery is a coin cell or two AAAs.)
PLAUSIBLE: Final[dict[str, tuple[float, float]]] = {
    "temperature": (-60.0, 125.0),
    "humidity": (0.0, 100.0),
    "battery": (0.0, 100.0),
    "battery_voltage": (0.0, 6.0),
}


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded advert: its values by point name, and what tells one packet from the next.

    ``values`` uses the agent's point names: ``temperature`` (°C), ``humidity`` (%),
    ``battery`` (%), ``battery_voltage`` (V); a format that lacks one leaves it out.
    ``packet_id`` identifies the measurement (BTHome object 0x00, else the encryption counter;
    the pvvx and atc1441 counters): a repeat of the same measurement has the same id.
    """

    format: FormatName
    values: dict[str, float | int] = field(default_factory=dict)
    packet_id: int | None = None
    counter: int | None = None  # BTHome encryption counter
    mac: str | None = None  # the MAC the payload carries (pvvx, atc1441, BTHome with bit 1)
    encrypted: bool = False
    trigger: bool = False  # BTHome: sent on an event rather than at a regular interval
    stopped_at: int | None = None  # BTHome: the object id where reading stopped (its length
    # unknown: an id this parser does not know, or a command with reserved bits set)


# ---- MACs and service data -------------------------------------------------------------------


def normalise_mac(text: str) -> str:
    """``AA:BB:CC:DD:EE:FF`` from any case, with ``:`` or ``-`` between the six bytes."""
    parts = text.strip().replace("-", ":").split(":")
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise ValueError(f"{text!r} is not a MAC address; write it as AA:BB:CC:DD:EE:FF")
    return ":".join(parts).upper()


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(normalise_mac(mac).replace(":", ""))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in raw)


def find_service_data(service_data: Mapping[str, bytes], uuid16: int) -> bytes | None:
    """The service data of ``uuid16``, keyed the bleak way (128-bit, lower case) or short
    (``fcd2``, ``0xFCD2``)."""
    wanted = (uuid128(uuid16), f"{uuid16:04x}", f"0x{uuid16:04x}")
    for key, value in service_data.items():
        if key.lower() in wanted:
            return bytes(value)
    return None


def service_data_from_ad(raw: bytes) -> dict[str, bytes]:
    """The 16-bit-UUID service data in raw advertising bytes (``len type data...`` structures,
    as on the air or in an HCI dump), keyed as bleak keys it."""
    found: dict[str, bytes] = {}
    i = 0
    while i < len(raw):
        length = raw[i]
        if length == 0:  # padding to the end of a fixed-size advertising PDU
            break
        end = i + 1 + length
        if end > len(raw):
            raise FormatError("advert", f"structure at byte {i} runs past the end", raw)
        if raw[i + 1] == 0x16:  # Service Data - 16-bit UUID
            if length < 3:
                raise FormatError("advert", f"service data at byte {i} has no UUID", raw)
            uuid16 = int.from_bytes(raw[i + 2 : i + 4], "little")
            found[uuid128(uuid16)] = bytes(raw[i + 4 : end])
        i = end
    return found


def _check_plausible(fmt: FormatName, values: Mapping[str, float | int], raw: bytes) -> None:
    for point, value in values.items():
        low, high = PLAUSIBLE[point]
        if not low <= value <= high:
            raise FormatError(fmt, f"{point} {value} is outside {low:g}..{high:g}", raw)


def _check_sender(fmt: FormatName, carried: str, mac: str | None, raw: bytes) -> None:
    if mac is not None and normalise_mac(mac) != carried:
        raise FormatError(fmt, f"the payload carries MAC {carried}, the advert is from {mac}", raw)


# ---- BTHome v2 -------------------------------------------------------------------------------

_VARIABLE: Final = -1  # a length byte follows the id (text, raw), then that many bytes
# bthome.io/format, "Commands" (0x3B, an event): a length byte whose low 5 bits count the
# arguments and whose top 3 are reserved (0), then the opcode, then the arguments.
_COMMAND: Final = -2
_COMMAND_RESERVED: Final = 0xE0

# Every object id of bthome.io/format with the size of its value in bytes: needed to step over
# objects this driver does not use without losing the ones after them (bthome-ble's MEAS_TYPES
# holds the same ids; tests/test_ble_vs_bthome.py checks every one). 0x3B (command) and 0x65
# (settings revision, uint8: the sender's settings changed) are the newest ids of the format.
# 0xF0-0xF2 are the device-information objects (type id, firmware version), always last.
_SIZES: Final[dict[int, int]] = {
    0x00: 1, 0x01: 1, 0x02: 2, 0x03: 2, 0x04: 3, 0x05: 3, 0x06: 2, 0x07: 2,
    0x08: 2, 0x09: 1, 0x0A: 3, 0x0B: 3, 0x0C: 2, 0x0D: 2, 0x0E: 2,
    **dict.fromkeys(range(0x0F, 0x12), 1),  # binary sensors
    0x12: 2, 0x13: 2, 0x14: 2,
    **dict.fromkeys(range(0x15, 0x30), 1),  # binary sensors, 1-byte humidity and moisture
    0x3A: 1, 0x3B: _COMMAND, 0x3C: 2, 0x3D: 2, 0x3E: 4, 0x3F: 2, 0x40: 2, 0x41: 2, 0x42: 3,
    0x43: 2, 0x44: 2, 0x45: 2, 0x46: 1, 0x47: 2, 0x48: 2, 0x49: 2, 0x4A: 2,
    0x4B: 3, 0x4C: 4, 0x4D: 4, 0x4E: 4, 0x4F: 4, 0x50: 4, 0x51: 2, 0x52: 2,
    0x53: _VARIABLE, 0x54: _VARIABLE, 0x55: 4, 0x56: 2, 0x57: 1, 0x58: 1, 0x59: 1,
    0x5A: 2, 0x5B: 4, 0x5C: 4, 0x5D: 2, 0x5E: 2, 0x5F: 2, 0x60: 1, 0x61: 2,
    0x62: 4, 0x63: 4, 0x64: 1, 0x65: 1,
    0xF0: 2, 0xF1: 4, 0xF2: 3,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Measure:
    point: str
    signed: bool
    scale: float  # value = raw x scale, rounded to ``places`` decimals
    places: int


# The objects that carry this driver's points (bthome.io/format). The first of a point wins
# when a sensor sends it twice (e.g. two probes).
_MEASURES: Final[dict[int, _Measure]] = {
    0x01: _Measure("battery", False, 1, 0),
    0x02: _Measure("temperature", True, 0.01, 2),
    0x03: _Measure("humidity", False, 0.01, 2),
    0x0C: _Measure("battery_voltage", False, 0.001, 3),  # "voltage": the battery on these sensors
    0x2E: _Measure("humidity", False, 1, 0),
    0x45: _Measure("temperature", True, 0.1, 1),
    0x57: _Measure("temperature", True, 1, 0),
    0x58: _Measure("temperature", True, 0.35, 2),
}
_PACKET_ID: Final = 0x00

_ENCRYPTED: Final = 0x01
_MAC_INCLUDED: Final = 0x02
_TRIGGER: Final = 0x04
_VERSION_2: Final = 2 << 5
_TAG_LENGTH: Final = 4
_COUNTER_LENGTH: Final = 4


def _nonce(mac: str, info: int, counter: bytes) -> bytes:
    return _mac_bytes(mac) + BTHOME_UUID16.to_bytes(2, "little") + bytes([info]) + counter


def _cipher(key: bytes) -> AESCCM:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"a BTHome key is {KEY_LENGTH} bytes, not {len(key)}")
    # Imported here: only sensors with a key pay for cryptography (about 35 ms on import).
    from cryptography.hazmat.primitives.ciphers import aead

    return aead.AESCCM(key, tag_length=_TAG_LENGTH)


def _decrypt(key: bytes, nonce: bytes, sealed: bytes, raw: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        return _cipher(key).decrypt(nonce, sealed, None)
    except InvalidTag:
        raise DecryptionError(
            "the key does not fit (the message integrity check failed)", raw
        ) from None


def bthome_carried_mac(service_data: Mapping[str, bytes]) -> str | None:
    """The MAC a BTHome advert carries in its payload (device information bit 1), or None."""
    data = find_service_data(service_data, BTHOME_UUID16)
    if data is None or len(data) < 7 or not data[0] & _MAC_INCLUDED:
        return None
    return _mac_text(data[1:7][::-1])


def decode_bthome(data: bytes, *, mac: str | None = None, key: bytes | None = None) -> Decoded:
    """A BTHome v2 service data payload (after the UUID). ``mac`` is the sender's address (the
    nonce of an encrypted advert needs it unless the payload carries it); with a ``key`` only
    encrypted adverts are accepted."""
    raw = bytes(data)
    if not raw:
        raise FormatError("bthome", "empty service data")
    info = raw[0]
    if info >> 5 != 2:
        raise FormatError(
            "bthome",
            f"device information {info:02X}h says version {info >> 5}; only version 2 is known",
            raw,
        )
    body = raw[1:]
    carried: str | None = None
    if info & _MAC_INCLUDED:
        if len(body) < 6:
            raise FormatError("bthome", "too short for the MAC it says it carries", raw)
        carried = _mac_text(body[:6][::-1])
        body = body[6:]
    counter: int | None = None
    encrypted = bool(info & _ENCRYPTED)
    if encrypted:
        if key is None:
            raise DecryptionError("the advert is encrypted and the sensor has no key_file", raw)
        if len(body) < _COUNTER_LENGTH + _TAG_LENGTH + 1:
            raise FormatError("bthome", "too short for an encrypted advert", raw)
        sender = carried if carried is not None else mac
        if sender is None:
            raise FormatError("bthome", "decrypting needs the sender's MAC (the nonce holds it)")
        counter_bytes = body[-_TAG_LENGTH - _COUNTER_LENGTH : -_TAG_LENGTH]
        sealed = body[: -_TAG_LENGTH - _COUNTER_LENGTH] + body[-_TAG_LENGTH:]
        body = _decrypt(key, _nonce(sender, info, counter_bytes), sealed, raw)
        counter = int.from_bytes(counter_bytes, "little")
    elif key is not None:
        raise DecryptionError(
            "a plain advert from a sensor that has a key is refused (it may be forged)", raw
        )
    values, packet_id, stopped_at = _objects(body, raw)
    _check_plausible("bthome", values, raw)
    return Decoded(
        format="bthome",
        values=values,
        packet_id=packet_id if packet_id is not None else counter,
        counter=counter,
        mac=carried,
        encrypted=encrypted,
        trigger=bool(info & _TRIGGER),
        stopped_at=stopped_at,
    )


def _objects(body: bytes, raw: bytes) -> tuple[dict[str, float | int], int | None, int | None]:
    values: dict[str, float | int] = {}
    packet_id: int | None = None
    i = 0
    while i < len(body):
        object_id = body[i]
        size = _SIZES.get(object_id)
        if size is None:
            return values, packet_id, object_id  # its length is unknown: nothing after is safe
        start = i + 1
        if size < 0:  # _VARIABLE or _COMMAND: a length byte follows the id
            if start >= len(body):
                raise FormatError("bthome", f"object {object_id:02X}h lacks its length", raw)
            length = body[start]
            start += 1
            if size == _VARIABLE:
                size = length
            elif length & _COMMAND_RESERVED:  # a later format may give them a meaning
                return values, packet_id, object_id  # and the length they mean is unknown
            else:
                size = 1 + length  # the opcode, then the arguments
        end = start + size
        if end > len(body):
            raise FormatError(
                "bthome",
                f"object {object_id:02X}h needs {size} bytes, {len(body) - start} are left",
                raw,
            )
        chunk = body[start:end]
        if object_id == _PACKET_ID:
            packet_id = chunk[0] if packet_id is None else packet_id
        elif (measure := _MEASURES.get(object_id)) is not None and measure.point not in values:
            number = int.from_bytes(chunk, "little", signed=measure.signed)
            values[measure.point] = (
                round(number * measure.scale, measure.places) if measure.places else number
            )
        i = end
    return values, packet_id, None


# The object each point is encoded as (the finest resolution one).
_ENCODE_AS: Final[dict[str, tuple[int, int, bool, int]]] = {
    # point: (object id, bytes, signed, multiplier)
    "battery": (0x01, 1, False, 1),
    "temperature": (0x02, 2, True, 100),
    "humidity": (0x03, 2, False, 100),
    "battery_voltage": (0x0C, 2, False, 1000),
}


def encode_bthome(
    values: Mapping[str, float | int],
    *,
    packet_id: int | None = None,
    trigger: bool = False,
    key: bytes | None = None,
    mac: str | None = None,
    counter: int = 0,
    include_mac: bool = False,
) -> bytes:
    """BTHome v2 service data (after the UUID) for ``values`` (the four points of `Decoded`),
    encrypted when a ``key`` is given (then ``mac`` is needed for the nonce). For simulated
    sensors, the demo and round-trip tests."""
    unknown = set(values) - set(_ENCODE_AS)
    if unknown:
        raise ValueError(f"BTHome encoding knows no point {', '.join(sorted(unknown))}")
    body = bytearray()
    if packet_id is not None:
        body += bytes([_PACKET_ID]) + packet_id.to_bytes(1, "little")
    for point, (object_id, size, signed, multiplier) in sorted(
        _ENCODE_AS.items(), key=lambda item: item[1][0]
    ):
        if point in values:
            number = round(values[point] * multiplier)
            body += bytes([object_id]) + number.to_bytes(size, "little", signed=signed)
    info = _VERSION_2 | (_TRIGGER if trigger else 0) | (_MAC_INCLUDED if include_mac else 0)
    prefix = b""
    if include_mac:
        if mac is None:
            raise ValueError("include_mac needs the mac")
        prefix = _mac_bytes(mac)[::-1]
    if key is None:
        return bytes([info]) + prefix + bytes(body)
    if mac is None:
        raise ValueError("encrypting needs the sender's mac (the nonce holds it)")
    info |= _ENCRYPTED
    counter_bytes = counter.to_bytes(_COUNTER_LENGTH, "little")
    sealed = _cipher(key).encrypt(_nonce(mac, info, counter_bytes), bytes(body), None)
    return bytes([info]) + prefix + sealed[:-_TAG_LENGTH] + counter_bytes + sealed[-_TAG_LENGTH:]


# ---- pvvx custom and atc1441 (UUID 0x181A) ---------------------------------------------------

_PVVX = struct.Struct("<6shHHBBB")  # MAC reversed, t x0.01, rh x0.01, mV, %, counter, flags
_ATC1441 = struct.Struct(">6shBBHB")  # MAC, t x0.1, rh %, battery %, mV, counter
_UUID_PREFIX: Final = ENVIRONMENTAL_SENSING_UUID16.to_bytes(2, "little")


def _without_uuid(data: bytes, size: int) -> bytes:
    """The payload, from either form: as bleak gives it, or with the UUID still in front."""
    if len(data) == size + 2 and data.startswith(_UUID_PREFIX):
        return data[2:]
    return data


def decode_pvvx(data: bytes, *, mac: str | None = None) -> Decoded:
    """A pvvx custom-format payload (UUID 0x181A, 15 bytes)."""
    raw = bytes(data)
    body = _without_uuid(raw, _PVVX.size)
    if len(body) != _PVVX.size:
        raise FormatError("pvvx", f"{len(body)} bytes; the custom format has {_PVVX.size}", raw)
    mac_reversed, temp, humidity, millivolts, battery, count, _flags = _PVVX.unpack(body)
    carried = _mac_text(mac_reversed[::-1])
    _check_sender("pvvx", carried, mac, raw)
    values: dict[str, float | int] = {
        "temperature": round(temp * 0.01, 2),
        "humidity": round(humidity * 0.01, 2),
        "battery": battery,
        "battery_voltage": round(millivolts * 0.001, 3),
    }
    _check_plausible("pvvx", values, raw)
    return Decoded(format="pvvx", values=values, packet_id=count, mac=carried)


def decode_atc1441(data: bytes, *, mac: str | None = None) -> Decoded:
    """An atc1441-format payload (UUID 0x181A, 13 bytes)."""
    raw = bytes(data)
    body = _without_uuid(raw, _ATC1441.size)
    if len(body) != _ATC1441.size:
        raise FormatError("atc1441", f"{len(body)} bytes; the format has {_ATC1441.size}", raw)
    mac_raw, temp, humidity, battery, millivolts, count = _ATC1441.unpack(body)
    carried = _mac_text(mac_raw)
    _check_sender("atc1441", carried, mac, raw)
    values: dict[str, float | int] = {
        "temperature": round(temp * 0.1, 1),
        "humidity": humidity,
        "battery": battery,
        "battery_voltage": round(millivolts * 0.001, 3),
    }
    _check_plausible("atc1441", values, raw)
    return Decoded(format="atc1441", values=values, packet_id=count, mac=carried)


def encode_pvvx(
    *,
    mac: str,
    temperature: float,
    humidity: float,
    battery: int,
    battery_voltage: float,
    counter: int,
    flags: int = 0,
) -> bytes:
    """A pvvx custom-format payload (after the UUID)."""
    return _PVVX.pack(
        _mac_bytes(mac)[::-1],
        round(temperature * 100),
        round(humidity * 100),
        round(battery_voltage * 1000),
        battery,
        counter,
        flags,
    )


def encode_atc1441(
    *,
    mac: str,
    temperature: float,
    humidity: int,
    battery: int,
    battery_voltage: float,
    counter: int,
) -> bytes:
    """An atc1441-format payload (after the UUID)."""
    return _ATC1441.pack(
        _mac_bytes(mac),
        round(temperature * 10),
        humidity,
        battery,
        round(battery_voltage * 1000),
        counter,
    )


# ---- one entry point -------------------------------------------------------------------------


def decode(
    service_data: Mapping[str, bytes],
    *,
    mac: str | None = None,
    fmt: FormatChoice = "auto",
    key: bytes | None = None,
) -> Decoded:
    """The reading in an advert's service data, in format ``fmt`` (``auto``: BTHome when the
    advert has UUID 0xFCD2, else pvvx or atc1441 by the length of the 0x181A payload). With a
    ``key``, only encrypted BTHome is accepted."""
    bthome = find_service_data(service_data, BTHOME_UUID16)
    if fmt in ("auto", "bthome") and bthome is not None:
        return decode_bthome(bthome, mac=mac, key=key)
    if key is not None:
        raise DecryptionError("the sensor has a key, and the advert is not encrypted BTHome")
    legacy = find_service_data(service_data, ENVIRONMENTAL_SENSING_UUID16)
    if legacy is not None:
        if fmt == "pvvx":
            return decode_pvvx(legacy, mac=mac)
        if fmt == "atc1441":
            return decode_atc1441(legacy, mac=mac)
        if fmt == "auto":
            if len(_without_uuid(legacy, _PVVX.size)) == _PVVX.size:
                return decode_pvvx(legacy, mac=mac)
            if len(_without_uuid(legacy, _ATC1441.size)) == _ATC1441.size:
                return decode_atc1441(legacy, mac=mac)
            raise FormatError(
                "auto",
                f"a 0x181A payload of {len(legacy)} bytes is neither pvvx ({_PVVX.size}) "
                f"nor atc1441 ({_ATC1441.size})",
                legacy,
            )
    wanted = "0xFCD2 (BTHome)" if fmt == "bthome" else "0x181A"
    if fmt == "auto":
        wanted = "0xFCD2 (BTHome) or 0x181A (pvvx, atc1441)"
    raise FormatError(fmt, f"the advert has no service data for {wanted}")
