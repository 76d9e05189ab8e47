"""``edge-agent status``: what the buffer holds and how each device was last heard of.

Reads the store through its own read-only connection, so it works while the agent runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from agent.core.clock import Clock, system_clock
from agent.core.errors import AgentError
from agent.core.record import Quality, ms_to_iso
from agent.platform.summary import LEDGER_KEY, STATE_KEY, platform_summary
from agent.store import StoreStats, read_events, read_latest, read_meta, read_stats
from agent.store.health import diagnose, read_only_mount
from agent.store.lock import writer_pid
from agent.store.maintenance import check_store

__all__ = ["add_commands", "dispatch", "print_status", "status_report"]

ALERT_KINDS = (
    "readings_dropped",
    "readings_lost",
    "events_lost",
    "store_write_failed",
    "store_damaged",
    "store_file_gone",
    "energy.alert",
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``edge-agent status`` and ``edge-agent store check``: what the buffer holds and lost,
    and whether its file is sound."""
    status = sub.add_parser(
        "status",
        help="buffer depth, readings lost by reason, store health, last sync, latest per device",
    )
    status.add_argument("--data-dir", type=Path, default=None)
    status.add_argument("--db", type=Path, default=None)
    status.add_argument("--json", action="store_true")
    store = sub.add_parser("store", help="maintenance of the reading store")
    actions = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="SQLite's full integrity check of the store; exit 0 when sound, 1 when damaged",
    )
    check.add_argument("--data-dir", type=Path, default=None)
    check.add_argument("--db", type=Path, default=None)
    check.add_argument(
        "--repair",
        action="store_true",
        help="with the agent stopped: set a damaged store aside (kept) and rebuild it from what "
        "it still holds",
    )


def dispatch(args: argparse.Namespace, *, db: Path) -> int:
    if args.command == "status":
        return print_status(db, as_json=args.json, out=sys.stdout)
    return check_store(db, repair=args.repair, out=sys.stdout)


def status_report(db: Path, *, clock: Clock | None = None) -> dict[str, Any]:
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
    cadence = _cadence(db)
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
            # Every reading that will never reach the broker, by reason (agent.store.health);
            # readings the agent could not write to the file are counted from its ledger.
            "lost": stats.lost,
            "lost_by_reason": stats.losses,
            "events_lost": stats.events_lost,
            # Stamped before the clock was trusted: corrected when it is (same boot), or
            # flagged for good (a reboot in between).
            "clock_untrusted_awaiting": stats.clock_awaiting,
            "clock_untrusted_for_good": stats.clock_uncorrected,
            "events_unsent": stats.events_unpublished,
            "oldest_unsynced": iso(stats.oldest_unsynced_ms),
            "last_seq": stats.last_seq,
        },
        # Alerts only: the newest buffer drops and energy alerts (audit trails and interval
        # records are events too, but they are not alerts).
        "alerts": [e.to_record() for e in read_events(db, limit=5, kinds=ALERT_KINDS)],
        "store_health": _health(db, stats),
        # Whether an agent (or `sync`) writes the store now: without one, the devices' states
        # below are those of its last run.
        "writer": _writer(db),
        "last_sync": iso(stats.last_sync_ms),
        "energy_quality": _energy_quality(db),
        "platform": platform_summary(
            read_meta(db, STATE_KEY),
            read_meta(db, LEDGER_KEY),
            now_ms=(clock if clock is not None else system_clock()).now_ms(),
        ),
        "devices": {
            name: {
                "points": d["points"],
                # The latest reading of a point is bad when its last read failed.
                "health": "ok" if d["bad_points"] == 0 else f"{d['bad_points']} points failing",
                "last_reading": iso(d["last_reading_ms"]),
                "last_good_reading": iso(d["last_good_ms"]),
                # Set when the device's interval could not be kept since the agent started.
                "overruns": cadence.get(name),
            }
            for name, d in sorted(devices.items())
        },
    }


def _cadence(db: Path) -> dict[str, dict[str, Any]]:
    """Per device, the ticks its poller could not keep since the agent started (written by
    agent.sources.cadence under this key); empty when none overran or the record is unreadable."""
    text = read_meta(db, "polling:cadence")  # agent.sources.cadence.CADENCE_KEY
    if text is None:
        return {}
    try:
        record = json.loads(text)
        since = iso(int(record["since_ms"]))
        return {
            str(name): {
                "ticks_missed": int(d["overruns"]),
                "cycles": int(d["cycles"]),
                "interval_s": d["interval_s"],
                "last_cycle_s": d["last_cycle_s"],
                "last": iso(d["last_overrun_ms"]),
                "since": since,
            }
            for name, d in record["devices"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def _writer(db: Path) -> dict[str, Any]:
    try:
        pid = writer_pid(db)
    except OSError as exc:
        return {"running": None, "pid": None, "why_unknown": exc.strerror}
    return {"running": pid is not None, "pid": pid or None}


def _writer_line(writer: dict[str, Any]) -> str:
    if writer["running"]:
        who = f"process {writer['pid']}" if writer["pid"] else "a process of another namespace"
        return f"running ({who} writes this store)"
    if writer["running"] is None:
        return f"cannot tell whether it runs ({writer['why_unknown']})"
    return "not running: the devices below are as its last run left them"


def _health(db: Path, stats: StoreStats) -> dict[str, Any]:
    """Whether the agent could write the store when it last said so (its ledger), and whether
    the file can be written at all now (a read-only mount is seen here even when the agent
    could not write its ledger)."""
    health = stats.health
    out: dict[str, Any] = {"writable": True}
    if health is not None and not health.writable:
        out = {
            "writable": False,
            "cause": health.cause,
            "cure": health.cure,
            "since": iso(health.since_ms),
            "held_in_memory": health.held,
        }
    if out["writable"] and read_only_mount(db):
        cause, cure = diagnose(db, OSError("read-only file system"))
        out = {"writable": False, "cause": cause, "cure": cure, "since": None}
    return out


def _energy_quality(db: Path) -> dict[str, Any] | None:
    """The latest closed day's data quality per meter (the energy pipeline's `energy.quality`)."""
    text = read_meta(db, "energy:quality")  # agent.energy.live.QUALITY_KEY
    if text is None:
        return None
    try:
        detail = json.loads(text)
        return {
            "day": str(detail["day"]),
            "meters": {
                str(m["meter"]): {
                    "completeness": m["completeness"],
                    "received": m["received"],
                    "expected": m["expected"],
                    "estimated": m["estimated"],
                    "accuracy": m["accuracy"],
                }
                for m in detail["meters"]
            },
            "balance_failed": sorted(
                {str(b["rule"]) for b in detail.get("balance", []) if b.get("ok") is False}
            ),
        }
    except (ValueError, KeyError, TypeError):
        return None


def iso(ms: int | None) -> str | None:
    return ms_to_iso(ms) if ms else None


def _age(iso: str | None, now_s: float) -> str:
    if iso is None:
        return "never"
    from agent.core.record import iso_to_ms

    seconds = max(0.0, now_s - iso_to_ms(iso) / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{iso} ({seconds / size:.0f}{unit} ago)"
    return f"{iso} ({seconds:.0f}s ago)"


def print_status(db: Path, *, as_json: bool, out: TextIO, clock: Clock | None = None) -> int:
    report = status_report(db, clock=clock)
    if as_json:
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return 0
    now_s = (clock if clock is not None else system_clock()).time()
    buf = report["buffer"]
    out.write(
        f"buffer {buf['path']}: {buf['rows']} readings, {buf['unsynced']} not yet sent, "
        f"{buf['bytes'] / 1024:.0f} KiB"
        + (f" ({buf['bytes_per_reading']} bytes per reading)" if buf["bytes_per_reading"] else "")
        + "\n"
    )
    out.write(f"oldest unsent: {_age(buf['oldest_unsynced'], now_s)}\n")
    out.write(f"last sync:     {_age(report['last_sync'], now_s)}\n")
    budget = f"{buf['max_bytes'] / 2**20:.0f} MiB" if buf["max_bytes"] else "none"
    out.write(f"budget:        {budget}; {buf['evicted_synced']} sent readings evicted\n")
    by_reason = ", ".join(f"{n} {why}" for why, n in buf["lost_by_reason"].items())
    out.write(f"lost:          {buf['lost']} readings" + (f" ({by_reason})" if by_reason else ""))
    out.write(f"; {buf['events_lost']} events\n" if buf["events_lost"] else "\n")
    awaiting, for_good = buf["clock_untrusted_awaiting"], buf["clock_untrusted_for_good"]
    if awaiting or for_good:
        out.write(
            f"clock:         {awaiting} readings stamped before the clock was trusted await "
            f"correction; {for_good} keep the untrusted flag (a reboot in between)\n"
        )
    out.write(f"agent:         {_writer_line(report['writer'])}\n")
    health = report["store_health"]
    if health["writable"]:
        out.write("store:         writable\n")
    else:
        since = f" since {health['since']}" if health.get("since") else ""
        held = health.get("held_in_memory")
        out.write(
            f"store:         CANNOT WRITE{since}: {health['cause']}\n"
            f"               to fix: {health['cure']}\n"
            + (f"               {held} readings held in memory by the agent\n" if held else "")
        )
    quality = report["energy_quality"]
    if quality is not None:
        meters = ", ".join(
            f"{name} {m['completeness'] * 100:.1f} % ({m['received']}/{m['expected']})"
            for name, m in quality["meters"].items()
        )
        out.write(f"energy data {quality['day']}: {meters or 'no meters'}\n")
        if quality["balance_failed"]:
            out.write(f"  balance failed: {', '.join(quality['balance_failed'])}\n")
    if report["platform"] is not None:
        _print_platform(report["platform"], out, now_s)
    for alert in report["alerts"]:
        out.write(f"  alert {alert['time']} {alert['kind']}: {alert['detail']}\n")
    for name, dev in report["devices"].items():
        out.write(
            f"  {name:<18} {dev['health']:<18} {dev['points']:>3} points, "
            f"last good reading {_age(dev['last_good_reading'], now_s)}\n"
        )
        if (late := dev["overruns"]) is not None:
            out.write(
                f"  {'':<18} interval {late['interval_s']:g} s not kept: "
                f"{late['ticks_missed']} ticks missed in {late['cycles']} cycles since "
                f"{late['since']}, last cycle {late['last_cycle_s']:g} s, "
                f"last miss {_age(late['last'], now_s)}\n"
            )
    return 0


def _print_platform(link: dict[str, Any], out: TextIO, now_s: float) -> None:
    """The energy-monitoring platform link: state, clock offset, backlog, reporting rate."""
    reason = f" ({link['reason']})" if link["reason"] else ""
    offset = link["clock_offset_s"]
    out.write(
        f"platform:      {link['state']}{reason} since {_age(link['since'], now_s)}; "
        f"last ack {_age(link['last_ack'], now_s)}; backlog {link['backlog']} periods\n"
    )
    out.write(
        "platform time: "
        + ("no heartbeat yet" if offset is None else f"{offset:+.1f} s from this gateway's clock")
        + "\n"
    )
    for rate in link["rates"]:
        pct = rate["rate_percent"]
        out.write(
            f"  reporting rate {rate['day']}: {rate['delivered']}/{rate['due']} periods"
            + ("" if pct is None else f" ({pct:.1f} %)")
            + "\n"
        )
