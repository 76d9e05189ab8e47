"""``edge-agent export``: stored reading records, one per line (JSON Lines or CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TextIO

from agent.core.errors import AgentError
from agent.core.record import iso_to_ms
from agent.store import export_readings

__all__ = ["export"]

FIELDS = ["seq", "device", "point", "ts", "value", "unit", "quality"]


def _time(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return iso_to_ms(text)
    except ValueError:
        raise AgentError(
            f"{option} {text!r} is not an ISO 8601 time, e.g. 2026-11-26T08:00:00+08:00"
        ) from None


def export(
    db: Path, *, fmt: str, since: str | None, until: str | None, device: str | None, out: TextIO
) -> int:
    if not db.is_file():
        raise AgentError(f"there is no buffer at {db}: give the agent's --data-dir (or --db)")
    rows = export_readings(
        db, since_ms=_time("--since", since), until_ms=_time("--until", until), device=device
    )
    if fmt == "jsonl":
        for reading in rows:
            out.write(json.dumps(reading.to_record(), ensure_ascii=False) + "\n")
    else:
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for reading in rows:
            writer.writerow(reading.to_record())
    return 0
