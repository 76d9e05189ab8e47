"""Devices with equal points share their planned requests and decoder layouts, and a device
that goes drops what only it used (drivers/modbus/shared.py)."""

from __future__ import annotations

import gc
import struct

from agent.core.links import TcpLinkConfig
from drivers.modbus import planner, unpack
from drivers.modbus.device import ModbusDeviceClient
from drivers.modbus.planner import CostModel, DeviceQuirks, plan_reads
from drivers.modbus.spec import ByteOrder, ModbusDevice, ModbusPoint, WordOrder
from drivers.modbus.unpack import ReplyDecoder
from tests.helpers import modbus_bus

TCP = CostModel.for_tcp()


def _points(first: int) -> list[tuple[str, ModbusPoint]]:
    return [
        (f"p{i}", ModbusPoint(register=first + 2 * i, type="float32", unit="V")) for i in range(4)
    ]


def test_equal_points_of_two_devices_plan_one_request_and_one_layout() -> None:
    points = _points(100)  # one config's shared point objects, as agent/config/sharing.py makes
    a = plan_reads(list(points), cost=TCP, quirks=DeviceQuirks())
    b = plan_reads([(n, p) for n, p in points], cost=TCP, quirks=DeviceQuirks())
    assert [r.address for r in a.requests] == [100]
    assert a.requests[0] is b.requests[0]
    left = ReplyDecoder("m1", a.requests[0], WordOrder.BIG, ByteOrder.BIG)
    right = ReplyDecoder("m2", b.requests[0], WordOrder.BIG, ByteOrder.BIG)
    assert left._layout is right._layout
    raw = list(struct.unpack(">8H", struct.pack(">4f", 1.5, 2.5, 3.5, 4.5)))
    assert [(r.device, r.point, r.value) for r in right.decode(raw, 0)] == [
        ("m2", f"p{i}", 1.5 + i) for i in range(4)
    ]
    assert [r.device for r in left.decode(raw, 0)] == ["m1"] * 4


def test_other_points_or_orders_are_not_shared() -> None:
    quirks = DeviceQuirks()
    a = plan_reads(_points(100), cost=TCP, quirks=quirks)
    b = plan_reads(_points(100), cost=TCP, quirks=DeviceQuirks())  # equal, other objects
    assert a.requests[0] is not b.requests[0]
    big = ReplyDecoder("m1", a.requests[0], WordOrder.BIG, ByteOrder.BIG)
    little = ReplyDecoder("m2", a.requests[0], WordOrder.LITTLE, ByteOrder.BIG)
    assert big._layout is not little._layout
    raw = list(struct.unpack(">8H", struct.pack(">4f", 1.5, 2.5, 3.5, 4.5)))
    assert [r.value for r in big.decode(raw, 0)] == [1.5, 2.5, 3.5, 4.5]
    assert [r.value for r in little.decode(raw, 0)] != [1.5, 2.5, 3.5, 4.5]


def test_what_no_device_uses_any_more_is_dropped() -> None:
    gc.collect()
    before = len(planner._REQUESTS), len(planner._DUE), len(unpack._LAYOUTS)
    quirks = DeviceQuirks()
    plan = plan_reads(_points(300), cost=TCP, quirks=quirks)
    decoder = ReplyDecoder("m1", plan.requests[0], WordOrder.BIG, ByteOrder.BIG)
    during = len(planner._REQUESTS), len(planner._DUE), len(unpack._LAYOUTS)
    assert during == (before[0] + 1, before[1] + 1, before[2] + 1)
    del plan, decoder, quirks
    gc.collect()
    assert (len(planner._REQUESTS), len(planner._DUE), len(unpack._LAYOUTS)) == before


def test_devices_with_one_point_config_share_its_point_info() -> None:
    point = ModbusPoint(register=0, type="float32", unit="kWh")
    fast = ModbusPoint(register=2, type="float32", unit="kWh", interval=1.0)
    bus = modbus_bus("line", TcpLinkConfig(kind="modbus_tcp", host="127.0.0.1", port=1502))

    def client(name: str, interval: float) -> ModbusDeviceClient:
        device = ModbusDevice(
            name=name, bus="line", unit_id=1, interval=interval, points={"e": point, "f": fast}
        )
        return ModbusDeviceClient(device, bus)

    a, b, slow = client("m1", 10.0), client("m2", 10.0), client("m3", 60.0)
    assert a.points["e"] is b.points["e"]
    assert a.points["e"] is not slow.points["e"]  # another interval
    assert (a.points["e"].interval, slow.points["e"].interval) == (10.0, 60.0)
    assert a.points["f"] is slow.points["f"]  # its own interval: the device's does not count
    assert slow.points["f"].interval == 1.0
    assert a.points is b.points  # the whole read-only mapping
    assert slow.points is not a.points
