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

from typing import TYPE_CHECKING

from agent.core.lazy import lazy_exports

if TYPE_CHECKING:
    from drivers.ble.backend import Advert, BleakBackend, FakeBackend, ScannerBackend
    from drivers.ble.errors import (
        AdapterError,
        BleError,
        DecryptionError,
        FormatError,
        KeyFileError,
    )
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

# Imported on first use: the registry imports `drivers.ble.spec` (and with it this package) for
# every site config, and a site without BLE needs neither the scanner boundary nor all formats.
_WHERE = {
    "Advert": "drivers.ble.backend",
    "BleakBackend": "drivers.ble.backend",
    "FakeBackend": "drivers.ble.backend",
    "ScannerBackend": "drivers.ble.backend",
    "AdapterError": "drivers.ble.errors",
    "BleError": "drivers.ble.errors",
    "DecryptionError": "drivers.ble.errors",
    "FormatError": "drivers.ble.errors",
    "KeyFileError": "drivers.ble.errors",
    "BTHOME_UUID": "drivers.ble.formats",
    "ENVIRONMENTAL_SENSING_UUID": "drivers.ble.formats",
    "Decoded": "drivers.ble.formats",
    "decode": "drivers.ble.formats",
    "decode_atc1441": "drivers.ble.formats",
    "decode_bthome": "drivers.ble.formats",
    "decode_pvvx": "drivers.ble.formats",
    "encode_atc1441": "drivers.ble.formats",
    "encode_bthome": "drivers.ble.formats",
    "encode_pvvx": "drivers.ble.formats",
    "normalise_mac": "drivers.ble.formats",
    "service_data_from_ad": "drivers.ble.formats",
}

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

__getattr__ = lazy_exports(__name__, _WHERE)
