"""The gateway's status LED: four patterns a technician learns in a minute.

=========  ==============================  =============================================
state      the LED                         what it means
=========  ==============================  =============================================
ok         a short flash every 2 s         running; the uplink is connected
           (0.1 s on, 1.9 s off)
buffering  slow even blink                 running, but the uplink is down: readings are
           (1 s on, 1 s off)               kept in the local store and sent later
fault      fast blink                      a device does not answer: check its wiring,
           (0.2 s on, 0.2 s off)           its power and its address
error      dark                            not running: a config error, the service
                                           stopped, or no power
=========  ==============================  =============================================

Why ``error`` is dark rather than solid on: a stopped service, a crashed one and a gateway
without power all leave the LED dark, so "dark" means one thing, "the agent is not doing its
job", and the technician's next step is the same (``systemctl status``, ``edge-agent
validate``). Solid on is no pattern at all, and neither is dark while the agent should be
running: the patterns are timed by the agent's event loop (not by a gpiozero thread), so an
LED stuck lit or dark for more than 2 s means the agent is hung.

`pattern(state)` is the table as ``(on_time, off_time)`` in seconds (``off_time`` infinite for
dark). `StatusLed.show(state)` switches pattern at once and is idempotent (showing the current
state does not restart it); `StatusLed.run()` is the task that blinks (the service runs it in
its task group); `close()` leaves the LED dark and releases the pin, and is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Literal, get_args

from agent.core.clock import Clock, system_clock
from drivers.gpio.pulses import PinBackend

__all__ = ["PATTERNS", "LedState", "StatusLed", "pattern"]

log = logging.getLogger(__name__)

LedState = Literal["ok", "buffering", "fault", "error"]

PATTERNS: dict[str, tuple[float, float]] = {
    "ok": (0.1, 1.9),
    "buffering": (1.0, 1.0),
    "fault": (0.2, 0.2),
    "error": (0.0, math.inf),
}


def pattern(state: str) -> tuple[float, float]:
    """``(on_time, off_time)`` in seconds of ``state``'s pattern (see the module's table)."""
    try:
        return PATTERNS[state]
    except KeyError:
        raise ValueError(
            f"no LED state is named {state!r}; the states are: {', '.join(get_args(LedState))}"
        ) from None


class StatusLed:
    """The status LED on ``pin`` (a gpiozero `LED`), showing ``error`` (dark) until told
    otherwise. No I/O until `run`."""

    def __init__(
        self,
        pin: int | str,
        *,
        backend: PinBackend | None = None,
        active_high: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.pin = pin
        self.backend = backend if backend is not None else PinBackend("default")
        self.active_high = active_high
        self._clock = clock if clock is not None else system_clock()
        self._state: LedState = "error"
        self._changed = asyncio.Event()
        self._led: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return f"StatusLed({self.pin!r}, state={self._state!r})"

    @property
    def state(self) -> LedState:
        return self._state

    @property
    def is_lit(self) -> bool:
        return self._led is not None and bool(self._led.is_lit)

    def show(self, state: LedState) -> None:
        """Switch to ``state``'s pattern at once; showing the current state changes nothing."""
        pattern(state)  # an unknown state is an error here, not in the blinking task
        if state != self._state:
            self._state = state
            self._changed.set()

    async def run(self) -> None:
        """Blink the current pattern until cancelled or closed. A pin that cannot be opened is
        logged and the LED stays dark (the agent runs on without it)."""
        if self._closed:
            return
        # gpiozero only once the pin is opened: a config without GPIO never loads it.
        from gpiozero import LED  # type: ignore[import-untyped]  # ships no type hints

        try:
            self._led = LED(
                self.pin,
                active_high=self.active_high,
                initial_value=False,
                pin_factory=self.backend.factory,
            )
        # Each backend raises its own errors (GPIOPinInUse, PinInvalidPin, lgpio.error, ...).
        except Exception as exc:
            log.warning(
                "status LED on pin %s cannot be opened: %s; running without it", self.pin, exc
            )
            return
        try:
            while not self._closed:
                self._changed.clear()
                on_time, off_time = pattern(self._state)
                if on_time > 0:
                    self._write(True)
                    if await self._hold(on_time):
                        continue
                if off_time > 0:
                    self._write(False)
                    await self._hold(off_time)
        finally:
            self._write(False)

    def close(self) -> None:
        """Leave the LED dark and release the pin (idempotent)."""
        self._closed = True
        self._changed.set()
        led, self._led = self._led, None
        if led is not None:
            led.off()
            led.close()

    def _write(self, lit: bool) -> None:
        if self._led is not None:
            if lit:
                self._led.on()
            else:
                self._led.off()

    async def _hold(self, seconds: float) -> bool:
        """Wait ``seconds`` on the clock; True when `show` or `close` cut the wait short."""
        if self._changed.is_set():
            return True
        if math.isinf(seconds):
            await self._changed.wait()
            return True
        # The pattern is timed on the injected clock (a test's manual clock runs it without
        # real time), and cut short by show(): whichever comes first.
        sleeper = asyncio.create_task(self._clock.sleep(seconds), name=f"led[{self.pin}].hold")
        waiter = asyncio.create_task(self._changed.wait(), name=f"led[{self.pin}].show")
        try:
            done, _ = await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waiter):
                task.cancel()
            # return_exceptions: the two we cancelled end quietly; a cancel of run() itself
            # still propagates.
            await asyncio.gather(sleeper, waiter, return_exceptions=True)
        return waiter in done
