"""`edge-agent savings --publish`: the report's monthly figures, handed to the running agent.

One ``record_report`` command a month (agent.commands.reports) through the local command spool,
as ``edge-agent pulses set`` does; the agent records each as a ``savings.monthly`` event and
its uplink publishes it (docs/payload.md). One month a command keeps each well within the
command size limit (8 KiB) for a plan of a dozen meters, and gives upstream one record a month.

Where the report cannot be made on the gateway (a Raspberry Pi cannot install the extra), it is
made on a laptop from a copy of the data, its figures written to a file (``--figures``), and
that file published on the gateway (``--publish-figures``): the same commands, no extra needed.

Plain JSON figures, built from the report object only: nothing here needs OpenDSM.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from agent.commands.envelope import MAX_COMMAND_BYTES
from agent.commands.reports import record_report_command
from agent.core.clock import system_clock
from agent.core.errors import AgentError
from agent.savings.report import TOTAL, MeterResult, PeriodSavings, SavingsReport

__all__ = [
    "EVENT_KIND",
    "monthly_figures",
    "publish_monthly",
    "read_figures",
    "send_months",
    "write_figures",
]

EVENT_KIND = "savings.monthly"


def _n(value: float | None) -> float | None:
    """A figure as JSON carries it: rounded to 6 significant digits, None when it has none."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _fit(result: MeterResult) -> dict[str, Any]:
    s = result.stats
    return {
        "pass": result.usable,
        "days": s.n if s is not None else None,
        "cvrmse": _n(s.cvrmse) if s is not None else None,
        "nmbe": _n(s.nmbe) if s is not None else None,
        "r2": _n(s.r2) if s is not None else None,
        "checks": [c.sentence for c in (*result.sufficiency, *result.criteria) if not c.ok],
        "refused": list(result.refused),
    }


def _figures(item: PeriodSavings) -> dict[str, Any]:
    return {
        "days": item.days,
        "calendar_days": item.calendar_days,
        "baseline": _n(item.baseline),
        "adjustment": _n(item.adjustment),
        "actual": _n(item.actual),
        "savings": _n(item.savings),
        "uncertainty90": _n(item.uncertainty90),
        "significant90": item.significant,
        "fraction": _n(item.fraction),
        "cost": _n(item.cost),
        "tce": _n(item.tce),
        "tco2": _n(item.co2),
        "notes": list(item.notes),
    }


def monthly_figures(report: SavingsReport) -> list[dict[str, Any]]:
    """One ``savings.monthly`` report per month of the reporting period, oldest first: every
    meter of the plan (its figures; or why its baseline was refused; or ``no data``) and the
    site's sums per energy type. AgentError unless the report is by month."""
    if report.period != "month":
        raise AgentError(
            f"monthly figures need a report by month (--period month), not by {report.period}"
        )
    months = sorted(
        {p.label for r in report.meters for p in r.periods if p.label != TOTAL}
        | {p.label for p in report.site_periods if p.label != TOTAL}
    )
    out = []
    for month in months:
        meters = []
        for result in report.meters:
            meter = result.meter
            entry: dict[str, Any] = {
                "meter": meter.name,
                "energy_type": meter.energy_type.value,
                "unit": meter.energy_unit,
                "baseline_fit": _fit(result),
            }
            item = next((p for p in result.periods if p.label == month), None)
            if not result.usable:
                entry["status"] = "refused"
            elif item is None:
                entry["status"] = "no data"
            else:
                entry |= {"status": "ok", **_figures(item)}
            meters.append(entry)
        out.append(
            {
                "month": month,
                "baseline_period": [report.baseline[0].isoformat(), report.baseline[1].isoformat()],
                "method": report.method,
                "currency": report.plan.currency,
                "fsu_limit68": report.plan.thresholds.fsu,
                "meters": meters,
                "site": [
                    {"scope": p.meter, "unit": p.unit, **_figures(p)}
                    for p in report.site_periods
                    if p.label == month
                ],
                "adjustments": list(report.adjustments),
                "factors": list(report.factors),
            }
        )
    return out


def publish_monthly(
    report: SavingsReport, spool: Path, *, timeout: float, out: TextIO = sys.stdout
) -> int:
    """Hand each month of ``report`` to the agent: `send_months`."""
    months = monthly_figures(report)
    if not months:
        raise AgentError("--publish: the report has no month with savings figures to publish")
    return send_months(months, spool, timeout=timeout, out=out)


def write_figures(report: SavingsReport, path: Path) -> None:
    """The monthly figures as a file (``--figures``): made where the report can be (a laptop
    with the extra), published from the gateway (``--publish-figures``), which needs no extra."""
    body = {"kind": EVENT_KIND, "site": report.site, "months": monthly_figures(report)}
    try:
        path.write_text(json.dumps(body, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise AgentError(f"--figures {path}: {exc.strerror or exc}") from None


def read_figures(path: Path) -> list[dict[str, Any]]:
    """The months of a file `write_figures` wrote; AgentError with a sentence otherwise (the
    agent checks each month again when it takes it)."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgentError(f"--publish-figures {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AgentError(f"--publish-figures {path}: not a JSON file ({exc})") from None
    months = body.get("months") if isinstance(body, dict) else None
    if not isinstance(months, list) or not months or body.get("kind") != EVENT_KIND:
        raise AgentError(
            f"--publish-figures {path}: not a file of monthly figures (written by "
            "`edge-agent savings ... --figures FILE`), or it holds no month"
        )
    if not all(isinstance(m, dict) and isinstance(m.get("month"), str) for m in months):
        raise AgentError(f"--publish-figures {path}: every month must be an object with `month`")
    return months


def send_months(
    months: list[dict[str, Any]], spool: Path, *, timeout: float, out: TextIO = sys.stdout
) -> int:
    """Hand each month to the agent (its reply printed, one JSON line a month): 0 when the agent
    recorded every month, 1 at the first it did not (the months before it stay recorded).
    AgentError, before anything is sent, when a month is too large for a command."""
    from agent.hvac.spool import cli_command

    commands = [
        record_report_command(
            EVENT_KIND, figures, command_id=f"cli-{uuid.uuid4().hex}", expires=_expiry(timeout)
        )
        for figures in months
    ]
    for command, figures in zip(commands, months, strict=True):
        # As the spool writes it; the agent refuses a larger command whole.
        size = len(json.dumps(command, ensure_ascii=False).encode("utf-8"))
        if size > MAX_COMMAND_BYTES:
            raise AgentError(
                f"--publish: {figures['month']}'s figures make a command of {size} bytes, more "
                f"than the agent takes ({MAX_COMMAND_BYTES}): name fewer meters in the plan's "
                "`meters`"
            )
    for command in commands:
        command["expires"] = _expiry(timeout).isoformat()  # each from when it is sent
        status = cli_command(spool, command, timeout=timeout, out=out)
        if status != 0:
            return status
    return 0


def _expiry(timeout: float) -> datetime:
    return system_clock().wall() + timedelta(seconds=max(2 * timeout, 60.0))
