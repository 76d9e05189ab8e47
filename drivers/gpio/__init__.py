"""The gateway's own GPIO pins, through gpiozero: pulse meters and the status LED.

- `drivers.gpio.spec`: the pulse meter's config model (`PulseMeterConfig`, ``protocol: gpio``);
- `drivers.gpio.pulses`: the pin backend of a ``kind: gpio`` link (gpiozero's pin factory;
  ``mock`` drives gpiozero's `MockFactory` pins), the edge filter (debounce, plausibility) and
  the pulse counter;
- `drivers.gpio.source`: one pulse meter as a push source, its count kept across restarts;
- `drivers.gpio.led`: the status LED and its patterns;
- `drivers.gpio.driver`: ``DRIVER``, what the registry maps ``protocol: gpio`` to.
"""

from __future__ import annotations

from drivers.gpio.driver import DRIVER, GpioDriver
from drivers.gpio.led import PATTERNS, LedState, StatusLed, pattern
from drivers.gpio.pulses import (
    EdgeFilter,
    PinBackend,
    PinUnavailableError,
    PulseCounter,
    Verdict,
    pin_backend,
)
from drivers.gpio.source import MIN_GAP, PulseMeterSource
from drivers.gpio.spec import NOISE_POINT, PULSES_POINT, PulseMeterConfig, profile_names

__all__ = [
    "DRIVER",
    "MIN_GAP",
    "NOISE_POINT",
    "PATTERNS",
    "PULSES_POINT",
    "EdgeFilter",
    "GpioDriver",
    "LedState",
    "PinBackend",
    "PinUnavailableError",
    "PulseCounter",
    "PulseMeterConfig",
    "PulseMeterSource",
    "StatusLed",
    "Verdict",
    "pattern",
    "pin_backend",
    "profile_names",
]
