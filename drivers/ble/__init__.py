"""BLE room sensors (LYWSD03MMC-class thermometers and other BTHome senders) as push sources.

- `drivers.ble.formats`: the advert formats (BTHome v2 plain and encrypted, pvvx custom,
  atc1441): pure parsers and encoders (stdlib; ``cryptography`` only for encrypted BTHome);
- `drivers.ble.backend`: the scanner boundary (`ScannerBackend`), bleak behind it
  (`BleakBackend`, imported lazily) and a fake for tests and the demo (`FakeBackend`);
- `drivers.ble.errors`: the error tree (`BleError` and its leaves);
- `drivers.ble.spec`: the sensor's config model (`BleSensorConfig`) and its key file;
- `drivers.ble.source`: one scan per adapter (`BleAdapterSource`), one push source per sensor
  (`BleSensor`): dedupe, latest or mean per interval, stale sensors, adapter backoff;
- `drivers.ble.driver`: `DRIVER` for the registry (``open_source``), `BleDriver` to inject a
  backend;
- `drivers.ble.scan`: which sensors are around (commissioning).

The package re-exports only the light, pure parts (formats, backend, errors), so a tool that
decodes adverts does not load pydantic; the driver, its config and its source are imported from
their modules, as the registry names them.
"""

from __future__ import annotations

from drivers.ble.backend import Advert, BleakBackend, FakeBackend, ScannerBackend
from drivers.ble.errors import AdapterError, BleError, DecryptionError, FormatError, KeyFileError
from drivers.ble.formats import (
    BTHOME_UUID,
    ENVIRONMENTAL_SENSING_UUID,
    Decoded,
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

__all__ = [
    "BTHOME_UUID",
    "ENVIRONMENTAL_SENSING_UUID",
    "AdapterError",
    "Advert",
    "BleError",
    "BleakBackend",
    "Decoded",
    "DecryptionError",
    "FakeBackend",
    "FormatError",
    "KeyFileError",
    "ScannerBackend",
    "decode",
    "decode_atc1441",
    "decode_bthome",
    "decode_pvvx",
    "encode_atc1441",
    "encode_bthome",
    "encode_pvvx",
    "normalise_mac",
    "service_data_from_ad",
]
