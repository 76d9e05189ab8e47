"""The platform link as ``edge-agent status`` and ``edge-agent platform`` show it: its state, the
platform's clock offset, the backlog, and the reporting rate (periods delivered / due) of today
and of the days before, read from the store's meta keys the uplink keeps."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from agent.core.record import ms_to_iso
from agent.energy.periods import day_of
from agent.platform.reports import LEDGER_KEY, Ledger, day_rate
from agent.store import read_meta

__all__ = ["LEDGER_KEY", "STATE_KEY", "platform_summary", "print_platform_rates"]

STATE_KEY = "platform:state"
"""Meta key: the link's state (state, reason, since, offset, last heartbeat and ack, backlog,
and the period and zone the rates are counted in)."""


def platform_summary(
    state_text: str | None, ledger_text: str | None, *, now_ms: int, days: int = 2
) -> dict[str, Any] | None:
    """The link's summary, or None when no platform uplink ever ran on this store."""
    if state_text is None:
        return None
    try:
        state = json.loads(state_text)
        if not isinstance(state, dict):
            return None
    except ValueError:
        return None
    out: dict[str, Any] = {
        "state": state.get("state"),
        "reason": state.get("reason"),
        "since": _iso(state.get("since_ms")),
        "clock_offset_s": state.get("offset_s"),
        "last_heartbeat": _iso(state.get("heartbeat_ms")),
        "last_ack": _iso(state.get("last_ack_ms")),
        "last_period": state.get("last_period"),
        "backlog": state.get("backlog"),
        "rates": [],
    }
    period_ms, tz = state.get("period_ms"), state.get("tz")
    if ledger_text is None or not isinstance(period_ms, int) or not isinstance(tz, str):
        return out
    try:
        ledger = Ledger.from_json(ledger_text)
        zone = ZoneInfo(tz)
    except (ValueError, KeyError):
        return out
    today = day_of(now_ms, zone)
    first = day_of(ledger.origin, zone)
    for back in range(days):
        day: date = today - timedelta(days=back)
        if day < first:
            break
        rate = day_rate(ledger, day, now_ms=now_ms, period_ms=period_ms, tz=zone)
        out["rates"].append(rate.to_record())
    out["meters_missing"] = ledger.meters_missing
    return out


def _iso(ms: object) -> str | None:
    return ms_to_iso(ms) if isinstance(ms, int) and ms else None


def print_platform_rates(db: Path, *, out: TextIO, now_ms: int, days: int = 7) -> None:
    """The reporting rate of the last ``days`` days, for ``edge-agent energy``; nothing when
    this store never had a platform link."""
    if not db.is_file():
        return
    link = platform_summary(
        read_meta(db, STATE_KEY), read_meta(db, LEDGER_KEY), now_ms=now_ms, days=days
    )
    if link is None or not link["rates"]:
        return
    out.write("reporting rate to the energy-monitoring platform (periods delivered / due):\n")
    for rate in link["rates"]:
        pct = rate["rate_percent"]
        shown = "-" if pct is None else f"{pct:.1f} %"
        out.write(f"  {rate['day']}  {rate['delivered']:>4}/{rate['due']:<4} {shown}\n")
