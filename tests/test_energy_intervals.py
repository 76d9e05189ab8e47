"""Counters to intervals: a property test against a true consumption series, and the rules one by
one (wrap, reset, spike, gap, range, power integration)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.record import Quality, StoredReading
from agent.energy.config import EnergyConfig, MeterConfig
from agent.energy.intervals import (
    CounterMeter,
    Interval,
    IntervalBuilder,
    PowerMeter,
    build_intervals,
    is_good,
    thin_rows,
)

TZ = ZoneInfo("Asia/Shanghai")
START_MS = round(datetime(2026, 7, 1, 8, 0, tzinfo=TZ).timestamp() * 1000)
MINUTE = 60_000
POLL_MS = MINUTE
SCALE = 0.01  # kWh per count
WRAP_COUNTS = 2**16  # a 16-bit register x 0.01 kWh rolls over at 655.36 kWh
MAX_RATE = 60.0  # kW: at most 1 kWh per one-minute poll
MAX_DROPS = 20  # a gap of at most 20 minutes keeps spikes and resets far from plausible


def _meter(**overrides: object) -> MeterConfig:
    fields: dict[str, object] = {
        "name": "m",
        "device": "d",
        "point": "import_energy",
        "role": "main",
        "counter_bits": 16,
        "counter_scale": SCALE,
        "max_rate": MAX_RATE,
    }
    fields.update(overrides)
    return MeterConfig.model_validate(fields)


def _counter(
    meter: MeterConfig | None = None, *, minutes: int = 5, max_step_s: float = 90
) -> CounterMeter:
    return CounterMeter(
        meter or _meter(), minutes=minutes, tz=TZ, max_step_ms=round(max_step_s * 1000)
    )


# ---- the property test ------------------------------------------------------------------------

Event = tuple[str, int, int]  # (kind, counts consumed in the step, offset for spikes and resets)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[Event]]:
    start_counts = draw(st.integers(0, WRAP_COUNTS - 1))
    raw = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["ok"] * 6 + ["drop", "spike", "reset"]),
                st.integers(0, 100),  # 0-1 kWh per minute: 0-60 kW
                st.integers(100_00, 500_00),  # 100-500 kWh away: never a plausible step
            ),
            min_size=8,
            max_size=240,
        )
    )
    # Repair rather than filter: the first two readings are good, and the last six, so that
    # the last closed boundary lies among good readings (a sum up to a boundary inside a gap
    # holds only part of the gap's energy); an event is followed by a good reading; gaps stay
    # short.
    events: list[Event] = []
    drops = 0
    for index, (drawn, counts, offset) in enumerate(raw):
        kind = drawn
        if index < 2 or index >= len(raw) - 6:
            kind = "ok"
        if events and events[-1][0] in ("spike", "reset"):
            kind = "ok"
        if kind == "drop":
            drops += 1
            if drops > MAX_DROPS:
                kind, drops = "ok", 0
        else:
            drops = 0
        events.append((kind, counts, offset))
    return start_counts, events


@dataclass
class Truth:
    readings: list[tuple[int, float]]  # what the meter reported, in time order
    step_counts: list[int]  # true consumption of step k, over [k, k+1] polls, in counts
    resets: list[int]  # times of the first reading of each new counter
    spikes: list[int]  # times of the rejected readings

    def energy(self, a_ms: int, b_ms: int) -> float:
        """True kWh in [a, b]: power is constant within each poll step."""
        total = 0.0
        for k, counts in enumerate(self.step_counts):
            s0, s1 = START_MS + k * POLL_MS, START_MS + (k + 1) * POLL_MS
            overlap = min(b_ms, s1) - max(a_ms, s0)
            if overlap > 0:
                total += counts * SCALE * overlap / POLL_MS
        return total


def _simulate(start_counts: int, events: list[Event]) -> Truth:
    readings = [(START_MS, start_counts * SCALE)]
    counter = start_counts
    steps: list[int] = []
    resets: list[int] = []
    spikes: list[int] = []
    for index, (kind, counts, offset) in enumerate(events, start=1):
        steps.append(counts)
        ts = START_MS + index * POLL_MS
        if kind == "reset":
            counter = (counter + offset) % WRAP_COUNTS  # a new meter with its own reading
            resets.append(ts)
        else:
            counter = (counter + counts) % WRAP_COUNTS
        if kind == "drop":
            continue
        if kind == "spike":
            readings.append((ts, ((counter + offset) % WRAP_COUNTS) * SCALE))
            spikes.append(ts)
            continue
        readings.append((ts, counter * SCALE))
    return Truth(readings, steps, resets, spikes)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_interval_sums_equal_true_consumption_within_flagged_estimates(
    scenario: tuple[int, list[Event]],
) -> None:
    truth = _simulate(*scenario)
    processor = _counter()
    intervals: list[Interval] = []
    for ts, value in truth.readings:
        intervals.extend(processor.feed(ts, value))

    assert all(i.value >= 0 for i in intervals), "no interval is negative"
    # Never dropped: the intervals tile time from the first reading, without holes.
    assert intervals, "eight minutes of readings close at least one interval"
    for before, after in itertools.pairwise(intervals):
        assert before.end_ms == after.start_ms
    assert intervals[0].start_ms == START_MS

    lost_bound = 0.0
    for interval in intervals:
        true = truth.energy(interval.start_ms, interval.end_ms)
        if interval.quality == "measured":
            assert interval.value == pytest.approx(true, abs=1e-6), interval
        if "reset" in interval.flags:
            lost_bound += true
        else:
            assert interval.quality in ("measured", "estimated"), interval

    computed = sum(i.value for i in intervals)
    true_total = truth.energy(intervals[0].start_ms, intervals[-1].end_ms)
    # Gaps and spikes move energy between intervals but never create or lose any; only the
    # step across a reset is unknown, and it lies inside the intervals flagged `reset`.
    assert computed <= true_total + 1e-6
    assert computed >= true_total - lost_bound - 1e-6
    if not truth.resets:
        assert computed == pytest.approx(true_total, abs=1e-6)
    # Every event inside the closed intervals is flagged where it happened.
    for ts in truth.spikes:
        if ts < intervals[-1].end_ms:
            assert any("spike" in i.flags and i.start_ms <= ts < i.end_ms for i in intervals)
    for ts in truth.resets:
        if ts <= intervals[-1].end_ms:
            assert any("reset" in i.flags and i.start_ms < ts <= i.end_ms for i in intervals)


# ---- the rules one by one -----------------------------------------------------------------------


def _feed(processor: CounterMeter, points: list[tuple[int, float]]) -> list[Interval]:
    out: list[Interval] = []
    for minute, value in points:
        out.extend(processor.feed(START_MS + minute * MINUTE, value))
    return out


def test_a_roll_over_is_counted_across_the_wrap_and_flagged() -> None:
    top = WRAP_COUNTS * SCALE
    out = _feed(_counter(max_step_s=600), [(0, top - 0.5), (1, top - 0.2), (2, 0.3), (5, 1.0)])
    assert len(out) == 1
    assert out[0].value == pytest.approx(1.5)
    assert out[0].flags == {"wrap"}
    assert out[0].quality == "measured"


def test_a_meter_replacement_is_flagged_and_counting_continues_from_the_new_counter() -> None:
    out = _feed(
        _counter(_meter(counter_bits=None, max_rate=None), max_step_s=600),
        [(0, 5000.0), (1, 5000.5), (2, 3.0), (3, 3.5), (5, 4.5), (10, 6.0)],
    )
    first, second = out
    assert first.flags == {"reset"}
    assert first.quality == "partial"  # the energy between 5000.5 and the new meter is unknown
    assert first.value == pytest.approx(0.5 + 0.5 + 1.0)
    assert second.value == pytest.approx(1.5)
    assert second.quality == "measured"


def test_a_counter_that_jumps_up_for_good_is_a_reset_not_consumption() -> None:
    out = _feed(
        _counter(max_step_s=600), [(0, 10.0), (1, 10.5), (2, 400.0), (3, 400.5), (5, 401.0)]
    )
    assert out[0].flags == {"reset"}
    assert out[0].value == pytest.approx(0.5 + 0.5 + 0.5)


def test_a_spike_is_rejected_flagged_and_not_summed() -> None:
    out = _feed(_counter(), [(0, 10.0), (1, 10.5), (2, 300.0), (3, 11.5), (5, 12.0)])
    assert out[0].value == pytest.approx(2.0)
    assert "spike" in out[0].flags
    assert out[0].quality == "estimated"  # two minutes without a usable reading > max_step


def test_a_low_glitch_is_a_spike_not_a_reset() -> None:
    out = _feed(
        _counter(_meter(counter_bits=None), max_step_s=600),
        [(0, 10.0), (1, 10.5), (2, 0.0), (3, 11.5), (5, 12.0)],
    )
    assert out[0].value == pytest.approx(2.0)
    assert out[0].flags == {"spike"}
    assert out[0].quality == "measured"


def test_energy_across_a_gap_is_spread_over_the_intervals_it_spans_and_marked_estimated() -> None:
    # 1 kWh a minute, read every minute except from 4 to 16.
    minutes = [*range(5), *range(16, 26)]
    out = _feed(_counter(), [(m, 10.0 + m) for m in minutes])
    assert [i.value for i in out] == pytest.approx([5.0] * 5)
    assert [i.quality for i in out] == ["estimated"] * 4 + ["measured"]
    assert all("gap" in i.flags for i in out[:4])
    assert out[4].flags == frozenset()


def test_out_of_range_readings_are_rejected_and_flagged() -> None:
    out = _feed(
        _counter(_meter(max_value=100.0), max_step_s=600),
        [(0, 10.0), (1, 150.0), (2, 11.0), (5, 12.0)],
    )
    assert out[0].value == pytest.approx(2.0)
    assert "range" in out[0].flags


def test_jitter_of_one_count_is_not_a_reset() -> None:
    out = _feed(_counter(max_step_s=600), [(0, 10.00), (1, 9.99), (2, 10.50), (5, 11.0)])
    assert out[0].value == pytest.approx(1.0)
    assert out[0].flags == frozenset()


def test_the_first_interval_is_partial_when_readings_start_inside_it() -> None:
    processor = _counter(max_step_s=600)
    out: list[Interval] = []
    for minute, value in [(2, 10.0), (5, 11.0), (10, 12.0)]:
        out.extend(processor.feed(START_MS + minute * MINUTE, value))
    assert out[0].quality == "partial"
    assert "start" in out[0].flags
    assert out[1].quality == "measured"


def test_power_only_meters_are_integrated_by_the_trapezoid_rule() -> None:
    meter = _meter(kind="power", counter_bits=None, counter_scale=1.0)
    processor = PowerMeter(meter, minutes=5, tz=TZ, max_step_ms=120_000)
    out: list[Interval] = []
    # A ramp from 0 to 12 kW over ten minutes, read every minute (in W).
    for minute in range(11):
        out.extend(processor.feed(START_MS + minute * MINUTE, 1200.0 * minute, "W"))
    assert [i.quality for i in out] == ["integrated", "integrated"]
    # Exact for a linear ramp: the first five minutes average 3 kW, the next five 9 kW.
    assert [i.value for i in out] == pytest.approx([3 * 5 / 60, 9 * 5 / 60])
    assert all("integrated" in i.flags for i in out)


def test_power_above_the_rated_rate_is_rejected() -> None:
    meter = _meter(kind="power", counter_bits=None, counter_scale=1.0, max_rate=10.0)
    processor = PowerMeter(meter, minutes=5, tz=TZ, max_step_ms=600_000)
    out: list[Interval] = []
    for minute, watts in [(0, 6000.0), (2, 90_000.0), (4, 6000.0), (5, 6000.0)]:
        out.extend(processor.feed(START_MS + minute * MINUTE, watts, "W"))
    assert out[0].value == pytest.approx(0.5)
    assert "spike" in out[0].flags


def test_intervals_are_aligned_to_local_boundaries() -> None:
    # Kathmandu is UTC+5:45: local quarter hours are not UTC quarter hours.
    zone = ZoneInfo("Asia/Kathmandu")
    start = round(datetime(2026, 7, 1, 8, 0, tzinfo=zone).timestamp() * 1000)
    processor = CounterMeter(_meter(), minutes=15, tz=zone, max_step_ms=90_000)
    out: list[Interval] = []
    for minute in range(0, 31):
        out.extend(processor.feed(start + minute * MINUTE, 10.0 + minute * 0.1))
    assert [i.start_ms for i in out] == [start, start + 15 * MINUTE]


def test_the_builder_routes_rows_and_skips_bad_readings() -> None:
    energy = EnergyConfig.model_validate(
        {
            "max_step": "90s",
            "interval_minutes": 5,
            "meters": [
                {"name": "main", "device": "meter", "point": "import_energy", "role": "main"}
            ],
        }
    )
    rows = [
        StoredReading(n, "meter", "import_energy", START_MS + n * MINUTE, 10.0 + n, "kWh", q)
        for n, q in enumerate([Quality.GOOD] * 3 + [Quality.BAD] + [Quality.GOOD] * 3)
    ]
    rows.append(StoredReading(99, "meter", "voltage_l1", START_MS, 230.0, "V", Quality.GOOD))
    builder = IntervalBuilder(energy, tz=TZ)
    out = builder.feed(rows)
    assert [i.meter for i in out] == ["main"]
    assert out[0].value == pytest.approx(5.0)
    assert out[0].quality == "estimated"  # the bad reading left a two-minute step
    assert builder.last_seen == {"main": START_MS + 6 * MINUTE}
    assert build_intervals(rows, energy, tz="Asia/Shanghai") == out


def test_readings_stamped_by_an_untrusted_clock_are_not_used_and_leave_an_honest_gap() -> None:
    # The building draws 1 kWh a minute. The gateway loses power at 08:02 and boots at 08:30
    # without a real-time clock: until time sync it stamps readings from the time it last saved
    # (08:03, 08:04, 08:05 for the real 08:30-08:32); from 08:33 the clock is true again.
    energy = EnergyConfig.model_validate(
        {
            "max_step": "90s",
            "interval_minutes": 5,
            "meters": [
                {"name": "main", "device": "meter", "point": "import_energy", "role": "main"}
            ],
        }
    )
    real = [*range(3), 30, 31, 32, *range(33, 41)]
    rows = [
        StoredReading(
            seq, "meter", "import_energy", START_MS + minute * MINUTE, 10.0 + minute, "kWh",
            Quality.GOOD,
        )
        for seq, minute in enumerate(real)
    ]  # fmt: skip
    for seq in (3, 4, 5):  # as the store has them: the time given, and the flag
        minute = seq  # the saved clock ran on from 08:03
        rows[seq] = StoredReading(
            seq, "meter", "import_energy", START_MS + minute * MINUTE, rows[seq].value, "kWh",
            Quality.GOOD, clock_untrusted=True,
        )  # fmt: skip
    builder = IntervalBuilder(energy, tz=TZ)
    out = builder.feed(rows)
    # The 28 kWh of the outage do not land in 08:00-08:05 as measured: the step from 08:02 to
    # 08:33 is spread by time (exact here, the draw being steady) and said to be estimated.
    assert [(i.start_ms - START_MS) // MINUTE for i in out] == list(range(0, 40, 5))
    assert [i.value for i in out] == pytest.approx([5.0] * 8)
    assert [(i.quality, set(i.flags)) for i in out[:7]] == [("estimated", {"gap"})] * 7
    assert (out[7].quality, set(out[7].flags)) == ("measured", set())
    assert builder.last_seen == {"main": START_MS + 40 * MINUTE}
    assert not is_good(rows[4])
    assert is_good(rows[6])


def test_interval_records_carry_times_flags_and_quality() -> None:
    record = Interval(
        "m", START_MS, START_MS + 15 * MINUTE, 1.5, "kWh", "estimated", frozenset({"gap"})
    ).to_record()
    assert record == {
        "meter": "m",
        "start": "2026-07-01T00:00:00.000Z",
        "end": "2026-07-01T00:15:00.000Z",
        "value": 1.5,
        "unit": "kWh",
        "quality": "estimated",
        "flags": ["gap"],
    }


def test_thinned_rows_give_the_same_intervals() -> None:
    energy = EnergyConfig.model_validate(
        {
            "max_step": "5m",
            "meters": [
                {"name": "main", "device": "meter", "point": "import_energy", "role": "main"}
            ],
        }
    )
    # Every 2 s for an hour, 36 kW: 0.02 kWh a reading.
    rows = [
        StoredReading(
            n, "meter", "import_energy", START_MS + n * 2000, 100 + n * 0.02, "kWh", Quality.GOOD
        )
        for n in range(1801)
    ]
    thinned = list(thin_rows(rows, 60_000))
    assert len(thinned) == 61
    full = build_intervals(rows, energy, tz=TZ)
    thin = build_intervals(thinned, energy, tz=TZ)
    assert [i.value for i in thin] == pytest.approx([i.value for i in full])
    assert [i.value for i in thin] == pytest.approx([9.0] * 4)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6 * 3600 * 1000),  # any time in six hours, in any order
            st.floats(-1e6, 1e7, allow_nan=False),
        ),
        max_size=120,
    ),
    st.sampled_from([None, 60.0]),
    st.sampled_from([None, 16, 32]),
)
def test_any_garbage_gives_contiguous_non_negative_intervals(
    readings: list[tuple[int, float]], max_rate: float | None, bits: int | None
) -> None:
    processor = _counter(_meter(max_rate=max_rate, counter_bits=bits), max_step_s=300)
    out: list[Interval] = []
    for offset, value in readings:
        out.extend(processor.feed(START_MS + offset, value))
    assert all(i.value >= 0 for i in out)
    for before, after in itertools.pairwise(out):
        assert before.end_ms == after.start_ms
    assert all(i.quality in ("measured", "estimated", "partial") for i in out)


@pytest.mark.parametrize("reset_at", [7, 29, 31, 914])
def test_thinning_keeps_both_sides_of_a_meter_reset_and_of_a_gap(reset_at: int) -> None:
    """The report reads thinned rows and the live accounting every row: around a reset (the
    counter restarts at 0) and a ten-minute gap both must see the same unknown step."""
    energy = EnergyConfig.model_validate(
        {
            "max_step": "5m",
            "meters": [
                {"name": "main", "device": "meter", "point": "import_energy", "role": "main"}
            ],
        }
    )
    rows = []
    value = 100.0
    ts = START_MS
    for n in range(1801):
        ts = START_MS + n * 2000
        if 1200 <= n < 1500:
            continue  # ten minutes without a reading
        value = (n - reset_at) * 0.02 if n >= reset_at else 100 + n * 0.02
        rows.append(StoredReading(n, "meter", "import_energy", ts, value, "kWh", Quality.GOOD))
    thinned = list(thin_rows(rows, 60_000))
    assert len(thinned) < len(rows) // 10
    full = build_intervals(rows, energy, tz=TZ)
    thin = build_intervals(thinned, energy, tz=TZ)
    assert [(i.start_ms, i.quality, i.flags) for i in thin] == [
        (i.start_ms, i.quality, i.flags) for i in full
    ]
    assert [i.value for i in thin] == pytest.approx([i.value for i in full])
