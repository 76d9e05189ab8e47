"""What a site config says about a pulse meter on one of the gateway's own GPIO pins.

    buses:
      pins:
        kind: gpio
        pin_factory: default     # lgpio on current Raspberry Pi OS; mock in the demo and tests
    devices:
      - name: water_main
        protocol: gpio
        bus: pins
        pin: 17                  # BCM number (or "GPIO17", "BOARD11", "J8:11")
        point: volume
        unit: m3
        per_pulse: 0.01          # 10 L per pulse, as printed on the meter's pulse output
        max_rate: 5              # the meter's top flow is well under 5 pulses/s
        bounce: 20ms

The usual wiring is a reed switch (or an open-collector S0 output) between the pin and ground,
with the pin pulled up: the input is active when low, and a pulse is counted on its activation.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from agent.core.configbase import DeviceConfigBase
from agent.core.durations import Duration

__all__ = ["NOISE_POINT", "PULSES_POINT", "PulseMeterConfig", "RelayConfig", "profile_names"]

PULSES_POINT = "pulses"
"""The point holding the count of pulses seen since the counter was first started."""
NOISE_POINT = "noise_pulses"
"""The point holding the count of edges rejected as faster than the meter can pulse."""

# gpiozero's pin names: a BCM number, GPIO17 / BCM17 / BOARD11 / WPI0, or HEADER:NUMBER (J8:11).
_PIN_NAME = re.compile(r"^((GPIO|BCM|BOARD|WPI)?[0-9]+|[A-Z][A-Z0-9]*:[0-9]+)$", re.IGNORECASE)


def check_pin(value: int | str) -> int | str:
    """A pin as gpiozero names it (a BCM number, or an upper-case pin name); ValueError with
    the sentence a technician needs otherwise."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"pin {value} is not a GPIO number: write e.g. 17 or GPIO17")
        return value
    if not _PIN_NAME.match(value.strip()):
        raise ValueError(
            f"{value!r} is not a pin: write its BCM number (17) or a gpiozero pin name "
            "(GPIO17, BOARD11, J8:11)"
        )
    return value.strip().upper()  # gpiozero's names are upper case


def profile_names() -> tuple[str, ...]:
    """Pulse meters need no shipped profile: what to count is in the device's own config
    (the registry asks every driver for its profiles)."""
    return ()


class PulseMeterConfig(DeviceConfigBase):
    """A meter's pulse output (water, gas, heat or electricity) counted on a GPIO pin."""

    link_kinds: ClassVar[tuple[str, ...]] = ("gpio",)

    protocol: Literal["gpio"]
    """gpio: a pulse output counted on one of the gateway's GPIO pins."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    """Stable device name used in readings and topics."""
    bus: str
    """Name of the gateway's pins (a `kind: gpio` bus)."""
    pin: int | str
    """The input pin: its BCM number (17), or a gpiozero pin name (GPIO17, BOARD11, J8:11)."""
    point: str = Field(default="volume", pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    """Name of the counter point, e.g. volume (water, gas) or import_energy (electricity)."""
    unit: str = Field(min_length=1, max_length=16)
    """Unit of the counter, as on the meter's dial: m3, L, kWh."""
    per_pulse: float = Field(gt=0, allow_inf_nan=False)
    """How much one pulse is worth in `unit`, as printed at the meter's pulse output (e.g.
    0.01 for 10 L per pulse on an m3 counter, 0.001 for 1000 imp/kWh)."""
    pull: Literal["up", "down", "none"] = "up"
    """The pin's internal resistor: up (a reed switch or open collector to ground: active when
    low), down (a switch to 3.3 V: active when high), or none (an external pull-up: active
    when low)."""
    bounce: Duration = 0.02
    """Debounce: edges closer together than this are one contact closing or opening (a reed
    switch rings for a few ms). The pin must stay quiet this long before a pulse counts."""
    max_rate: float = Field(gt=0, allow_inf_nan=False)
    """The most pulses per second the meter can produce (its top flow or power divided by
    `per_pulse`, with a margin). Faster edges are noise: counted in the noise_pulses point
    and logged, never added to the counter."""
    interval: Duration = 60.0
    """How often the counter is stored even when no pulse came (pulses are stored within
    about a second of arriving)."""

    @field_validator("pin")
    @classmethod
    def _pin(cls, value: int | str) -> int | str:
        return check_pin(value)

    @field_validator("point")
    @classmethod
    def _point(cls, value: str) -> str:
        if value in (PULSES_POINT, NOISE_POINT):
            raise ValueError(f"{value!r} is the name of a point the pulse counter always has")
        return value

    @model_validator(mode="after")
    def _bounce_below_rate(self) -> PulseMeterConfig:
        if self.bounce * self.max_rate >= 1:
            raise ValueError(
                f"bounce {self.bounce * 1000:g} ms is not shorter than the time between two "
                f"pulses at max_rate {self.max_rate:g}/s ({1000 / self.max_rate:g} ms): "
                "pulses at that rate would be taken for contact bounce"
            )
        return self

    def point_units(self) -> dict[str, str]:
        """The counter in its unit, the pulse count and the noise count (dimensionless)."""
        return {self.point: self.unit, PULSES_POINT: "", NOISE_POINT: ""}


class RelayConfig(DeviceConfigBase):
    """A relay (or a contactor's coil through one) on a GPIO output: a writable on/off point.

        devices:
          - name: dhw_heater
            protocol: relay
            bus: pins
            pin: 22                # the relay board's input
            active_high: false     # most opto-isolated relay boards switch on a low input
            initial: off           # the state set when the pin is opened: off, on or keep
            min_interval: 5m       # the relay never toggles more often than this
            feedback_pin: 23       # optional: the contactor's auxiliary contact, to ground

    An HVAC zone of ``kind: switch`` runs it on a weekly programme (docs/hvac.md).
    """

    link_kinds: ClassVar[tuple[str, ...]] = ("gpio",)

    protocol: Literal["relay"]
    """relay: an on/off output on one of the gateway's GPIO pins."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    """Stable device name used in readings and topics."""
    bus: str
    """Name of the gateway's pins (a `kind: gpio` bus)."""
    pin: int | str
    """The output pin: its BCM number (22), or a gpiozero pin name (GPIO22, BOARD15, J8:15)."""
    point: str = Field(default="on", pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    """Name of the relay's point: its state, true when energised (writable)."""
    active_high: bool = True
    """true: the relay is energised by a high pin; false: by a low pin (most opto-isolated
    relay boards)."""
    initial: Literal["off", "on", "keep"] = "off"
    """The state set when the pin is opened at start: off, on, or keep (leave the pin's level
    as found; with some pin libraries claiming a pin as an output drives it low regardless)."""
    min_interval: Duration | None = 60.0
    """The relay never toggles more often than this (a contactor's life, a compressor's or a
    heater's short-cycling): a toggle asked sooner is refused with the time it may come. Kept
    across restarts. null: no minimum."""
    feedback_pin: int | str | None = None
    """An input that reads back the switched state (a contactor's auxiliary contact): then a
    write is verified on it, not on the output pin alone."""
    feedback_pull: Literal["up", "down", "none"] = "up"
    """The feedback input's resistor: up (a contact to ground: closed when low), down (a
    contact to 3.3 V: closed when high) or none (an external pull-up: closed when low)."""
    interval: Duration = 60.0
    """How often the relay's state is read and stored."""

    @field_validator("pin", "feedback_pin")
    @classmethod
    def _pins(cls, value: int | str | None) -> int | str | None:
        return None if value is None else check_pin(value)

    @model_validator(mode="after")
    def _distinct(self) -> RelayConfig:
        if self.feedback_pin is not None and str(self.feedback_pin) == str(self.pin):
            raise ValueError("feedback_pin must be another pin than the relay's own")
        return self

    def point_units(self) -> dict[str, str]:
        return {self.point: ""}

    def write_problem(self, point: str) -> str | None:
        return None  # the relay's one point is writable
