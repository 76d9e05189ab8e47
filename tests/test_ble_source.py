"""BLE sensors as push sources, through the driver, with the package's FakeBackend and a
virtual clock (time moves only when the test says; no wall clock, no real waits), plus the bleak
backend against a stand-in for bleak's scanner, the scan for commissioning and the config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from pydantic import ValidationError

from agent.core.backoff import Backoff
from agent.core.clock import VirtualClock as CoreVirtualClock
from agent.core.links import BleAdapterConfig, Link, SerialLinkConfig
from agent.core.record import Quality, Reading
from agent.core.source import PushDriver
from drivers.ble.backend import Advert, BleakBackend, FakeBackend
from drivers.ble.driver import DRIVER, BleDriver
from drivers.ble.errors import AdapterError, BleError, KeyFileError
from drivers.ble.formats import BTHOME_UUID, ENVIRONMENTAL_SENSING_UUID, encode_bthome, encode_pvvx
from drivers.ble.scan import scan
from drivers.ble.source import ADAPTER_KEY, BleAdapterSource, BleSensor
from drivers.ble.spec import BleSensorConfig, read_key_file

MAC_A = "A4:C1:38:00:00:0A"
MAC_B = "A4:C1:38:00:00:0B"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
START_MS = 1_785_000_000_000  # a fixed moment: nothing here reads the machine's clock


async def _settle() -> None:
    """Let every task that is ready run until it waits again."""
    for _ in range(30):
        await asyncio.sleep(0)


def VirtualClock(start_ms: int = START_MS) -> CoreVirtualClock:
    """The core's virtual clock at this file's fixed moment, settling fully on each wake."""
    return CoreVirtualClock(datetime.fromtimestamp(start_ms / 1000, UTC), yields=30)


class _NoState:
    async def load(self) -> str | None:
        return None

    async def save(self, value: str) -> None:
        pass


class Collector:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.batches = 0

    async def __call__(self, readings: Sequence[Reading]) -> None:
        self.batches += 1
        self.readings.extend(readings)

    def of(self, device: str, point: str | None = None) -> list[Reading]:
        return [
            r for r in self.readings if r.device == device and (point is None or r.point == point)
        ]

    def clear(self) -> None:
        self.readings.clear()


def _config(name: str, mac: str = MAC_A, **options: Any) -> BleSensorConfig:
    return BleSensorConfig.model_validate(
        {"protocol": "ble", "name": name, "bus": "office_ble", "mac": mac, **options}
    )


@contextlib.asynccontextmanager
async def _opened(
    configs: Sequence[BleSensorConfig],
    clock: VirtualClock,
    fake: FakeBackend,
    *,
    backoff: Backoff | None = None,
) -> AsyncIterator[list[BleSensor]]:
    """The sensors opened through the driver on one adapter link, as the service opens them."""
    driver = BleDriver(backend_factory=lambda _config: fake)
    link_config = BleAdapterConfig(kind="ble", adapter="hci0")
    async with Link("office_ble", link_config) as link, contextlib.AsyncExitStack() as stack:
        if backoff is not None:  # a deterministic backoff for the adapter of this link
            link.shared(
                ADAPTER_KEY, lambda: BleAdapterSource(link.name, fake, clock=clock, backoff=backoff)
            )
        sensors = []
        for config in configs:
            source = await stack.enter_async_context(
                driver.open_source(config, link=link, state=_NoState(), clock=clock)
            )
            assert isinstance(source, BleSensor)
            sensors.append(source)
        yield sensors


@contextlib.asynccontextmanager
async def _running(
    sensors: Sequence[BleSensor], sink: Collector
) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    tasks = {s.name: asyncio.create_task(s.run(sink), name=f"test[{s.name}]") for s in sensors}
    await _settle()
    try:
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for result in results:
            assert result is None or isinstance(result, asyncio.CancelledError), result


def _advertise(
    fake: FakeBackend,
    mac: str,
    packet: int,
    temperature: float,
    *,
    humidity: float = 45.0,
    battery: int = 90,
    rssi: int = -60,
) -> None:
    values = {"temperature": temperature, "humidity": humidity, "battery": battery}
    fake.advertise(mac, {BTHOME_UUID: encode_bthome(values, packet_id=packet)}, rssi=rssi)


def _log_lines(caplog: pytest.LogCaptureFixture, words: str, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name.startswith("drivers.ble") and words in r.getMessage()
    ]


async def _every_2_5_s(
    clock: VirtualClock, fake: FakeBackend, adverts: int, *, first: int = 0, macs: Sequence[str]
) -> None:
    """Adverts every 2.5 s (the pvvx default) from each MAC; a new measurement every 4th
    advert (every 10 s), temperature 20.0 + 0.1 per measurement, RSSI -60, -61, -62, ..."""
    for k in range(first, first + adverts):
        for mac in macs:
            _advertise(fake, mac, packet=k // 4 % 256, temperature=20 + k // 4 * 0.1,
                       rssi=-60 - k % 3)  # fmt: skip
        await clock.advance(2.5)


# ---- cadence, aggregation, dedupe ------------------------------------------------------------


async def test_one_reading_per_point_per_interval_latest() -> None:
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    async with (
        _opened([_config("room_301", MAC_A, interval="60s")], clock, fake) as [sensor],
        _running([sensor], sink),
    ):
        await clock.advance(1.0)  # adverts at 1, 3.5, ... 118.5 s; intervals end at 60 and 120
        await _every_2_5_s(clock, fake, 48, macs=[MAC_A])
        assert sink.batches == 2
        first, second = sink.readings[:4], sink.readings[4:]
        assert [r.point for r in first] == ["temperature", "humidity", "battery", "rssi"]
        assert [r.unit for r in first] == ["degC", "%", "%", "dBm"]
        assert all(r.quality is Quality.GOOD and r.device == "room_301" for r in sink.readings)
        # the latest advert of each interval: k = 23 (measurement 5) and k = 47 (measurement 11)
        assert [r.value for r in first] == [20.5, 45.0, 90, -62]
        assert [r.value for r in second] == [21.1, 45.0, 90, -62]
        # stamped by the clock when the interval ended
        assert {r.ts_ms for r in first} == {START_MS + 60_000}
        assert {r.ts_ms for r in second} == {START_MS + 120_000}
        assert sensor.points["temperature"].interval == 60.0


async def test_mean_over_the_interval_counts_each_measurement_once() -> None:
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    config = _config("room_301", MAC_A, interval="60s", aggregate="mean")
    async with _opened([config], clock, fake) as [sensor], _running([sensor], sink):
        await clock.advance(1.0)
        await _every_2_5_s(clock, fake, 24, macs=[MAC_A])
        await clock.advance(0.5)  # past the end of the first interval
        values = {r.point: r.value for r in sink.readings}
        # measurements 0..5 (each advertised 4 times): 20.0 .. 20.5, mean 20.25
        assert values["temperature"] == 20.25
        assert values["humidity"] == 45.0
        # every reception counts for the signal: 8 x (-60, -61, -62) -> -61
        assert values["rssi"] == -61.0
        assert sensor.duplicates == 18
        assert sensor.adverts == 24


async def test_a_repeated_packet_id_is_dropped() -> None:
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    config = _config("room_301", MAC_A, interval="60s", aggregate="mean")
    async with _opened([config], clock, fake) as [sensor], _running([sensor], sink):
        _advertise(fake, MAC_A, packet=7, temperature=21.0)
        await clock.advance(1)
        _advertise(fake, MAC_A, packet=7, temperature=99.0)  # same packet: not a measurement
        await clock.advance(1)
        _advertise(fake, MAC_A, packet=8, temperature=23.0)
        await clock.advance(60)
        assert [r.value for r in sink.of("room_301", "temperature")] == [22.0]
        assert sensor.duplicates == 1


async def test_legacy_pvvx_adverts_and_other_devices() -> None:
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    async with (
        _opened([_config("room_302", MAC_B)], clock, fake) as [sensor],
        _running([sensor], sink),
    ):
        payload = encode_pvvx(mac=MAC_B, temperature=22.47, humidity=51.2, battery=77,
                              battery_voltage=2.95, counter=3)  # fmt: skip
        fake.advertise(MAC_B, {ENVIRONMENTAL_SENSING_UUID: payload}, rssi=-71)
        fake.advertise("11:22:33:44:55:66", {BTHOME_UUID: encode_bthome({"temperature": 5.0})})
        await clock.advance(60)
        assert {r.point: r.value for r in sink.readings} == {
            "temperature": 22.47,
            "humidity": 51.2,
            "battery": 77,
            "rssi": -71,
        }
        assert sensor.adapter.ignored == 1


async def test_undecodable_adverts_are_logged_once_and_do_not_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    async with (
        _opened([_config("room_301", MAC_A)], clock, fake) as [sensor],
        _running([sensor], sink),
    ):
        for _ in range(3):
            fake.advertise(MAC_A, {BTHOME_UUID: bytes.fromhex("40 02 CA")})  # truncated
            await clock.advance(2.5)
        _advertise(fake, MAC_A, packet=1, temperature=21.5)
        await clock.advance(60)
        assert sensor.bad_adverts == 3
        assert len(_log_lines(caplog, "cannot read its adverts", logging.WARNING)) == 1
        assert len(_log_lines(caplog, "can be read again", logging.INFO)) == 1
        assert [r.value for r in sink.of("room_301", "temperature")] == [21.5]


async def test_encrypted_sensor_with_its_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "room_303.key"
    key_file.write_text(KEY.hex() + "\n")
    key_file.chmod(0o600)
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    config = _config("room_303", MAC_A, key_file=str(key_file))
    async with _opened([config], clock, fake) as [sensor], _running([sensor], sink):
        sealed = encode_bthome({"temperature": 19.5, "humidity": 40.0}, key=KEY, mac=MAC_A,
                               counter=41)  # fmt: skip
        fake.advertise(MAC_A, {BTHOME_UUID: sealed})
        fake.advertise(MAC_A, {BTHOME_UUID: sealed})  # a replay of the same counter
        fake.advertise(MAC_A, {BTHOME_UUID: encode_bthome({"temperature": 40.0}, packet_id=1)})
        await clock.advance(60)
        assert {r.point: r.value for r in sink.readings if r.point != "rssi"} == {
            "temperature": 19.5,
            "humidity": 40.0,
        }
        assert (sensor.duplicates, sensor.bad_adverts) == (1, 1)  # the plain one is refused


# ---- stale sensors ---------------------------------------------------------------------------


async def test_a_silent_sensor_goes_stale_once_and_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    config = _config("room_301", MAC_A, interval="60s", timeout="3m")
    async with _opened([config], clock, fake) as [sensor], _running([sensor], sink):
        _advertise(fake, MAC_A, packet=1, temperature=21.0)
        await clock.advance(60)  # one good interval
        assert len(sink.readings) == 4
        sink.clear()
        await clock.advance(600)  # silent for ten minutes
        stale = sink.readings
        assert [r.point for r in stale] == ["temperature", "humidity", "battery", "rssi"]
        assert all(r.quality is Quality.STALE and r.value is None for r in stale)
        assert {r.ts_ms for r in stale} == {START_MS + 180_000}  # first tick 3 min after heard
        assert sensor.is_stale
        assert len(_log_lines(caplog, "stale", logging.WARNING)) == 1
        sink.clear()
        _advertise(fake, MAC_A, packet=2, temperature=22.0)
        await clock.advance(0.5)
        assert not sensor.is_stale
        assert len(_log_lines(caplog, "heard again", logging.INFO)) == 1
        await clock.advance(60)
        assert (sink.readings[0].point, sink.readings[0].quality) == ("temperature", Quality.GOOD)
        assert sink.of("room_301", "temperature")[0].value == 22.0


async def test_a_sensor_never_heard_goes_stale_after_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    config = _config("room_301", MAC_A, interval="60s", timeout="2m")
    async with _opened([config], clock, fake) as [sensor], _running([sensor], sink):
        await clock.advance(119)
        assert sink.readings == []
        await clock.advance(1)
        assert len(sink.readings) == 4
        assert "never heard" in _log_lines(caplog, "stale", logging.WARNING)[0]
        await clock.advance(600)
        assert len(sink.readings) == 4  # one stale reading per point, not one per interval
        assert sensor.is_stale


# ---- one scan per adapter, adapter loss ------------------------------------------------------


async def test_one_scan_serves_every_sensor_of_the_adapter() -> None:
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    configs = [_config("room_301", MAC_A), _config("room_302", MAC_B)]
    async with _opened(configs, clock, fake) as sensors, _running(sensors, sink) as tasks:
        assert sensors[0].adapter is sensors[1].adapter
        assert fake.opens == 1
        assert sensors[0].adapter.leader is sensors[0]
        await _every_2_5_s(clock, fake, 24, macs=[MAC_A, MAC_B])
        assert {r.device for r in sink.readings} == {"room_301", "room_302"}
        # the leading sensor stops: the other takes the scan over
        tasks["room_301"].cancel()
        await _settle()
        assert sensors[0].adapter.leader is sensors[1]
        assert fake.opens == 2
        assert fake.is_scanning
        sink.clear()
        await _every_2_5_s(clock, fake, 24, first=24, macs=[MAC_A, MAC_B])
        assert {r.device for r in sink.readings} == {"room_302"}
    assert not fake.is_scanning


async def test_adapter_loss_is_survived_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    backoff = Backoff(initial=1.0, cap=8.0, jitter=0.5, rand=lambda: 1.0)  # 1, 2, 4, 8, 8 ...
    configs = [_config("room_301", MAC_A), _config("room_302", MAC_B)]
    async with _opened(configs, clock, fake, backoff=backoff) as sensors, _running(sensors, sink):
        adapter = sensors[0].adapter
        await _every_2_5_s(clock, fake, 24, macs=[MAC_A, MAC_B])
        assert adapter.is_up is True
        fake.lose("hci0 was unplugged")
        await clock.advance(0.1)
        assert adapter.is_up is False
        assert adapter.last_error == "hci0 was unplugged"
        await clock.advance(40)  # retries at 1, 3, 7, 15, 23, 31, 39 s after the loss
        assert fake.failed_opens == 7
        assert backoff.ceiling == 8.0  # capped
        fake.restore()
        await clock.advance(8)
        assert adapter.is_up is True
        assert fake.opens == 2
        assert backoff.attempts == 0  # reset by the success
        sink.clear()
        await _every_2_5_s(clock, fake, 24, first=24, macs=[MAC_A, MAC_B])
        assert {r.device for r in sink.readings if r.quality is Quality.GOOD} == {
            "room_301",
            "room_302",
        }
    assert len(_log_lines(caplog, "is unavailable: hci0 was unplugged", logging.WARNING)) == 1
    assert len(_log_lines(caplog, "is back", logging.INFO)) == 1


async def test_an_adapter_missing_at_start_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    clock, fake, sink = VirtualClock(), FakeBackend(), Collector()
    fake.lose("no Bluetooth adapter hci0")
    backoff = Backoff(initial=1.0, cap=60.0, jitter=0.0)
    async with (
        _opened([_config("room_301", MAC_A)], clock, fake, backoff=backoff) as [sensor],
        _running([sensor], sink),
    ):
        await clock.advance(30)
        assert sensor.adapter.is_up is False
        fake.restore()
        await clock.advance(32)
        assert sensor.adapter.is_up is True
        _advertise(fake, MAC_A, packet=1, temperature=21.0)
        await clock.advance(60)
        assert sink.of("room_301", "temperature")[0].value == 21.0
    assert len(_log_lines(caplog, "unavailable", logging.WARNING)) == 1


# ---- the driver ------------------------------------------------------------------------------


async def test_the_driver_refuses_a_sensor_on_a_serial_line() -> None:
    clock = VirtualClock()
    line = SerialLinkConfig(kind="serial", port="/dev/ttyUSB0")
    async with Link("floor1", line) as link:
        with pytest.raises(BleError, match="not a Bluetooth adapter"):
            async with DRIVER.open_source(
                _config("room_301", MAC_A), link=link, state=_NoState(), clock=clock
            ):
                pass


async def test_two_sensors_with_one_mac_are_refused() -> None:
    with pytest.raises(BleError, match="both have MAC"):
        async with _opened(
            [_config("room_301", MAC_A), _config("room_302", MAC_A.lower())],
            VirtualClock(),
            FakeBackend(),
        ):
            pass


def test_the_registry_driver_scans_with_bleak() -> None:
    driver: PushDriver = DRIVER  # mypy checks the driver against the push-driver protocol
    assert driver.protocol == "ble"
    backend = DRIVER.backend_factory(BleAdapterConfig(kind="ble", adapter="hci1", passive=False))
    assert isinstance(backend, BleakBackend)
    assert (backend.adapter, backend.mode) == ("hci1", "active")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("231d39c1d7cc1ab1aee224cd096db9", "not 30"),
        ("zz1d39c1d7cc1ab1aee224cd096db932", "hex digits only"),
    ],
)
def test_bad_key_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "k"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=problem) as raised:
        read_key_file(path)
    assert text not in str(raised.value)  # a key is never echoed
    with pytest.raises(KeyFileError, match="No such file"):
        read_key_file(tmp_path / "missing")


def test_key_file_forms_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("23:1d:39:c1:d7:cc:1a:b1 ae:e2:24:cd:09:6d:b9:32\n")
    path.chmod(0o644)
    key, warning = read_key_file(path)
    assert key == KEY
    assert warning is not None
    assert "chmod 600" in warning
    path.chmod(0o600)
    assert read_key_file(path) == (KEY, None)


# ---- config ----------------------------------------------------------------------------------


def test_config_defaults_and_units() -> None:
    config = _config("room_301", "a4-c1-38-00-00-0a")
    assert config.mac == MAC_A
    assert (config.format, config.interval, config.timeout, config.aggregate) == (
        "auto",
        60.0,
        600.0,
        "latest",
    )
    assert config.point_units() == {
        "temperature": "degC",
        "humidity": "%",
        "battery": "%",
        "rssi": "dBm",
    }


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"mac": "A4:C1:38:00:00"}, "not a MAC"),
        ({"format": "xiaomi"}, "format"),
        ({"format": "pvvx", "key_file": "/etc/k"}, "key_file is for encrypted BTHome"),
        ({"interval": "5m", "timeout": "5m"}, "must be longer than interval"),
        ({"aggregate": "median"}, "aggregate"),
        ({"interval": "0s"}, "interval"),
        ({"bindkey": "00"}, "bindkey"),
    ],
)
def test_config_errors(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        _config("room_301", **{"mac": MAC_A, **options})


# ---- commissioning scan ----------------------------------------------------------------------


async def test_scan_lists_sensors_loudest_first() -> None:
    clock, fake = VirtualClock(), FakeBackend()
    task = asyncio.create_task(scan(fake, seconds=10, clock=clock))
    async with asyncio.timeout(5):
        await fake.wait_scanning()
    _advertise(fake, MAC_A, packet=1, temperature=21.3, rssi=-80)
    sealed = encode_bthome({"temperature": 19.5}, key=KEY, mac=MAC_B, counter=1)
    fake.advertise(MAC_B, {BTHOME_UUID: sealed}, rssi=-50, local_name="ATC_00000B")
    fake.advertise("11:22:33:44:55:66", {"0000180f-0000-1000-8000-00805f9b34fb": b"\x64"})
    await clock.advance(2.5)
    _advertise(fake, MAC_A, packet=2, temperature=21.4, rssi=-70)
    await clock.advance(10)
    rows = await task
    assert [row.mac for row in rows] == [MAC_B, MAC_A]
    encrypted, plain = rows
    assert (encrypted.format, encrypted.encrypted, encrypted.values) == ("bthome", True, {})
    assert encrypted.problem is not None
    assert "key_file" in encrypted.problem
    assert (plain.format, plain.rssi, plain.adverts) == ("bthome", -70, 2)
    assert plain.values["temperature"] == 21.4
    found = plain.to_found()
    assert found.address == MAC_A
    assert "temperature 21.4 degC" in found.detail
    assert not fake.is_scanning


async def test_scan_without_an_adapter_says_so() -> None:
    fake = FakeBackend()
    fake.lose("no Bluetooth adapter hci0")
    with pytest.raises(AdapterError, match="no Bluetooth adapter"):
        await scan(fake, seconds=1, clock=VirtualClock())
    clock = VirtualClock()
    fake.restore()
    task = asyncio.create_task(scan(fake, seconds=10, clock=clock))
    await _settle()
    fake.lose("hci0 was unplugged")
    with pytest.raises(AdapterError, match="unplugged"):
        await task


# ---- the bleak backend against a stand-in for bleak's scanner --------------------------------


class StandInRadio:
    """Plays bleak's BleakScanner for BleakBackend: passive and active scanning each work or
    fail as told, with bleak's own error for passive scanning without BlueZ experimental."""

    def __init__(self, *, passive_works: bool = True, active_works: bool = True) -> None:
        self.passive_works = passive_works
        self.active_works = active_works
        self.scanners: list[StandInScanner] = []
        self.started = asyncio.Event()

    def __call__(self, **kwargs: Any) -> StandInScanner:
        scanner = StandInScanner(self, **kwargs)
        self.scanners.append(scanner)
        return scanner

    @property
    def running(self) -> list[StandInScanner]:
        return [s for s in self.scanners if s.running]


class StandInScanner:
    def __init__(
        self,
        radio: StandInRadio,
        *,
        detection_callback: Callable[[BLEDevice, AdvertisementData], None],
        scanning_mode: Literal["active", "passive"],
        bluez: dict[str, Any],
    ) -> None:
        self.radio = radio
        self.callback = detection_callback
        self.mode = scanning_mode
        self.bluez = bluez
        self.running = False

    async def start(self) -> None:
        if self.mode == "passive" and not self.radio.passive_works:
            raise BleakError(
                "passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled "
                "and Linux kernel >= 5.10"
            )
        if not self.radio.active_works:
            raise BleakError(f"adapter '{self.bluez['adapter']}' not found")
        self.running = True
        self.radio.started.set()

    async def stop(self) -> None:
        self.running = False

    def hear(self, mac: str, service_data: dict[str, bytes], rssi: int) -> None:
        data = AdvertisementData(
            local_name=None,
            manufacturer_data={},
            service_data=service_data,
            service_uuids=[],
            tx_power=None,
            rssi=rssi,
            platform_data=(),
        )
        self.callback(BLEDevice(mac, None, None), data)


async def _next(adverts: AsyncIterator[Advert]) -> Advert:
    async with asyncio.timeout(5):
        return await anext(adverts)


async def test_bleak_backend_scans_passively_for_our_uuids() -> None:
    radio = StandInRadio()
    backend = BleakBackend("hci1", passive=True, scanner_factory=radio)
    async with backend.scanning() as adverts:
        [scanner] = radio.running
        assert scanner.mode == "passive"
        assert scanner.bluez["adapter"] == "hci1"
        patterns = {bytes(p[2]) for p in scanner.bluez["or_patterns"]}
        assert patterns == {b"\xd2\xfc", b"\x1a\x18"}
        scanner.hear("a4:c1:38:00:00:0a", {BTHOME_UUID: b"\x40\x02\xca\x09"}, -67)
        advert = await _next(adverts)
        assert advert == Advert(MAC_A, -67, {BTHOME_UUID: b"\x40\x02\xca\x09"}, None)
    assert radio.running == []


async def test_bleak_backend_falls_back_to_active_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.ble")
    radio = StandInRadio(passive_works=False)
    backend = BleakBackend("hci0", passive=True, scanner_factory=radio)
    for _ in range(2):
        async with backend.scanning():
            assert [s.mode for s in radio.running] == ["active"]
    assert backend.mode == "active"
    assert backend.passive_unavailable is not None
    assert "experimental" in backend.passive_unavailable
    assert len(_log_lines(caplog, "scanning actively instead", logging.WARNING)) == 1
    assert [s.mode for s in radio.scanners] == ["passive", "active", "active"]


async def test_bleak_backend_without_an_adapter_raises_adapter_error() -> None:
    radio = StandInRadio(passive_works=False, active_works=False)
    backend = BleakBackend("hci9", passive=True, scanner_factory=radio)
    with pytest.raises(AdapterError, match="adapter 'hci9' not found"):
        async with backend.scanning():
            pass
    assert backend.passive_unavailable is None  # the adapter was the problem, not passive mode
    assert backend.mode == "passive"


async def test_bleak_backend_restarts_a_quiet_scan_and_reports_a_lost_adapter() -> None:
    radio = StandInRadio()
    backend = BleakBackend("hci0", passive=False, watchdog=0.02, scanner_factory=radio)
    async with backend.scanning() as adverts:
        reader = asyncio.create_task(_next(adverts))
        async with asyncio.timeout(5):  # nothing heard: restarted every 20 ms
            while backend.restarts < 2:
                radio.started.clear()
                await radio.started.wait()
        assert len(radio.running) == 1
        radio.running[0].hear(MAC_B, {}, -70)
        assert (await reader).mac == MAC_B
        radio.active_works = False  # the dongle is pulled: the next restart fails
        with pytest.raises(AdapterError, match="not found"):
            await _next(adverts)
    assert radio.running == []
