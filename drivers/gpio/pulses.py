"""Counting a meter's pulses on a GPIO pin: the pin backend of a link, the edge filter
(debounce and plausibility) and the pulse counter.

- `PinBackend`: the gpiozero pin factory of one ``kind: gpio`` link, named by the link's
  ``pin_factory`` (``mock`` is gpiozero's `MockFactory`: the demo and the tests drive its pins),
  made on first use and closed with the link.
- `EdgeFilter`: pure; decides for each edge, from its timestamp alone, whether it is a pulse,
  contact bounce, noise or a release. Our own, for every backend alike: gpiozero's mock pins do
  not implement ``bounce_time``, and the hardware backends differ in what theirs means.
- `PulseCounter`: a gpiozero `DigitalInputDevice` on the pin; its edges (with gpiozero's
  ``ticks``) arrive on a library thread and reach the event loop only through
  ``loop.call_soon_threadsafe``, where they are filtered and counted. The counter in the meter's
  unit is ``base + pulses x per_pulse``.

Debounce: an edge less than ``bounce`` after the previous edge (in either direction) belongs to
the same contact closing or opening, so a ringing reed switch counts once however long it rings;
the pin must stay quiet ``bounce`` long before an activation can count. Plausibility: an
activation less than ``1 / max_rate`` after the last counted pulse is noise (a motor starting,
a long unscreened cable): counted in ``noise``, logged once per burst, never added. What the
edges cannot tell: a single glitch on a quiet input looks like a pulse and counts as one, and
interference that goes on for long lets through one edge per ``1 / max_rate`` at most (so a
tight ``max_rate`` bounds the error as well as flagging it).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Literal

from agent.core.errors import DriverError
from agent.core.links import GpioConfig, Link

__all__ = [
    "PIN_BACKEND_KEY",
    "TOLERANCE",
    "EdgeFilter",
    "PinBackend",
    "PinUnavailableError",
    "PulseCounter",
    "Verdict",
    "pin_backend",
]

log = logging.getLogger(__name__)

PIN_BACKEND_KEY = "gpio.pin_backend"
"""The key of a link's `PinBackend` among its shared resources."""

TOLERANCE = 1e-6
"""Seconds by which an edge may come early and still be on time: edge timestamps are no finer
than a microsecond, and a meter pulsing at exactly ``max_rate`` must count."""

FactoryName = Literal["default", "lgpio", "rpigpio", "native", "mock"]


class PinUnavailableError(DriverError, OSError):
    """A pin could not be opened: the pin library is missing, the pin is not a GPIO, or another
    device (or program) holds it."""

    def __init__(self, pin: int | str | None, reason: str) -> None:
        self.pin = pin  # None: no pin can be opened (the pin library failed)
        self.reason = reason
        what = "GPIO pins" if pin is None else f"GPIO pin {pin}"
        super().__init__(f"{what} cannot be opened: {reason}")


class PinBackend:
    """The gpiozero pin factory named ``name``; made on first `factory` access (no I/O here),
    closed by `aclose` (idempotent). ``default`` is gpiozero's own default factory (lgpio on
    current Raspberry Pi OS, or what ``GPIOZERO_PIN_FACTORY`` names), shared by the process and
    left open."""

    def __init__(self, name: FactoryName = "default") -> None:
        self.name = name
        self._factory: Any = None
        self._made = False

    def __repr__(self) -> str:
        return f"PinBackend({self.name!r})"

    @property
    def factory(self) -> Any:
        """The gpiozero ``Factory`` (None for gpiozero's default). Raises PinUnavailableError
        when the pin library cannot be loaded."""
        if not self._made:
            self._factory = None if self.name == "default" else _load_factory(self.name)
            self._made = True
        return self._factory

    async def aclose(self) -> None:
        factory, self._factory, self._made = self._factory, None, False
        if factory is not None:
            factory.close()


def _load_factory(name: str) -> Any:
    # gpiozero's own registry of pin factories (its entry-point group), as gpiozero itself
    # resolves GPIOZERO_PIN_FACTORY.
    for entry in entry_points(group="gpiozero_pin_factories"):
        if entry.name == name:
            try:
                return entry.load()()
            # gpiozero catches Exception too when it probes factories: each backend raises its
            # own errors (ImportError, lgpio.error, RuntimeError from RPi.GPIO, OSError).
            except Exception as exc:
                raise PinUnavailableError(None, f"pin factory {name} failed: {exc}") from exc
    raise PinUnavailableError(None, f"gpiozero has no pin factory named {name}")


def pin_backend(link: Link) -> PinBackend:
    """The `PinBackend` of a ``kind: gpio`` link, shared by every device on it and closed with
    the link."""
    config = link.config
    if not isinstance(config, GpioConfig):
        raise TypeError(f"{link!r} is not a GPIO link (kind: gpio)")
    return link.shared(PIN_BACKEND_KEY, lambda: PinBackend(config.pin_factory))


class Verdict(enum.Enum):
    """What one edge was."""

    PULSE = "pulse"  # an activation that counts
    BOUNCE = "bounce"  # an activation within ``bounce`` of the previous edge
    NOISE = "noise"  # an activation too soon after the last pulse for the meter to make it
    RELEASE = "release"  # the input going inactive: never counts


def _seconds(later: Any, earlier: Any) -> float:
    return float(later - earlier)


class EdgeFilter:
    """Debounce and plausibility from edge timestamps alone (no clock is read).

    ``ticks_diff(later, earlier)`` gives the seconds between two timestamps (gpiozero's
    ``Factory.ticks_diff``: a backend's ticks may be microseconds and may wrap); by default
    timestamps are seconds."""

    def __init__(
        self,
        *,
        bounce: float,
        max_rate: float,
        ticks_diff: Callable[[Any, Any], float] = _seconds,
    ) -> None:
        if bounce < 0 or not max_rate > 0 or not math.isfinite(max_rate):
            raise ValueError("an edge filter needs bounce >= 0 and a finite max_rate > 0")
        self.bounce = bounce
        self.min_gap = 1.0 / max_rate
        self._diff = ticks_diff
        self._last_edge: Any = None
        self._last_pulse: Any = None

    def edge(self, ticks: Any, active: bool) -> Verdict:
        """The verdict on an edge at ``ticks`` that left the input ``active`` or not."""
        quiet = self._since(ticks, self._last_edge)
        self._last_edge = ticks
        if not active:
            return Verdict.RELEASE
        if quiet < self.bounce:
            return Verdict.BOUNCE
        if self._since(ticks, self._last_pulse) < self.min_gap - TOLERANCE:
            return Verdict.NOISE
        self._last_pulse = ticks
        return Verdict.PULSE

    def _since(self, ticks: Any, earlier: Any) -> float:
        if earlier is None:
            return math.inf
        seconds = self._diff(ticks, earlier)
        # An edge "before" the previous one: the backend's ticks stepped back (some stamp edges
        # with a clock that can be stepped). Nothing is known of the gap: it is not short.
        return math.inf if seconds < 0 else seconds


class PulseCounter:
    """Pulses of one meter output on ``pin``; ``value`` is ``base + pulses x per_pulse``.

    No I/O until `open`; `close` is idempotent. Counting happens on the event loop passed to
    `open`; ``on_change`` is called there after each pulse or noise edge."""

    def __init__(
        self,
        pin: int | str,
        *,
        backend: PinBackend,
        per_pulse: float,
        max_rate: float,
        bounce: float = 0.02,
        pull: Literal["up", "down", "none"] = "up",
        base: float = 0.0,
        pulses: int = 0,
        noise: int = 0,
        name: str = "",
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not per_pulse > 0 or not math.isfinite(per_pulse):
            raise ValueError(f"per_pulse must be a positive number, not {per_pulse}")
        self.pin = pin
        self.backend = backend
        self.per_pulse = per_pulse
        self.max_rate = max_rate
        self.bounce = bounce
        self.pull = pull
        self.base = base
        self.pulses = pulses
        self.noise = noise
        self.bounced = 0  # bounce edges swallowed, for the live view and tests
        self.name = name or f"pin {pin}"
        self.on_change = on_change
        # With a pull-up (or an external one: pull none) the switch pulls the pin low.
        self._active_level = pull == "down"
        self._filter = EdgeFilter(bounce=bounce, max_rate=max_rate)
        self._device: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._burst = 0  # noise edges in the current burst (0: none going on)

    def __repr__(self) -> str:
        return f"PulseCounter({self.pin!r}, backend={self.backend!r})"

    @property
    def is_open(self) -> bool:
        return self._device is not None

    @property
    def value(self) -> float:
        """The counter in the meter's unit (rounded to 9 decimals: 0.01 x 3 is 0.03, not
        0.030000000000000002)."""
        return round(self.base + self.pulses * self.per_pulse, 9)

    def set(self, value: float) -> tuple[float, float]:
        """Align the counter to ``value`` (the meter's dial) without touching the pulse count;
        returns the old and the new value."""
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a meter reading must be a finite number >= 0, not {value}")
        old = self.value
        self.base = value - self.pulses * self.per_pulse
        return old, self.value

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the pin (idempotent); edges are counted on ``loop`` from now on. Raises
        PinUnavailableError."""
        if self._device is not None:
            return
        # gpiozero only once a pin is opened: a config without GPIO never loads it.
        from gpiozero import DigitalInputDevice  # type: ignore[import-untyped]  # no type hints

        factory = self.backend.factory
        pull_up = {"up": True, "down": False, "none": None}[self.pull]
        try:
            device = DigitalInputDevice(
                self.pin,
                pull_up=pull_up,
                active_state=self._active_level if pull_up is None else None,
                bounce_time=None,  # our EdgeFilter debounces, alike on every backend
                pin_factory=factory,
            )
        # Each backend raises its own errors (GPIOPinInUse, PinInvalidPin, lgpio.error, ...).
        except Exception as exc:
            raise PinUnavailableError(self.pin, str(exc) or type(exc).__name__) from exc
        self._loop = loop
        # The pin's own handler gives each edge's ticks (the device's when_activated does not);
        # the pin keeps only a weak reference to it: this counter keeps it alive.
        device.pin.when_changed = self._from_library
        self._device = device
        self._filter = EdgeFilter(
            bounce=self.bounce, max_rate=self.max_rate, ticks_diff=device.pin_factory.ticks_diff
        )

    def close(self) -> None:
        """Release the pin (idempotent); pulses are no longer counted."""
        device, self._device = self._device, None
        if device is not None:
            device.close()
        self._loop = None

    def _from_library(self, ticks: Any, state: Any) -> None:
        # On gpiozero's thread: nothing but the hand-over to the loop.
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._edge, ticks, bool(state) == self._active_level)
        except RuntimeError:  # the loop closed with the pin still open: nobody is counting
            return

    def _edge(self, ticks: Any, active: bool) -> None:
        if self._device is None:
            return  # closed while the edge was on its way
        verdict = self._filter.edge(ticks, active)
        if verdict is Verdict.PULSE:
            self.pulses += 1
            if self._burst:
                log.info("%s: noise stopped after %d edges", self.name, self._burst)
                self._burst = 0
        elif verdict is Verdict.NOISE:
            self.noise += 1
            if not self._burst:
                log.warning(
                    "%s: edges faster than max_rate %g/s: counted as noise, not as pulses "
                    "(interference on the cable, or max_rate too low for the meter)",
                    self.name,
                    self.max_rate,
                )
            self._burst += 1
        elif verdict is Verdict.BOUNCE:
            self.bounced += 1
            return
        else:
            return
        if self.on_change is not None:
            self.on_change()
