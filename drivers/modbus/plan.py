"""Group the points due in a cycle into read requests.

This is the foundation's simple grouping: points of one table, sorted by address, share a
request while the span stays within the device's register limit and the hole between two
points is small. (The cost-model planner that learns device quirks replaces it later.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.modbus.spec import ModbusPoint, Table

__all__ = ["ReadRequest", "group_requests"]

MAX_BITS_PER_READ = 2000  # FC1/FC2 limit (Modbus application protocol v1.1b3, 6.1 and 6.2)


@dataclass(frozen=True)
class ReadRequest:
    table: Table
    address: int
    count: int
    points: tuple[tuple[str, ModbusPoint], ...]


def group_requests(
    points: Iterable[tuple[str, ModbusPoint]], *, max_registers: int = 125, max_gap: int = 8
) -> list[ReadRequest]:
    """Requests covering every point, none longer than the device allows."""
    by_table: dict[Table, list[tuple[str, ModbusPoint]]] = {}
    for name, point in points:
        by_table.setdefault(point.table, []).append((name, point))
    requests: list[ReadRequest] = []
    for table, members in by_table.items():
        limit = MAX_BITS_PER_READ if table.is_bits else max_registers
        members.sort(key=lambda item: (item[1].address, item[0]))
        current: list[tuple[str, ModbusPoint]] = []
        start = end = 0  # [start, end) of the current request
        for name, point in members:
            p_start, p_end = point.address, point.address + point.register_count
            if current and p_start - end <= max_gap and max(end, p_end) - start <= limit:
                current.append((name, point))
                end = max(end, p_end)
                continue
            if current:
                requests.append(ReadRequest(table, start, end - start, tuple(current)))
            current, start, end = [(name, point)], p_start, p_end
        if current:
            requests.append(ReadRequest(table, start, end - start, tuple(current)))
    return requests
