"""The cost-model read planner: covers every point, keeps to every limit, is optimal, learns.

The oracle here is written independently of the planner: it states what a read may carry with
plain sets of registers, and finds the optimum by brute force.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.links import SerialLinkConfig, TcpLinkConfig
from drivers.modbus.planner import (
    MAX_BITS_PER_READ,
    CostModel,
    DeviceQuirks,
    Lesson,
    Plan,
    PointTooLongError,
    ReadRequest,
    ReadSession,
    naive_plan,
    plan_reads,
)
from drivers.modbus.profiles import load_profile, profile_names
from drivers.modbus.spec import ModbusPoint, Table

Member = tuple[str, ModbusPoint]

TCP = CostModel.for_tcp()
RTU = CostModel.for_rtu(9600)


def point(address: int, *, table: Table = Table.HOLDING, **extra: object) -> ModbusPoint:
    return ModbusPoint.model_validate({"register": address, "table": table, **extra})


def profile_points(name: str) -> list[Member]:
    raw = load_profile(name)["points"]
    return [(n, ModbusPoint.model_validate(p)) for n, p in raw.items()]


def span_of(p: ModbusPoint) -> tuple[int, int]:
    return p.address, p.address + p.register_count


# -- strategies ---------------------------------------------------------------------------


@st.composite
def a_point(draw: st.DrawFn, *, top: int = 160) -> ModbusPoint:
    table = draw(st.sampled_from([Table.HOLDING, Table.INPUT, Table.COIL]))
    if table is Table.COIL:
        return point(draw(st.integers(0, 4500)), table=table, type="bit")
    address = draw(st.integers(0, top))
    kind = draw(st.sampled_from(["uint16", "float32", "float64", "bit", "string"]))
    if kind == "bit":
        return point(address, table=table, type="bit", bit=draw(st.integers(0, 15)))
    if kind == "string":
        return point(address, table=table, type="string", length=draw(st.integers(1, 6)))
    return point(address, table=table, type=kind)


@st.composite
def point_sets(draw: st.DrawFn, *, most: int = 30, top: int = 160) -> list[Member]:
    points = draw(st.lists(a_point(top=top), min_size=1, max_size=most))
    return [(f"p{i}", p) for i, p in enumerate(points)]


cost_models = st.one_of(
    st.just(TCP),
    st.just(RTU),
    st.just(CostModel.for_rtu(115200)),
    st.builds(
        lambda r, g: CostModel(per_request=r, per_register=g),
        st.floats(0, 0.1, allow_subnormal=False),
        st.floats(0, 0.005, allow_subnormal=False),
    ),
)


@st.composite
def quirk_sets(draw: st.DrawFn, points: Sequence[Member]) -> DeviceQuirks:
    """Declared ranges and learned lessons, as a device's history might leave them."""
    quirks = DeviceQuirks()
    tables = sorted({p.table for _, p in points})
    for _ in range(draw(st.integers(0, 3))):
        table = draw(st.sampled_from(tables))
        start = draw(st.integers(0, 170))
        quirks.unreadable.setdefault(table, []).append((start, start + draw(st.integers(1, 20))))
    for _ in range(draw(st.integers(0, 4))):
        table = draw(st.sampled_from(tables))
        kind = draw(st.sampled_from(["no_span", "boundary", "cap", "bad_point"]))
        start = draw(st.integers(0, 170))
        end = start + draw(st.integers(1, 20))
        if kind == "boundary":
            end = start
        if kind == "bad_point":
            start, end = span_of(draw(st.sampled_from(points))[1])
            table = next(p.table for _, p in points if span_of(p) == (start, end))
        quirks.lessons.append(Lesson(kind, table, start, end, (start, end), "drawn"))  # type: ignore[arg-type]
    for table in tables:
        if draw(st.booleans()):
            quirks.accepted[table] = draw(st.integers(1, 60))
    return quirks


# -- the oracle ---------------------------------------------------------------------------


def limit_of(table: Table, max_registers: int) -> int:
    return MAX_BITS_PER_READ if table.is_bits else min(max_registers, 125)


def allowed(
    table: Table, group: Sequence[ModbusPoint], max_registers: int, quirks: DeviceQuirks | None
) -> bool:
    """What a read carrying ``group`` must respect, stated with sets of registers."""
    start = min(p.address for p in group)
    end = max(p.address + p.register_count for p in group)
    if end - start > limit_of(table, max_registers):
        return False
    if quirks is None:
        return True
    same = [x for x in quirks.lessons if x.table is table]
    bad = {(x.start, x.end) for x in same if x.kind == "bad_point"}
    if any(span_of(p) == (start, end) for p in group):  # one point covers it: read alone
        return (start, end) not in bad or all(span_of(p) == (start, end) for p in group)
    covered = {r for p in group for r in range(*span_of(p))}
    filler = set(range(start, end)) - covered
    forbidden = {r for a, b in quirks.unreadable.get(table, []) for r in range(a, b)}
    forbidden |= {r for x in same if x.kind == "no_span" for r in range(x.start, x.end)}
    cap = quirks.cap(table)
    return not (
        filler & forbidden
        or (cap is not None and end - start > cap)
        or any(start < x.start < end for x in same if x.kind == "boundary")
        or any(a < end and b > start for a, b in bad)
    )


def request_cost(cost: CostModel, table: Table, group: Sequence[ModbusPoint]) -> float:
    start = min(p.address for p in group)
    end = max(p.address + p.register_count for p in group)
    return cost.request_cost(table, end - start)


def sorted_table(points: Sequence[Member], table: Table) -> list[ModbusPoint]:
    mine = [(n, p) for n, p in points if p.table is table]
    mine.sort(key=lambda m: (m[1].address, m[1].address + m[1].register_count, m[0]))
    return [p for _, p in mine]


def brute_contiguous(
    points: Sequence[ModbusPoint],
    table: Table,
    cost: CostModel,
    max_registers: int,
    quirks: DeviceQuirks | None,
) -> float:
    """Every way to cut the sorted points into runs of neighbours."""
    best = math.inf
    n = len(points)
    for cuts in itertools.product([False, True], repeat=n - 1):
        groups, current = [], [points[0]]
        for p, cut in zip(points[1:], cuts, strict=True):
            if cut:
                groups.append(current)
                current = []
            current.append(p)
        groups.append(current)
        if all(allowed(table, g, max_registers, quirks) for g in groups):
            best = min(best, sum(request_cost(cost, table, g) for g in groups))
    return best


def set_partitions(items: list[ModbusPoint]) -> list[list[list[ModbusPoint]]]:
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out = []
    for partition in set_partitions(rest):
        out.append([[first], *partition])
        for i in range(len(partition)):
            out.append([*partition[:i], [first, *partition[i]], *partition[i + 1 :]])
    return out


def brute_any(
    points: Sequence[ModbusPoint],
    table: Table,
    cost: CostModel,
    max_registers: int,
    quirks: DeviceQuirks | None,
) -> float:
    """Every way to share the points out among reads, neighbours or not."""
    return min(
        sum(request_cost(cost, table, g) for g in partition)
        if all(allowed(table, g, max_registers, quirks) for g in partition)
        else math.inf
        for partition in set_partitions(list(points))
    )


def check_plan(
    plan: Plan, points: Sequence[Member], max_registers: int, quirks: DeviceQuirks | None
) -> None:
    names = [name for r in plan.requests for name, _ in r.points]
    assert sorted(names) == sorted(n for n, _ in points), "each point in exactly one read"
    for r in plan.requests:
        members = [p for _, p in r.points]
        for p in members:
            assert p.table is r.table
            assert r.address <= p.address
            assert p.address + p.register_count <= r.address + r.count
        assert r.address == min(p.address for p in members), "no read starts on filler"
        assert r.address + r.count == max(p.address + p.register_count for p in members)
        assert r.count <= limit_of(r.table, max_registers)
        assert allowed(r.table, members, max_registers, quirks)
    assert math.isclose(
        plan.cost, sum(plan.model.request_cost(r.table, r.count) for r in plan.requests)
    )


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cost=cost_models, max_registers=st.integers(6, 125))
def test_every_point_covered_within_every_limit(
    data: st.DataObject, cost: CostModel, max_registers: int
) -> None:
    points = data.draw(point_sets())
    quirks = data.draw(st.one_of(st.none(), quirk_sets(points)))
    plan = plan_reads(points, cost=cost, max_registers=max_registers, quirks=quirks)
    check_plan(plan, points, max_registers, quirks)
    naive = naive_plan(points, cost=cost, max_registers=max_registers)
    assert plan.cost <= naive.cost + 1e-9
    assert (plan.naive_requests, plan.naive_cost) == (len(naive.requests), naive.cost)
    assert len(naive.requests) == len(points)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), cost=cost_models, max_registers=st.integers(6, 24))
def test_optimal_against_brute_force(
    data: st.DataObject, cost: CostModel, max_registers: int
) -> None:
    points = data.draw(point_sets(most=8, top=40))
    quirks = data.draw(st.one_of(st.none(), quirk_sets(points)))
    plan = plan_reads(points, cost=cost, max_registers=max_registers, quirks=quirks)
    for table in {p.table for _, p in points}:
        mine = sorted_table(points, table)
        planned = sum(
            cost.request_cost(r.table, r.count) for r in plan.requests if r.table is table
        )
        best = brute_contiguous(mine, table, cost, max_registers, quirks)
        assert planned == pytest.approx(best, rel=1e-9, abs=1e-12)
        if len(mine) <= 6:
            # Grouping runs of neighbours loses nothing against any grouping at all.
            assert best == pytest.approx(brute_any(mine, table, cost, max_registers, quirks))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), cost=cost_models)
def test_ride_along_never_extends_a_read(data: st.DataObject, cost: CostModel) -> None:
    points = data.draw(point_sets())
    split = data.draw(st.integers(1, len(points)))
    due, later = points[:split], points[split:]
    quirks = data.draw(st.one_of(st.none(), quirk_sets(points)))
    alone = plan_reads(due, cost=cost, quirks=quirks)
    riding = plan_reads(due, cost=cost, quirks=quirks, ride_along=[*later, due[0]])
    shape = [(r.table, r.address, r.count) for r in riding.requests]
    assert shape == [(r.table, r.address, r.count) for r in alone.requests]
    assert riding.cost == alone.cost
    due_names = {n for n, _ in due}
    carried = [n for r in riding.requests for n, _ in r.points]
    assert len(carried) == len(set(carried)), "a due point listed as a rider is not read twice"
    for r in riding.requests:
        for name, p in r.points:
            assert r.address <= p.address
            assert p.address + p.register_count <= r.address + r.count
            if name not in due_names:
                assert p.table is r.table
    # Every rider that fits inside some read's span does ride.
    for name, p in later:
        fits = any(
            r.table is p.table
            and r.address <= p.address
            and p.address + p.register_count <= r.address + r.count
            and (quirks is None or not any(x.kind == "bad_point" for x in quirks.lessons))
            for r in alone.requests
        )
        if fits:
            assert name in carried


@settings(max_examples=100, deadline=None)
@given(points=point_sets(), cost=cost_models, seed=st.integers(0, 2**32))
def test_plan_is_deterministic(points: list[Member], cost: CostModel, seed: int) -> None:
    shuffled = list(points)
    random.Random(seed).shuffle(shuffled)
    first = plan_reads(points, cost=cost).requests
    again = plan_reads(shuffled, cost=cost).requests
    assert first == again


# -- concrete cases -----------------------------------------------------------------------


def test_sdm630_lenient_tcp_three_requests() -> None:
    plan = plan_reads(profile_points("eastron-sdm630"), cost=TCP, max_registers=125)
    assert [(r.address, r.count) for r in plan.requests] == [(0x00, 0x4C), (0xC8, 6), (0x156, 2)]


def test_sdm630_on_rtu_skips_the_big_hole_because_it_is_cheaper() -> None:
    """On RS-485 at 9600 baud the 34-register hole 0x12-0x33 costs 34 x 2.29 ms = 78 ms to
    carry, more than the 27.9 ms of one more request: the cheapest plan has four reads, and
    the fewest-reads plan (three) costs 50 ms more per cycle."""
    points = profile_points("eastron-sdm630")
    plan = plan_reads(points, cost=RTU)
    assert [(r.address, r.count) for r in plan.requests] == [
        (0x00, 0x12),
        (0x34, 0x18),
        (0xC8, 6),
        (0x156, 2),
    ]
    fewest = plan_reads(points, cost=CostModel(per_request=1.0, per_register=0.0))
    assert len(fewest.requests) == 3
    three_on_rtu = sum(RTU.request_cost(r.table, r.count) for r in fewest.requests)
    assert plan.cost < three_on_rtu - 0.045


def fewest_windows(points: Sequence[Member], limit: int) -> int:
    """Fewest reads of at most ``limit`` registers covering every point (greedy is optimal)."""
    spans = sorted(span_of(p) for _, p in points)
    count, reach = 0, -1
    for a, b in spans:
        if b > reach:
            count += 1
            reach = a + limit
    return count


@pytest.mark.parametrize("limit", [10, 20, 40, 125])
def test_sdm630_fewest_requests_at_a_lower_limit(limit: int) -> None:
    points = profile_points("eastron-sdm630")
    plan = plan_reads(points, cost=TCP, max_registers=limit)
    assert len(plan.requests) == fewest_windows(points, limit)
    assert all(r.count <= limit for r in plan.requests)
    if limit == 20:
        assert len(plan.requests) == 5


def test_overlapping_points_share_a_read() -> None:
    points = [
        ("status", point(10, type="uint16")),
        ("alarm", point(10, type="bit", bit=3)),
        ("power", point(10, type="float32")),
        ("again", point(11, type="uint16")),
    ]
    plan = plan_reads(points, cost=RTU)
    assert [(r.address, r.count, len(r.points)) for r in plan.requests] == [(10, 2, 4)]


def test_coils_split_at_2000_bits() -> None:
    points = [(f"c{a}", point(a, table=Table.COIL, type="bit")) for a in (0, 1999, 2000, 2500)]
    plan = plan_reads(points, cost=TCP)
    # Two reads are needed (0..2500 is over 2000 bits); of the two-read plans, the one
    # carrying fewest bits.
    assert [(r.address, r.count) for r in plan.requests] == [(0, 1), (1999, 502)]


def test_a_point_longer_than_the_device_reads_is_reported() -> None:
    points = [("name", point(0, type="string", length=30))]
    with pytest.raises(PointTooLongError, match="30 registers, more than the 20"):
        plan_reads(points, cost=TCP, max_registers=20)


def test_declared_unreadable_range_is_never_filler() -> None:
    points = [("a", point(0)), ("b", point(4)), ("c", point(8))]
    quirks = DeviceQuirks(unreadable={Table.HOLDING: [(5, 6)]})
    plan = plan_reads(points, cost=RTU, quirks=quirks)
    assert [(r.address, r.count) for r in plan.requests] == [(0, 5), (8, 1)]


def test_explain_lists_reads_and_totals() -> None:
    plan = plan_reads(profile_points("eastron-sdm630"), cost=RTU)
    text = plan.explain()
    assert "0x0034-0x004b" in text
    assert "total: 4 requests, 50 registers" in text
    assert "one request per point: 20 requests" in text
    assert "RTU 9600 baud" in text


def test_cost_model_from_character_times() -> None:
    char = 11 / 9600
    assert RTU.per_register == pytest.approx(2 * char)  # about 2 ms per register
    assert 255 * char == pytest.approx(0.292, abs=0.001)  # a full reply, about 290 ms
    assert RTU.per_request == pytest.approx(20 * char + 0.005)
    fast = CostModel.for_rtu(115200)
    assert fast.per_request == pytest.approx(13 * 11 / 115200 + 2 * 0.00175 + 0.005)
    bus = SerialLinkConfig(kind="modbus_rtu", port="/dev/null", baudrate=9600, parity="N")
    assert CostModel.for_bus(bus).per_register == pytest.approx(2 * 10 / 9600)
    assert CostModel.for_bus(TcpLinkConfig(kind="modbus_tcp", host="x")) == TCP
    with pytest.raises(ValueError, match="per_request"):
        CostModel(per_request=-1, per_register=0)


# -- learning: a simulated device and a simulated poller ----------------------------------


class Refused(Exception):
    """The device's exception reply."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"exception {code:02d}")


@dataclass
class StrictDevice:
    """A device as a pure function of (table, address, count)."""

    defined: dict[Table, set[int]]
    max_count: int = 125
    long_code: int = 3  # what it answers to a read longer than max_count
    truncate: bool = False  # answer the first max_count registers instead of refusing
    length_first: bool = False  # check the length before the addresses
    reads: int = field(default=0, init=False)

    def read(self, table: Table, address: int, count: int) -> list[int]:
        self.reads += 1
        undefined = any(
            r not in self.defined.get(table, set()) for r in range(address, address + count)
        )
        too_long = count > self.max_count
        if too_long and self.length_first and not self.truncate:
            raise Refused(self.long_code)
        if undefined:
            raise Refused(2)
        if too_long and not self.truncate:
            raise Refused(self.long_code)
        return [value(table, r) for r in range(address, address + min(count, self.max_count))]

    def accepts_alone(self, p: ModbusPoint) -> bool:
        regs = range(p.address, p.address + p.register_count)
        return p.register_count <= self.max_count and all(
            r in self.defined.get(p.table, set()) for r in regs
        )


def value(table: Table, register: int) -> int:
    return (register * 7 + len(table.value)) & 0xFFFF


def expected(p: ModbusPoint) -> list[int]:
    return [value(p.table, r) for r in range(p.address, p.address + p.register_count)]


@dataclass
class Cycle:
    values: dict[str, list[int]]
    refused_merged: int  # refused or short reads that carried more than one point's registers
    plan: Plan


def poll_cycle(
    device: StrictDevice,
    points: Sequence[Member],
    quirks: DeviceQuirks,
    *,
    cost: CostModel = TCP,
    max_registers: int = 125,
) -> Cycle:
    """What the poller does (`ReadSession`): plan, read, on refusal learn and re-plan what is
    left at once; a point refused alone is given up for the cycle."""
    session = ReadSession(points, cost=cost, max_registers=max_registers, quirks=quirks)
    values: dict[str, list[int]] = {}
    refused_merged = 0
    while (r := session.next()) is not None:
        members = [p for _, p in r.points]
        merged = any(span_of(p) != (r.address, r.address + r.count) for p in members)
        try:
            regs = device.read(r.table, r.address, r.count)
        except Refused as exc:
            refused_merged += merged
            session.refused(r, exc.code)
            continue
        if len(regs) < r.count:
            refused_merged += merged
            session.short(r, len(regs))
            continue
        session.answered(r)
        for name, p in r.points:
            offset = p.address - r.address
            values[name] = regs[offset : offset + p.register_count]
    return Cycle(values, refused_merged, session.plan)


def knowledge(quirks: DeviceQuirks) -> object:
    """What shapes the next plan (the floor of accepted lengths only through the cap)."""
    return list(quirks.lessons), [quirks.cap(t) for t in Table]


def run_until_settled(
    device: StrictDevice,
    points: Sequence[Member],
    quirks: DeviceQuirks,
    *,
    cycles: int,
    cost: CostModel = TCP,
    max_registers: int = 125,
) -> int:
    """Poll until a cycle has no refused merged read and teaches nothing; return how many it
    took. Every cycle must bring in every point the device can read at all."""
    good = {n: expected(p) for n, p in points if device.accepts_alone(p)}
    for number in range(1, cycles + 1):
        before = knowledge(quirks)
        cycle = poll_cycle(device, points, quirks, cost=cost, max_registers=max_registers)
        assert {n: cycle.values.get(n) for n in good} == good, f"a point was lost in cycle {number}"
        assert set(cycle.values) == set(good), "a value from a refused read"
        if cycle.refused_merged == 0 and knowledge(quirks) == before:
            return number
    raise AssertionError(f"still learning after {cycles} cycles: {quirks.describe()}")


def sdm630_device(**options: object) -> tuple[list[Member], StrictDevice]:
    points = profile_points("eastron-sdm630")
    defined = {r for _, p in points for r in range(*span_of(p))}
    return points, StrictDevice({Table.INPUT: defined}, **options)  # type: ignore[arg-type]


def test_lenient_device_is_read_right_first_time() -> None:
    points, device = sdm630_device()
    device.defined[Table.INPUT] = set(range(0x200))
    quirks = DeviceQuirks()
    assert run_until_settled(device, points, quirks, cycles=1) == 1
    assert device.reads == 3
    assert quirks.lessons == []


@pytest.mark.parametrize("cost", [TCP, RTU], ids=["tcp", "rtu"])
def test_strict_device_converges_and_keeps_every_value(cost: CostModel) -> None:
    # Refuses any read that touches an undefined register (02) or asks more than 40 (03).
    points, device = sdm630_device(max_count=40)
    quirks = DeviceQuirks()
    cycles = run_until_settled(device, points, quirks, cycles=10, cost=cost)
    assert cycles <= 3
    settled = plan_reads(points, cost=cost, quirks=quirks)
    device.reads = 0
    cycle = poll_cycle(device, points, quirks, cost=cost)
    assert cycle.refused_merged == 0
    assert device.reads == len(settled.requests)
    # A restart restores what was learned: the first cycle asks right.
    restored = DeviceQuirks.from_json(quirks.to_json())
    assert restored == quirks
    assert plan_reads(points, cost=cost, quirks=restored).requests == settled.requests


def test_length_limit_is_found_by_bisection() -> None:
    points = [(f"r{a}", point(a)) for a in range(100)]
    device = StrictDevice({Table.HOLDING: set(range(100))}, max_count=30)
    quirks = DeviceQuirks()
    cycles = run_until_settled(device, points, quirks, cycles=12)
    assert cycles <= 9
    assert {x.kind for x in quirks.lessons} == {"cap"}
    # As cheap as planning with the true limit (4 reads, 100 registers), none longer than it.
    plan = plan_reads(points, cost=TCP, quirks=quirks)
    assert max(r.count for r in plan.requests) <= 30
    assert math.isclose(plan.cost, plan_reads(points, cost=TCP, max_registers=30).cost)


def test_short_replies_teach_the_same_limit() -> None:
    points = [(f"r{a}", point(a)) for a in range(100)]
    device = StrictDevice({Table.HOLDING: set(range(100))}, max_count=24, truncate=True)
    quirks = DeviceQuirks()
    run_until_settled(device, points, quirks, cycles=12)
    assert quirks.cap(Table.HOLDING) == 24


def test_sdm630_settles_as_far_as_its_plan_needs() -> None:
    # The plan never needs a read longer than 24 once the 76-register read is refused, so the
    # cap stops between what was answered and what was refused: no needless probing.
    points, device = sdm630_device(max_count=30)
    device.defined[Table.INPUT] = set(range(0x200))
    quirks = DeviceQuirks()
    assert run_until_settled(device, points, quirks, cycles=4) <= 3
    assert quirks.cap(Table.INPUT) == 50


def test_a_bad_point_costs_only_itself() -> None:
    points, device = sdm630_device()
    device.defined[Table.INPUT] = set(range(0x200)) - {0x3C}  # reactive_power is missing
    quirks = DeviceQuirks()
    run_until_settled(device, points, quirks, cycles=4)
    assert [x.kind for x in quirks.lessons] == ["bad_point"]
    assert (quirks.lessons[0].start, quirks.lessons[0].end) == (0x3C, 0x3E)
    requests = plan_reads(points, cost=TCP, quirks=quirks).requests
    assert [(r.address, r.count) for r in requests] == [
        (0x00, 0x3A),
        (0x3C, 2),
        (0x3E, 0x0E),
        (0xC8, 6),
        (0x156, 2),
    ]


def test_transient_exceptions_teach_nothing() -> None:
    quirks = DeviceQuirks()
    assert quirks.learn_refusal(Table.INPUT, 0, 50, 4, points=[point(0), point(40)]) == []
    assert quirks.learn_refusal(Table.INPUT, 0, 50, 6) == []
    assert quirks.learn_short_reply(Table.INPUT, 0, 50, 50) == []
    assert quirks.lessons == []


def test_refusals_of_a_packed_read_are_bisected() -> None:
    points = [(f"r{a}", point(a)) for a in range(8)]
    quirks = DeviceQuirks()
    quirks.accepted[Table.HOLDING] = 100  # so a 03 cannot be blamed on length
    [lesson] = quirks.learn_refusal(Table.HOLDING, 0, 8, 3, points=[p for _, p in points])
    assert (lesson.kind, lesson.start) == ("boundary", 4)
    shape = [(r.address, r.count) for r in plan_reads(points, cost=TCP, quirks=quirks).requests]
    assert shape == [(0, 4), (4, 4)]


def test_a_bad_point_withdraws_what_its_read_taught() -> None:
    a, b, c = point(0, type="float32"), point(4, type="float32"), point(8)
    quirks = DeviceQuirks()
    assert [x.kind for x in quirks.learn_refusal(Table.HOLDING, 0, 9, 2, points=[a, b, c])] == [
        "no_span",
        "no_span",
    ]
    assert [x.kind for x in quirks.learn_refusal(Table.HOLDING, 4, 2, 2, points=[b])] == [
        "bad_point"
    ]
    assert [x.kind for x in quirks.lessons] == ["bad_point"]
    # Learning the same thing again is not news.
    assert quirks.learn_refusal(Table.HOLDING, 4, 2, 2, points=[b]) == []


def test_saved_quirks_that_cannot_be_read_are_refused() -> None:
    for text in [
        "",
        "[]",
        '{"version": 2}',
        '{"version": 1, "accepted": {"nope": 1}, "lessons": []}',
    ]:
        with pytest.raises(ValueError, match="cannot read saved device quirks"):
            DeviceQuirks.from_json(text)
    kept = DeviceQuirks.from_json(
        DeviceQuirks().to_json(), unreadable={Table.INPUT: [(0x4C, 0xC8)]}
    )
    assert kept.unreadable == {Table.INPUT: [(0x4C, 0xC8)]}


@st.composite
def devices(draw: st.DrawFn) -> tuple[list[Member], StrictDevice]:
    points = draw(
        point_sets(most=14, top=80).filter(lambda ps: all(not p.table.is_bits for _, p in ps))
    )
    defined: dict[Table, set[int]] = {}
    for _, p in points:
        defined.setdefault(p.table, set()).update(range(*span_of(p)))
    for table in list(defined):
        extra = draw(st.one_of(st.sets(st.integers(0, 90), max_size=40), st.just(set(range(91)))))
        missing = draw(st.sets(st.integers(0, 90), max_size=3))
        defined[table] = (defined[table] | extra) - missing
    device = StrictDevice(
        defined,
        max_count=draw(st.one_of(st.integers(1, 16), st.integers(1, 125))),
        long_code=draw(st.sampled_from([2, 3])),
        truncate=draw(st.booleans()),
        length_first=draw(st.booleans()),
    )
    return points, device


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(setup=devices(), cost=st.sampled_from([TCP, RTU]))
def test_learning_converges_on_any_strict_device(
    setup: tuple[list[Member], StrictDevice], cost: CostModel
) -> None:
    points, device = setup
    quirks = DeviceQuirks()
    run_until_settled(device, points, quirks, cycles=12, cost=cost)
    restored = DeviceQuirks.from_json(quirks.to_json())
    assert restored == quirks
    # Settled means stable: the next cycles ask exactly the same reads, none refused but bad points.
    first = poll_cycle(device, points, quirks, cost=cost)
    second = poll_cycle(device, points, quirks, cost=cost)
    assert first.refused_merged == second.refused_merged == 0
    assert first.plan.requests == second.plan.requests


def test_every_shipped_profile_plans() -> None:
    for name in profile_names():
        points = profile_points(name)
        for cost in (TCP, RTU):
            plan = plan_reads(points, cost=cost)
            check_plan(plan, points, 125, None)
            assert len(plan.requests) <= len(naive_plan(points, cost=cost).requests)
            assert isinstance(plan.requests[0], ReadRequest)
