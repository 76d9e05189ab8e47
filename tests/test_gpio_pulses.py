"""Pulse meters on GPIO pins (drivers.gpio) on gpiozero's mock pins.

Pins come from the link's own pin backend (``pin_factory: mock`` is gpiozero's `MockFactory`),
so the driver, the demo and these tests share one seam. Edges are driven with the mock pins'
``drive_low``/``drive_high``, from a worker thread as a real backend's callbacks come. The mock
pins stamp each edge with their module's ``monotonic``; the tests replace that one function with
`EdgeTime`, so every edge has an exact timestamp and bounce trains of microseconds are tested
without real time (gpiozero's `MockPin` does not implement ``bounce_time`` anyway: the counter
debounces from the edges' ticks itself). Readings are stamped by a pinned `ManualClock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import gpiozero.pins.mock  # type: ignore[import-untyped]  # ships no type hints
import pytest
from gpiozero import LED  # (untyped: reported once, on the import above)
from pydantic import ValidationError

from agent.config.reference import description
from agent.core.backoff import Backoff
from agent.core.clock import ManualClock
from agent.core.errors import StoreError
from agent.core.links import GpioConfig, Link
from agent.core.record import Quality, Reading
from agent.sources.compose import MemoryState
from drivers.gpio import (
    DRIVER,
    EdgeFilter,
    PinBackend,
    PulseCounter,
    PulseMeterConfig,
    PulseMeterSource,
    Verdict,
    pin_backend,
)

START = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
T0 = 5000.0  # where edge time starts (seconds, any origin)


class EdgeTime:
    """The time gpiozero's mock pins stamp edges with, set by the test before each edge."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def edge_time(monkeypatch: pytest.MonkeyPatch) -> EdgeTime:
    fake = EdgeTime()
    # MockPin and MockFactory.ticks read the module's monotonic(): the one clock to replace.
    monkeypatch.setattr(gpiozero.pins.mock, "monotonic", fake)
    return fake


def meter(**overrides: Any) -> PulseMeterConfig:
    fields: dict[str, Any] = {
        "protocol": "gpio",
        "name": "water_main",
        "bus": "pins",
        "pin": 17,
        "unit": "m3",
        "per_pulse": 0.01,
        "max_rate": 2000,
        "bounce": 0.0002,
    }
    return PulseMeterConfig.model_validate({**fields, **overrides})


Edge = tuple[float, bool]  # (time, pin level)


def reed_pulse(at: float, *, width: float = 0.00025) -> list[Edge]:
    """A reed switch to ground closing at ``at``: it rings for 80 us closing and 40 us opening,
    each ring well inside a 0.2 ms bounce time."""
    ring = [(0.0, False), (0.00002, True), (0.00004, False), (0.00006, True), (0.00008, False)]
    release = [(width, True), (width + 0.00002, False), (width + 0.00004, True)]
    return [(at + dt, level) for dt, level in ring + release]


def glitch(at: float) -> list[Edge]:
    """A 10 us spike to ground (interference), no ringing."""
    return [(at, False), (at + 0.00001, True)]


def drive(pin: Any, clock: EdgeTime, edges: Sequence[Edge]) -> None:
    for at, level in edges:
        clock.now = at
        if level:
            pin.drive_high()
        else:
            pin.drive_low()


async def drive_in_thread(pin: Any, clock: EdgeTime, edges: Sequence[Edge]) -> None:
    """Drive ``edges`` from a worker thread (gpiozero's callbacks come on its threads), then let
    the loop take every edge handed over."""
    await asyncio.to_thread(drive, pin, clock, edges)
    await asyncio.sleep(0)


async def eventually(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.002)


class Collector:
    """A sink that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[list[Reading]] = []

    async def __call__(self, readings: Sequence[Reading]) -> None:
        self.batches.append(list(readings))

    def values(self, point: str) -> list[Any]:
        return [r.value for batch in self.batches for r in batch if r.point == point]

    def last(self, point: str) -> Reading:
        return [r for batch in self.batches for r in batch if r.point == point][-1]


@contextlib.asynccontextmanager
async def opened(
    config: PulseMeterConfig, state: MemoryState, clock: ManualClock
) -> AsyncIterator[tuple[PulseMeterSource, Any]]:
    """The meter opened as the service opens it (the driver, on a mock GPIO link), with the
    mock pin it listens to."""
    async with (
        Link("pins", GpioConfig(kind="gpio", pin_factory="mock")) as link,
        DRIVER.open_source(config, link=link, state=state, clock=clock) as source,
    ):
        assert isinstance(source, PulseMeterSource)
        yield source, pin_backend(link).factory.pin(config.pin)


@contextlib.asynccontextmanager
async def running(source: PulseMeterSource, sink: Collector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(sink), name=f"test[{source.name}].listen")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # we cancelled it ourselves
            await task


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


# ---- the edge filter, pure ----------------------------------------------------------------------


def test_bounce_train_counts_once_and_release_never_counts() -> None:
    edges = EdgeFilter(bounce=0.0002, max_rate=2000)
    verdicts = [edges.edge(T0 + dt, level is False) for dt, level in reed_pulse(0.0)]
    assert verdicts == [
        Verdict.PULSE,
        Verdict.RELEASE,
        Verdict.BOUNCE,
        Verdict.RELEASE,
        Verdict.BOUNCE,
        Verdict.RELEASE,  # the contact opening
        Verdict.BOUNCE,  # ... rings
        Verdict.RELEASE,
    ]


def test_a_ringing_contact_counts_once_however_long_it_rings() -> None:
    edges = EdgeFilter(bounce=0.001, max_rate=10)
    verdicts = [edges.edge(T0 + k * 0.0005, k % 2 == 0) for k in range(40)]  # 20 ms of ringing
    assert verdicts.count(Verdict.PULSE) == 1
    assert verdicts.count(Verdict.NOISE) == 0


def test_an_activation_sooner_than_max_rate_allows_is_noise() -> None:
    edges = EdgeFilter(bounce=0.001, max_rate=10)
    assert edges.edge(T0, True) is Verdict.PULSE
    assert edges.edge(T0 + 0.003, False) is Verdict.RELEASE
    assert edges.edge(T0 + 0.05, True) is Verdict.NOISE  # 20 pulses/s: the meter cannot
    assert edges.edge(T0 + 0.051, False) is Verdict.RELEASE
    assert edges.edge(T0 + 0.1, True) is Verdict.PULSE  # exactly at max_rate counts
    assert edges.edge(T0 + 0.1005, False) is Verdict.RELEASE


def test_the_filter_reads_ticks_with_the_backends_ticks_diff() -> None:
    # A backend whose ticks are integer microseconds that wrap at 2**32 (as pigpio's).
    def diff(later: Any, earlier: Any) -> float:
        return float((later - earlier) % 2**32) / 1e6

    edges = EdgeFilter(bounce=0.001, max_rate=100, ticks_diff=diff)
    assert edges.edge(2**32 - 5_000, True) is Verdict.PULSE
    assert edges.edge(2**32 - 2_000, False) is Verdict.RELEASE
    assert edges.edge(3_000, True) is Verdict.NOISE  # 8 ms later, across the wrap
    assert edges.edge(4_000, False) is Verdict.RELEASE
    assert edges.edge(5_000, True) is Verdict.PULSE  # 10 ms after the pulse


def test_ticks_that_step_back_do_not_turn_pulses_into_noise() -> None:
    edges = EdgeFilter(bounce=0.001, max_rate=10)
    assert edges.edge(T0, True) is Verdict.PULSE
    assert edges.edge(T0 + 0.01, False) is Verdict.RELEASE
    assert edges.edge(T0 - 30.0, True) is Verdict.PULSE  # the backend's clock stepped back 30 s
    assert edges.edge(T0 - 29.99, False) is Verdict.RELEASE
    assert edges.edge(T0 - 29.95, True) is Verdict.NOISE  # and counts on from there


# ---- the counter on mock pins -------------------------------------------------------------------


async def test_bounce_trains_on_a_mock_pin_count_once(edge_time: EdgeTime) -> None:
    backend = PinBackend("mock")
    counter = PulseCounter(17, backend=backend, per_pulse=0.5, max_rate=2000, bounce=0.0002)
    assert not counter.is_open  # nothing opened by the constructor
    counter.open(asyncio.get_running_loop())
    try:
        pin = backend.factory.pin(17)
        assert pin.pull == "up"  # a reed switch to ground
        edges = [e for k in range(3) for e in reed_pulse(T0 + k * 0.0005)]
        await drive_in_thread(pin, edge_time, edges)
        assert (counter.pulses, counter.noise, counter.value) == (3, 0, 1.5)
        assert counter.bounced == 9
    finally:
        counter.close()
        counter.close()  # idempotent
        await backend.aclose()
    assert not counter.is_open


async def test_ten_thousand_pulses_at_the_plausibility_limit_are_counted_exactly(
    edge_time: EdgeTime, clock: ManualClock
) -> None:
    config = meter(max_rate=2000, bounce=0.0002)  # pulses 0.5 ms apart, rings inside 0.2 ms
    period = 1 / config.max_rate
    edges = [e for k in range(10_000) for e in reed_pulse(T0 + k * period)]
    sink = Collector()
    async with opened(config, MemoryState(), clock) as (source, pin):
        await drive_in_thread(pin, edge_time, edges)  # 80,000 edges: under a second here
        await eventually(lambda: source.counter.pulses >= 10_000, "every pulse taken")
        await source.emit(sink)
    assert source.counter.pulses == 10_000
    assert source.counter.noise == 0
    assert sink.last("volume").value == 100.0  # 10,000 x 0.01 m3, with no float residue
    assert sink.last("pulses").value == 10_000
    assert sink.last("noise_pulses").value == 0


async def test_faster_edges_are_noise_counted_and_logged_once_per_burst(
    edge_time: EdgeTime, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = meter(max_rate=10, bounce=0.001)  # a pulse every 100 ms at most
    edges: list[Edge] = []
    for k in range(5):
        at = T0 + k * 0.1
        edges += reed_pulse(at, width=0.01)
        for j in range(30):  # a burst of interference between two pulses
            edges += glitch(at + 0.02 + j * 0.002)
    edges += reed_pulse(T0 + 0.5, width=0.01)
    sink = Collector()
    with caplog.at_level(logging.INFO, logger="drivers.gpio.pulses"):
        async with opened(config, MemoryState(), clock) as (source, pin):
            await drive_in_thread(pin, edge_time, edges)
            await eventually(lambda: source.counter.pulses >= 6, "the pulses taken")
            await source.emit(sink)
    assert (source.counter.pulses, source.counter.noise) == (6, 150)
    assert sink.last("volume").value == 0.06  # noise is never added
    assert sink.last("noise_pulses").value == 150
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5, "one warning per burst, not per edge"
    assert "faster than max_rate 10/s" in warnings[0].getMessage()
    assert sum("noise stopped after 30 edges" in r.getMessage() for r in caplog.records) == 5


@pytest.mark.parametrize(
    ("pull", "pressed"),
    [("up", False), ("down", True), ("none", False)],
)
async def test_the_pull_decides_which_level_is_a_pulse(
    edge_time: EdgeTime, clock: ManualClock, pull: str, pressed: bool
) -> None:
    config = meter(pull=pull, max_rate=10, bounce=0.001)
    async with opened(config, MemoryState(), clock) as (source, pin):
        # idle level first: with pull none the external resistor holds it (a mock pin floats low)
        await drive_in_thread(pin, edge_time, [(T0 - 1, not pressed)])
        for k in range(4):
            at = T0 + k * 0.2
            await drive_in_thread(pin, edge_time, [(at, pressed), (at + 0.05, not pressed)])
        await eventually(lambda: source.counter.pulses >= 4, "four pulses")
        assert source.counter.pulses == 4


# ---- the source: readings, saved count, restarts ------------------------------------------------


async def test_readings_come_at_start_after_pulses_and_carry_the_clocks_time(
    edge_time: EdgeTime, clock: ManualClock
) -> None:
    config = meter(max_rate=10, bounce=0.001, interval=60)
    sink = Collector()
    async with opened(config, MemoryState(), clock) as (source, pin):
        source.min_gap = 0.01
        assert set(source.points) == {"volume", "pulses", "noise_pulses"}
        assert source.points["volume"].unit == "m3"
        assert source.points["volume"].interval == 60
        async with running(source, sink):
            await eventually(lambda: len(sink.batches) == 1, "the reading at start")
            assert [(r.point, r.value, r.unit) for r in sink.batches[0]] == [
                ("volume", 0.0, "m3"),
                ("pulses", 0, ""),
                ("noise_pulses", 0, ""),
            ]
            assert {r.ts_ms for r in sink.batches[0]} == {clock.now_ms()}
            assert all(r.quality is Quality.GOOD for r in sink.batches[0])
            first_ts = clock.now_ms()

            clock.advance(90)  # the pinned clock stamps; cadence is the loop's
            await drive_in_thread(pin, edge_time, reed_pulse(T0, width=0.01))
            await eventually(lambda: len(sink.batches) == 2, "a reading soon after a pulse")
            assert [r.value for r in sink.batches[1]] == [0.01, 1, 0]
            assert {r.ts_ms for r in sink.batches[1]} == {first_ts + 90_000}


async def test_readings_are_at_most_one_per_min_gap_however_fast_the_pulses(
    edge_time: EdgeTime, clock: ManualClock
) -> None:
    config = meter(max_rate=100, bounce=0.001)
    sink = Collector()
    async with opened(config, MemoryState(), clock) as (source, pin):
        source.min_gap = 30.0  # longer than the test: nothing after the reading at start
        async with running(source, sink):
            await eventually(lambda: len(sink.batches) == 1, "the reading at start")
            edges = [e for k in range(50) for e in reed_pulse(T0 + k * 0.01, width=0.003)]
            await drive_in_thread(pin, edge_time, edges)
            await eventually(lambda: source.counter.pulses == 50, "the pulses counted")
            for _ in range(20):
                await asyncio.sleep(0.002)
            assert len(sink.batches) == 1


async def test_the_count_is_saved_before_each_reading_reaches_the_sink(
    edge_time: EdgeTime, clock: ManualClock
) -> None:
    state = MemoryState()
    seen: list[tuple[Any, Any]] = []

    async def sink(readings: Sequence[Reading]) -> None:
        assert state.value is not None
        seen.append((json.loads(state.value)["pulses"], readings[1].value))

    async with opened(meter(max_rate=10, bounce=0.001), state, clock) as (source, pin):
        await drive_in_thread(pin, edge_time, reed_pulse(T0, width=0.01))
        await eventually(lambda: source.counter.pulses == 1, "the pulse counted")
        await source.emit(sink)
    assert seen == [(1, 1)]


class _FailingState(MemoryState):
    """Saved state whose store cannot write (a store error of another kind than a held one)."""

    failing = True

    async def save(self, value: str) -> None:
        if self.failing:
            raise StoreError("writing quirks:water failed: disk I/O error")
        await super().save(value)


async def test_a_count_that_cannot_be_saved_still_reaches_the_sink(
    edge_time: EdgeTime, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.gpio.source")
    state = _FailingState()
    seen: list[Any] = []

    async def sink(readings: Sequence[Reading]) -> None:
        seen.append(readings[1].value)

    async with opened(meter(max_rate=10, bounce=0.001), state, clock) as (source, pin):
        await drive_in_thread(pin, edge_time, reed_pulse(T0, width=0.01))
        await eventually(lambda: source.counter.pulses == 1, "the pulse counted")
        await source.emit(sink)
        await source.emit(sink)
        state.failing = False
        await source.emit(sink)
    assert seen == [1, 1, 1]
    assert state.value is not None
    assert json.loads(state.value)["pulses"] == 1
    said = [r.getMessage() for r in caplog.records if "could not be saved" in r.getMessage()]
    assert len(said) == 1, "said once while it fails"
    assert any("saved again" in r.getMessage() for r in caplog.records)


async def test_a_restart_mid_train_continues_the_count_within_the_window(
    edge_time: EdgeTime, clock: ManualClock
) -> None:
    config = meter(max_rate=100, bounce=0.001)
    period = 1 / config.max_rate
    state = MemoryState()
    before, after = Collector(), Collector()
    train = [e for k in range(357) for e in reed_pulse(T0 + k * period, width=0.003)]
    edges_per_pulse = len(reed_pulse(T0))

    async with opened(config, state, clock) as (source, pin):
        source.min_gap = 0.01
        async with running(source, before):
            await drive_in_thread(pin, edge_time, train[: 300 * edges_per_pulse])
            await eventually(lambda: before.values("pulses")[-1:] == [300], "300 pulses stored")
            source.min_gap = 30.0  # the next save would come later than the power cut
            await drive_in_thread(
                pin, edge_time, train[300 * edges_per_pulse : 307 * edges_per_pulse]
            )
            await eventually(lambda: source.counter.pulses == 307, "7 more pulses counted")
            power_cut = MemoryState(state.value)  # what the store held at the cut
        # (the clean exit saves 307 into `state`; the cut copy keeps what was saved before)

    async with opened(config, power_cut, clock) as (source, pin):
        source.min_gap = 0.01
        async with running(source, after):
            await eventually(lambda: len(after.batches) == 1, "the reading at start")
            assert after.values("pulses") == [300]  # lost: the 7 pulses since the last save
            await drive_in_thread(pin, edge_time, train[307 * edges_per_pulse :])
            await eventually(lambda: after.values("pulses")[-1:] == [350], "the train stored")

    volumes = before.values("volume") + after.values("volume")
    assert volumes == sorted(volumes), "the stored counter never goes backwards"
    assert before.values("volume")[-1] == after.values("volume")[0] == 3.0
    assert after.values("volume")[-1] == 3.5


async def test_a_clean_restart_loses_no_pulse(edge_time: EdgeTime, clock: ManualClock) -> None:
    config = meter(max_rate=100, bounce=0.001)
    state = MemoryState()
    async with opened(config, state, clock) as (source, pin):
        edges = [e for k in range(25) for e in reed_pulse(T0 + k * 0.01, width=0.003)]
        await drive_in_thread(pin, edge_time, edges)
        await eventually(lambda: source.counter.pulses == 25, "25 pulses counted")
    # nothing was emitted: the stop itself saved the count
    async with opened(config, state, clock) as (source, _):
        assert (source.counter.pulses, source.value) == (25, 0.25)


async def test_set_aligns_the_counter_to_the_dial_and_keeps_the_pulse_count(
    edge_time: EdgeTime, clock: ManualClock
) -> None:
    config = meter(max_rate=10, bounce=0.001)
    state = MemoryState()
    async with opened(config, state, clock) as (source, pin):
        for k in range(3):
            await drive_in_thread(pin, edge_time, reed_pulse(T0 + k * 0.2, width=0.01))
        await eventually(lambda: source.counter.pulses == 3, "3 pulses")
        assert await source.set(1234.56) == (0.03, 1234.56)
        assert source.value == 1234.56
        assert source.counter.pulses == 3
        assert state.value is not None
        assert json.loads(state.value)["value"] == 1234.56  # saved at once
        await drive_in_thread(pin, edge_time, reed_pulse(T0 + 1.0, width=0.01))
        await eventually(lambda: source.counter.pulses == 4, "one more pulse")
        assert source.value == 1234.57
        with pytest.raises(ValueError, match="finite number >= 0"):
            await source.set(-1.0)
    async with opened(config, state, clock) as (source, _):
        assert source.value == 1234.57


async def test_a_corrected_per_pulse_carries_the_counter_on(
    edge_time: EdgeTime, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    saved = json.dumps({"base": 10.0, "pulses": 100, "noise": 2, "per_pulse": 0.01, "unit": "m3"})
    config = meter(per_pulse=0.001, max_rate=10, bounce=0.001)
    with caplog.at_level(logging.INFO, logger="drivers.gpio.source"):
        async with opened(config, MemoryState(saved), clock) as (source, pin):
            assert (source.value, source.counter.pulses, source.counter.noise) == (11.0, 100, 2)
            await drive_in_thread(pin, edge_time, reed_pulse(T0, width=0.01))
            await eventually(lambda: source.counter.pulses == 101, "one more pulse")
            assert source.value == 11.001
    assert "per_pulse changed from 0.01 to 0.001" in caplog.text


@pytest.mark.parametrize(
    "saved", ["not json", "{}", '{"base": 1, "pulses": -3}', '{"base": 1, "pulses": true}']
)
async def test_an_unreadable_saved_count_starts_from_zero_and_says_so(
    clock: ManualClock, caplog: pytest.LogCaptureFixture, saved: str
) -> None:
    async with opened(meter(), MemoryState(saved), clock) as (source, _):
        assert (source.value, source.counter.pulses) == (0.0, 0)
    assert "the saved count cannot be read" in caplog.text


async def test_a_pin_held_elsewhere_is_retried_until_it_is_free(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = PinBackend("mock")
    holder = LED(17, pin_factory=backend.factory)  # e.g. the pin wired as an output by mistake
    config = meter()
    state = MemoryState()
    source = PulseMeterSource(
        config,
        backend=backend,
        state=state,
        clock=clock,
        retry=Backoff(initial=0.005, cap=0.005, jitter=0.0),
    )
    sink = Collector()
    try:
        assert source.open() is False
        assert not source.counter.is_open
        async with running(source, sink):
            for _ in range(5):
                await asyncio.sleep(0.005)
            assert sink.batches == []  # nothing is emitted while the pin is closed
            holder.close()
            await eventually(lambda: len(sink.batches) == 1, "the reading once the pin opened")
        assert source.counter.is_open
    finally:
        source.close()
        holder.close()
        await backend.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once when it fails, once when it opens
    assert "GPIO pin 17 cannot be opened" in warnings[0]
    assert "open again" in warnings[1]


async def test_the_driver_releases_the_pin_on_exit(clock: ManualClock) -> None:
    async with Link("pins", GpioConfig(kind="gpio", pin_factory="mock")) as link:
        async with DRIVER.open_source(meter(), link=link, state=MemoryState(), clock=clock) as s:
            assert isinstance(s, PulseMeterSource)
            assert s.counter.is_open
        assert not s.counter.is_open
        LED(17, pin_factory=pin_backend(link).factory).close()  # free again


def test_the_driver_is_a_push_driver() -> None:
    assert DRIVER.protocol == "gpio"
    assert callable(DRIVER.open_source)


# ---- the config ---------------------------------------------------------------------------------


def test_config_defaults_and_points() -> None:
    config = meter(pin="gpio17")
    assert config.pin == "GPIO17"  # gpiozero's names are upper case
    assert (config.pull, config.interval, config.point) == ("up", 60.0, "volume")
    assert config.point_units() == {"volume": "m3", "pulses": "", "noise_pulses": ""}
    assert meter(point="import_energy", unit="kWh").point_names() == (
        "import_energy",
        "pulses",
        "noise_pulses",
    )
    default_bounce = PulseMeterConfig.model_validate(
        {
            "protocol": "gpio",
            "name": "m",
            "bus": "pins",
            "pin": 4,
            "unit": "L",
            "per_pulse": 10,
            "max_rate": 2,
        }
    )
    assert default_bounce.bounce == 0.02


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"per_pulse": 0}, "greater than 0"),
        ({"max_rate": 0}, "greater than 0"),
        ({"pin": "pin seventeen"}, "is not a pin"),
        ({"pin": -1}, "is not a GPIO number"),
        ({"point": "pulses"}, "always has"),
        ({"bounce": "20ms", "max_rate": 60}, "would be taken for contact bounce"),
        ({"pull": "sideways"}, "'up', 'down' or 'none'"),
    ],
)
def test_config_errors_say_what_is_wrong(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        meter(**overrides)


def test_every_config_field_is_described() -> None:
    assert all(description(PulseMeterConfig, name) for name in PulseMeterConfig.model_fields)
