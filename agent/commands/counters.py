"""The ``set_counter`` command: align a pulse meter's cumulative counter to the meter's dial.

    {"id": "c-51", "expires": "2026-07-01T10:05:00+08:00",
     "set_counter": {"device": "canteen_hot_water", "value": 1234.5, "unit": "m3"}}

``device`` names a pulse meter (``protocol: gpio``); ``value`` is what the meter's dial shows,
in the meter's unit (a finite number >= 0); ``unit``, optional, must then be the meter's unit —
a guard against a dial read in litres sent to a meter counted in m³. The pulse count itself is
untouched: only the counter's base moves, so the next readings carry on from the dial.
Accepted, the reply's ``applied`` holds ``device``, ``before``, ``after`` and ``unit``; the audit
event (``pulses.command``) holds the same. An unknown device, or a device that is not a pulse
meter, is refused with the reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agent.commands.envelope import Refused, json_kind, object_field, reply, text_field
from agent.commands.path import Decision
from agent.core.errors import StoreError
from agent.core.suggest import did_you_mean

__all__ = ["FIELD", "CounterKind", "Meter", "PulseCounter", "set_counter_command"]

log = logging.getLogger(__name__)

FIELD = "set_counter"
_KEYS = ("device", "value", "unit")


class PulseCounter(Protocol):
    """What the command needs of a pulse meter (drivers.gpio.source.PulseMeterSource)."""

    @property
    def value(self) -> float: ...

    def set(self, value: float) -> Awaitable[tuple[float, float]]: ...


@dataclass(frozen=True, slots=True)
class Meter:
    counter: PulseCounter
    unit: str


class CounterKind:
    """The command kind of ``set_counter`` (agent.commands.path.CommandKind).

    ``meters``: the pulse meters by device name, with their unit; ``others``: every other
    device by name, with its protocol (so that the reply says why it cannot be set).
    """

    name = "pulses"
    fields = (FIELD,)

    def __init__(self, meters: Mapping[str, Meter], *, others: Mapping[str, str]) -> None:
        self.meters = dict(meters)
        self.others = dict(others)

    def claims(self, data: Mapping[str, Any]) -> bool:
        return FIELD in data

    def decide(
        self, data: Mapping[str, Any], *, command_id: str, now: datetime, source: str
    ) -> Decision:
        body = object_field(data, FIELD, _KEYS)
        device = text_field(body, "device")
        assert device is not None
        meter = self._meter(device)
        value = body.get("value")
        if value is None:
            raise Refused(f"`{FIELD}` has no `value` (the meter's dial, in {meter.unit})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Refused(f"`{FIELD}.value` must be a number, not {json_kind(value)}")
        if not math.isfinite(value) or value < 0:
            raise Refused(f"`{FIELD}.value` must be a finite number >= 0, not {value}")
        unit = body.get("unit")
        if unit is not None and unit != meter.unit:
            raise Refused(
                f"`{FIELD}.unit` is {unit!r}, but {device} counts in {meter.unit!r}: give the "
                f"dial in {meter.unit}"
            )
        before, after = meter.counter.value, float(value)
        applied = {"device": device, "before": before, "after": after, "unit": meter.unit}
        reason = f"counter of {device} set from {before:g} to {after:g} {meter.unit}"

        async def apply() -> None:
            try:
                await meter.counter.set(after)
            except StoreError as exc:  # set in memory; its state is saved with the next reading
                log.warning(
                    "pulse input %s: the counter was set but not saved yet: %s", device, exc
                )

        return Decision(reply(command_id, True, reason, applied), apply, {"counter": applied})

    def _meter(self, device: str) -> Meter:
        meter = self.meters.get(device)
        if meter is not None:
            return meter
        protocol = self.others.get(device)
        if protocol is not None:
            raise Refused(
                f"device {device!r} is not a pulse meter ({protocol}): only a GPIO pulse "
                "counter can be set"
            )
        known = sorted(self.meters)
        hint = did_you_mean(device, [*known, *self.others])
        listed = ", ".join(known) if known else "none"
        raise Refused(f"unknown device {device!r}{hint}; the pulse meters are: {listed}")


def set_counter_command(
    device: str, value: float, *, command_id: str, expires: datetime, unit: str | None = None
) -> dict[str, Any]:
    """A ``set_counter`` command as the CLI sends it."""
    body: dict[str, Any] = {"device": device, "value": value}
    if unit is not None:
        body["unit"] = unit
    return {"id": command_id, "expires": expires.isoformat(), FIELD: body}
