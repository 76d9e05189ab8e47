"""The energy pipeline's base intervals as rows of the ``intervals`` table (docs/energy.md).

Kept apart from the pruned events (migration 0003); written by the writer thread with events in
one transaction (``Store.add_events``), read by ``Store.intervals`` on the writer's connection and
by :func:`agent.store.queries.read_intervals` on a read-only one, through the same query here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from agent.store.schema import _has_table

_INTERVAL_COLUMNS = (
    "meter",
    "start_ms",
    "end_ms",
    "value",
    "unit",
    "quality",
    "flags",
    "energy_type",
    "sub_item",
    "role",
)


def _interval_row(item: Mapping[str, Any]) -> tuple[Any, ...]:
    flags = json.dumps(sorted(str(f) for f in item.get("flags", ())), separators=(",", ":"))
    return tuple(flags if c == "flags" else item.get(c) for c in _INTERVAL_COLUMNS)


def _query_intervals(
    conn: sqlite3.Connection,
    since_ms: int,
    until_ms: int,
    meters: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    if not _has_table(conn, "intervals") or (meters is not None and not meters):
        return []
    where, params = "start_ms >= ? AND start_ms < ?", list[Any]([since_ms, until_ms])
    if meters is not None:
        where += f" AND meter IN ({','.join('?' * len(meters))})"
        params.extend(meters)
    cur = conn.execute(
        f"SELECT {', '.join(_INTERVAL_COLUMNS)} FROM intervals"
        f" WHERE {where} ORDER BY start_ms, meter",
        params,
    )
    out: list[dict[str, Any]] = []
    for row in cur:
        item = dict(zip(_INTERVAL_COLUMNS, row, strict=True))
        item["flags"] = json.loads(item["flags"])
        out.append(item)
    return out
