"""The read session against pymodbus servers that refuse reads longer than N registers.

A refused merged read is re-planned at once with what it taught (`ReadSession`), so the first
cycle costs no more than one request per point, and the plan is the cheapest the device allows
by the third cycle (requests counted as sent on the bus, per cycle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.core.links import TcpLinkConfig
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.errors import ModbusExceptionError, ShortReplyError
from drivers.modbus.planner import CostModel, DeviceQuirks, ReadSession, plan_reads
from drivers.modbus.spec import ModbusDevice
from hil.profile_device import ProfileDevice
from tests.helpers import modbus_bus

TCP = CostModel.for_tcp()


class CountingBus:
    """The bus, counting the requests sent through it."""

    def __init__(self, bus: ModbusBusClient) -> None:
        self.bus = bus
        self.requests = 0

    async def read(self, **request: Any) -> list[int] | list[bool]:
        self.requests += 1
        return await self.bus.read(**request)


async def read_cycle(
    device: ModbusDevice, bus: CountingBus, quirks: DeviceQuirks
) -> tuple[dict[str, list[int]], list[str]]:
    """One cycle as the device client runs it: the raw registers of each point read, and the
    points given up."""
    session = ReadSession(list(device.points.items()), cost=TCP, quirks=quirks)
    values: dict[str, list[int]] = {}
    lost: list[str] = []
    while (request := session.next()) is not None:
        try:
            raw = await bus.read(
                device=device.name,
                unit_id=1,
                table=request.table,
                address=request.address,
                count=request.count,
            )
        except ModbusExceptionError as exc:
            lost += [name for name, _ in session.refused(request, exc.code)[1]]
            continue
        except ShortReplyError as exc:
            lost += [name for name, _ in session.short(request, exc.got)[1]]
            continue
        session.answered(request)
        for name, point in request.points:
            offset = point.address - request.address
            values[name] = [int(r) for r in raw[offset : offset + point.register_count]]
    return values, lost


async def cycles(profile: str, limit: int, count: int) -> tuple[list[int], int, int]:
    """Requests per cycle over ``count`` cycles of a device refusing reads over ``limit``
    (exception 03); the naive plan's requests; the cheapest plan's for such a device."""
    device = ModbusDevice(name="dut", bus="dut", profile=profile)
    served = ProfileDevice(device, {}, max_registers=limit)
    points = list(device.points.items())
    async with served:
        assert served.endpoint is not None
        host, port = served.endpoint
        link = TcpLinkConfig(kind="modbus_tcp", host=host, port=port, timeout=1.0)
        quirks = DeviceQuirks()
        per_cycle: list[int] = []
        async with modbus_bus("dut", link) as client:
            bus = CountingBus(client)
            for _ in range(count):
                before = bus.requests
                values, lost = await read_cycle(device, bus, quirks)
                per_cycle.append(bus.requests - before)
                assert lost == []
                assert set(values) == set(device.points), "every point read every cycle"
    best = plan_reads(points, cost=TCP, max_registers=limit)
    return per_cycle, best.naive_requests, len(best.requests)


def settled_by_third(per_cycle: Sequence[int], best: int) -> bool:
    return all(n == best for n in per_cycle[2:])


async def test_sdm630_refusing_over_20_registers() -> None:
    # Lenient plan: 3 reads (76, 6, 2 registers); today's poller paid 19 requests (3 refused,
    # then point by point) in the first cycle and needed 3 cycles to reach 5.
    per_cycle, naive, best = await cycles("eastron-sdm630", 20, 4)
    assert per_cycle[0] <= naive == 20
    assert best == 5
    assert settled_by_third(per_cycle, best), per_cycle


async def test_sunspec_learns_a_6_register_cap_in_two_cycles() -> None:
    per_cycle, naive, best = await cycles("sunspec-inverter", 6, 5)
    assert per_cycle[0] <= naive
    assert settled_by_third(per_cycle, best), per_cycle


async def test_a_lenient_device_pays_nothing_to_learn() -> None:
    per_cycle, _, best = await cycles("eastron-sdm630", 125, 2)
    assert per_cycle == [best, best] == [3, 3]


async def test_a_point_refused_alone_is_given_up_and_costs_only_itself() -> None:
    # The device serves the profile strictly (a register it lacks answers exception 02); the
    # config adds a point it does not have. Only that point is lost, every cycle.
    served_spec = ModbusDevice(name="dut", bus="dut", profile="eastron-sdm630")
    extra = {"register": 0x0100, "table": "input", "type": "float32"}
    device = ModbusDevice(name="dut", bus="dut", profile="eastron-sdm630", points={"extra": extra})
    served = ProfileDevice(served_spec, {}, strict=True)
    async with served:
        assert served.endpoint is not None
        host, port = served.endpoint
        link = TcpLinkConfig(kind="modbus_tcp", host=host, port=port, timeout=1.0)
        quirks = DeviceQuirks()
        per_cycle = []
        async with modbus_bus("dut", link) as client:
            bus = CountingBus(client)
            for _ in range(3):
                before = bus.requests
                values, lost = await read_cycle(device, bus, quirks)
                per_cycle.append(bus.requests - before)
                assert lost == ["extra"]
                assert set(values) == set(device.points) - {"extra"}
    assert per_cycle[0] <= len(device.points)
    settled = plan_reads(list(device.points.items()), cost=TCP, quirks=quirks).requests
    assert per_cycle[1:] == [len(settled)] * 2, per_cycle


def test_a_device_plan_is_made_once_until_the_device_teaches_something() -> None:
    device = ModbusDevice(name="dut", bus="dut", profile="eastron-sdm630")
    points = list(device.points.items())
    quirks = DeviceQuirks()
    first = plan_reads(points, cost=TCP, quirks=quirks)
    assert plan_reads(points, cost=TCP, quirks=quirks) is first  # kept, not planned again
    assert plan_reads(points[:5], cost=TCP, quirks=quirks) is not first  # other points due
    longest = max(first.requests, key=lambda r: r.count)
    quirks.learn_refusal(
        longest.table, longest.address, longest.count, 3, points=[p for _, p in longest.points]
    )
    again = plan_reads(points, cost=TCP, quirks=quirks)
    assert again is not first
    assert max(r.count for r in again.requests) < longest.count  # the lesson is applied
    assert (
        again.requests
        == plan_reads(points, cost=TCP, quirks=DeviceQuirks.from_json(quirks.to_json())).requests
    )


def test_a_device_that_merges_nothing_costs_at_most_a_bisection_more() -> None:
    # 40 one-register points side by side; every read longer than one register is refused.
    points = [
        (f"r{a}", ModbusDevice.model_validate(
            {"name": "d", "bus": "b", "points": {"x": {"register": a, "type": "uint16"}}}
        ).points["x"])
        for a in range(40)
    ]  # fmt: skip
    quirks = DeviceQuirks()
    for cycle in range(3):
        session = ReadSession(points, cost=TCP, quirks=quirks)
        read: list[str] = []
        while (request := session.next()) is not None:
            if request.count > 1:
                session.refused(request, 3)
                continue
            session.answered(request)
            read += [name for name, _ in request.points]
        assert sorted(read) == sorted(n for n, _ in points), "each point once, none lost"
        bound = len(points) + (8 if cycle == 0 else 0)  # naive, plus the refusals of a bisection
        assert session.sent <= bound, (cycle, session.sent)
