"""`edge-agent savings`: baselines and savings from a data directory (the gateway's or a copy).

Reads the site config (meters, time zone, calendar, factors), the M&V plan (`--plan`, or one
derived from the site config when the HVAC season follows an outdoor sensor), and the store
read-only; prints the report as text or CSV and writes the HTML file if asked; with
``--publish``, hands its monthly figures to the running agent (agent.savings.publish).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from agent.core.errors import AgentError, ConfigError, ConfigIssue
from agent.savings.plan import MvPlan

__all__ = ["load_plan", "parse_baseline", "savings_command"]


def parse_baseline(text: str) -> tuple[date, date]:
    match = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})\s*", text)
    if match is None:
        raise AgentError(f"--baseline {text!r}: write FROM..TO, e.g. 2025-01-01..2025-12-31")
    try:
        first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2])
    except ValueError as exc:
        raise AgentError(f"--baseline {text!r}: {exc}") from None
    if last < first:
        raise AgentError(f"--baseline {text!r}: the period ends before it starts")
    return first, last


def load_plan(path: Path) -> MvPlan:
    """The M&V plan, or ConfigError (exit 78) with one sentence per problem."""
    from agent.config.messages import validation_sentence

    def issue(where: str, message: str) -> ConfigError:
        return ConfigError([ConfigIssue(str(path), None, None, where, message)])

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise issue("", f"cannot read the M&V plan: {exc.strerror}") from None
    except YAMLError as exc:
        raise issue("", f"not valid YAML: {exc}") from None
    try:
        return MvPlan.model_validate(data)
    except ValidationError as exc:
        issues = []
        for error in exc.errors(include_url=False):
            sentence = validation_sentence(MvPlan, dict(error))
            where = ".".join(str(p) for p in sentence.loc)
            issues.append(ConfigIssue(str(path), None, None, where, sentence.message))
        raise ConfigError(issues) from None


def savings_command(args: argparse.Namespace, *, db: Path, out: TextIO) -> int:
    from agent.config.loader import load_config
    from agent.hvac.calendar import HolidayCalendar
    from agent.savings.report import render_csv, render_text, savings_report

    config = load_config(args.config)
    if config.energy is None:
        raise AgentError("the config has no `energy` section: list the meters there")
    if not db.is_file():
        raise AgentError(f"there is no buffer at {db}: give the --data-dir (or --db)")
    baseline = parse_baseline(args.baseline)
    if (args.publish or args.figures is not None) and args.period != "month":
        flag = "--publish" if args.publish else "--figures"
        raise AgentError(f"{flag} gives monthly figures: use --period month, not {args.period}")
    if args.until is not None and args.until <= baseline[1]:
        raise AgentError(f"--until {args.until} is not after the baseline period's end")
    if args.plan is not None:
        plan, plan_dir = load_plan(args.plan), args.plan.parent
    else:
        outdoor = config.hvac.season.outdoor if config.hvac is not None else None
        if outdoor is None:
            raise AgentError(
                "give --plan with the outdoor temperature source (the site config's HVAC "
                "season names no outdoor sensor); docs/savings.md shows a plan"
            )
        plan = MvPlan.model_validate(
            {"temperature": {"device": outdoor.device, "point": outdoor.point}}
        )
        plan_dir = args.config.parent
    calendar = HolidayCalendar(config.hvac.calendar if config.hvac is not None else None)
    energy = config.energy
    for name in plan.meters:
        if name not in {m.name for m in energy.meters}:
            raise AgentError(f"the plan names meter {name!r}, which the energy section lacks")
    report = savings_report(
        db=db,
        site_name=f"{config.site.name} ({config.site.id})",
        tz=config.site.timezone,
        energy=energy,
        calendar=calendar,
        plan=plan,
        plan_dir=plan_dir,
        baseline=baseline,
        period=args.period,
        until=args.until,
    )
    out.write(render_csv(report) if args.csv else render_text(report))
    if args.html is not None:
        from agent.savings.html import render_html

        args.html.write_text(render_html(report), encoding="utf-8")
    if args.figures is not None:
        from agent.savings.publish import write_figures

        write_figures(report, args.figures)
    if args.publish:
        from agent.hvac.spool import DEFAULT_REPLY_TIMEOUT_S, SPOOL_DIR
        from agent.savings.publish import publish_monthly

        # The agent's spool beside its store; the replies on stderr, apart from the report.
        spool = db.parent / SPOOL_DIR
        return publish_monthly(report, spool, timeout=DEFAULT_REPLY_TIMEOUT_S, out=sys.stderr)
    return 0
