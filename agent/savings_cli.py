"""``edge-agent savings``: its arguments, wired into agent.cli by ``add_commands(sub)``.

Kept out of the agent.savings package so that building the CLI's parser (which the running
service does too) imports none of the savings code, nor its optional OpenDSM extra.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

__all__ = ["add_commands", "dispatch"]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    savings = subparsers.add_parser(
        "savings",
        help="M&V: baseline per meter, savings per month/quarter/year with uncertainty, HTML",
    )
    # --config and --baseline are required unless --publish-figures is given: checked in dispatch.
    savings.add_argument("--config", type=Path, default=None, help="site config (YAML)")
    savings.add_argument("--data-dir", type=Path, default=None)
    savings.add_argument("--db", type=Path, default=None)
    savings.add_argument("--plan", type=Path, default=None, help="M&V plan (docs/savings.md)")
    savings.add_argument("--baseline", metavar="FROM..TO", help="e.g. 2025-01-01..2025-12-31")
    savings.add_argument("--period", choices=["month", "quarter", "year"], default="month")
    savings.add_argument(
        "--until", type=date.fromisoformat, default=None, metavar="DATE",
        help="last reporting day (default: the last day with data)",
    )  # fmt: skip
    savings.add_argument("--html", type=Path, default=None, metavar="FILE", help="write HTML")
    savings.add_argument("--csv", action="store_true", help="print CSV instead of text")
    savings.add_argument(
        "--publish", action="store_true",
        help="also hand each month's figures to the agent running with this data directory, "
        "which publishes them upstream as savings.monthly events (needs --period month)",
    )  # fmt: skip
    savings.add_argument(
        "--figures", type=Path, default=None, metavar="FILE",
        help="also write each month's figures to FILE (JSON), for --publish-figures on the "
        "gateway (needs --period month)",
    )  # fmt: skip
    savings.add_argument(
        "--publish-figures", type=Path, default=None, metavar="FILE",
        help="make no report: hand the months of FILE (from --figures) to the agent running "
        "with this data directory (needs no savings extra)",
    )  # fmt: skip


def dispatch(args: argparse.Namespace, *, db: Path) -> int:
    from agent.core.errors import AgentError

    if args.publish_figures is not None:
        from agent.hvac.spool import DEFAULT_REPLY_TIMEOUT_S, SPOOL_DIR
        from agent.savings.publish import read_figures, send_months

        months = read_figures(args.publish_figures)
        spool = db.parent / SPOOL_DIR  # the agent's, beside its store
        return send_months(months, spool, timeout=DEFAULT_REPLY_TIMEOUT_S, out=sys.stdout)
    missing = [f"--{k}" for k in ("config", "baseline") if getattr(args, k) is None]
    if missing:
        raise AgentError(
            f"give {' and '.join(missing)} (or --publish-figures FILE to publish figures made "
            "elsewhere)"
        )
    from agent.savings.command import savings_command

    return savings_command(args, db=db, out=sys.stdout)
