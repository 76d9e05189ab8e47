"""The scanner boundary: adverts in, whatever the radio.

A `ScannerBackend` opens a scan as an async context manager that yields an async iterator of
`Advert`s; leaving the context stops the scan. An adapter that fails raises `AdapterError`, on
opening or from the iterator; the caller (`drivers.ble.source`) reopens it with backoff.

- `BleakBackend` scans with bleak (BlueZ over D-Bus on the gateway). It asks for **passive**
  scanning (listen only: the sensors' batteries are not asked for scan responses, and the radio
  stays quiet), filtered in the controller by BlueZ advertisement-monitor "or patterns" on the
  two service data UUIDs we read; passive scanning needs BlueZ >= 5.56 started with
  ``--experimental`` and kernel >= 5.10 (bleak's BleakScanner documentation and its error text),
  so when it cannot start and active scanning can, the backend scans actively from then on and
  says why, once. bleak calls its detection callback on the event loop's thread with BlueZ; the
  callback still hands adverts over through ``loop.call_soon_threadsafe``, which is right on
  any backend. A scan that goes quiet for ``watchdog`` seconds is restarted (BlueZ discovery can
  stop without an error; Home Assistant's bluetooth integration restarts a scanner that has
  heard nothing for 90 s for the same reason); if the restart fails the adapter is gone.
- `FakeBackend` is the same seam without a radio, shipped in the package (as gpiozero ships
  `MockFactory`): the tests, the demo and `hil/` push adverts into it, and it can lose its
  adapter (on opening or mid-stream) and get it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from drivers.ble.errors import AdapterError
from drivers.ble.formats import BTHOME_UUID16, ENVIRONMENTAL_SENSING_UUID16, normalise_mac

if TYPE_CHECKING:
    from bleak.args.bluez import BlueZScannerArgs
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

__all__ = [
    "Advert",
    "BleakBackend",
    "FakeBackend",
    "ScannerBackend",
    "ScannerLike",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement heard: who sent it, how loud, and its service data (UUID -> bytes, the
    UUID stripped from the bytes, keyed as bleak keys it)."""

    mac: str
    rssi: int
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    local_name: str | None = None


class ScannerBackend(Protocol):
    """Where adverts come from. ``async with backend.scanning() as adverts: async for advert in
    adverts: ...``; reusable (one scan after another), not re-entrant."""

    @property
    def adapter(self) -> str:
        """The adapter's name, for messages (hci0)."""
        ...

    def scanning(self) -> AbstractAsyncContextManager[AsyncIterator[Advert]]:
        """Start a scan (raises `AdapterError` when it cannot); stopped on exit. The iterator
        raises `AdapterError` when the adapter is lost."""
        ...


class ScannerLike(Protocol):
    """The part of ``bleak.BleakScanner`` the backend uses (a stand-in can be injected)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ScannerFactory = Callable[..., ScannerLike]
"""Called as ``factory(detection_callback=, scanning_mode=, bluez=)``, like BleakScanner."""


class BleakBackend:
    """Scans one BlueZ adapter with bleak. Constructing it does no I/O."""

    def __init__(
        self,
        adapter: str = "hci0",
        *,
        passive: bool = True,
        watchdog: float = 90.0,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        queue_size: int = 1024,
        scanner_factory: ScannerFactory | None = None,
    ) -> None:
        self._adapter = adapter
        self.passive = passive
        self.watchdog = watchdog
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.queue_size = queue_size
        self._factory = scanner_factory
        self.passive_unavailable: str | None = None
        """Why passive scanning failed on this adapter (then it scans actively), or None."""
        self.dropped = 0  # adverts dropped because the consumer fell behind
        self.restarts = 0  # scans restarted by the watchdog

    @property
    def adapter(self) -> str:
        return self._adapter

    @property
    def mode(self) -> Literal["passive", "active"]:
        """The scanning mode the next scan starts in."""
        return "passive" if self.passive and self.passive_unavailable is None else "active"

    def __repr__(self) -> str:
        return f"BleakBackend({self._adapter!r}, mode={self.mode!r})"

    @contextlib.asynccontextmanager
    async def scanning(self) -> AsyncIterator[AsyncIterator[Advert]]:
        scan = _BleakScan(self, asyncio.get_running_loop())
        await scan.start()
        try:
            yield scan
        finally:
            await scan.stop()

    # ---- what _BleakScan asks of its backend --------------------------------------------------

    def _scanner(self, callback: Callable[[BLEDevice, AdvertisementData], None]) -> ScannerLike:
        factory = self._factory
        if factory is None:
            # Imported here: the agent loads bleak (about 70 ms) only when a BLE bus is used.
            from bleak import BleakScanner

            factory = BleakScanner
        bluez: BlueZScannerArgs = {"adapter": self._adapter}
        if self.mode == "passive":
            from bleak.args.bluez import OrPattern
            from bleak.assigned_numbers import AdvertisementDataType

            bluez["or_patterns"] = [
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, uuid.to_bytes(2, "little"))
                for uuid in (BTHOME_UUID16, ENVIRONMENTAL_SENSING_UUID16)
            ]
        return factory(detection_callback=callback, scanning_mode=self.mode, bluez=bluez)


def _library_errors() -> tuple[type[BaseException], ...]:
    """What bleak and D-Bus raise when the adapter or BlueZ is not there."""
    from bleak.exc import BleakError
    from dbus_fast.errors import DBusFastError

    return (BleakError, DBusFastError, OSError, TimeoutError, EOFError)


class _BleakScan:
    """One running scan: the scanner, the queue its callback fills, the watchdog."""

    def __init__(self, backend: BleakBackend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.queue: asyncio.Queue[Advert] = asyncio.Queue(maxsize=backend.queue_size)
        self.scanner: ScannerLike | None = None

    def _on_advert(self, device: BLEDevice, data: AdvertisementData) -> None:
        try:
            mac = normalise_mac(device.address)
        except ValueError:  # another platform's identifier (a UUID on macOS): not ours
            return
        advert = Advert(mac, data.rssi, dict(data.service_data), data.local_name)
        self.loop.call_soon_threadsafe(self._offer, advert)

    def _offer(self, advert: Advert) -> None:
        try:
            self.queue.put_nowait(advert)
        except asyncio.QueueFull:
            self.backend.dropped += 1

    async def _start_once(self) -> ScannerLike:
        scanner = self.backend._scanner(self._on_advert)
        async with asyncio.timeout(self.backend.start_timeout):
            await scanner.start()
        return scanner

    async def start(self) -> None:
        backend = self.backend
        errors = _library_errors()
        try:
            self.scanner = await self._start_once()
        except errors as exc:
            if backend.mode != "passive":
                raise AdapterError(backend.adapter, _reason(exc)) from exc
            passive_failure = _reason(exc)
            backend.passive_unavailable = passive_failure
            try:
                self.scanner = await self._start_once()
            except errors as active_exc:
                # Active fails too: the adapter is the problem, not passive scanning.
                backend.passive_unavailable = None
                raise AdapterError(backend.adapter, _reason(active_exc)) from active_exc
            log.warning(
                "passive BLE scanning is unavailable on %s (%s): scanning actively instead",
                backend.adapter,
                passive_failure,
            )

    async def stop(self) -> None:
        scanner, self.scanner = self.scanner, None
        if scanner is None:
            return
        # Shielded and time-limited: a cancelled task still stops the scan, but never hangs on it.
        with contextlib.suppress(*_library_errors()):
            async with asyncio.timeout(self.backend.stop_timeout):
                await asyncio.shield(scanner.stop())

    def __aiter__(self) -> _BleakScan:
        return self

    async def __anext__(self) -> Advert:
        while True:
            try:
                async with asyncio.timeout(self.backend.watchdog):
                    return await self.queue.get()
            except TimeoutError:
                log.debug(
                    "nothing heard on %s for %g s: restarting the scan",
                    self.backend.adapter,
                    self.backend.watchdog,
                )
                await self.stop()
                self.backend.restarts += 1
                try:
                    self.scanner = await self._start_once()
                except _library_errors() as exc:
                    raise AdapterError(self.backend.adapter, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    """A sentence for the log: what bleak or D-Bus said, without errno noise."""
    if isinstance(exc, TimeoutError):
        return "BlueZ did not answer in time"
    if isinstance(exc, OSError):  # no system bus socket, permission denied, ...
        return f"cannot reach BlueZ on the system D-Bus ({exc.strerror or exc})"
    return str(exc).strip() or type(exc).__name__


class FakeBackend:
    """A scanner without a radio, for tests, the demo and `hil/` (as gpiozero's MockFactory).

    ``advertise(...)`` delivers an advert to every open scan (nothing hears it when none is
    open, as on the air). ``lose()`` takes the adapter away: open scans raise `AdapterError`
    and new ones cannot start until ``restore()``. Call them on the event loop's thread.
    """

    def __init__(self, adapter: str = "fake") -> None:
        self._adapter = adapter
        self._streams: list[_FakeStream] = []
        self.lost: str | None = None
        """Why the adapter is gone (after ``lose``), or None."""
        self.opens = 0  # scans started
        self.failed_opens = 0  # scans refused while the adapter was lost
        self._changed = asyncio.Event()

    @property
    def adapter(self) -> str:
        return self._adapter

    @property
    def is_scanning(self) -> bool:
        return bool(self._streams)

    def __repr__(self) -> str:
        return f"FakeBackend({self._adapter!r})"

    @contextlib.asynccontextmanager
    async def scanning(self) -> AsyncIterator[AsyncIterator[Advert]]:
        if self.lost is not None:
            self.failed_opens += 1
            raise AdapterError(self._adapter, self.lost)
        stream = _FakeStream()
        self._streams.append(stream)
        self.opens += 1
        self._notify()
        try:
            yield stream
        finally:
            self._streams.remove(stream)
            self._notify()

    def advertise(
        self,
        mac: str,
        service_data: Mapping[str, bytes],
        *,
        rssi: int = -60,
        local_name: str | None = None,
    ) -> None:
        """An advert from ``mac``, heard by every open scan."""
        self.push(Advert(normalise_mac(mac), rssi, dict(service_data), local_name))

    def push(self, advert: Advert) -> None:
        for stream in self._streams:
            stream.queue.put_nowait(advert)

    def lose(self, reason: str = "adapter removed") -> None:
        """The adapter goes away: open scans fail now, new ones until ``restore()``."""
        self.lost = reason
        for stream in self._streams:
            stream.queue.put_nowait(AdapterError(self._adapter, reason))

    def restore(self) -> None:
        """The adapter is back: scans can start again."""
        self.lost = None

    async def wait_scanning(self, scanning: bool = True) -> None:
        """Until a scan is open (or, with False, until none is)."""
        while self.is_scanning != scanning:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class _FakeStream:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Advert | AdapterError] = asyncio.Queue()

    def __aiter__(self) -> _FakeStream:
        return self

    async def __anext__(self) -> Advert:
        item = await self.queue.get()
        if isinstance(item, AdapterError):
            raise item
        return item
