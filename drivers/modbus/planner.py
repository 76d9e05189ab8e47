"""The read planner: the cheapest set of Modbus reads that brings in every point due this cycle.

A read costs a fixed part (a round trip on TCP; on RS-485 the request frame, the reply's
framing, two silent intervals and the device's turnaround) plus a part per register carried.
Reading across a hole pays when the hole's registers cost less than one more request. For each
table (= read function code) the planner finds the cheapest grouping exactly, by a dynamic
programme over the points sorted by address, within the device's limits and around what the
device is known to refuse (`DeviceQuirks`: ranges a profile declares unreadable, and lessons
learned from exception replies, persisted by the poller so a restart does not re-learn).

Pure code: no I/O, no clock. Facts used: the read limits (Modbus Application Protocol
Specification v1.1b3, 6.1-6.4) and exception codes (section 7), and RTU framing: 11-bit
characters, a 3.5-character silent interval, fixed 1.75 ms above 19200 baud (Modbus over Serial
Line Specification and Implementation Guide v1.02, 2.5.1 and 2.5.1.1).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from agent.core.errors import DriverError
from agent.core.links import SerialLinkConfig, TcpLinkConfig
from drivers.modbus.plan import MAX_BITS_PER_READ, ReadRequest
from drivers.modbus.shared import SharedTable
from drivers.modbus.spec import ModbusPoint, Table

__all__ = [
    "MAX_BITS_PER_READ",
    "MAX_REGISTERS_PER_READ",
    "CostModel",
    "DeviceQuirks",
    "Lesson",
    "Plan",
    "PointTooLongError",
    "ReadRequest",
    "ReadSession",
    "naive_plan",
    "plan_reads",
]

MAX_REGISTERS_PER_READ = 125  # FC3/FC4 limit (Modbus application protocol v1.1b3, 6.3, 6.4)

# Exception codes that say something about the request's shape (Modbus spec v1.1b3, section 7):
# 02 illegal data address (a register in the range is not implemented), 03 illegal data value
# (for reads: the quantity is out of range). Others (04 device failure, 06 busy, 0A/0B gateway)
# are transient and teach the planner nothing.
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3

_REQUEST_FRAME = 8  # RTU read request: unit, function, address (2), quantity (2), CRC (2)
_REPLY_OVERHEAD = 5  # RTU read reply: unit, function, byte count, ..., CRC (2)

Member = tuple[str, ModbusPoint]
Span = tuple[int, int]  # [start, end) in registers (or bits, on a bit table)


class PointTooLongError(DriverError, ValueError):
    """A point takes more registers than the device reads in one request."""

    def __init__(self, name: str, registers: int, limit: int) -> None:
        self.name = name
        self.registers = registers
        self.limit = limit
        super().__init__(
            f"point {name!r} takes {registers} registers, more than the {limit} the device "
            "reads in one request"
        )


@dataclass(frozen=True, kw_only=True)
class CostModel:
    """What one read costs on a bus, in seconds: ``per_request + per_register x registers``.

    On a bit table (coils, discrete inputs) a bit costs ``per_register / 16``: sixteen bits
    travel in the two bytes of one register.
    """

    per_request: float
    per_register: float
    label: str = "custom"

    def __post_init__(self) -> None:
        for name in ("per_request", "per_register"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value}")

    def request_cost(self, table: Table, count: int) -> float:
        carried = count / 16 if table.is_bits else count
        return self.per_request + self.per_register * carried

    @classmethod
    def for_tcp(cls, round_trip: float = 0.005, *, per_register: float = 1e-5) -> CostModel:
        """A device on Modbus TCP: the round trip dominates. Two bytes more in a segment cost
        well under a microsecond on Ethernet; the nominal 10 us per register stands for the
        device's own handling, and makes the planner prefer, among plans with as few requests,
        the one that reads the fewest registers."""
        return cls(
            per_request=round_trip,
            per_register=per_register,
            label=f"TCP, {round_trip * 1e3:g} ms round trip",
        )

    @classmethod
    def for_rtu(
        cls,
        baudrate: int,
        *,
        parity_bits: int = 1,
        stop_bits: int = 1,
        data_bits: int = 8,
        turnaround: float = 0.005,
        frame_gap: float | None = None,
    ) -> CostModel:
        """An RS-485 line: the time on the wire, derived from the character time.

        A character is a start bit, the data bits, the parity bit (if any) and the stop bits:
        11 bits with parity (10 without), so 1.146 ms at 9600 baud. A read sends an 8-byte
        request and gets 5 + 2n bytes back, and each frame is followed by a silent interval of
        3.5 characters (fixed 1.75 ms above 19200 baud; Modbus over Serial Line Specification
        and Implementation Guide v1.02, 2.5.1 and 2.5.1.1). The device then needs a turnaround
        before it answers; a few milliseconds is typical of meters, and it is a parameter
        because it is the least certain part. At 9600 baud 8E1:

            fixed        = (8 + 5 + 3.5 + 3.5) chars x 1.146 ms + 5 ms turnaround = 27.9 ms
            per register = 2 chars x 1.146 ms                                   =  2.29 ms

        that is about 2 ms per register, and a 125-register reply (255 bytes) takes
        255 x 1.146 ms = 292 ms on the wire.
        """
        if baudrate <= 0:
            raise ValueError(f"baudrate must be positive, not {baudrate}")
        char = (1 + data_bits + parity_bits + stop_bits) / baudrate
        gap = frame_gap if frame_gap is not None else (3.5 * char if baudrate <= 19200 else 0.00175)
        per_request = (_REQUEST_FRAME + _REPLY_OVERHEAD) * char + 2 * gap + turnaround
        return cls(
            per_request=per_request,
            per_register=2 * char,
            label=f"RTU {baudrate} baud, {1 + data_bits + parity_bits + stop_bits} bits/char",
        )

    @classmethod
    def for_bus(cls, bus: TcpLinkConfig | SerialLinkConfig) -> CostModel:
        """The cost model of a configured bus. (A TCP gateway in front of an RS-485 line costs
        what the line costs: give such a gateway ``for_rtu`` explicitly.)"""
        if isinstance(bus, TcpLinkConfig):
            return cls.for_tcp()
        return cls.for_rtu(
            bus.baudrate,
            parity_bits=0 if bus.parity == "N" else 1,
            stop_bits=bus.stopbits,
            data_bits=bus.bytesize,
            frame_gap=bus.frame_gap,
        )


LessonKind = Literal["bad_point", "no_span", "boundary", "cap"]
_LESSON_KINDS: tuple[str, ...] = get_args(LessonKind)


@dataclass(frozen=True)
class Lesson:
    """One thing learned from a refused read.

    - ``bad_point``: the registers [start, end) are refused even when read alone: read that
      point on its own, never merged, so it costs only itself.
    - ``no_span``: a merged read must not carry the registers [start, end) as filler.
    - ``boundary``: a merged read must not cross address ``start`` (= ``end``).
    - ``cap``: a merged read of ``end - start`` registers was refused as too long.

    ``source`` is the read that taught it: when one of its points turns out to be bad, the
    bad point explains the refusal and the lesson is withdrawn.
    """

    kind: LessonKind
    table: Table
    start: int
    end: int
    source: Span
    reason: str

    def describe(self) -> str:
        where = f"{self.table.value} {self.start:#06x}"
        if self.kind == "bad_point":
            return f"{where}-{self.end - 1:#06x} is refused alone: read on its own ({self.reason})"
        if self.kind == "no_span":
            return f"{where}-{self.end - 1:#06x} is never read as filler ({self.reason})"
        if self.kind == "boundary":
            return f"{where}: no merged read crosses this address ({self.reason})"
        return f"{self.table.value}: a read of {self.end - self.start} was refused ({self.reason})"

    def _key(self) -> tuple[str, Table, int, int, Span]:
        return (self.kind, self.table, self.start, self.end, self.source)


@dataclass
class DeviceQuirks:
    """What one device accepts: declared unreadable ranges, plus what its replies taught.

    ``unreadable`` comes from the profile (ranges [start, end) a read may not carry as filler)
    and is not persisted; ``lessons`` and ``accepted`` (the longest read each table has
    answered in full) are the learned state that `to_json` persists.

    The rules, applied to a refused read (exception 02 or 03) or a short reply; each adds a
    lesson that rules out that exact read, so re-planning cannot ask it again and learning
    stops after finitely many refusals:

    1. A read that one of its points covers whole (the point read alone) is a bad point: it is
       read on its own from now on, and lessons taught by merged reads that contained it are
       withdrawn (the bad point explains them). One bad register costs one point, not the rest.
    2. Exception 03 or a short reply to a merged read longer than the longest read the device
       has answered: too long. Merged reads are capped by bisection between the longest answered
       (``accepted``) and the shortest refused length; a full reply at the cap raises the floor,
       so the cap settles on the device's true limit in a few cycles.
    3. Otherwise (exception 02, or a 03 the cap cannot explain): the read's filler registers
       (those no point in it covers) become forbidden as filler. A read without filler is split
       by a boundary at the point start nearest its middle, so further refusals bisect.
    """

    unreadable: dict[Table, list[Span]] = field(default_factory=dict)
    lessons: list[Lesson] = field(default_factory=list)
    accepted: dict[Table, int] = field(default_factory=dict)
    # The cap the planner last chose per table while the limit is not settled (see
    # `_probe_cap`): derived, never persisted, not part of what the device taught.
    trial: dict[Table, int] = field(default_factory=dict, compare=False, repr=False)
    # Plans already made from this state (`plan_reads`): a device asks the same every cycle.
    _plans: dict[Any, tuple[Any, Plan]] = field(default_factory=dict, compare=False, repr=False)

    # -- learning ---------------------------------------------------------------------------

    def learn_refusal(
        self,
        table: Table,
        address: int,
        count: int,
        exception_code: int,
        *,
        points: Iterable[ModbusPoint] = (),
    ) -> list[Lesson]:
        """The device answered ``exception_code`` to reading ``count`` from ``address``;
        ``points`` are the points that read carried. Returns the new lessons (empty if none:
        a transient code, or nothing new)."""
        if exception_code not in (ILLEGAL_ADDRESS, ILLEGAL_VALUE):
            return []
        return self._learn(
            table,
            (address, address + count),
            _member_spans(table, points),
            reason=f"exception {exception_code:02d}",
            too_long=exception_code == ILLEGAL_VALUE,
            got=0,
        )

    def learn_short_reply(
        self,
        table: Table,
        address: int,
        count: int,
        got: int,
        *,
        points: Iterable[ModbusPoint] = (),
    ) -> list[Lesson]:
        """The device answered only ``got`` of the ``count`` registers (or bits) asked for."""
        if not 0 <= got < count:
            return []
        return self._learn(
            table,
            (address, address + count),
            _member_spans(table, points),
            reason=f"short reply, {got} of {count}",
            too_long=True,
            got=got,
        )

    def learn_success(self, table: Table, address: int, count: int) -> bool:
        """A read was answered in full. Returns True when that is news (persist it)."""
        del address  # the floor is about length; where the read was does not matter
        if count > self.accepted.get(table, 0):
            self.accepted[table] = count
            return True
        return False

    def clear_learned(self) -> None:
        """Forget every lesson (e.g. after the device's firmware was replaced)."""
        self.lessons.clear()
        self.accepted.clear()
        self.trial.clear()
        self._plans.clear()

    def _learn(
        self,
        table: Table,
        span: Span,
        members: list[Span],
        *,
        reason: str,
        too_long: bool,
        got: int,
    ) -> list[Lesson]:
        start, end = span
        members = [(max(a, start), min(b, end)) for a, b in members if a < end and b > start]
        if not members:
            members = [span]  # the caller did not say what the read carried: treat it as one
        if span in members:
            return self._add(Lesson("bad_point", table, start, end, span, reason))
        if got:
            self.learn_success(table, start, got)
        if too_long and end - start > self.accepted.get(table, 0):
            return self._add(Lesson("cap", table, start, end, span, reason))
        fillers = _fillers(span, members)
        if fillers:
            return self._add(*(Lesson("no_span", table, a, b, span, reason) for a, b in fillers))
        middle = (start + end) / 2
        cut = min(
            sorted({a for a, _ in members if a > start}), key=lambda a: (abs(a - middle), a)
        )  # not empty: no member covers the span, so one starts after it
        return self._add(Lesson("boundary", table, cut, cut, span, reason))

    def _add(self, *lessons: Lesson) -> list[Lesson]:
        known = {lesson._key() for lesson in self.lessons}
        new = [lesson for lesson in lessons if lesson._key() not in known]
        for lesson in new:
            if lesson.kind == "bad_point":
                a, b = lesson.start, lesson.end
                self.lessons = [
                    old
                    for old in self.lessons
                    if old.kind == "bad_point"
                    or old.table is not lesson.table
                    or not (old.source[0] <= a and b <= old.source[1])
                ]
            self.lessons.append(lesson)
        return new

    # -- what the planner asks --------------------------------------------------------------

    def cap(self, table: Table) -> int | None:
        """Longest merged read to plan on ``table``, or None when nothing was refused as long:
        the planner's last choice (`trial`), else half-way between answered and refused."""
        refused = [x.end - x.start for x in self.lessons if x.kind == "cap" and x.table is table]
        if not refused:
            return None
        if table in self.trial:
            return self.trial[table]
        low, high = self.accepted.get(table, 0), min(refused)
        return low if low >= high - 1 else (low + high) // 2

    def _state(self) -> tuple[Any, ...]:
        """All that shapes a plan, as a key: what was learned and what is declared."""
        return (
            tuple(x._key() for x in self.lessons),
            tuple(sorted(self.accepted.items())),
            tuple((t, tuple(spans)) for t, spans in sorted(self.unreadable.items())),
        )

    def refused_length(self, table: Table) -> int | None:
        """The shortest merged read refused as too long on ``table``, or None."""
        refused = [x.end - x.start for x in self.lessons if x.kind == "cap" and x.table is table]
        return min(refused, default=None)

    def _spans(self, table: Table, kind: LessonKind) -> list[Span]:
        return [(x.start, x.end) for x in self.lessons if x.kind == kind and x.table is table]

    def describe(self) -> list[str]:
        lines = [
            f"{table.value} {a:#06x}-{b - 1:#06x} is declared unreadable"
            for table, spans in sorted(self.unreadable.items())
            for a, b in spans
        ]
        lines += [lesson.describe() for lesson in self.lessons]
        for table in sorted({x.table for x in self.lessons if x.kind == "cap"}):
            lines.append(
                f"{table.value}: longest read answered {self.accepted.get(table, 0)}, shortest "
                f"refused as too long {self.refused_length(table)}"
            )
        return lines

    # -- persistence ------------------------------------------------------------------------

    def to_json(self) -> str:
        """The learned state (not the declared ``unreadable`` ranges, which are config)."""
        return json.dumps(
            {
                "version": 1,
                "accepted": {t.value: n for t, n in sorted(self.accepted.items())},
                "lessons": [
                    {
                        "kind": x.kind,
                        "table": x.table.value,
                        "start": x.start,
                        "end": x.end,
                        "source": list(x.source),
                        "reason": x.reason,
                    }
                    for x in self.lessons
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(
        cls, text: str, *, unreadable: dict[Table, list[Span]] | None = None
    ) -> DeviceQuirks:
        """Restore what `to_json` saved; ValueError if ``text`` is not such a document."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != 1:
                raise ValueError("not a version 1 quirks document")  # noqa: TRY301
            accepted = {Table(t): _int(n) for t, n in data["accepted"].items()}
            lessons = [_lesson_from(item) for item in data["lessons"]]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"cannot read saved device quirks: {exc}") from exc
        return cls(unreadable=dict(unreadable or {}), lessons=lessons, accepted=accepted)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a count or address, got {value!r}")
    return value


def _lesson_from(item: dict[str, Any]) -> Lesson:
    kind = item["kind"]
    if kind not in _LESSON_KINDS:
        raise ValueError(f"unknown lesson kind {kind!r}")
    source = item["source"]
    if not isinstance(source, list) or len(source) != 2:
        raise ValueError(f"a lesson's source is [start, end], not {source!r}")
    return Lesson(
        kind=kind,
        table=Table(item["table"]),
        start=_int(item["start"]),
        end=_int(item["end"]),
        source=(_int(source[0]), _int(source[1])),
        reason=str(item["reason"]),
    )


def _member_spans(table: Table, points: Iterable[ModbusPoint]) -> list[Span]:
    return sorted({(p.address, p.address + p.register_count) for p in points if p.table is table})


def _fillers(span: Span, members: Sequence[Span]) -> list[Span]:
    """The parts of ``span`` no member covers."""
    out: list[Span] = []
    reached = span[0]
    for a, b in sorted(members):
        if a > reached:
            out.append((reached, a))
        reached = max(reached, b)
    if reached < span[1]:
        out.append((reached, span[1]))
    return out


class _Ranges:
    """Sorted disjoint ranges with an intersection test."""

    def __init__(self, spans: Iterable[Span]) -> None:
        merged: list[list[int]] = []
        for a, b in sorted(s for s in spans if s[0] < s[1]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._starts = [a for a, _ in merged]
        self._ends = [b for _, b in merged]

    def hits(self, start: int, end: int) -> bool:
        """Whether [start, end) shares a register with any range."""
        i = bisect.bisect_left(self._ends, start + 1)  # first range ending after `start`
        return i < len(self._starts) and self._starts[i] < end


@dataclass(frozen=True)
class _Rules:
    limit: int  # hard: the protocol's or the device's configured maximum
    cap: int | None  # learned, for merged reads
    no_filler: _Ranges
    bad: _Ranges
    bad_exact: frozenset[Span]
    boundaries: list[int]

    @classmethod
    def build(cls, table: Table, max_registers: int, quirks: DeviceQuirks | None) -> _Rules:
        limit = MAX_BITS_PER_READ if table.is_bits else min(max_registers, MAX_REGISTERS_PER_READ)
        if quirks is None:
            return cls(limit, None, _Ranges(()), _Ranges(()), frozenset(), [])
        return cls(
            limit=limit,
            cap=None,  # chosen by `_probe_cap`
            no_filler=_Ranges(
                [*quirks.unreadable.get(table, ()), *quirks._spans(table, "no_span")]
            ),
            bad=_Ranges(quirks._spans(table, "bad_point")),
            bad_exact=frozenset(quirks._spans(table, "bad_point")),
            boundaries=sorted({a for a, _ in quirks._spans(table, "boundary")}),
        )

    def crosses_boundary(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.boundaries, start)
        return i < len(self.boundaries) and self.boundaries[i] < end


@dataclass(frozen=True)
class Plan:
    """The reads of one cycle, with their cost and the naive plan's for comparison."""

    requests: list[ReadRequest]
    cost: float  # seconds per cycle
    model: CostModel
    naive_requests: int
    naive_cost: float
    notes: tuple[str, ...] = ()

    def explain(self) -> str:
        """A table a technician can read: one line per request, then the totals."""
        rows = [("table", "FC", "addresses", "count", "cost ms", "points")]
        for r in self.requests:
            names = ", ".join(name for name, _ in r.points)
            rows.append(
                (
                    r.table.value,
                    str(r.table.read_function),
                    f"{r.address:#06x}-{r.address + r.count - 1:#06x}",
                    str(r.count),
                    f"{self.model.request_cost(r.table, r.count) * 1e3:.1f}",
                    f"{len(r.points)}: {names if len(names) <= 60 else names[:57] + '...'}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = [
            "  ".join(
                cell.rjust(widths[i]) if 0 < i < 5 else cell.ljust(widths[i])
                for i, cell in enumerate(row[:5])
            )
            + "  "
            + row[5]
            for row in rows
        ]
        carried = sum(r.count for r in self.requests)
        saved = 1 - self.cost / self.naive_cost if self.naive_cost else 0.0
        lines.append(
            f"total: {len(self.requests)} requests, {carried} registers, "
            f"{self.cost * 1e3:.1f} ms per cycle; one request per point: "
            f"{self.naive_requests} requests, {self.naive_cost * 1e3:.1f} ms ({saved:.0%} saved)"
        )
        lines.append(
            f"cost model: {self.model.label}: {self.model.per_request * 1e3:.2f} ms per request"
            f" + {self.model.per_register * 1e3:.3f} ms per register"
        )
        lines.extend(f"known: {note}" for note in self.notes)
        return "\n".join(lines)


def _by_table(points: Iterable[Member]) -> dict[Table, list[Member]]:
    tables: dict[Table, list[Member]] = {}
    for member in points:  # the callers' pairs, not copies: a kept plan's requests hold them
        tables.setdefault(member[1].table, []).append(member)
    for members in tables.values():
        members.sort(key=lambda m: (m[1].address, m[1].address + m[1].register_count, m[0]))
    return {t: tables[t] for t in sorted(tables)}


def _check_lengths(members: Sequence[Member], limit: int) -> None:
    for name, point in members:
        if point.register_count > limit:
            raise PointTooLongError(name, point.register_count, limit)


def naive_plan(
    points: Iterable[Member], *, cost: CostModel, max_registers: int = MAX_REGISTERS_PER_READ
) -> Plan:
    """One request per point: the baseline the planner is measured against."""
    requests: list[ReadRequest] = []
    for table, members in _by_table(points).items():
        _check_lengths(members, _Rules.build(table, max_registers, None).limit)
        requests.extend(
            ReadRequest(table, p.address, p.register_count, ((n, p),)) for n, p in members
        )
    total = sum(cost.request_cost(r.table, r.count) for r in requests)
    return Plan(requests, total, cost, len(requests), total)


def _plan_table(
    table: Table, members: Sequence[Member], rules: _Rules, cost: CostModel
) -> tuple[list[Span], float]:
    """The cheapest grouping of ``members`` (sorted by address) as (first, last) indexes,
    and its cost.

    Grouping points contiguous in address order loses nothing: any plan can be rearranged so
    each point sits in the last read starting at or before it, which reads no more and adds no
    filler. A read of points j..i is allowed when its span is within the limit and either one
    point covers the whole span (a point read alone, with any points inside it, unless the
    point is a bad one: its read is refused, so nothing else rides in it) or it keeps to the
    learned cap, crosses no boundary, touches no bad point and carries no forbidden filler.
    Each of those but the first only gets worse as the read grows, so the inner loop stops at
    the first violation, and the limit bounds it: near-linear in the number of points.
    """
    n = len(members)
    starts = [p.address for _, p in members]
    ends = [p.address + p.register_count for _, p in members]
    best = [math.inf] * (n + 1)
    best[0] = 0.0
    first_of_last = [0] * (n + 1)
    for j in range(n):
        start = end = starts[j]
        cover = starts[j]  # furthest end of the points that start where the read starts
        bad_filler = False
        for i in range(j, n):
            if starts[i] > end:
                bad_filler = bad_filler or rules.no_filler.hits(end, starts[i])
            end = max(end, ends[i])
            if starts[i] == start:
                cover = max(cover, ends[i])
            if end - start > rules.limit:
                break
            if cover < end and (
                bad_filler
                or (rules.cap is not None and end - start > rules.cap)
                or rules.crosses_boundary(start, end)
                or rules.bad.hits(start, end)
            ):
                break
            if (starts[i], ends[i]) != (starts[j], ends[j]) and (start, end) in rules.bad_exact:
                continue  # a bad point's read is refused: no other point may ride in it
            total = best[j] + cost.request_cost(table, end - start)
            if total < best[i + 1]:
                best[i + 1] = total
                first_of_last[i + 1] = j
    groups: list[Span] = []
    i = n
    while i > 0:
        j = first_of_last[i]
        groups.append((j, i - 1))
        i = j
    groups.reverse()
    return groups, best[n]


def _merged_lengths(members: Sequence[Member], low: int, high: int) -> list[int]:
    """The lengths in (low, high) of the reads that merge consecutive ``members``."""
    lengths: set[int] = set()
    for j, (_, first) in enumerate(members):
        end = first.address + first.register_count
        for _, point in members[j + 1 :]:
            end = max(end, point.address + point.register_count)
            length = end - first.address
            if length >= high:
                break
            if length > low:
                lengths.add(length)
    return sorted(lengths)


def _probe_cap(
    table: Table, members: Sequence[Member], rules: _Rules, cost: CostModel, quirks: DeviceQuirks
) -> int | None:
    """The cap on merged reads to plan with, once a read was refused as too long.

    The device's limit lies between the longest read it answered (``low``) and the shortest
    it refused as too long: the cap bisects that range, but only at lengths that make the plan
    cheaper than planning with ``low``. The plan's cost only changes at the lengths some merged
    read of these points would have, and never rises as the cap grows, so the cap chosen is the
    first such length from half-way up. Answered, it raises ``low``; refused, it lowers the
    refused length; and a length no plan needs is never tried (the old half-way cap could sit
    on one for ever). With nothing left to gain the cap is ``low``: only what worked.
    """
    quirks.trial.pop(table, None)
    refused = quirks.refused_length(table)
    if refused is None:
        return None
    low = quirks.accepted.get(table, 0)
    lengths = _merged_lengths(members, low, min(refused, rules.limit + 1))
    if not lengths:
        return low

    def total(cap: int) -> float:
        return _plan_table(table, members, replace(rules, cap=cap), cost)[1]

    safe = total(low)
    if total(lengths[-1]) >= safe:
        return low
    # Half-way between answered and refused, or the first length past it that the plan would use.
    lo = min(bisect.bisect_left(lengths, (low + refused) // 2), len(lengths) - 1)
    hi = len(lengths) - 1  # the plan's cost never rises with the cap: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        if total(lengths[mid]) < safe:
            hi = mid
        else:
            lo = mid + 1
    quirks.trial[table] = lengths[lo]  # what `cap` says while this probe is out
    return lengths[lo]


def plan_reads(
    points: Iterable[Member],
    *,
    cost: CostModel,
    max_registers: int = MAX_REGISTERS_PER_READ,
    quirks: DeviceQuirks | None = None,
    ride_along: Iterable[Member] = (),
) -> Plan:
    """The cheapest reads covering every point in ``points`` (the ones due this cycle).

    ``ride_along`` points (not due) join a read whose span already holds them, for free; they
    never make a read longer. Raises PointTooLongError if a point alone exceeds the limit.

    With ``quirks``, the plan is kept there and given again while neither the points (the
    same objects) nor what the device taught change: planning every device every cycle was
    about a tenth of the agent's CPU at 50 meters (bench/bench_agent.py under py-spy).
    """
    points, ride_along = list(points), list(ride_along)
    if quirks is None:
        return _plan_reads(points, cost, max_registers, quirks, ride_along)
    due = _members_key(points), _members_key(ride_along)
    key = (quirks._state(), due, cost, max_registers)
    kept = quirks._plans.get(key)
    if kept is not None:
        return kept[1]
    plan = _plan_reads(points, cost, max_registers, quirks, ride_along)
    if len(quirks._plans) >= _PLANS_KEPT:
        quirks._plans.clear()
    # Kept with the points (their ids are in the key), shared by the devices asking for equal
    # points: 200 meters' keys were 1.4 MB, one per device.
    shared = _DUE.get(due, lambda: _Due(due, points, ride_along))
    quirks._plans[(key[0], shared.key, cost, max_registers)] = (shared, plan)
    return plan


def _members_key(members: Iterable[Member]) -> tuple[tuple[str, int], ...]:
    """Points as a key: by name and object (the points of a validated config are shared)."""
    return tuple((name, id(point)) for name, point in members)


class _Due:
    """The points of kept plans' keys (see `plan_reads`), held so their ids stay theirs."""

    __slots__ = ("__weakref__", "key", "points", "ride_along")

    def __init__(self, key: Any, points: list[Member], ride_along: list[Member]) -> None:
        self.key, self.points, self.ride_along = key, tuple(points), tuple(ride_along)


_DUE: SharedTable[_Due] = SharedTable()
# Planned requests, one object for equal ones of every device (see `_shared_request`).
_REQUESTS: SharedTable[ReadRequest] = SharedTable()


def _shared_request(request: ReadRequest) -> ReadRequest:
    """The request, or an equal one already planned for another device: the requests of a
    kept plan live as long as the agent, and most meters of a site plan equal ones."""
    key = (request.table, request.address, request.count, _members_key(request.points))
    return _REQUESTS.get(key, lambda: request)


_PLANS_KEPT = 32  # per device: the sets of points due together are few


def _plan_reads(
    points: list[Member],
    cost: CostModel,
    max_registers: int,
    quirks: DeviceQuirks | None,
    ride_along: list[Member],
) -> Plan:
    due = _by_table(points)
    due_names = {name for members in due.values() for name, _ in members}
    requests: list[ReadRequest] = []
    bad_by_table: dict[Table, _Ranges] = {}
    for table, members in due.items():
        rules = _Rules.build(table, max_registers, quirks)
        _check_lengths(members, rules.limit)
        if quirks is not None:
            rules = replace(rules, cap=_probe_cap(table, members, rules, cost, quirks))
        bad_by_table[table] = rules.bad
        for j, i in _plan_table(table, members, rules, cost)[0]:
            start = members[j][1].address
            end = max(p.address + p.register_count for _, p in members[j : i + 1])
            requests.append(ReadRequest(table, start, end - start, tuple(members[j : i + 1])))
    requests = [
        _shared_request(r) for r in _add_riders(requests, ride_along, due_names, bad_by_table)
    ]
    naive = naive_plan(
        [m for members in due.values() for m in members], cost=cost, max_registers=max_registers
    )
    return Plan(
        requests=requests,
        cost=sum(cost.request_cost(r.table, r.count) for r in requests),
        model=cost,
        naive_requests=len(naive.requests),
        naive_cost=naive.cost,
        notes=tuple(quirks.describe()) if quirks else (),
    )


def _add_riders(
    requests: list[ReadRequest],
    ride_along: Iterable[Member],
    due_names: set[str],
    bad_by_table: dict[Table, _Ranges],
) -> list[ReadRequest]:
    riders: dict[int, list[Member]] = {}
    for table, members in _by_table(m for m in ride_along if m[0] not in due_names).items():
        bad = bad_by_table.get(table)
        for name, point in members:
            a, b = point.address, point.address + point.register_count
            for index, r in enumerate(requests):
                inside = r.table is table and r.address <= a and b <= r.address + r.count
                # A bad point's read is refused: a rider there would be lost with it.
                if inside and not (bad and bad.hits(r.address, r.address + r.count)):
                    riders.setdefault(index, []).append((name, point))
                    break
    if not riders:
        return requests
    out = []
    for index, request in enumerate(requests):
        extra = riders.get(index)
        if not extra:
            out.append(request)
            continue
        merged = sorted(
            (*request.points, *extra),
            key=lambda m: (m[1].address, m[1].address + m[1].register_count, m[0]),
        )
        out.append(ReadRequest(request.table, request.address, request.count, tuple(merged)))
    return out


# Bisection from the protocol's 125 registers down to one takes 7 refusals: a cycle that has
# had more than this many re-plans reads the rest point by point (the naive plan's cost).
_MAX_REPLANS = 8


class ReadSession:
    """One cycle's reads of one device, re-planned after every refusal.

    ``next()`` gives the request to send; the caller reports the outcome with ``answered``,
    ``refused`` or ``short``. A refused or short merged read teaches its lesson and every point
    still to read is planned again with it, at once: a device that refuses reads longer than
    20 registers then costs the refusals of a bisection (76, 38, ... registers) plus reads of
    at most 20, never those reads plus one request per point. Points whose own read is refused
    are given up for this cycle (bad readings). Pure: no I/O, no clock.

    Worst case (a device that merges nothing at all): the naive plan's requests plus the
    refusals before the first re-plan reads point by point, at most ``_MAX_REPLANS``.
    """

    def __init__(
        self,
        points: Iterable[Member],
        *,
        cost: CostModel,
        max_registers: int = MAX_REGISTERS_PER_READ,
        quirks: DeviceQuirks,
        ride_along: Iterable[Member] = (),
    ) -> None:
        members = list(points)
        self.cost = cost
        self.max_registers = max_registers
        self.quirks = quirks
        self.plan = plan_reads(
            members, cost=cost, max_registers=max_registers, quirks=quirks, ride_along=ride_along
        )
        self._pending: dict[str, ModbusPoint] = dict(members)
        self._queue = list(reversed(self.plan.requests))  # a stack: next() pops the end
        self.sent = 0
        self.replans = 0

    def next(self) -> ReadRequest | None:
        """The next request to send, or None when every point is read or given up."""
        while self._queue:
            request = self._queue.pop()
            if any(name in self._pending for name, _ in request.points):
                self.sent += 1
                return request
        return None

    def answered(self, request: ReadRequest) -> bool:
        """``request`` was answered in full. Returns True when that is news (persist it)."""
        for name, _ in request.points:
            self._pending.pop(name, None)
        news = self.quirks.learn_success(request.table, request.address, request.count)
        if (
            news
            and self._pending
            and self.replans <= _MAX_REPLANS
            and self.quirks.refused_length(request.table) is not None
        ):
            self._replan()  # a longer read worked: the next probe may be longer still
        return news

    def refused(
        self, request: ReadRequest, exception_code: int
    ) -> tuple[list[Lesson], list[Member]]:
        """The device answered ``exception_code``: the new lessons, and the points given up
        (their own read was refused: bad readings this cycle)."""
        lessons = self.quirks.learn_refusal(
            request.table,
            request.address,
            request.count,
            exception_code,
            points=[p for _, p in request.points],
        )
        return lessons, self._after_refusal(request, lessons)

    def short(self, request: ReadRequest, got: int) -> tuple[list[Lesson], list[Member]]:
        """The device answered only ``got`` of the registers asked for: as ``refused``."""
        lessons = self.quirks.learn_short_reply(
            request.table,
            request.address,
            request.count,
            got,
            points=[p for _, p in request.points],
        )
        return lessons, self._after_refusal(request, lessons)

    def _replan(self) -> list[ReadRequest]:
        plan = plan_reads(
            list(self._pending.items()),
            cost=self.cost,
            max_registers=self.max_registers,
            quirks=self.quirks,
        ).requests
        self._queue = list(reversed(plan))
        return plan

    def _after_refusal(self, request: ReadRequest, lessons: list[Lesson]) -> list[Member]:
        span = (request.address, request.address + request.count)
        lost = [
            (name, point)
            for name, point in request.points
            if name in self._pending
            and (point.address, point.address + point.register_count) == span
        ]
        for name, _ in lost:
            del self._pending[name]
        rest = [(n, p) for n, p in request.points if n in self._pending]
        if not rest:
            return lost
        self.replans += 1
        if lessons and self.replans <= _MAX_REPLANS:
            plan = self._replan()
            if all((r.table, r.address, r.count) != (request.table, *span) for r in plan):
                return lost
        # Nothing learned (a transient exception), or learning did not settle: the points of
        # this read one by one, then the rest as planned.
        self._queue.extend(
            ReadRequest(p.table, p.address, p.register_count, ((n, p),)) for n, p in reversed(rest)
        )
        return lost
