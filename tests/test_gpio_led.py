"""The status LED (drivers.gpio.led): its patterns, as gpiozero's mock pin records them.

The LED's pattern is timed on the injected clock; the test pins it (`ManualClock`) and makes
gpiozero's mock pins stamp their state changes with the same clock (they read their module's
``monotonic``), so the pin's ``states`` history shows the pattern's durations exactly, with no
real time passing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import gpiozero.pins.mock  # type: ignore[import-untyped]  # ships no type hints
import pytest
from gpiozero import LED  # (untyped: reported once, on the import above)

from agent.core.clock import ManualClock
from drivers.gpio import PATTERNS, PinBackend, StatusLed, pattern

START = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
PIN = 27


def test_the_pattern_table() -> None:
    assert pattern("ok") == (0.1, 1.9)  # a short flash every 2 s
    assert pattern("buffering") == (1.0, 1.0)
    assert pattern("fault") == (0.2, 0.2)
    assert pattern("error") == (0.0, math.inf)  # dark
    assert set(PATTERNS) == {"ok", "buffering", "fault", "error"}
    assert len(set(PATTERNS.values())) == len(PATTERNS), "every state looks different"


def test_an_unknown_state_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="the states are: ok, buffering, fault, error"):
        pattern("happy")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    manual = ManualClock(START)
    monkeypatch.setattr(gpiozero.pins.mock, "monotonic", manual.monotonic)
    return manual


@pytest.fixture
async def backend() -> AsyncIterator[PinBackend]:
    pins = PinBackend("mock")
    yield pins
    await pins.aclose()


class StoppedClock(ManualClock):
    """A clock on which no time passes: a phase ends only when show() cuts it short."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()


def phases(pin: Any) -> list[tuple[bool, float]]:
    """The pin's history as (level, how long it was held), oldest first."""
    states = pin.states
    return [(bool(before.state), after.timestamp) for before, after in itertools.pairwise(states)]


@contextlib.asynccontextmanager
async def blinking(led: StatusLed) -> AsyncIterator[None]:
    task = asyncio.create_task(led.run(), name="test[led].run")
    try:
        await settle()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # we cancelled it ourselves
            await task


async def settle(turns: int = 50) -> None:
    """Let the LED's task run ``turns`` loop turns (each phase takes a few on a manual clock)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def close(a: list[tuple[bool, float]], b: list[tuple[bool, float]]) -> bool:
    return len(a) == len(b) and all(
        la == lb and math.isclose(ta, tb, abs_tol=1e-9)
        for (la, ta), (lb, tb) in zip(a, b, strict=True)
    )


async def test_ok_is_a_short_flash_every_two_seconds(
    clock: ManualClock, backend: PinBackend
) -> None:
    led = StatusLed(PIN, backend=backend, clock=clock)
    led.show("ok")
    async with blinking(led):
        await settle(200)
    pin = backend.factory.pin(PIN)
    held = phases(pin)[1:]  # the first phase is the dark before the LED started
    assert len(held) >= 6
    assert close(held[:6], [(True, 0.1), (False, 1.9)] * 3)


@pytest.mark.parametrize(
    ("state", "on_time", "off_time"), [("buffering", 1.0, 1.0), ("fault", 0.2, 0.2)]
)
async def test_buffering_and_fault_blink_evenly(
    clock: ManualClock, backend: PinBackend, state: Any, on_time: float, off_time: float
) -> None:
    led = StatusLed(PIN, backend=backend, clock=clock)
    led.show(state)
    async with blinking(led):
        await settle(200)
    held = phases(backend.factory.pin(PIN))[1:]
    assert close(held[:6], [(True, on_time), (False, off_time)] * 3)


async def test_error_is_dark_and_stays_dark(clock: ManualClock, backend: PinBackend) -> None:
    led = StatusLed(PIN, backend=backend, clock=clock)
    assert led.state == "error"  # until the agent says otherwise
    async with blinking(led):
        await settle(200)
        pin = backend.factory.pin(PIN)
        assert [bool(s.state) for s in pin.states] == [False]  # never lit
        assert not led.is_lit


async def test_show_is_idempotent_and_a_new_state_takes_over(
    clock: ManualClock, backend: PinBackend
) -> None:
    led = StatusLed(PIN, backend=backend, clock=clock)
    pin = backend.factory.pin(PIN)
    led.show("buffering")
    async with blinking(led):
        await settle(200)
        led.show("buffering")  # the same state: the pattern is not restarted
        await settle(200)
        held = phases(pin)[1:]
        assert close(held[:8], [(True, 1.0), (False, 1.0)] * 4)

        switch = len(pin.states)
        led.show("fault")
        await settle(200)
        fault = phases(pin)[switch + 1 :]  # the phase cut by the switch is left out
        assert len(fault) >= 6
        assert all(math.isclose(t, 0.2) for _, t in fault[:6])
        assert [lit for lit, _ in fault[:6]] == [fault[0][0], not fault[0][0]] * 3

        led.show("error")
        await settle(50)
        assert not led.is_lit
        dark = len(pin.states)
        clock.advance(3600)
        await settle(200)
        assert len(pin.states) == dark  # dark stays dark


async def test_show_cuts_the_current_phase_short(
    monkeypatch: pytest.MonkeyPatch, backend: PinBackend
) -> None:
    stopped = StoppedClock(START)
    monkeypatch.setattr(gpiozero.pins.mock, "monotonic", stopped.monotonic)
    led = StatusLed(PIN, backend=backend, clock=stopped)
    led.show("ok")
    async with blinking(led):
        assert led.is_lit  # the 0.1 s flash, which on this clock never ends
        led.show("error")
        await settle()
        assert not led.is_lit  # dark at once, no time having passed
        led.show("buffering")
        await settle()
        assert led.is_lit
    assert [(bool(s.state), s.timestamp) for s in backend.factory.pin(PIN).states] == [
        (False, 0.0),
        (True, 0.0),
        (False, 0.0),
        (True, 0.0),
        (False, 0.0),  # cancelled: run() leaves the LED dark
    ]


async def test_close_leaves_the_led_dark_releases_the_pin_and_is_idempotent(
    clock: ManualClock, backend: PinBackend
) -> None:
    led = StatusLed(PIN, backend=backend, clock=clock)
    led.show("buffering")
    task = asyncio.create_task(led.run(), name="test[led].run")
    await settle(3)
    assert led.is_lit
    led.close()
    led.close()
    await asyncio.wait_for(task, timeout=5)  # run() ends once closed
    assert not backend.factory.pin(PIN).state
    LED(PIN, pin_factory=backend.factory).close()  # the pin is free again


async def test_an_led_pin_held_elsewhere_leaves_the_agent_running_without_it(
    clock: ManualClock, backend: PinBackend, caplog: pytest.LogCaptureFixture
) -> None:
    holder = LED(PIN, pin_factory=backend.factory)
    try:
        led = StatusLed(PIN, backend=backend, clock=clock)
        await asyncio.wait_for(led.run(), timeout=5)  # returns: nothing to blink
        led.show("ok")  # harmless
        assert not led.is_lit
    finally:
        holder.close()
    assert f"status LED on pin {PIN} cannot be opened" in caplog.text


def test_the_constructor_opens_nothing() -> None:
    # lgpio is not installed here: making its factory would fail, so nothing may try.
    led = StatusLed(PIN, backend=PinBackend("lgpio"))
    led.show("fault")
    led.close()
    assert not led.is_lit
