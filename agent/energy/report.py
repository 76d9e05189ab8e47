"""The technician's and manager's report (`edge-agent energy`), as a pure function of rows.

Per day or month: consumption by energy type and sub-item, PV, standard coal (tce) and CO2 with
the factor behind each figure, quota use, data completeness per meter, and the balance checks.
`render_text` prints it for a terminal, `render_csv` for a spreadsheet (one line per figure).

Rows should start one base interval before the report so its first interval is bounded by a
reading: `report_window()` gives the time range to read.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from agent.energy.alerts import AlertBook
from agent.energy.config import SUB_ITEM_NAMES, TYPE_CODES, EnergyConfig
from agent.energy.intervals import Interval, ReadingRow, build_intervals
from agent.energy.periods import Size, bucket_start, buckets, local, next_start
from agent.energy.quality import MeterDayQuality, balance_checks, daily_quality, days_between
from agent.energy.quota import QuotaMonitor
from agent.energy.rollup import Rollup, rollup

__all__ = [
    "EnergyReport",
    "ReportLine",
    "SiteLike",
    "energy_report",
    "parse_period_start",
    "render_csv",
    "render_text",
    "report_from_intervals",
    "report_window",
]

SECTIONS = (
    "consumption",
    "sub_item",
    "pv",
    "tce",
    "co2",
    "quota",
    "completeness",
    "balance",
)
_TITLES = {
    "consumption": "Consumption",
    "sub_item": "Sub-items",
    "pv": "PV",
    "tce": "Standard coal",
    "co2": "CO2",
    "quota": "Quota",
    "completeness": "Completeness",
    "balance": "Balance",
}
_PV_KEYS = ("generation", "export", "self_consumption", "building")


class SiteLike(Protocol):
    """What the report needs of the site (agent.config.model.SiteInfo has it)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def floor_area_m2(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One figure of the report."""

    period: str  # "2026-07-01" (day) or "2026-07" (month)
    section: str
    key: str
    value: float | None
    unit: str
    note: str = ""
    factor: str = ""  # the factor that produced the figure, for tce and CO2


@dataclass(frozen=True)
class EnergyReport:
    site: str
    period: str
    start_ms: int
    end_ms: int
    tz: str
    lines: tuple[ReportLine, ...]


def _label(start_ms: int, size: Size, tz: ZoneInfo) -> str:
    day = local(start_ms, tz).date()
    return day.isoformat() if size is Size.DAY else day.strftime("%Y-%m")


def _quota_label(start_ms: int, period: str, tz: ZoneInfo) -> str:
    if period == "year":
        return str(local(start_ms, tz).year)
    return _label(start_ms, Size(period), tz)


def parse_period_start(text: str, *, tz: str | ZoneInfo) -> int:
    """`--from`: 2026-07-01, 2026-07 or an ISO time, in the site's time zone."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return round(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: write 2026-07-01, 2026-07 or an ISO time"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return round(dt.timestamp() * 1000)


def report_window(
    energy: EnergyConfig,
    *,
    tz: str | ZoneInfo,
    period: str,
    start_ms: int,
    end_ms: int | None = None,
    count: int = 1,
) -> tuple[int, int, int, int]:
    """(report start, report end, read rows from, read rows until) for `count` periods.

    Rows are read from a little before the start, so a reading bounds the first interval, and
    from the start of each quota's period (month, year) so quota use counts from its beginning.
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    size = Size(period)
    start = bucket_start(start_ms, size, zone)
    if end_ms is None:
        end = start
        for _ in range(count):
            end = next_start(end, size, zone)
    else:
        end = end_ms
    margin = round(energy.max_step * 1000) + energy.interval_minutes * 60_000
    read_from = min(
        [start - margin]
        + [bucket_start(start, Size(rule.period), zone) - margin for rule in energy.quotas]
    )
    return start, end, read_from, end + margin


def energy_report(
    rows: Iterable[ReadingRow],
    energy: EnergyConfig,
    *,
    site: SiteLike,
    period: str = "day",
    start_ms: int | None = None,
    end_ms: int | None = None,
    now_ms: int | None = None,
) -> EnergyReport:
    """The report over [start_ms, end_ms) from reading rows (see report_window)."""
    intervals = build_intervals(rows, energy, tz=site.timezone)
    return report_from_intervals(
        intervals,
        energy,
        site=site,
        period=period,
        start_ms=start_ms,
        end_ms=end_ms,
        now_ms=now_ms,
    )


def report_from_intervals(
    intervals: Iterable[Interval],
    energy: EnergyConfig,
    *,
    site: SiteLike,
    period: str = "day",
    start_ms: int | None = None,
    end_ms: int | None = None,
    now_ms: int | None = None,
) -> EnergyReport:
    """The report from base intervals (stored ones, or built from rows).

    Default range: every whole period the intervals touch. Intervals before the range still
    count towards the quota periods the range lies in.
    """
    energy.require_consistent()
    zone = ZoneInfo(site.timezone)
    size = Size(period)
    available = list(intervals)
    if start_ms is None:
        first = min((i.start_ms for i in available), default=0)
        start_ms = bucket_start(first, size, zone)
    if end_ms is None:
        last = max((i.start_ms for i in available), default=start_ms)
        end_ms = next_start(bucket_start(last, size, zone), size, zone)
    in_range = [i for i in available if start_ms <= i.start_ms < end_ms]

    lines: list[ReportLine] = []
    periods = buckets(start_ms, end_ms, size, zone)
    by_bucket: dict[int, list[Rollup]] = {}
    for item in rollup(in_range, energy, tz=zone, sizes=[size]):
        by_bucket.setdefault(item.start_ms, []).append(item)
    for start, _end in periods:
        lines += _consumption_lines(_label(start, size, zone), by_bucket.get(start, []))

    until = min(end_ms, now_ms) if now_ms is not None else end_ms
    first_day = local(start_ms, zone).date()
    last_day = local(end_ms - 1, zone).date()
    quality = daily_quality(
        in_range, energy, tz=zone, days=days_between(first_day, last_day), until_ms=until
    )
    for start, end in periods:
        lines += _completeness_lines(
            _label(start, size, zone),
            quality=quality,
            start=start,
            end=end,
            zone=zone,
            energy=energy,
        )
    lines += _quota_lines(
        [i for i in available if i.start_ms < end_ms],
        energy,
        site=site,
        zone=zone,
        start_ms=start_ms,
        end_ms=end_ms,
    )
    for result in balance_checks(in_range, energy, tz=zone):
        # An unchecked result's reason already says "not checked: ...".
        verdict = {True: "ok: ", False: "FAILED: ", None: ""}[result.ok]
        when = local(result.start_ms, zone).strftime("%Y-%m-%d %H:%M")
        lines.append(
            ReportLine(
                _label(bucket_start(result.start_ms, size, zone), size, zone),
                "balance",
                f"{result.rule} {when}",
                result.unmetered_percent,
                "% unmetered",
                f"{verdict}{result.reason}",
            )
        )

    order = {name: n for n, name in enumerate(SECTIONS)}
    lines.sort(key=lambda line: (line.period, order[line.section]))
    return EnergyReport(
        site=f"{site.name} ({site.id})",
        period=period,
        start_ms=start_ms,
        end_ms=end_ms,
        tz=site.timezone,
        lines=tuple(lines),
    )


def _quota_lines(
    intervals: list[Interval],
    energy: EnergyConfig,
    *,
    site: SiteLike,
    zone: ZoneInfo,
    start_ms: int,
    end_ms: int,
) -> list[ReportLine]:
    monitor = QuotaMonitor(
        energy, tz=zone, alerts=AlertBook(lambda _event: None), floor_area_m2=site.floor_area_m2
    )
    monitor.add(intervals)
    lines: list[ReportLine] = []
    for status in [*monitor.history, *monitor.status()]:
        if status.end_ms <= start_ms or status.start_ms >= end_ms:
            continue
        note = f"{status.percent:.1f} % of {status.limit:.1f} {status.unit}"
        if status.level:
            note += f" ({status.level} value)"
        lines.append(
            ReportLine(
                _quota_label(status.start_ms, status.period, zone),
                "quota",
                f"{status.rule} [{status.target}]",
                status.value,
                status.unit,
                note,
            )
        )
    return lines


def _type_of(code: str) -> str:
    for energy_type, type_code in TYPE_CODES.items():
        if code[:2] == type_code[:2]:
            return energy_type.value
    return ""


def _note(item: Rollup) -> str:
    notes = [item.quality]
    if not item.complete:
        notes.append(f"{item.count} of {item.expected} intervals")
    if "from_sub_meters" in item.flags:
        notes.append("sum of sub-meters")
    return ", ".join(notes)


def _consumption_lines(label: str, items: list[Rollup]) -> list[ReportLine]:
    lines: list[ReportLine] = []
    types = {item.key: item for item in items if item.scope == "type"}
    for key, item in sorted(types.items()):
        lines.append(ReportLine(label, "consumption", key, item.value, item.unit, _note(item)))
        for figure in item.figures:
            lines.append(
                ReportLine(
                    label, figure.name, key, figure.value, figure.unit, _note(item), figure.factor
                )
            )
    pv = {item.key: item for item in items if item.scope == "pv"}
    # Sub-meters see what the loads use, PV included: compare them with the building's total.
    building = pv.get("building")
    for item in sorted((i for i in items if i.scope == "sub_item"), key=lambda i: i.key):
        name = SUB_ITEM_NAMES.get(item.key, "")
        note = _note(item)
        whole = types.get(_type_of(item.key))
        if item.key.startswith("01") and building is not None:
            whole = building
        if whole is not None and whole.value > 0:
            what = "building electricity" if whole is building else f"{whole.key}"
            note += f", {100 * item.value / whole.value:.1f} % of {what}"
        lines.append(
            ReportLine(label, "sub_item", f"{item.key} {name}".strip(), item.value, item.unit, note)
        )
    for key in _PV_KEYS:
        if key in pv:
            item = pv[key]
            lines.append(ReportLine(label, "pv", key, item.value, item.unit, _note(item)))
    for item in items:
        if item.scope == "site":
            lines.append(
                ReportLine(label, item.key, "site total", item.value, item.unit, _note(item))
            )
    return lines


def _completeness_lines(
    label: str,
    *,
    quality: list[MeterDayQuality],
    start: int,
    end: int,
    zone: ZoneInfo,
    energy: EnergyConfig,
) -> list[ReportLine]:
    first = local(start, zone).date()
    last = local(end - 1, zone).date()
    lines: list[ReportLine] = []
    for meter in energy.meters:
        days = [q for q in quality if q.meter == meter.name and first <= q.day <= last]
        expected = sum(q.expected for q in days)
        if not expected:
            continue
        received = sum(q.received for q in days)
        estimated = sum(q.estimated for q in days)
        partial = sum(q.partial for q in days)
        missing = sum(q.missing for q in days)
        problems = {
            "spikes": sum(q.spikes for q in days),
            "resets": sum(q.resets for q in days),
            "out of range": sum(q.out_of_range for q in days),
        }
        note = f"{received} of {expected} received, {estimated} estimated, {missing} missing"
        if partial:
            note += f", {partial} partial"
        found = [f"{n} {name}" for name, n in problems.items() if n]
        if found:
            note += "; " + ", ".join(found)
        lines.append(
            ReportLine(label, "completeness", meter.name, 100 * received / expected, "%", note)
        )
    return lines


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    if value == 0:
        return "0"
    return f"{value:.4f}"


def _pad(text: str, width: int) -> str:
    """Left-justify by display width: a CJK character takes two terminal columns."""
    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(width - shown, 0)


def render_text(report: EnergyReport) -> str:
    """The report for a terminal; factors are listed once and referenced by number."""
    zone = ZoneInfo(report.tz)
    last = local(report.end_ms - 1, zone).date().isoformat()
    first = local(report.start_ms, zone).date().isoformat()
    out = [f"Energy report: {report.site}, by {report.period}, {first} to {last} ({report.tz})"]
    factors: list[str] = []
    current = None
    for line in report.lines:
        if line.period != current:
            current = line.period
            out += ["", current]
        note = line.note
        if line.factor:
            if line.factor not in factors:
                factors.append(line.factor)
            note = f"[{factors.index(line.factor) + 1}] {note}"
        out.append(
            f"  {_TITLES[line.section]:<14} {_pad(line.key, 44)} {_fmt(line.value):>12} "
            f"{line.unit:<11} {note}".rstrip()
        )
    if factors:
        out += ["", "Factors:"]
        out += [f"  [{n}] {factor}" for n, factor in enumerate(factors, 1)]
    return "\n".join(out) + "\n"


def render_csv(report: EnergyReport) -> str:
    """One row per figure: period, section, key, value, unit, note, factor."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["period", "section", "key", "value", "unit", "note", "factor"])
    for line in report.lines:
        value = "" if line.value is None else f"{line.value:.10g}"
        writer.writerow(
            [line.period, line.section, line.key, value, line.unit, line.note, line.factor]
        )
    return buffer.getvalue()
