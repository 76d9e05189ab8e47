"""`edge-agent savings --publish` hands each month's figures to the running agent through the
local command spool (a ``record_report`` command); the agent records a ``savings.monthly`` event
and its uplink publishes it on the events topic. Only the local CLI may do so: the same command
from MQTT is refused, as is a report too large or malformed, each with its reason and no event.

The report object is built here (the model fit needs the optional OpenDSM extra, which this
venv lacks); everything from it on — the payload builder, the CLI, the spool, the command path,
the store and the uplink to a real Mosquitto — is the product's.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

import agent.savings.report
from agent.cli import main
from agent.commands.envelope import MAX_COMMAND_BYTES
from agent.commands.memory import CommandMemory
from agent.commands.path import CommandPath
from agent.commands.reports import MAX_REPORT_BYTES, ReportKind, record_report_command
from agent.core.clock import system_clock
from agent.core.errors import AgentError
from agent.demo import _retarget, demo_config
from agent.hvac.spool import SPOOL_DIR, cli_command
from agent.savings.model import BaselineFit
from agent.savings.plan import MvPlan
from agent.savings.publish import monthly_figures, publish_monthly, read_figures
from agent.savings.report import TOTAL, MeterResult, PeriodSavings, SavingsReport
from agent.savings.stats import FitStats
from agent.savings.sufficiency import Check
from agent.service import Agent
from agent.store import read_events
from hil.server import SimulatedBuilding
from tests.helpers import DEMO_YAML

BASE = "bea/jz-demo-office/gw1"
PLAN = {"meters": ["main_import", "hvac", "water"], "temperature": {"csv": "outdoor.csv"}}


def _period(meter: str, label: str, baseline: float, actual: float, **more: Any) -> PeriodSavings:
    figures: dict[str, Any] = {
        "meter": meter, "label": label, "days": 31, "calendar_days": 31, "baseline": baseline,
        "adjustment": 0.0, "actual": actual, "savings": baseline - actual, "unit": "kWh",
        "uncertainty90": 900.0, "uncertainty68": 480.0, "cost": (baseline - actual) * 0.75,
        "price_note": "flat", "tce": (baseline - actual) * 0.1229 / 1000,
        "co2": (baseline - actual) * 0.5366 / 1000,
    }  # fmt: skip
    figures.update(more)
    return PeriodSavings(**figures)


def _report() -> SavingsReport:
    """Two months after a 2025 baseline: main_import saved in both; hvac counted no day in
    January (figures without a value) and has no February; water's baseline was refused."""
    energy = demo_config().energy
    assert energy is not None
    plan = MvPlan.model_validate(PLAN)
    stats = FitStats(
        n=362, p=4, mean=2400.0, cvrmse=0.0812, nmbe=0.0004, r2=0.912, rho=0.31, n_eff=190.0
    )
    fit = BaselineFit(
        "main_import", "OpenDSM 1.2.7 daily model", [], [], [], 4, ["all days: heating+cooling"]
    )
    criteria = [
        Check("cvrmse", True, "CV(RMSE) 8.1 % (at most 25 %)"),
        Check("nmbe", True, "NMBE +0.040 % (within ±0.5 %)"),
        Check("r2", True, "R² 0.912 (at least 0.75, advisory)"),
    ]
    coverage = Check("coverage", True, "362 of 365 days with energy and temperature (99 %)")
    main = MeterResult(
        energy.meter("main_import"), [coverage], criteria, fit, stats,
        periods=[
            _period("main_import", "2026-01", 80000.0, 70400.0),
            _period("main_import", "2026-02", 72000.0, 64000.0, days=27, calendar_days=28,
                    adjustment=1500.0, notes=("1 days without complete data left out",)),
            _period("main_import", TOTAL, 152000.0, 134400.0),
        ],
    )  # fmt: skip
    hvac = MeterResult(
        energy.meter("hvac"), [coverage], criteria, fit, stats,
        periods=[_period("hvac", "2026-01", 0.0, 0.0, days=0, notes=("31 days without "
                 "complete data left out",))],
    )  # fmt: skip
    short = "261 of 365 days with energy and temperature (72 %; at least 90 %)"
    water = MeterResult(
        energy.meter("water"), [Check("coverage", False, short)],
        refused=[f"data sufficiency: {short}"],
    )  # fmt: skip
    site = [_period("site electricity", "2026-01", 80000.0, 70400.0, price_note="sum")]
    return SavingsReport(
        site="Demo office (jz-demo-office)", tz="Asia/Shanghai",
        baseline=(date(2025, 1, 1), date(2025, 12, 31)),
        reporting=(date(2026, 1, 1), date(2026, 2, 28)), period="month", plan=plan,
        meters=[main, hvac, water], site_periods=site,
        factors=["standard coal 0.1229 kgce/kWh (GB/T 2589-2020)"],
        method="OpenDSM 1.2.7 daily model",
        adjustments=["main_import from 2026-02-01: +50/day (a new server room)"],
    )  # fmt: skip


FIT = {
    "pass": True, "days": 362, "cvrmse": 0.0812, "nmbe": 0.0004, "r2": 0.912, "checks": [],
    "refused": [],
}  # fmt: skip


def test_the_monthly_figures_are_built_from_the_report() -> None:
    months = monthly_figures(_report())
    assert [m["month"] for m in months] == ["2026-01", "2026-02"]  # never the total
    january, february = months
    main, hvac, water = january["meters"]
    assert main == {
        "meter": "main_import", "energy_type": "electricity", "unit": "kWh", "baseline_fit": FIT,
        "status": "ok", "days": 31, "calendar_days": 31, "baseline": 80000.0,
        "adjustment": 0.0, "actual": 70400.0, "savings": 9600.0, "uncertainty90": 900.0,
        "significant90": True, "fraction": 0.12, "cost": 7200.0, "tce": 1.17984,
        "tco2": 5.15136, "notes": [],
    }  # fmt: skip
    # No day counted: the figures JSON cannot carry (0/0) are null, never NaN.
    assert (hvac["status"], hvac["fraction"], hvac["savings"]) == ("ok", None, 0.0)
    assert water == {
        "meter": "water", "energy_type": "water", "unit": "m3", "status": "refused",
        "baseline_fit": {
            "pass": False, "days": None, "cvrmse": None, "nmbe": None, "r2": None,
            "checks": ["261 of 365 days with energy and temperature (72 %; at least 90 %)"],
            "refused": ["data sufficiency: 261 of 365 days with energy and temperature (72 %; "
                        "at least 90 %)"],
        },
    }  # fmt: skip
    assert [m["status"] for m in february["meters"]] == ["ok", "no data", "refused"]
    assert february["meters"][0]["adjustment"] == 1500.0
    assert february["meters"][0]["notes"] == ["1 days without complete data left out"]
    assert [s["scope"] for s in january["site"]] == ["site electricity"]
    assert february["site"] == []
    assert january["baseline_period"] == ["2025-01-01", "2025-12-31"]
    assert january["adjustments"] == ["main_import from 2026-02-01: +50/day (a new server room)"]
    assert (january["currency"], january["fsu_limit68"]) == ("CNY", 0.5)
    json.dumps(months, allow_nan=False)  # plain JSON throughout


def test_publishing_refuses_other_periods_and_months_too_large_before_sending(
    tmp_path: Path,
) -> None:
    report = _report()
    report.period = "quarter"
    with pytest.raises(AgentError, match=r"a report by month \(--period month\), not by quarter"):
        monthly_figures(report)
    report = _report()
    many = report.meters[0]
    report.meters = [many] * 40  # a plan of 40 meters: more than one command carries
    spool = tmp_path / SPOOL_DIR
    spool.mkdir()
    with pytest.raises(AgentError, match=rf"2026-01's figures make a command of \d+ bytes, more "
                       rf"than the agent takes \({MAX_COMMAND_BYTES}\)"):  # fmt: skip
        publish_monthly(report, spool, timeout=1.0)
    assert list(spool.iterdir()) == []  # nothing sent, not even the months that fit


def test_a_figures_file_that_is_not_one_is_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "months.json"
    cases = {
        "{not json": "not a JSON file",
        '{"kind": "savings.monthly", "months": []}': "not a file of monthly figures",
        '[{"month": "2026-01"}]': "not a file of monthly figures",
        '{"kind": "savings.monthly", "months": [3]}': "every month must be an object with `month`",
    }
    for text, sentence in cases.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(AgentError, match=sentence):
            read_figures(path)
    # Nothing is sent from a bad file, and a report needs its config and baseline.
    assert main(["savings", "--data-dir", str(tmp_path), "--publish-figures", str(path)]) == 1
    assert main(["savings", "--data-dir", str(tmp_path), "--period", "month"]) == 1
    (tmp_path / "readings.db").touch()
    by_quarter = ["savings", "--config", str(DEMO_YAML), "--data-dir", str(tmp_path),
                  "--baseline", "2025-01-01..2025-12-31", "--period", "quarter", "--figures",
                  str(tmp_path / "q.json")]  # fmt: skip
    assert main(by_quarter) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[2] == "edge-agent: --figures gives monthly figures: use --period month, not quarter"
    assert not (tmp_path / "q.json").exists()
    assert err[0].endswith("every month must be an object with `month`")
    assert err[1] == (
        "edge-agent: give --config and --baseline (or --publish-figures FILE to publish figures "
        "made elsewhere)"
    )
    assert not (tmp_path / SPOOL_DIR).exists()


@asynccontextmanager
async def _demo_agent(tmp_path: Path, mosquitto: Any) -> AsyncIterator[Agent]:
    async with SimulatedBuilding() as sim:
        service = Agent(_retarget(demo_config(), sim, mosquitto.url), data_dir=tmp_path)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        async with asyncio.timeout(10):
            await service.started.wait()
        try:
            yield service
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


def _published(messages: list[aiomqtt.Message]) -> list[dict[str, Any]]:
    bodies = [json.loads(bytes(m.payload)) for m in messages  # type: ignore[arg-type]
              if m.topic.matches(f"{BASE}/events")]  # fmt: skip
    return [b for b in bodies if b["kind"] == "savings.monthly"]


async def test_savings_publish_reaches_the_broker_as_monthly_events(
    tmp_path: Path,
    mosquitto: Any,
    mqtt_subscribe: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = _report()
    asked: list[dict[str, Any]] = []

    def made(**kwargs: Any) -> SavingsReport:
        asked.append(kwargs)
        return report

    monkeypatch.setattr(agent.savings.report, "savings_report", made)
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps(PLAN), encoding="utf-8")
    figures = tmp_path / "months.json"
    args = ["savings", "--config", str(DEMO_YAML), "--data-dir", str(tmp_path), "--plan",
            str(plan), "--baseline", "2025-01-01..2025-12-31", "--publish", "--figures",
            str(figures)]  # fmt: skip
    async with (
        mqtt_subscribe(mosquitto, f"{BASE}/events") as sub,
        _demo_agent(tmp_path, mosquitto),
    ):
        status = await asyncio.to_thread(main, args)
        await sub.wait_for(lambda m: len(_published(m)) == 2, within=10)
        captured = capsys.readouterr()
        # The same months from the file, as a gateway that cannot make the report publishes
        # them: no config, no report, no extra.
        again = ["savings", "--data-dir", str(tmp_path), "--publish-figures", str(figures)]
        status_again = await asyncio.to_thread(main, again)
        await sub.wait_for(lambda m: len(_published(m)) == 4, within=10)
    assert status_again == 0
    from_file = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ok"] for r in from_file] == [True, True]
    assert status == 0, captured.err
    assert asked[0]["baseline"] == (date(2025, 1, 1), date(2025, 12, 31))
    assert "Meter main_import (electricity, kWh)" in captured.out  # the report, as without
    replies = [json.loads(line) for line in captured.err.splitlines()]
    assert [(r["ok"], r["reason"]) for r in replies] == [
        (
            True,
            "savings.monthly for 2026-01 recorded (main_import, hvac, water): published upstream",
        ),
        (
            True,
            "savings.monthly for 2026-02 recorded (main_import, hvac, water): published upstream",
        ),
    ]
    events = _published(sub.messages)
    months = monthly_figures(report)
    assert [e["detail"] for e in events] == [
        {"command": reply["id"], **month}
        for reply, month in zip(replies + from_file, months + months, strict=True)
    ]
    assert (events[0]["site"], events[0]["gateway"]) == ("jz-demo-office", "gw1")
    # The audit trail says who and what, without carrying the figures twice.
    audit = [e for e in read_events(tmp_path / "readings.db", limit=200)
             if e.kind == "report.command"]  # fmt: skip
    assert sorted(e.detail["report"]["month"] for e in audit) == ["2026-01"] * 2 + ["2026-02"] * 2
    keys = {"event", "ts", "source", "sender", "id", "ok", "reason", "applied", "report"}
    assert all(set(e.detail) == keys and e.detail["source"] == "cli" for e in audit)
    assert audit[0].detail["report"]["meters"] == ["main_import", "hvac", "water"]


def _command(body: Any, command_id: str) -> dict[str, Any]:
    expires = (system_clock().wall() + timedelta(minutes=5)).isoformat()
    return {"id": command_id, "expires": expires, "record_report": body}


GOOD = {"month": "2026-01", "meters": [{"meter": "main_import", "status": "ok", "savings": 1.0}]}


async def test_reports_from_mqtt_too_large_or_malformed_are_refused_with_the_reason(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    out = io.StringIO()
    spool = tmp_path / SPOOL_DIR
    padded = {**GOOD, "notes": ["x" * MAX_COMMAND_BYTES]}
    malformed: list[Any] = [
        {"kind": "savings.weekly", "report": GOOD},
        {"kind": "savings.monthly", "report": [GOOD]},
        {"kind": "savings.monthly", "report": {**GOOD, "month": "2026-13"}},
        {"kind": "savings.monthly", "report": {**GOOD, "meters": []}},
        {"kind": "savings.monthly", "report": {"month": "2026-01", "meters": [{"meter": "m"}]}},
        {"kind": "savings.monthly", "report": {**GOOD, "cost": math.nan}},
        {"kind": "savings.monthly", "report": GOOD, "extra": 1},
    ]
    async with (
        mqtt_subscribe(mosquitto, f"{BASE}/events", f"{BASE}/commands/reply") as sub,
        _demo_agent(tmp_path, mosquitto) as service,
    ):
        async with asyncio.timeout(10):
            while service.uplink is None or not service.uplink.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the uplink subscribes right after connecting
        upstream = json.dumps(_command({"kind": "savings.monthly", "report": GOOD}, "m-1"))
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.publish(f"{BASE}/commands", upstream.encode(), qos=1)
        await sub.wait_for(
            lambda m: any(x.topic.matches(f"{BASE}/commands/reply") for x in m), within=10
        )
        statuses = []
        for n, body in enumerate([{"kind": "savings.monthly", "report": padded}, *malformed]):
            command = _command(body, f"cli-{n}")
            statuses.append(
                await asyncio.to_thread(cli_command, spool, command, timeout=5.0, out=out)
            )
        # One accepted at the end: the refusals before it left nothing behind it on the broker.
        good = _command({"kind": "savings.monthly", "report": GOOD}, "cli-good")
        statuses.append(await asyncio.to_thread(cli_command, spool, good, timeout=5.0, out=out))
        await sub.wait_for(lambda m: len(_published(m)) == 1, within=10)
    mqtt_reply = json.loads(sub.payloads(f"{BASE}/commands/reply")[0])
    assert mqtt_reply == {
        "id": "m-1", "ok": False, "applied": None, "reason": "`record_report` is taken only "
        "from the gateway's own CLI (edge-agent savings --publish), not from mqtt",
    }  # fmt: skip
    assert statuses == [1] * 8 + [0]
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    reasons = [r["reason"] for r in replies[:-1]]
    assert (
        reasons[0] == f"the command is {MAX_COMMAND_BYTES + 1} bytes; at most {MAX_COMMAND_BYTES}"
    )
    assert reasons[1:] == [
        "`record_report.kind` must be one of savings.monthly, not 'savings.weekly' (did you "
        "mean 'savings.monthly'?)",
        "`record_report.report` must be an object, not a list",
        "`record_report.report.month` must be a month as YYYY-MM, not '2026-13'",
        "`record_report.report.meters` must be a list of the meters, not an empty list",
        "`record_report.report.meters[0].status` must be one of 'ok', 'refused', 'no data', "
        "not null",
        "`record_report.report.cost` is nan: give null for a figure that has no value",
        "`record_report`: unknown field 'extra'",
    ]  # fmt: skip
    assert [e["detail"]["command"] for e in _published(sub.messages)] == ["cli-good"]


async def test_a_report_given_as_an_object_is_held_to_the_size_limit_too() -> None:
    # The command path also takes a mapping (no bytes to measure): the kind measures the report.
    path = CommandPath([ReportKind()], memory=CommandMemory(capacity=8), ttl_max=600.0)
    now = system_clock().wall()
    big = {**GOOD, "notes": ["x" * MAX_REPORT_BYTES]}
    command = record_report_command(
        "savings.monthly", big, command_id="c-1", expires=now + timedelta(minutes=1)
    )
    answer = await path.handle(command, now=now, source="cli")
    assert answer["ok"] is False
    assert answer["reason"].startswith("`record_report.report` is ")
    assert answer["reason"].endswith(f" bytes; at most {MAX_REPORT_BYTES}")
    command = record_report_command(
        "savings.monthly", GOOD, command_id="c-2", expires=now + timedelta(minutes=1)
    )
    assert (await path.handle(command, now=now, source="cli"))["ok"] is True
