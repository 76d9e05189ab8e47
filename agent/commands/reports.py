"""The ``record_report`` command: a report made beside the agent, published upstream as an event.

    {"id": "cli-…", "expires": "2026-07-01T10:05:00+08:00",
     "record_report": {"kind": "savings.monthly", "report": {"month": "2026-06", "meters": […]}}}

`edge-agent savings --publish` sends one a month of its report (docs/savings.md); the agent
records ``report`` as a store event of that ``kind`` — in the same transaction as the command's
audit event (``report.command``) and its spent id —, and the uplink publishes it on the events
topic like every store event (docs/payload.md). The agent only checks and carries the figures:
it never imports the savings package (nor its optional OpenDSM extra) to do so.

Refused, with the reason and nothing recorded but the audit event: a command from anywhere but
the local CLI (a report is this gateway's own statement, never something a remote sender may
make it say), an unknown ``kind``, a ``report`` that is not an object, lacks its month or its
meters, holds a number JSON cannot carry (NaN, infinity), or is larger than MAX_REPORT_BYTES.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agent.commands.envelope import MAX_COMMAND_BYTES, Refused, json_kind, object_field, reply
from agent.commands.path import Decision
from agent.core.suggest import did_you_mean

__all__ = [
    "FIELD",
    "KINDS",
    "MAX_REPORT_BYTES",
    "PUBLISH",
    "STATUSES",
    "ReportKind",
    "record_report_command",
]

FIELD = "record_report"
KINDS = ("savings.monthly",)
"""The store events a report may become (docs/payload.md)."""
STATUSES = ("ok", "refused", "no data")
"""A meter's state in a report: figures, a baseline refused (with reasons), or no usable day."""
MAX_REPORT_BYTES = MAX_COMMAND_BYTES
"""A report's JSON at most (as does the whole command, through the spool or MQTT): an event is
one MQTT message, kept in the store until published."""
PUBLISH = "publish"
"""The key of a decision's detail that holds ``(event kind, event detail)`` for agent.inbox to
record beside the audit event (and that the audit event itself does not carry)."""
_KEYS = ("kind", "report")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class ReportKind:
    """The command kind of ``record_report`` (agent.commands.path.CommandKind); local only."""

    name = "report"
    fields = (FIELD,)
    local_only = True  # agent.inbox: no reason to listen to MQTT for this kind alone

    def claims(self, data: Mapping[str, Any]) -> bool:
        return FIELD in data

    def decide(
        self, data: Mapping[str, Any], *, command_id: str, now: datetime, source: str
    ) -> Decision:
        if source != "cli":
            raise Refused(
                f"`{FIELD}` is taken only from the gateway's own CLI (edge-agent savings "
                f"--publish), not from {source}"
            )
        body = object_field(data, FIELD, _KEYS)
        kind = body.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            shown = f"{kind!r}{did_you_mean(kind, KINDS)}" if isinstance(kind, str) else None
            raise Refused(
                f"`{FIELD}.kind` must be one of {', '.join(KINDS)}, not {shown or json_kind(kind)}"
            )
        report = body.get("report")
        if not isinstance(report, Mapping):
            raise Refused(f"`{FIELD}.report` must be an object, not {json_kind(report)}")
        size = len(json.dumps(report, ensure_ascii=False).encode("utf-8"))
        if size > MAX_REPORT_BYTES:
            raise Refused(f"`{FIELD}.report` is {size} bytes; at most {MAX_REPORT_BYTES}")
        _check_finite(report, f"{FIELD}.report")
        month = _month(report)
        meters = _meters(report)
        applied = {"kind": kind, "month": month, "meters": meters, "bytes": size}
        reason = f"{kind} for {month} recorded ({', '.join(meters)}): published upstream"
        detail = {"report": applied, PUBLISH: (kind, {"command": command_id, **report})}
        return Decision(reply(command_id, True, reason, applied), None, detail)


def _month(report: Mapping[str, Any]) -> str:
    month = report.get("month")
    if not isinstance(month, str) or not _MONTH.match(month):
        shown = repr(month) if isinstance(month, str) else json_kind(month)
        raise Refused(f"`{FIELD}.report.month` must be a month as YYYY-MM, not {shown}")
    return month


def _meters(report: Mapping[str, Any]) -> list[str]:
    meters = report.get("meters")
    if not isinstance(meters, list) or not meters:
        shown = "an empty list" if meters == [] else json_kind(meters)
        raise Refused(f"`{FIELD}.report.meters` must be a list of the meters, not {shown}")
    names = []
    for n, meter in enumerate(meters):
        where = f"{FIELD}.report.meters[{n}]"
        if not isinstance(meter, Mapping):
            raise Refused(f"`{where}` must be an object, not {json_kind(meter)}")
        name, status = meter.get("meter"), meter.get("status")
        if not isinstance(name, str) or not name.strip():
            raise Refused(f"`{where}` has no `meter` (its name)")
        if status not in STATUSES:
            shown = repr(status) if isinstance(status, str) else json_kind(status)
            raise Refused(
                f"`{where}.status` must be one of {', '.join(repr(s) for s in STATUSES)}, "
                f"not {shown}"
            )
        names.append(name)
    return names


def _check_finite(value: Any, where: str) -> None:
    """Python's json reads NaN and Infinity, which no other JSON reader takes: refused here so
    that the event published upstream is JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        raise Refused(f"`{where}` is {value}: give null for a figure that has no value")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _check_finite(item, f"{where}[{n}]")


def record_report_command(
    kind: str, report: Mapping[str, Any], *, command_id: str, expires: datetime
) -> dict[str, Any]:
    """A ``record_report`` command as the CLI sends it."""
    return {
        "id": command_id,
        "expires": expires.isoformat(),
        FIELD: {"kind": kind, "report": dict(report)},
    }
