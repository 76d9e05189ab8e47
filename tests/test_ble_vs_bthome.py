"""Our BTHome v2 parser against bthome-ble's own decoding (a test-only dependency).

`drivers.ble.formats` is a small parser of our own (issue 11: bthome-ble's dependency tree costs
a gateway more memory and start-up than it saves; bench/bench_ble_stack.py measures it). Here
both parsers read the same adverts, and every value ours reports must be the one bthome-ble
(github.com/Bluetooth-Devices/bthome-ble, ``BTHomeBluetoothDeviceData``) reports:

- a few hundred adverts from a seeded generator, plain and encrypted (AES-CCM built here with
  ``cryptography`` from bthome.io/encryption, not with our encoder), with the objects ours reads
  (packet id, battery, temperature at four resolutions, humidity at two, voltage) among filler
  objects of every other id both parsers know, sized by bthome-ble's own table; the MAC in the
  payload or not, the trigger bit or not;
- the real adverts of tests/test_ble_formats.py (from bthome-ble's tests and bthome.io).

One known difference, not ours: bthome-ble rounds a value to as many decimals as the exponent
of its factor has (``parse_int``: 1 for the factor 0.35 of object 0x58), so it reports 0.35 °C
steps to 0.1 °C; ours keeps the exact multiple. For 0x58 the two must agree to 0.05 °C.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import pytest
from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from bthome_ble.const import MEAS_TYPES
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from habluetooth import BluetoothServiceInfoBleak

from drivers.ble.formats import BTHOME_UUID, Decoded, decode_bthome

KEY: Final = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")  # bthome.io/encryption's example


@dataclass(frozen=True)
class Measured:
    """An object our parser reads: its point and the raw range a real sensor sends."""

    point: str
    low: int
    high: int
    exact: bool = True  # False: bthome-ble rounds it coarser (see the module's docstring)


# bthome.io/format; the raw ranges keep each quantity physically plausible (ours refuses others).
MEASURED: Final[dict[int, Measured]] = {
    0x01: Measured("battery", 0, 100),
    0x02: Measured("temperature", -6000, 12500),  # 0.01 °C
    0x03: Measured("humidity", 0, 10000),  # 0.01 %
    0x0C: Measured("battery_voltage", 0, 6000),  # 0.001 V
    0x2E: Measured("humidity", 0, 100),  # 1 %
    0x45: Measured("temperature", -600, 1250),  # 0.1 °C
    0x57: Measured("temperature", -60, 125),  # 1 °C
    0x58: Measured("temperature", -128, 127, exact=False),  # 0.35 °C
}
PACKET_ID: Final = 0x00
# bthome-ble's sensor key for each of our points
KEYS: Final = {
    "temperature": "temperature",
    "humidity": "humidity",
    "battery": "battery",
    "battery_voltage": "voltage",
}
_VARIABLE_FORMATS: Final = ("raw", "string", "command")


def _sensor_key(object_id: int) -> str | None:
    device_class = getattr(MEAS_TYPES[object_id].meas_format, "device_class", None)
    return None if device_class is None else str(device_class)


# The newest ids of bthome.io/format (command, settings revision): ours stopped reading
# at them until it learned their sizes (see the last test).
NEWEST_IDS: Final = (0x3B, 0x65)
# Filler: every id both know that carries none of our points. A voltage at 0.1 V (0x4A) is left
# out: bthome-ble files it under the same key as 0x0C, which ours alone reads.
FILLER: Final = sorted(
    i
    for i in MEAS_TYPES
    if i not in MEASURED and i != PACKET_ID and _sensor_key(i) not in KEYS.values()
)


def _object(object_id: int, rng: random.Random) -> bytes:
    """``object_id`` and a value for it, its length from bthome-ble's table."""
    meas = MEAS_TYPES[object_id]
    if object_id in MEASURED:
        measured = MEASURED[object_id]
        number = rng.randint(measured.low, measured.high)
        return bytes([object_id]) + number.to_bytes(
            meas.data_length, "little", signed=meas.data_format == "signed_integer"
        )
    if meas.data_format == "command":  # a length byte (low 5 bits: argument bytes), an opcode
        size = rng.randint(0, 4)
        return bytes([object_id, size]) + rng.randbytes(1 + size)
    if meas.data_format in _VARIABLE_FORMATS:
        size = rng.randint(1, 6)
        text = "".join(rng.choices("abcxyz 019", k=size)).encode()  # UTF-8, as a string must be
        return bytes([object_id, size]) + (
            text if meas.data_format == "string" else rng.randbytes(size)
        )
    return bytes([object_id]) + rng.randbytes(meas.data_length)


def _mac(rng: random.Random) -> str:
    return ":".join(f"{b:02X}" for b in rng.randbytes(6))


@dataclass(frozen=True)
class Advert:
    data: bytes  # service data after the UUID
    address: str  # the sender's address as the radio sees it
    key: bytes | None
    ids: tuple[int, ...] = ()  # the object ids inside, in order (generated adverts)


def _seal(info: int, nonce_mac: str, body: bytes, counter: int) -> bytes:
    """AES-CCM per bthome.io/encryption: nonce = MAC + UUID (D2 FC) + info + counter; the
    payload ends with the counter and the 4-byte tag."""
    counter_bytes = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(nonce_mac.replace(":", "")) + b"\xd2\xfc" + bytes([info]) + counter_bytes
    sealed = AESCCM(KEY, tag_length=4).encrypt(nonce, body, None)
    return sealed[:-4] + counter_bytes + sealed[-4:]


def generated(count: int, seed: int) -> list[Advert]:
    rng = random.Random(seed)
    adverts = []
    for _ in range(count):
        ids = rng.sample(sorted(MEASURED), rng.randint(1, 4))
        ids += rng.sample(FILLER, rng.randint(0, 4))
        if rng.random() < 0.2 and (added := rng.choice(NEWEST_IDS)) not in ids:
            ids.append(added)  # more often than their share of the filler: they are new
        if rng.random() < 0.7:
            ids.append(PACKET_ID)
        body = b"".join(
            bytes([i, rng.randrange(256)]) if i == PACKET_ID else _object(i, rng)
            for i in sorted(ids)  # bthome.io/format: objects in the order of their ids
        )
        encrypted = rng.random() < 0.5
        include_mac = rng.random() < 0.3
        info = 0x40 | encrypted | include_mac << 1 | (rng.random() < 0.2) << 2
        address = _mac(rng)
        carried = _mac(rng) if include_mac else address
        prefix = bytes.fromhex(carried.replace(":", ""))[::-1] if include_mac else b""
        if encrypted:
            body = _seal(info, carried, body, rng.randrange(2**32))
        adverts.append(
            Advert(
                bytes([info]) + prefix + body,
                address,
                KEY if encrypted else None,
                tuple(sorted(ids)),
            )
        )
    return adverts


# The BTHome adverts of tests/test_ble_formats.py (from bthome-ble's tests and bthome.io).
REAL: Final = [
    Advert(bytes.fromhex(h), mac, key)
    for h, mac, key in [
        ("40 02 CA 09 03 BF 13", "A4:C1:38:8D:18:B2", None),
        ("40 00 09 01 5d 02 5d 09 03 b7 18", "A4:C1:38:8D:18:B2", None),
        ("40 01 5d fe 5d 09 03 b7 18", "A4:C1:38:8D:18:B2", None),
        ("40 0c 02 0c", "A4:C1:38:8D:18:B2", None),
        ("40 04 13 8a 01 45 e1 00", "A4:C1:38:8D:18:B2", None),
        ("40 2e 34 53 03 61 62 63 57 f6", "A4:C1:38:8D:18:B2", None),
        ("42 b2 18 8d 38 c1 a4 04 13 8a 01", "A4:C1:38:8D:18:B2", None),
        ("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", "54:48:E6:8F:80:A5", KEY),
        ("43 a5 80 8f e6 48 54 f1 96 c0 6f fb 49 00 11 22 33 f0 8e cb de",
         "11:22:33:44:55:66", KEY),
    ]
]  # fmt: skip


@dataclass(frozen=True)
class Reference:
    """What bthome-ble made of an advert."""

    values: dict[str, object]  # its sensor keys (temperature, temperature_1, ...) and values
    encryption_counter: float


def bthome_ble(advert: Advert) -> Reference:
    parser = BTHomeBluetoothDeviceData(bindkey=advert.key)  # a new sensor: no repeat is skipped
    info = BluetoothServiceInfoBleak(
        name="BTHome sensor",
        address=advert.address,
        rssi=-60,
        manufacturer_data={},
        service_data={BTHOME_UUID: advert.data},
        service_uuids=[BTHOME_UUID],
        source="local",
        device=BLEDevice(advert.address, None, None),
        advertisement=None,
        connectable=False,
        time=0.0,  # bthome-ble compares reception times only between adverts of one sensor
        tx_power=None,
    )
    update = parser.update(info)
    values = {k.key: v.native_value for k, v in update.entity_values.items()}
    return Reference(values, parser.encryption_counter)


def _first(values: Mapping[str, object], key: str) -> object:
    """bthome-ble's value for ``key``: ``key_1`` when the advert has it twice (the first)."""
    return values.get(key, values.get(f"{key}_1"))


def _exact(advert: Advert, point: str) -> bool:
    """Whether bthome-ble reports ``point`` exactly: the first object of it is not 0x58."""
    first = next((i for i in advert.ids if i in MEASURED and MEASURED[i].point == point), None)
    return first is None or MEASURED[first].exact


def assert_same(advert: Advert) -> Decoded:
    ours = decode_bthome(advert.data, mac=advert.address, key=advert.key)
    ref = bthome_ble(advert)
    where = f"advert {advert.data.hex(' ')} from {advert.address}"
    theirs = {
        point: value
        for point, key in KEYS.items()
        if (value := _first(ref.values, key)) is not None
    }
    assert set(ours.values) == set(theirs), where
    for point, value in ours.values.items():
        if _exact(advert, point):
            assert value == theirs[point], f"{point}: {where}"
        else:  # 0x58: bthome-ble rounds 0.35 °C steps to 0.1 °C
            assert value == pytest.approx(theirs[point], abs=0.05 + 1e-9), f"{point}: {where}"
    if "packet_id" in ref.values:
        assert ours.packet_id == ref.values["packet_id"], where
    else:  # no packet id object: ours tells packets apart by the encryption counter
        assert ours.packet_id == ours.counter, where
    if ours.encrypted:
        assert ours.counter == ref.encryption_counter, where
    return ours


GENERATED: Final = generated(400, seed=11)


def test_generated_adverts_decode_as_bthome_ble_decodes_them() -> None:
    decoded = [assert_same(advert) for advert in GENERATED]
    # the generator reached what it meant to: both kinds, the MAC inside, every object ours reads
    assert sum(d.encrypted for d in decoded) > 150
    assert sum(d.mac is not None for d in decoded) > 80
    firsts = Counter(
        next(i for i in advert.ids if i in MEASURED and MEASURED[i].point == point)
        for advert, d in zip(GENERATED, decoded, strict=True)
        for point in d.values
    )
    assert set(firsts) == set(MEASURED)
    assert min(firsts.values()) >= 10, firsts
    # the new ids came up, the command one before objects ours reads (0x45, 0x57, 0x58)
    assert set(NEWEST_IDS) <= set(FILLER)
    for object_id in NEWEST_IDS:
        assert sum(object_id in advert.ids for advert in GENERATED) >= 10, f"{object_id:02X}h"
    read_after_command = sum(
        0x3B in advert.ids and any(i > 0x3B for i in advert.ids if i in MEASURED)
        for advert in GENERATED
    )
    assert read_after_command >= 10


@pytest.mark.parametrize("advert", REAL, ids=lambda a: a.data.hex())
def test_real_adverts_decode_as_bthome_ble_decodes_them(advert: Advert) -> None:
    assert_same(advert)


@pytest.mark.parametrize(
    "object_id",
    sorted(i for i in MEAS_TYPES if i not in MEASURED and i != PACKET_ID),
    ids=lambda i: f"{i:02X}h",
)
def test_every_object_bthome_ble_knows_is_stepped_over_by_its_size(object_id: int) -> None:
    # the object, then a 0.1 °C temperature: read right only if ours knows the object's size
    # (all ids, not only the filler: a size our table lacks loses what follows)
    rng = random.Random(object_id)
    advert = Advert(b"\x40" + _object(object_id, rng) + bytes.fromhex("45 e1 00"), _mac(rng), None)
    ours = decode_bthome(advert.data)
    assert (ours.stopped_at, ours.values) == (None, {"temperature": 22.5})
    assert _first(bthome_ble(advert).values, "temperature") == 22.5
    if object_id in FILLER:
        assert_same(advert)


# bthome.io/format's own example of a command ("3B 01 03 05": argument length 1, opcode 03
# step up, argument 5 steps), a toggle without arguments (opcode 02), settings revision 7 and 42,
# each before the temperature and humidity of bthome-ble's ATC_8D18B2 test vector. A sender
# should order its objects by id (bthome-ble warns when not, and reads on, as ours does); the
# last advert is in order, the 0.1 °C temperature after the command. (Read as "a length byte,
# then that many bytes", the first would leave 05 to pass for an object id.)
BEFORE_VALUES: Final = [
    ("40 3B 01 03 05 65 07 02 CA 09 03 BF 13", {"temperature": 25.06, "humidity": 50.55}),
    ("40 65 2A 3B 00 02 02 CA 09 03 BF 13", {"temperature": 25.06, "humidity": 50.55}),
    ("40 00 09 2E 34 3B 01 03 05 45 E1 00 65 07", {"humidity": 52, "temperature": 22.5}),
]


@pytest.mark.parametrize(("hexdata", "values"), BEFORE_VALUES, ids=[h for h, _ in BEFORE_VALUES])
def test_command_and_settings_revision_do_not_stop_the_reading(
    hexdata: str, values: dict[str, float]
) -> None:
    # ours stopped at 0x3B and 0x65 (their sizes unknown) and lost every value after them
    advert = Advert(bytes.fromhex(hexdata), "A4:C1:38:8D:18:B2", None)
    ours = assert_same(advert)
    assert ours.stopped_at is None
    assert ours.values == values
