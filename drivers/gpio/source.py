"""One pulse meter as a push source: the counter on its pin, stored as readings and kept across
restarts.

`run(sink)` hands three readings to the sink each time: the counter in the meter's unit (the
config's ``point``, e.g. volume in m3), ``pulses`` (every pulse seen since the counter was first
started) and ``noise_pulses`` (edges rejected as faster than the meter can pulse). It emits at
start, every ``interval`` when the pin is quiet, and soon after pulses, but at most once per
``min_gap`` (1 s), so a meter pulsing 10 times a second writes one row set a second, not ten.

Kept across restarts: the count (base value, pulses, noise, and the ``per_pulse`` and unit it was
counted with) is saved through `SavedState` as JSON *before* each emission reaches the sink, so a
stored reading is never ahead of the saved count and the counter never goes backwards after a
restart. A restart or a power cut loses only the pulses that arrived after the last save: at most
``min_gap`` (1 s) of pulses plus the time the store takes to commit the save (its writer's batch
window); a clean stop saves the count once more and loses none. Pulses that come while the agent
is not running are not seen at all: align the counter to the meter's dial with `set`.

A pin that cannot be opened (held by another program, pin library missing) is logged once and
retried with capped backoff; nothing is emitted until it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.core.backoff import Backoff
from agent.core.clock import Clock
from agent.core.errors import StoreError
from agent.core.record import Reading
from agent.core.source import PointInfo, SavedState, Sink
from drivers.gpio.pulses import PinBackend, PinUnavailableError, PulseCounter
from drivers.gpio.spec import NOISE_POINT, PULSES_POINT, PulseMeterConfig

__all__ = ["MIN_GAP", "PulseMeterSource"]

log = logging.getLogger(__name__)

MIN_GAP = 1.0
"""Seconds between two emissions at least, however fast the pulses come."""


class PulseMeterSource:
    """The push source of one pulse meter (agent.core.source.PushSource). No I/O until `open`
    (the driver opens it); ``saved`` is what its `SavedState` held, restored here."""

    def __init__(
        self,
        config: PulseMeterConfig,
        *,
        backend: PinBackend,
        state: SavedState,
        clock: Clock,
        saved: str | None = None,
        min_gap: float = MIN_GAP,
        retry: Backoff | None = None,
    ) -> None:
        self.config = config
        self._state = state
        self._clock = clock
        self.min_gap = min_gap
        self._retry = retry if retry is not None else Backoff(initial=1.0, cap=60.0, jitter=0.0)
        self._changed = asyncio.Event()
        self.counter = PulseCounter(
            config.pin,
            backend=backend,
            per_pulse=config.per_pulse,
            max_rate=config.max_rate,
            bounce=config.bounce,
            pull=config.pull,
            name=f"pulse input {config.name} (pin {config.pin})",
            on_change=self._changed.set,
        )
        units = config.point_units()
        self._points: Mapping[str, PointInfo] = MappingProxyType(
            {p: PointInfo(unit=u, interval=config.interval) for p, u in units.items()}
        )
        self.emitted = 0  # emissions handed to the sink, for the live view and tests
        self._save_failing = False  # said once while saving the count fails
        self._failing = False
        if saved:
            self._restore(saved)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def points(self) -> Mapping[str, PointInfo]:
        return self._points

    @property
    def value(self) -> float:
        """The counter now, in the meter's unit."""
        return self.counter.value

    # ---- the pin ------------------------------------------------------------------------------

    def open(self) -> bool:
        """Try to open the pin (from the event loop); False, logged once, when it cannot be
        opened now (`run` retries)."""
        try:
            self.counter.open(asyncio.get_running_loop())
        except PinUnavailableError as exc:
            if not self._failing:
                log.warning("pulse input %s: %s; retrying", self.name, exc)
                self._failing = True
            return False
        if self._failing:
            log.warning("pulse input %s: pin %s is open again", self.name, self.config.pin)
            self._failing = False
            self._retry.reset()
        return True

    def close(self) -> None:
        """Release the pin (idempotent)."""
        self.counter.close()

    async def _until_open(self) -> None:
        while not self.counter.is_open and not self.open():
            delay = self._retry.next_delay()
            log.info(
                "pulse input %s: opening pin %s again in %.0f s", self.name, self.config.pin, delay
            )
            await asyncio.sleep(delay)

    # ---- readings -----------------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        """Emit at start, after pulses (at most once per ``min_gap``) and every ``interval``,
        until cancelled. Cadence runs on the event loop's clock; readings are stamped by the
        injected clock."""
        await self._until_open()
        loop = asyncio.get_running_loop()
        last = -math.inf
        while True:
            due = last + self.config.interval
            if not self._changed.is_set() and loop.time() < due:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(due):
                        await self._changed.wait()
            wait = last + self.min_gap - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._changed.clear()
            await self.emit(sink)
            last = loop.time()

    async def emit(self, sink: Sink) -> list[Reading]:
        """Save the count, then hand the counter's readings to ``sink``; returns them."""
        counter, ts = self.counter, self._clock.now_ms()
        readings = [
            Reading(self.name, self.config.point, ts, counter.value, self.config.unit),
            Reading(self.name, PULSES_POINT, ts, counter.pulses, ""),
            Reading(self.name, NOISE_POINT, ts, counter.noise, ""),
        ]
        try:
            await self.save()
        except StoreError as exc:
            # The count lives on in memory and in the readings; a store that cannot save it
            # must not stop the counting (the next emit saves it again).
            if not self._save_failing:
                self._save_failing = True
                log.warning("pulse input %s: the count could not be saved: %s", self.name, exc)
        else:
            if self._save_failing:
                self._save_failing = False
                log.info("pulse input %s: the count is saved again", self.name)
        await sink(readings)
        self.emitted += 1
        return readings

    async def set(self, value: float) -> tuple[float, float]:
        """Align the counter to the meter's dial: returns the old and the new value. Saved at
        once and emitted soon; the pulse count is untouched (the caller audits the change)."""
        old, new = self.counter.set(value)
        await self.save()
        self._changed.set()
        log.info(
            "pulse input %s: counter set from %s to %s %s", self.name, old, new, self.config.unit
        )
        return old, new

    # ---- saved state --------------------------------------------------------------------------

    def snapshot(self) -> str:
        """The saved state's JSON: what a restart continues from."""
        counter = self.counter
        return json.dumps(
            {
                "value": counter.value,  # for a person reading the store's meta table
                "base": counter.base,
                "pulses": counter.pulses,
                "noise": counter.noise,
                "per_pulse": counter.per_pulse,
                "unit": self.config.unit,
            },
            sort_keys=True,
        )

    async def save(self) -> None:
        await self._state.save(self.snapshot())

    def _restore(self, saved: str) -> None:
        counter, config = self.counter, self.config
        try:
            data: Any = json.loads(saved)
            base = float(data["base"])
            pulses = data["pulses"]
            noise = data.get("noise", 0)
            per_pulse = float(data.get("per_pulse", config.per_pulse))
            unit = data.get("unit", config.unit)
            if not (
                math.isfinite(base)
                and type(pulses) is int  # not a bool either
                and type(noise) is int
                and pulses >= 0
                and noise >= 0
                and math.isfinite(per_pulse)
            ):
                raise ValueError(saved)  # noqa: TRY301 - one path for every unreadable state
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning(
                "pulse input %s: the saved count cannot be read (%.80s); counting from 0: set "
                "the counter to the meter's dial",
                self.name,
                saved,
            )
            return
        # Pulses already counted keep the worth they were counted with: the value carries on
        # unbroken when per_pulse is corrected in the config (a wrong past is fixed by set()).
        counter.pulses, counter.noise = pulses, noise
        counter.base = base + pulses * per_pulse - pulses * counter.per_pulse
        if per_pulse != counter.per_pulse:
            log.info(
                "pulse input %s: per_pulse changed from %g to %g; the counter carries on from %s",
                self.name,
                per_pulse,
                counter.per_pulse,
                counter.value,
            )
        if unit != config.unit:
            log.warning(
                "pulse input %s: the saved count is in %s, the config says %s; the number is "
                "kept as it was: set the counter to the meter's dial",
                self.name,
                unit,
                config.unit,
            )
