"""BLE room sensors as push sources: one scanner per adapter, one `PushSource` per sensor.

**One scan per adapter, started by the sensors.** Every sensor on a ``kind: ble`` link shares
that link's `BleAdapterSource` (``link.shared(ADAPTER_KEY, ...)``), which routes each advert to
the sensor with the advert's MAC. The scan has no task of its own outside the supervisor: each
sensor's ``run(sink)`` calls ``adapter.serve(sensor)``; the first to arrive *leads* and runs the
scan in its own task, the others wait, and when the leader's run ends (its sensor removed, or
the service stopping) a waiting one takes over and reopens the scan. So the scan runs while at
least one sensor runs, inside the supervisor's task group (a bug in it still crashes the service
loudly), and never twice on one adapter.

**Per sensor.** An advert from the sensor's MAC is decoded (`drivers.ble.formats`; the format
configured or detected). A repeat of a measurement (same packet id or counter as the one before;
sensors advertise every 2.5 s and measure every 10-20 s) adds nothing but its RSSI. Each point
keeps the latest value, or all of them for the mean, over the sensor's ``interval``; at the end
of each interval the sensor hands one reading per point that has a value to its sink, stamped by
the clock at that moment: temperature, humidity, battery and rssi (the signal strength of the
adverts heard, in dBm). A sensor not heard for ``timeout`` becomes stale: one reading of quality
STALE (value None) per point, one warning, and ``is_stale``; when it is heard again, one info
line and good readings from the next interval on. Adverts that cannot be decoded (garbled, a key
that does not fit) are counted, logged once when they start and once when decoding works again,
and do not count as hearing the sensor.

**The adapter.** When the backend raises `AdapterError` (on opening or mid-scan), the scan is
reopened after a capped, jittered backoff (`agent.core.backoff.Backoff`); the loss is logged
once, the return once. ``serve`` never raises for the adapter's sake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import MappingProxyType

from agent.core.backoff import Backoff
from agent.core.clock import Clock
from agent.core.record import Quality, Reading
from agent.core.source import PointInfo, Sink
from drivers.ble.backend import Advert, ScannerBackend
from drivers.ble.errors import AdapterError, BleError, FormatError
from drivers.ble.formats import Decoded, bthome_carried_mac, decode
from drivers.ble.spec import BleSensorConfig

__all__ = ["ADAPTER_KEY", "BleAdapterSource", "BleSensor"]

log = logging.getLogger(__name__)

ADAPTER_KEY = "ble"
"""The key of the adapter source among a link's shared resources."""

RETRY_INITIAL = 1.0  # seconds before the first reopening of a lost adapter
RETRY_CAP = 60.0  # the longest wait between reopenings

_MEASURED = ("temperature", "humidity", "battery")
_MEAN_PLACES = {"temperature": 2, "humidity": 2, "battery": 1, "rssi": 1}


class _Window:
    """One point's values over the current interval: the latest, and what the mean needs."""

    __slots__ = ("count", "latest", "total")

    def __init__(self, value: float) -> None:
        self.latest = value
        self.total = float(value)
        self.count = 1

    def add(self, value: float) -> None:
        self.latest = value
        self.total += value
        self.count += 1


class BleAdapterSource:
    """The one scan of one Bluetooth adapter, shared by the sensors heard through it."""

    def __init__(
        self,
        name: str,
        backend: ScannerBackend,
        *,
        clock: Clock,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.backend = backend
        self._clock = clock
        # Jitter from the upper half: adapters do not come back in step, nor retry almost at once.
        self.backoff = backoff or Backoff(initial=RETRY_INITIAL, cap=RETRY_CAP, jitter=0.5)
        self._sensors: dict[str, BleSensor] = {}
        self._leader: BleSensor | None = None
        self._vacancy = asyncio.Event()
        self.is_up: bool | None = None
        """True while scanning, False while the adapter is unavailable, None before the first
        scan."""
        self.last_error: str | None = None
        self.adverts = 0  # adverts heard from configured sensors
        self.ignored = 0  # adverts from other devices
        self.scans = 0  # scans opened (the first, and every reopening)

    def __repr__(self) -> str:
        return f"BleAdapterSource({self.name!r}, {self.backend!r})"

    @property
    def where(self) -> str:
        return f"Bluetooth adapter {self.backend.adapter} (bus {self.name})"

    @property
    def sensors(self) -> Mapping[str, BleSensor]:
        """The registered sensors, by MAC."""
        return MappingProxyType(self._sensors)

    @property
    def leader(self) -> BleSensor | None:
        """The sensor whose task runs the scan now, if any."""
        return self._leader

    def register(self, sensor: BleSensor) -> None:
        other = self._sensors.get(sensor.mac)
        if other is not None and other is not sensor:
            raise BleError(f"sensors {other.name} and {sensor.name} both have MAC {sensor.mac}")
        self._sensors[sensor.mac] = sensor

    def unregister(self, sensor: BleSensor) -> None:
        if self._sensors.get(sensor.mac) is sensor:
            del self._sensors[sensor.mac]

    async def aclose(self) -> None:
        """Called when the link closes: the scan itself ends with its leader's task."""
        self._sensors.clear()

    async def serve(self, sensor: BleSensor) -> None:
        """Run the adapter's scan in this sensor's task while it leads; wait while another
        leads, and take over when that one stops. Returns only by cancellation."""
        while True:
            if self._leader is None:
                self._leader = sensor
                self._vacancy = asyncio.Event()
                try:
                    await self._scan_forever()
                finally:
                    self._leader = None
                    self._vacancy.set()
            else:
                await self._vacancy.wait()

    async def _scan_forever(self) -> None:
        while True:
            try:
                async with self.backend.scanning() as adverts:
                    self._up()
                    async for advert in adverts:
                        self.dispatch(advert)
                reason = "the scan ended"
            except AdapterError as exc:
                reason = exc.reason
            self._down(reason)
            delay = self.backoff.next_delay()
            log.debug("%s: reopening in %.1f s (try %d)", self.where, delay, self.backoff.attempts)
            await self._clock.sleep(delay)

    def _up(self) -> None:
        self.scans += 1
        self.backoff.reset()
        if self.is_up is False:
            log.info("%s is back: scanning again", self.where)
        elif self.is_up is None:
            log.info("%s: scanning for %d sensor(s)", self.where, len(self._sensors))
        self.is_up = True
        self.last_error = None

    def _down(self, reason: str) -> None:
        if self.is_up is not False:
            log.warning("%s is unavailable: %s; retrying with backoff", self.where, reason)
        self.is_up = False
        self.last_error = reason

    def dispatch(self, advert: Advert) -> None:
        """Hand an advert to its sensor (by the advert's MAC, or the MAC a BTHome payload
        carries for senders with a random address)."""
        sensor = self._sensors.get(advert.mac)
        if sensor is None:
            carried = bthome_carried_mac(advert.service_data)
            sensor = self._sensors.get(carried) if carried is not None else None
        if sensor is None:
            self.ignored += 1
            return
        self.adverts += 1
        sensor.hear(advert)


class BleSensor:
    """One BLE room sensor: a push source (agent.core.source.PushSource). No I/O of its own."""

    def __init__(
        self,
        config: BleSensorConfig,
        adapter: BleAdapterSource,
        *,
        clock: Clock,
        key: bytes | None = None,
    ) -> None:
        self.config = config
        self.adapter = adapter
        self._clock = clock
        self._key = key
        self._units = config.point_units()
        self._points: Mapping[str, PointInfo] = MappingProxyType(
            {p: PointInfo(unit=u, interval=config.interval) for p, u in self._units.items()}
        )
        self._window: dict[str, _Window] = {}
        self._latest: dict[str, tuple[float, float]] = {}  # point -> (value, monotonic time)
        self._running = False
        self._last_packet: int | None = None
        self._since: float | None = None
        self.last_heard: float | None = None
        """Monotonic time of the last decoded advert, or None."""
        self.last_decoded: Decoded | None = None
        self.last_rssi: int | None = None
        self.is_stale = False
        self.decoding: bool | None = None
        """Whether the last advert could be decoded (None before the first)."""
        self.last_problem: str | None = None
        self.adverts = 0  # adverts decoded
        self.duplicates = 0  # repeats of a measurement already counted
        self.bad_adverts = 0  # adverts that could not be decoded

    def __repr__(self) -> str:
        return f"BleSensor({self.name!r}, {self.mac})"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def mac(self) -> str:
        return self.config.mac

    @property
    def zone(self) -> str | None:
        return self.config.zone

    @property
    def points(self) -> Mapping[str, PointInfo]:
        return self._points

    @property
    def stale_after(self) -> float:
        """Seconds of silence after which the sensor's readings are stale (its ``timeout``)."""
        return self.config.timeout

    def latest(self, point: str) -> tuple[float, float] | None:
        """The latest measurement of ``point`` (temperature, humidity, battery) as ``(value,
        monotonic time it was heard)``, or None before the first: what an HVAC zone whose
        ``room_sensor`` this is reads, at once rather than at the end of the interval. The
        caller judges its age against `stale_after`."""
        return self._latest.get(point)

    async def run(self, sink: Sink) -> None:
        """Hand this sensor's readings to ``sink`` until cancelled (see the module docstring)."""
        self._since = self._clock.monotonic()
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    self.adapter.serve(self),
                    name=f"agent[ble:{self.adapter.name}].scan[{self.name}]",
                )
                group.create_task(self._emit_forever(sink), name=f"agent[ble:{self.name}].emit")
        finally:
            self._running = False
            self._window.clear()

    # ---- adverts in ---------------------------------------------------------------------------

    def hear(self, advert: Advert) -> None:
        """Take one advert from this sensor (called by the adapter source, on the loop)."""
        try:
            decoded = decode(
                advert.service_data, mac=advert.mac, fmt=self.config.format, key=self._key
            )
        except FormatError as exc:
            self.bad_adverts += 1
            self.last_problem = str(exc)
            if self.decoding is not False:
                log.warning("BLE sensor %s: cannot read its adverts: %s", self.name, exc)
            else:
                log.debug("BLE sensor %s: unreadable advert: %s", self.name, exc)
            self.decoding = False
            return
        if self.decoding is False:
            log.info("BLE sensor %s: its adverts can be read again", self.name)
        self.decoding = True
        self.last_problem = None
        heard = self.last_heard = self._clock.monotonic()
        if self.is_stale:
            self.is_stale = False
            log.info("BLE sensor %s is heard again", self.name)
        self.adverts += 1
        self.last_rssi = advert.rssi
        self._add("rssi", advert.rssi)  # every reception counts for the signal strength
        if decoded.packet_id is not None and decoded.packet_id == self._last_packet:
            self.duplicates += 1
            return
        self._last_packet = decoded.packet_id
        self.last_decoded = decoded
        for point in _MEASURED:
            value = decoded.values.get(point)
            if value is not None:
                self._latest[point] = (float(value), heard)
                self._add(point, value)

    def _add(self, point: str, value: float) -> None:
        if not self._running:  # opened but not run: nobody would take the values
            return
        window = self._window.get(point)
        if window is None:
            self._window[point] = _Window(value)
        else:
            window.add(value)

    # ---- readings out -------------------------------------------------------------------------

    async def _emit_forever(self, sink: Sink) -> None:
        interval = self.config.interval
        next_tick = self._clock.monotonic() + interval
        while True:
            await self._clock.sleep(max(0.0, next_tick - self._clock.monotonic()))
            now = self._clock.monotonic()
            while next_tick <= now:  # a late wake-up skips the ticks it missed
                next_tick += interval
            readings = self._take(now)
            if readings:
                await sink(readings)

    def _take(self, now: float) -> list[Reading]:
        """The readings of the interval that ends at monotonic time ``now``: one per point that
        has a value, or one stale reading per point when the sensor has just gone silent."""
        ts = self._clock.now_ms()
        heard = self.last_heard if self.last_heard is not None else self._since
        if not self.is_stale and heard is not None and now - heard >= self.config.timeout:
            self.is_stale = True
            self._window.clear()
            if self.last_heard is None:
                silence = "never heard"
            else:
                silence = f"silent for {now - self.last_heard:.0f} s"
            log.warning(
                "BLE sensor %s (%s) %s: its readings are stale", self.name, self.mac, silence
            )
            return [
                Reading(self.name, point, ts, None, unit, Quality.STALE)
                for point, unit in self._units.items()
            ]
        window, self._window = self._window, {}
        readings = []
        for point, unit in self._units.items():
            values = window.get(point)
            if values is None:
                continue
            value: float | int = values.latest
            if self.config.aggregate == "mean":
                value = round(values.total / values.count, _MEAN_PLACES[point])
            readings.append(Reading(self.name, point, ts, value, unit, Quality.GOOD))
        return readings
