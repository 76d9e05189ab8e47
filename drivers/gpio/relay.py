"""A relay on a GPIO output as a polled device: its state is a writable point, read back from
the output (or from a contactor's auxiliary contact on a feedback input), and it never toggles
more often than its ``min_interval``.

The pins are gpiozero devices (`DigitalOutputDevice`, `DigitalInputDevice` for the feedback) on
the link's pin factory (`drivers.gpio.pulses.PinBackend`: lgpio on a Pi, `MockFactory` in the
demo and tests), opened at the first read or write, closed with the device.

**Minimum interval.** A write that would change the relay's state sooner than ``min_interval``
after its last change raises `ToggleTooSoonError` (a `DriverError` carrying ``retry_after``,
seconds): nothing is switched, and the caller (the HVAC controller) defers the toggle and says
so. Writing the state the relay already holds is no toggle and always succeeds. The time of the
last change is saved (wall-clock milliseconds, through `SavedState`) so that a restart keeps
the interval too: a saved time in the future (the clock stepped back) counts as "just now",
the safe side.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from agent.core.clock import Clock
from agent.core.errors import DeviceUnavailableError, DriverError
from agent.core.record import Quality, Reading, Value
from agent.core.source import PointInfo, SavedState
from drivers.gpio.pulses import PinBackend, PinUnavailableError
from drivers.gpio.spec import RelayConfig

__all__ = ["RelayDevice", "ToggleTooSoonError", "relay_state"]

log = logging.getLogger(__name__)


class ToggleTooSoonError(DriverError):
    """A toggle refused because the relay changed state less than ``min_interval`` ago;
    ``retry_after`` is the seconds until it may."""

    def __init__(self, device: str, retry_after: float, min_interval: float) -> None:
        self.device = device
        self.retry_after = retry_after
        super().__init__(
            f"relay {device} changed state less than its min_interval ({min_interval:g} s) "
            f"ago: it may toggle again in {retry_after:.0f} s"
        )


def relay_state(value: Value) -> bool:
    """A written value as the relay's state: true/false, or the numbers 1/0 (a coil's)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise ValueError(f"a relay is switched on (true, 1) or off (false, 0), not {value!r}")


class RelayDevice:
    """One relay (agent.core.source.PolledDevice). No I/O until the first read or write;
    ``saved`` is what its `SavedState` held."""

    def __init__(
        self,
        config: RelayConfig,
        *,
        backend: PinBackend,
        state: SavedState,
        clock: Clock,
        saved: str | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self._state = state
        self._clock = clock
        self._points: Mapping[str, PointInfo] = MappingProxyType(
            {config.point: PointInfo(unit="", interval=config.interval, writable=True)}
        )
        self._output: Any = None
        self._feedback: Any = None
        self._last_toggle: float | None = None  # monotonic
        self.toggles = 0  # state changes made by this device, for the live view and tests
        if saved:
            self._restore(saved)

    def __repr__(self) -> str:
        return f"RelayDevice({self.name!r}, pin {self.config.pin})"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def points(self) -> Mapping[str, PointInfo]:
        return self._points

    # ---- pins ---------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._output is not None:
            return
        # gpiozero only once a pin is opened: a config without GPIO never loads it.
        from gpiozero import (  # type: ignore[import-untyped]  # no type hints
            DigitalInputDevice,
            DigitalOutputDevice,
        )

        config = self.config
        initial = {"off": False, "on": True, "keep": None}[config.initial]
        try:
            factory = self.backend.factory
            output = DigitalOutputDevice(
                config.pin,
                active_high=config.active_high,
                initial_value=initial,
                pin_factory=factory,
            )
        except PinUnavailableError as exc:
            raise DeviceUnavailableError(self.name, str(exc)) from exc
        except Exception as exc:  # each backend raises its own (GPIOPinInUse, lgpio.error, ...)
            raise DeviceUnavailableError(
                self.name, f"GPIO pin {config.pin} cannot be opened: {exc}"
            ) from exc
        if config.feedback_pin is not None:
            pull_up = {"up": True, "down": False, "none": None}[config.feedback_pull]
            try:
                self._feedback = DigitalInputDevice(
                    config.feedback_pin,
                    pull_up=pull_up,
                    active_state=False if pull_up is None else None,
                    pin_factory=factory,
                )
            except Exception as exc:
                output.close()
                raise DeviceUnavailableError(
                    self.name, f"feedback pin {config.feedback_pin} cannot be opened: {exc}"
                ) from exc
        self._output = output
        log.info(
            "relay %s on pin %s: %s at start",
            self.name,
            config.pin,
            "on" if output.value else "off",
        )

    def close(self) -> None:
        """Release the pins (idempotent). gpiozero leaves the output as it was on close only
        for some pin libraries: the relay's state after the agent stops is the board's."""
        for device in (self._feedback, self._output):
            if device is not None:
                device.close()
        self._output = self._feedback = None

    @property
    def output(self) -> bool | None:
        """The output's state (energised or not), None while the pins are closed."""
        return None if self._output is None else bool(self._output.value)

    # ---- the PolledDevice interface -----------------------------------------------------------

    async def read(self, points: Sequence[str]) -> list[Reading]:
        """The relay's state: the feedback input's when there is one, else the output's."""
        self._open()
        ts = self._clock.now_ms()
        state = bool(self._feedback.value if self._feedback is not None else self._output.value)
        return [
            Reading(self.name, point, ts, state, "")
            if point == self.config.point
            else Reading(self.name, point, ts, None, "", Quality.BAD)  # no such point
            for point in points
        ]

    async def write(self, point: str, value: Value) -> None:
        """Switch the relay; ToggleTooSoonError within ``min_interval`` of its last change."""
        if point != self.config.point:
            raise DriverError(f"relay {self.name} has no point {point!r}")
        wanted = relay_state(value)
        self._open()
        if bool(self._output.value) == wanted:
            return  # no toggle: nothing to switch, nothing to wait for
        now = self._clock.monotonic()
        minimum = self.config.min_interval
        if (
            minimum is not None
            and self._last_toggle is not None
            and now - self._last_toggle < minimum
        ):
            raise ToggleTooSoonError(self.name, minimum - (now - self._last_toggle), minimum)
        if wanted:
            self._output.on()
        else:
            self._output.off()
        self._last_toggle = now
        self.toggles += 1
        await self._state.save(
            json.dumps({"last_toggle_ms": self._clock.now_ms(), "on": wanted}, sort_keys=True)
        )

    # ---- saved state --------------------------------------------------------------------------

    def _restore(self, saved: str) -> None:
        try:
            data: Any = json.loads(saved)
            at_ms = float(data["last_toggle_ms"])
            if not math.isfinite(at_ms):
                raise ValueError(saved)  # noqa: TRY301 - one path for every unreadable state
        except (ValueError, KeyError, TypeError):
            log.warning(
                "relay %s: its saved state cannot be read (%.80s); its min_interval starts now",
                self.name,
                saved,
            )
            self._last_toggle = self._clock.monotonic()
            return
        elapsed = (self._clock.now_ms() - at_ms) / 1000
        # A toggle "in the future" (the clock stepped back since) is taken as just now.
        elapsed = min(max(elapsed, 0.0), self.config.min_interval or 0.0)
        self._last_toggle = self._clock.monotonic() - elapsed
