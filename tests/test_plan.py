"""The foundation's request grouping: every point covered, no request over the device's limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.plan import group_requests
from drivers.modbus.spec import DataType, ModbusPoint, Table

point_types = st.sampled_from([DataType.UINT16, DataType.INT32, DataType.FLOAT32, DataType.FLOAT64])


@st.composite
def point_sets(draw: st.DrawFn) -> list[tuple[str, ModbusPoint]]:
    count = draw(st.integers(1, 40))
    points = []
    for index in range(count):
        table = draw(st.sampled_from([Table.HOLDING, Table.INPUT]))
        points.append(
            (
                f"p{index}",
                ModbusPoint.model_validate(
                    {
                        "register": draw(st.integers(0, 600)),
                        "table": table,
                        "type": draw(point_types),
                    }
                ),
            )
        )
    return points


@given(points=point_sets(), max_registers=st.integers(4, 125), max_gap=st.integers(0, 20))
def test_every_point_covered_within_limits(
    points: list[tuple[str, ModbusPoint]], max_registers: int, max_gap: int
) -> None:
    requests = group_requests(points, max_registers=max_registers, max_gap=max_gap)
    covered = [name for r in requests for name, _ in r.points]
    assert sorted(covered) == sorted(name for name, _ in points)
    for request in requests:
        assert request.count <= max_registers
        for _, point in request.points:
            assert point.table is request.table
            assert request.address <= point.address
            assert point.address + point.register_count <= request.address + request.count


def test_sdm630_profile_points_in_three_requests() -> None:
    # 0x0000-0x004B, 0x00C8-0x00CD and 0x0156-0x0157 are far apart: three requests.
    from drivers.modbus.profiles import load_profile

    raw = load_profile("eastron-sdm630")["points"]
    points = [(n, ModbusPoint.model_validate(p)) for n, p in raw.items()]
    requests = group_requests(points, max_registers=125, max_gap=40)
    assert [(r.address, r.count) for r in requests] == [(0x0000, 0x4C), (0x00C8, 6), (0x0156, 2)]
