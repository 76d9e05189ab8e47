"""Links: the physical ways to devices (an RS-485 serial line, a TCP endpoint), shared by every
protocol that speaks on them.

A link owns what belongs to the wire, not to a protocol:

- **one turn at a time**: a lock, so only one frame is ever on an RS-485 line (and many TCP
  gateways in front of RS-485 lines also take one transaction at a time);
- **the frame gap**: the silence kept between the end of one turn and the next frame (on a
  serial line, 3.5 characters at the line's speed by default);
- **who holds the port**: devices of different protocols can share one RS-485 line (it happens on
  retrofits: a Modbus meter and DL/T 645 sub-meters on one cable). Each protocol's client on the
  line is a `LinkUser`; when the turn passes to another user, the link asks the one holding the
  port to release it (close it) first, so two protocols never read from the same port at once.
  Opening a local serial port costs microseconds, so a mixed line pays next to nothing and a
  single-protocol line pays nothing;
- **per-link driver resources** (`shared`): one client per protocol per link, made on first use
  and closed with the link.

Reconnection stays with whoever opens the port or connection (the protocol client), through the
`SerialPort` below for byte-level protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, Protocol, Self, TypeVar

from pydantic import Field

from agent.core.configbase import ConfigModel
from agent.core.durations import Duration

__all__ = [
    "LINK_KINDS",
    "BleAdapterConfig",
    "GpioConfig",
    "Link",
    "LinkConfig",
    "LinkUser",
    "SerialLinkConfig",
    "TcpLinkConfig",
    "serial_frame_gap",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class TcpLinkConfig(ConfigModel):
    """A TCP endpoint: a device, or a gateway fronting an RS-485 line."""

    kind: Literal["modbus_tcp", "tcp"]
    """modbus_tcp (or tcp): a TCP/IP endpoint; devices on it are Modbus TCP unless they say."""
    host: str
    """Address of the device or gateway."""
    port: int = Field(default=502, ge=1, le=65535)
    """TCP port of the device or gateway (502 is Modbus TCP's)."""
    timeout: Duration = 1.0
    """How long to wait for one answer before the request counts as failed."""


class SerialLinkConfig(ConfigModel):
    """An RS-485 line driven through a serial port; its devices may speak different protocols."""

    kind: Literal["modbus_rtu", "serial"]
    """serial (or modbus_rtu, its older name): an RS-485 line on a serial port."""
    port: str
    """Serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/..."""
    baudrate: int = Field(default=9600, gt=0)
    """Line speed in bit/s (9600 is Modbus's common default; DL/T 645 and CJ/T 188 meters
    usually run at 2400 and say so on their own `serial` settings)."""
    parity: Literal["N", "E", "O"] = "N"
    """N (none), E (even; the Modbus and DL/T 645 default) or O (odd)."""
    stopbits: Literal[1, 2] = 1
    """1, or 2 when parity is N on devices that follow Modbus's 11-bit character."""
    bytesize: Literal[7, 8] = 8
    """Data bits per character (8 for Modbus RTU, DL/T 645 and CJ/T 188)."""
    timeout: Duration = 1.0
    """How long to wait for one answer before the request counts as failed."""
    frame_gap: Duration | None = None
    """Silence between frames; default 3.5 characters at the line's baud rate."""


class BleAdapterConfig(ConfigModel):
    """A Bluetooth LE adapter that listens to room sensors' adverts (BlueZ)."""

    kind: Literal["ble"]
    """ble: a Bluetooth adapter; its sensors are `protocol: ble` devices."""
    adapter: str = "hci0"
    """The BlueZ adapter, e.g. hci0 (the Pi's own) or hci1 (a USB dongle)."""
    passive: bool = True
    """Passive scanning (listen only; needs BlueZ with experimental features on some versions);
    when unavailable, the agent falls back to active scanning and says so once."""


class GpioConfig(ConfigModel):
    """The gateway's own GPIO pins (pulse inputs, a status LED, relays), through gpiozero."""

    kind: Literal["gpio"]
    """gpio: the gateway's pins; its inputs and outputs are `protocol: gpio` devices."""
    pin_factory: Literal["default", "lgpio", "rpigpio", "native", "mock"] = "default"
    """gpiozero's pin library: default (lgpio on current Raspberry Pi OS), or mock (no
    hardware: the demo and tests)."""


# Every bus kind a config may name (the literals above, in this order).
LINK_KINDS = ("modbus_tcp", "tcp", "modbus_rtu", "serial", "ble", "gpio")

LinkConfig = Annotated[
    TcpLinkConfig | SerialLinkConfig | BleAdapterConfig | GpioConfig,
    Field(discriminator="kind"),
]


def serial_frame_gap(baudrate: int) -> float:
    """The silent interval between frames: 3.5 characters of 11 bits, fixed 1.75 ms above
    19200 baud (Modbus over serial line specification v1.02, 2.5.1.1). The same silence is
    ample for DL/T 645 and CJ/T 188, whose frames are delimited by their own start and end
    bytes."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * 11 / baudrate


class LinkUser(Protocol):
    """A protocol client that takes turns on a link."""

    async def release(self) -> None:
        """Close the port (or connection) so another protocol's client can open it."""
        ...


class Link:
    """One physical link. ``async with Link(name, config) as link`` closes what it shared."""

    def __init__(
        self,
        name: str,
        config: TcpLinkConfig | SerialLinkConfig | BleAdapterConfig | GpioConfig,
    ) -> None:
        self.name = name
        self.config = config
        self.gap = 0.0
        if isinstance(config, SerialLinkConfig):
            self.gap = (
                config.frame_gap
                if config.frame_gap is not None
                else serial_frame_gap(config.baudrate)
            )
        self._lock = asyncio.Lock()
        self._holder: LinkUser | None = None
        self._last_end = -float("inf")
        self._shared: dict[str, Any] = {}
        self.turns = 0  # transactions on the link, for the live view and benchmarks

    @property
    def is_serial(self) -> bool:
        return isinstance(self.config, SerialLinkConfig)

    @property
    def where(self) -> str:
        """The endpoint, for messages: ``host:port``, the serial port, the adapter."""
        config = self.config
        if isinstance(config, TcpLinkConfig):
            return f"{config.host}:{config.port}"
        if isinstance(config, SerialLinkConfig):
            return config.port
        if isinstance(config, BleAdapterConfig):
            return f"Bluetooth adapter {config.adapter}"
        return "GPIO"

    def __repr__(self) -> str:
        return f"Link({self.name!r}, {self.where!r})"

    async def __aenter__(self) -> Self:
        return self  # nothing is opened until a protocol client asks

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every shared client (each releases its port). Idempotent."""
        shared, self._shared = self._shared, {}
        self._holder = None
        for resource in reversed(list(shared.values())):
            closer = getattr(resource, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):  # closing must not stop the others closing
                    await closer()

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """The link's one ``key`` resource (e.g. its Modbus client), made on first use."""
        if key not in self._shared:
            self._shared[key] = factory()
        resource: T = self._shared[key]
        return resource

    @contextlib.asynccontextmanager
    async def turn(self, user: LinkUser) -> AsyncIterator[None]:
        """One transaction on the link: exclusive, after the frame gap, with the port released
        by its previous holder if that was another protocol's client."""
        async with self._lock:
            if self._holder is not None and self._holder is not user:
                previous, self._holder = self._holder, None
                await previous.release()
            self._holder = user
            loop = asyncio.get_running_loop()
            wait = self._last_end + self.gap - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.turns += 1
            try:
                yield
            finally:
                self._last_end = loop.time()

    def port_missing(self) -> str | None:
        """Why the serial port cannot be opened now, or None. pyserial also takes URLs (e.g.
        ``socket://``, ``rfc2217://``): only a path is checked."""
        if not isinstance(self.config, SerialLinkConfig):
            return None
        port = self.config.port
        if "://" in port or os.path.exists(port):
            return None
        return f"serial port {port} is not present (adapter unplugged?)"
