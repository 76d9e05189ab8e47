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

# "clock" is "untrusted" for a reading stamped before the clock was trusted, else empty.
FIELDS = ["seq", "device", "point", "ts", "value", "unit", "quality", "clock"]


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
    skipped = 0

    def unreadable() -> None:
        nonlocal skipped
        skipped += 1

    rows = export_readings(
        db,
        since_ms=_time("--since", since),
        until_ms=_time("--until", until),
        device=device,
        on_unreadable=unreadable,
    )
    if fmt == "jsonl":
        for reading in rows:
            out.write(json.dumps(reading.to_record(), ensure_ascii=False) + "\n")
    else:
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for reading in rows:
            writer.writerow(reading.to_record())
    if skipped:
        # The records that could be read are out; say plainly that some could not.
        raise AgentError(
            f"{skipped} records could not be read: {db} is damaged (the agent sets it aside "
            "and rebuilds it when it opens it; see `edge-agent store check`)"
        )
    return 0
