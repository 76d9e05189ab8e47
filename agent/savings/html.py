"""The savings report as one self-contained HTML file: tables and inline SVG charts.

No script, no stylesheet, font or image from anywhere else: the file opens offline, can be
mailed to an energy manager and printed. Charts per meter: baseline against actual per day with
the 90 % band of the daily baseline (reporting period shaded), savings per period with their
90 % uncertainty, and the energy signature (daily energy against outdoor temperature, working
and closed days apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from agent.savings.report import TOTAL, MeterResult, PeriodSavings, SavingsReport, verdict
from agent.savings.sufficiency import Check

__all__ = ["render_html"]

W, H = 900, 260
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 28, 30
ACTUAL = "#1f5fa8"
BASELINE = "#d9822b"
BAND = "#f3d3b0"
SAVED = "#2e8b57"
CLOSED = "#9a4fb0"

_CSS = """
body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei","WenQuanYi Micro Hei",
sans-serif;margin:24px;color:#222;max-width:980px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
h3{font-size:15px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}td:first-child{white-space:nowrap}.ok{color:#1a7f37}.fail{color:#b42318;font-weight:bold}
.refused{border:2px solid #b42318;padding:8px;background:#fff4f2}
svg{background:#fff;border:1px solid #ddd;margin:6px 0}.note{color:#555;font-size:12px}
"""


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


class _Axes:
    """Linear scales from data to the chart's pixels."""

    def __init__(self, x: tuple[float, float], y: tuple[float, float]) -> None:
        x0, x1 = x
        y0, y1 = y
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1)

    def px(self, x: float) -> float:
        return PAD_L + (x - self.x0) / (self.x1 - self.x0) * (W - PAD_L - PAD_R)

    def py(self, y: float) -> float:
        return H - PAD_B - (y - self.y0) / (self.y1 - self.y0) * (H - PAD_T - PAD_B)


def _frame(axes: _Axes, label_y: str, ticks_x: Sequence[tuple[float, str]]) -> list[str]:
    out = [
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#888"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#888"/>',
        f'<text x="6" y="14" font-size="11" fill="#555">{escape(label_y)}</text>',
    ]
    for n in range(5):
        value = axes.y0 + (axes.y1 - axes.y0) * n / 4
        y = axes.py(value)
        out.append(
            f'<line x1="{PAD_L - 4}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
            'stroke="#eee"/>'
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#555">{_fmt(value, 0)}</text>'
        )
    for x_value, text in ticks_x:
        x = axes.px(x_value)
        out.append(
            f'<text x="{x:.1f}" y="{H - 10}" font-size="10" text-anchor="middle" '
            f'fill="#555">{escape(text)}</text>'
        )
    return out


def _svg(kind: str, meter: str, title: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" data-chart="{escape(kind)}" data-meter="{escape(meter)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _daily_chart(result: MeterResult) -> str:
    rows = [r for r in result.days if r.baseline is not None or r.observed is not None]
    if not rows:
        return ""
    start = rows[0].day.toordinal()
    values = [v for r in rows for v in (r.observed, r.high, r.low) if v is not None]
    axes = _Axes((0, rows[-1].day.toordinal() - start), (0, max(values) * 1.05))
    body: list[str] = []
    reporting = [r for r in rows if r.reporting]
    if reporting:
        x = axes.px(reporting[0].day.toordinal() - start)
        body.append(
            f'<rect x="{x:.1f}" y="{PAD_T}" width="{W - PAD_R - x:.1f}" '
            f'height="{H - PAD_T - PAD_B}" fill="#f4f8fb"/>'
        )
    ticks = [(r.day.toordinal() - start, f"{r.day:%Y-%m}") for r in rows if r.day.day == 1][
        :: max(1, len(rows) // 365)
    ]
    body += _frame(axes, f"{result.meter.energy_unit}/day", ticks)
    banded = [r for r in rows if r.low is not None and r.high is not None]
    if banded:
        upper = " ".join(
            f"{axes.px(r.day.toordinal() - start):.1f},{axes.py(r.high or 0):.1f}" for r in banded
        )
        lower = " ".join(
            f"{axes.px(r.day.toordinal() - start):.1f},{axes.py(r.low or 0):.1f}"
            for r in reversed(banded)
        )
        body.append(f'<polygon class="band" points="{upper} {lower}" fill="{BAND}"/>')
        line = " ".join(
            f"{axes.px(r.day.toordinal() - start):.1f},{axes.py(r.baseline or 0):.1f}"
            for r in banded
        )
        body.append(
            f'<polyline class="baseline" points="{line}" fill="none" stroke="{BASELINE}" '
            'stroke-width="1.2"/>'
        )
    for r in rows:
        if r.observed is not None:
            body.append(
                f'<circle class="actual" cx="{axes.px(r.day.toordinal() - start):.1f}" '
                f'cy="{axes.py(r.observed):.1f}" r="1.6" fill="{ACTUAL}"/>'
            )
    return _svg(
        "daily",
        result.meter.name,
        f"{result.meter.name}: actual (dots) and baseline (line, 90 % band) per day",
        body,
    )


def _savings_chart(meter: str, every: Sequence[PeriodSavings]) -> str:
    items = [i for i in every if i.label != TOTAL]
    if not items:
        return ""
    top = max(max(i.savings + i.uncertainty90, 0.0) for i in items)
    bottom = min(min(i.savings - i.uncertainty90, 0.0) for i in items)
    axes = _Axes((0, len(items)), (bottom * 1.1, top * 1.1 or 1.0))
    slot = (W - PAD_L - PAD_R) / len(items)
    body = _frame(
        axes, f"savings, {items[0].unit}", [(n + 0.5, i.label) for n, i in enumerate(items)]
    )
    zero = axes.py(0)
    for n, item in enumerate(items):
        x = axes.px(n) + slot * 0.2
        y = axes.py(max(item.savings, 0))
        height = abs(axes.py(item.savings) - zero)
        body.append(
            f'<rect class="saving" x="{x:.1f}" y="{min(y, zero):.1f}" width="{slot * 0.6:.1f}" '
            f'height="{height:.1f}" fill="{SAVED if item.significant else "#9bbfa9"}"/>'
        )
        cx = axes.px(n + 0.5)
        hi, lo = (
            axes.py(item.savings + item.uncertainty90),
            axes.py(item.savings - item.uncertainty90),
        )
        body.append(
            f'<line class="uncertainty" x1="{cx:.1f}" y1="{hi:.1f}" x2="{cx:.1f}" '
            f'y2="{lo:.1f}" stroke="#333"/>'
        )
    body.append(
        f'<line x1="{PAD_L}" y1="{zero:.1f}" x2="{W - PAD_R}" y2="{zero:.1f}" stroke="#333"/>'
    )
    return _svg("savings", meter, f"{meter}: savings per period with 90 % uncertainty", body)


def _signature_chart(result: MeterResult) -> str:
    rows = [r for r in result.days if r.observed is not None and r.temperature is not None]
    if not rows:
        return ""
    temps = [r.temperature for r in rows if r.temperature is not None]
    values = [r.observed for r in rows if r.observed is not None]
    axes = _Axes((min(temps) - 1, max(temps) + 1), (0, max(values) * 1.05))
    low = math.floor(min(temps) / 5) * 5
    ticks = [(float(t), f"{t} °C") for t in range(low, math.ceil(max(temps)) + 1, 5)]
    body = _frame(axes, f"{result.meter.energy_unit}/day", ticks)
    for r in rows:
        color = ACTUAL if r.working else CLOSED
        shape = "circle" if not r.reporting else "rect"
        x, y = axes.px(r.temperature or 0), axes.py(r.observed or 0)
        if shape == "circle":
            body.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{color}" '
                'fill-opacity="0.6"/>'
            )
        else:
            body.append(
                f'<rect class="point" x="{x - 2:.1f}" y="{y - 2:.1f}" width="4" height="4" '
                f'fill="none" stroke="{color}"/>'
            )
    # The fitted model over the baseline days, on top: its change points show as the bends.
    for r in rows:
        if not r.reporting and r.baseline is not None:
            body.append(
                f'<circle class="model" cx="{axes.px(r.temperature or 0):.1f}" '
                f'cy="{axes.py(r.baseline):.1f}" r="1.3" fill="{BASELINE}"/>'
            )
    return _svg(
        "signature",
        result.meter.name,
        f"{result.meter.name}: daily energy against outdoor temperature",
        body,
    )


def _checks(title: str, checks: Sequence[Check]) -> str:
    rows = "".join(
        f'<tr><td class="l {"ok" if c.ok else "fail"}">'
        f"{'pass' if c.ok else 'FAIL'}</td>"
        f'<td class="l">{escape(c.sentence)}</td></tr>'
        for c in checks
    )
    return f"<h3>{escape(title)}</h3><table>{rows}</table>"


def _period_table(items: Sequence[PeriodSavings], report: SavingsReport) -> str:
    head = (
        "<tr><th class=l>period</th><th>days</th><th>adjusted baseline</th><th>actual</th>"
        "<th>savings</th><th>±90 %</th><th>%</th>"
        f"<th>cost ({escape(report.plan.currency)})</th><th>tce</th><th>t CO2</th>"
        "<th class=l>verdict</th></tr>"
    )
    body = "".join(
        f"<tr><td class=l>{escape(i.label)}</td><td>{i.days}/{i.calendar_days}</td>"
        f"<td>{_fmt(i.baseline)}</td><td>{_fmt(i.actual)}</td><td>{_fmt(i.savings)}</td>"
        f"<td>{_fmt(i.uncertainty90)}</td><td>{_fmt(100 * i.fraction)}</td>"
        f"<td>{_fmt(i.cost, 0)}</td><td>{_fmt(i.tce, 2)}</td><td>{_fmt(i.co2, 2)}</td>"
        f"<td class=l>{escape(verdict(i, report.plan.thresholds.fsu))}"
        + (f"<br><span class=note>{escape(i.price_note)}</span>" if i.cost is not None else "")
        + "".join(f"<br><span class=note>{escape(n)}</span>" for n in i.notes)
        + "</td></tr>"
        for i in items
    )
    unit = items[0].unit if items else ""
    return f"<p class=note>Energy in {escape(unit)}.</p><table>{head}{body}</table>"


def _meter_section(result: MeterResult, report: SavingsReport) -> str:
    meter = result.meter
    parts = [
        f"<h2>Meter {escape(meter.name)} ({escape(meter.energy_type.value)}, "
        f"{escape(meter.energy_unit)})</h2>",
        _checks("Data sufficiency", result.sufficiency),
    ]
    if result.stats is not None and result.fit is not None:
        s = result.stats
        parts.append(
            _checks(
                f"Baseline fit, ASHRAE Guideline 14 ({s.n} days, {s.p} parameters, residual "
                f"autocorrelation {s.rho:.2f})",
                result.criteria,
            )
        )
        parts.append(
            "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in result.fit.splits) + "</ul>"
        )
    if result.refused:
        parts.append(
            '<div class="refused"><b>Refused for the contract report:</b><ul>'
            + "".join(f"<li>{escape(r)}</li>" for r in result.refused)
            + "</ul></div>"
        )
    parts.append(_daily_chart(result))
    if result.periods:
        parts.append(_savings_chart(meter.name, result.periods))
        parts.append(_period_table(result.periods, report))
    parts.append(_signature_chart(result))
    parts.append(
        "<p class=note>Signature: dots baseline period, squares reporting period; blue working "
        "days, purple closed days (China calendar); orange the fitted baseline model.</p>"
    )
    return "".join(parts)


def render_html(report: SavingsReport) -> str:
    header = [
        f"<h1>Savings report: {escape(report.site)}</h1>",
        f"<p>Baseline period {report.baseline[0]} to {report.baseline[1]}; reporting period "
        f"{report.reporting[0]} to {report.reporting[1]}, by {escape(report.period)} "
        f"({escape(report.tz)}). Outdoor temperature: "
        f"{escape(report.plan.temperature.label)}.</p>",
    ]
    if report.method:
        header.append(f"<p class=note>Method: {escape(report.method)}.</p>")
    sections = [_meter_section(r, report) for r in report.meters]
    if report.site_periods:
        sections.append("<h2>Site (main meters added)</h2>")
        sections.append(_savings_chart("site", report.site_periods))
        sections.append(_period_table(report.site_periods, report))
    footer = []
    if report.adjustments:
        footer.append(
            "<h2>Non-routine adjustments</h2><ul>"
            + "".join(f"<li>{escape(a)}</li>" for a in report.adjustments)
            + "</ul>"
        )
    if report.factors:
        footer.append(
            "<h2>Factors</h2><ul>"
            + "".join(f"<li>{escape(f)}</li>" for f in report.factors)
            + "</ul>"
        )
    footer.append(
        "<p class=note>Savings = adjusted baseline - actual (IPMVP; GB/T 28750). Fit statistics "
        "and savings uncertainty per ASHRAE Guideline 14-2014 (CV(RMSE), NMBE, R², "
        "fractional savings uncertainty with autocorrelation-corrected n').</p>"
    )
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>Savings report: {escape(report.site)}</title><style>{_CSS}</style></head>"
        "<body>" + "".join(header + sections + footer) + "</body></html>\n"
    )
