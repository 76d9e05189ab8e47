"""The gateway's own GPIO pins, through gpiozero: pulse meters, relays and the status LED.

- `drivers.gpio.spec`: the pulse meter's config model (`PulseMeterConfig`, ``protocol: gpio``);
- `drivers.gpio.pulses`: the pin backend of a ``kind: gpio`` link (gpiozero's pin factory;
  ``mock`` drives gpiozero's `MockFactory` pins), the edge filter (debounce, plausibility) and
  the pulse counter;
- `drivers.gpio.source`: one pulse meter as a push source, its count kept across restarts;
- `drivers.gpio.relay`: a relay output as a polled device with a writable point, never
  toggled sooner than its ``min_interval`` (`RelayConfig` in `drivers.gpio.spec`, ``protocol:
  relay``);
- `drivers.gpio.led`: the status LED and its patterns;
- `drivers.gpio.driver`: ``DRIVER`` and ``RELAY_DRIVER``, what the registry maps ``protocol:
  gpio`` and ``protocol: relay`` to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.core.lazy import lazy_exports

if TYPE_CHECKING:
    from drivers.gpio.driver import DRIVER, RELAY_DRIVER, GpioDriver, RelayDriver
    from drivers.gpio.led import PATTERNS, LedState, StatusLed, pattern
    from drivers.gpio.pulses import (
        EdgeFilter,
        PinBackend,
        PinUnavailableError,
        PulseCounter,
        Verdict,
        pin_backend,
    )
    from drivers.gpio.relay import RelayDevice, ToggleTooSoonError
    from drivers.gpio.source import MIN_GAP, PulseMeterSource
    from drivers.gpio.spec import (
        NOISE_POINT,
        PULSES_POINT,
        PulseMeterConfig,
        RelayConfig,
        profile_names,
    )

# Each name is imported from its module when it is first asked for: the registry imports
# `drivers.gpio.spec` for every site config, and that must not load the driver, the LED or the
# relay (nor, through them, gpiozero) for a site without GPIO.
_WHERE = {
    "DRIVER": "drivers.gpio.driver",
    "GpioDriver": "drivers.gpio.driver",
    "RELAY_DRIVER": "drivers.gpio.driver",
    "RelayDriver": "drivers.gpio.driver",
    "LedState": "drivers.gpio.led",
    "PATTERNS": "drivers.gpio.led",
    "StatusLed": "drivers.gpio.led",
    "pattern": "drivers.gpio.led",
    "EdgeFilter": "drivers.gpio.pulses",
    "PinBackend": "drivers.gpio.pulses",
    "PinUnavailableError": "drivers.gpio.pulses",
    "PulseCounter": "drivers.gpio.pulses",
    "Verdict": "drivers.gpio.pulses",
    "pin_backend": "drivers.gpio.pulses",
    "RelayDevice": "drivers.gpio.relay",
    "ToggleTooSoonError": "drivers.gpio.relay",
    "MIN_GAP": "drivers.gpio.source",
    "PulseMeterSource": "drivers.gpio.source",
    "NOISE_POINT": "drivers.gpio.spec",
    "PULSES_POINT": "drivers.gpio.spec",
    "PulseMeterConfig": "drivers.gpio.spec",
    "RelayConfig": "drivers.gpio.spec",
    "profile_names": "drivers.gpio.spec",
}


__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "DRIVER",
    "MIN_GAP",
    "NOISE_POINT",
    "PATTERNS",
    "PULSES_POINT",
    "RELAY_DRIVER",
    "EdgeFilter",
    "GpioDriver",
    "LedState",
    "PinBackend",
    "PinUnavailableError",
    "PulseCounter",
    "PulseMeterConfig",
    "PulseMeterSource",
    "RelayConfig",
    "RelayDevice",
    "RelayDriver",
    "StatusLed",
    "ToggleTooSoonError",
    "Verdict",
    "pattern",
    "pin_backend",
    "profile_names",
]
