"""The store names every reading it gives back by its point, from the writer's map of point ids
(a list by id, filled as points are added and when a file is opened again)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.core.record import Reading
from agent.store import Store


def _readings(devices: list[str], points: int, ts: int) -> list[Reading]:
    return [
        Reading(d, f"p{i}", ts, float(i), "kWh" if i % 2 else "V")
        for d in devices
        for i in range(points)
    ]


def _named(stored: list[object]) -> list[tuple[str, str, str, float]]:
    return [(r.device, r.point, r.unit, r.value) for r in stored]  # type: ignore[attr-defined]


async def test_readings_keep_their_names_across_a_reopen_and_new_points(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    first = _readings(["m1", "m2"], 5, 1_700_000_000_000)
    async with Store(db, batch_window=0.05) as store:
        await store.append(first)
        await store.flush()
    # A point and its reading that another process added, the point's id far past the others:
    # named when read (from the file), not by growing the map to that id.
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO points (id, device, point, unit) VALUES (9999999, 'x', 'y', 'W')")
        conn.execute(
            "INSERT INTO readings (point_id, ts_ms, value, quality) VALUES (9999999, 1, 2.5, 0)"
        )
    conn.close()
    later = _readings(["m2", "m3"], 7, 1_700_000_001_000)
    async with Store(db, batch_window=0.05) as store:
        await store.append(later)
        await store.flush()
        stored = await store.unsynced(1000)
    expected = [(r.device, r.point, r.unit, r.value) for r in first]
    expected += [("x", "y", "W", 2.5)]
    expected += [(r.device, r.point, r.unit, r.value) for r in later]
    assert _named(stored) == expected
