"""``edge-agent status``: what the buffer holds and how each device was last heard of.

Reads the store through its own read-only connection, so it works while the agent runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

from agent.errors import AgentError
from agent.record import Quality, ms_to_iso
from agent.store import read_events, read_latest, read_stats

__all__ = ["print_status", "status_report"]


def status_report(db: Path) -> dict[str, Any]:
    if not db.is_file():
        raise AgentError(f"there is no buffer at {db}: give the agent's --data-dir (or --db)")
    stats = read_stats(db)
    devices: dict[str, dict[str, Any]] = {}
    for reading in read_latest(db):
        entry = devices.setdefault(
            reading.device,
            {"points": 0, "bad_points": 0, "last_reading_ms": 0, "last_good_ms": None},
        )
        entry["points"] += 1
        entry["last_reading_ms"] = max(entry["last_reading_ms"], reading.ts_ms)
        if reading.quality is Quality.GOOD:
            entry["last_good_ms"] = max(entry["last_good_ms"] or 0, reading.ts_ms)
        else:
            entry["bad_points"] += 1
    return {
        "buffer": {
            "path": str(db),
            "rows": stats.rows,
            "unsynced": stats.unsynced,
            "bytes": stats.bytes,
            "bytes_per_reading": round(stats.used_bytes / stats.rows, 1) if stats.rows else None,
            "max_bytes": stats.max_bytes,
            "evicted_synced": stats.evicted_synced,
            "dropped_unsent": stats.evicted_unsynced,
            "lost_unstored": stats.dropped,
            "events_unsent": stats.events_unpublished,
            "oldest_unsynced": iso(stats.oldest_unsynced_ms),
            "last_seq": stats.last_seq,
        },
        "alerts": [
            e.to_record() for e in read_events(db, limit=5) if not e.kind.startswith("hvac.")
        ],
        "last_sync": iso(stats.last_sync_ms),
        "devices": {
            name: {
                "points": d["points"],
                # The latest reading of a point is bad when its last read failed.
                "health": "ok" if d["bad_points"] == 0 else f"{d['bad_points']} points failing",
                "last_reading": iso(d["last_reading_ms"]),
                "last_good_reading": iso(d["last_good_ms"]),
            }
            for name, d in sorted(devices.items())
        },
    }


def iso(ms: int | None) -> str | None:
    return ms_to_iso(ms) if ms else None


def _age(iso: str | None) -> str:
    if iso is None:
        return "never"
    from agent.record import iso_to_ms

    seconds = max(0.0, time.time() - iso_to_ms(iso) / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{iso} ({seconds / size:.0f}{unit} ago)"
    return f"{iso} ({seconds:.0f}s ago)"


def print_status(db: Path, *, as_json: bool, out: TextIO) -> int:
    report = status_report(db)
    if as_json:
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return 0
    buf = report["buffer"]
    out.write(
        f"buffer {buf['path']}: {buf['rows']} readings, {buf['unsynced']} not yet sent, "
        f"{buf['bytes'] / 1024:.0f} KiB"
        + (f" ({buf['bytes_per_reading']} bytes per reading)" if buf["bytes_per_reading"] else "")
        + "\n"
    )
    out.write(f"oldest unsent: {_age(buf['oldest_unsynced'])}\n")
    out.write(f"last sync:     {_age(report['last_sync'])}\n")
    budget = f"{buf['max_bytes'] / 2**20:.0f} MiB" if buf["max_bytes"] else "none"
    out.write(
        f"budget:        {budget}; {buf['evicted_synced']} sent readings evicted, "
        f"{buf['dropped_unsent']} unsent readings dropped, "
        f"{buf['lost_unstored']} lost before they were stored\n"
    )
    for alert in report["alerts"]:
        out.write(f"  alert {alert['time']} {alert['kind']}: {alert['detail']}\n")
    for name, dev in report["devices"].items():
        out.write(
            f"  {name:<18} {dev['health']:<18} {dev['points']:>3} points, "
            f"last good reading {_age(dev['last_good_reading'])}\n"
        )
    return 0
