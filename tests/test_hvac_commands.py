"""Override commands: every malformed, out-of-range, unknown-zone, expired or replayed command
gets a reply that says why and changes nothing; accepted ones are clamped by the policy."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ruamel.yaml import YAML

from agent.hvac.commands import CommandHandler, command_id_of, make_command
from agent.hvac.overrides import Override, OverrideBook
from agent.hvac.program import HvacConfig, Mode
from agent.hvac.state import ScheduleContext

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 15, 10, 0, tzinfo=SHANGHAI)  # a Wednesday in the cooling season

HVAC = """
zones:
  zone1: {device: d, setpoint: s1, mode: m1, on: o1, programme: office}
  zone2:
    device: d
    setpoint: s2
    on: o2
    programme: office
    exemption: {reason: "server room, process cooling"}
programmes:
  office:
    workday:
      - {start: "07:30", level: comfort}
      - {start: "12:00", level: setback}
      - {start: "18:00", level: off}
command_memory: 16
"""


def setup(**changes: Any) -> tuple[CommandHandler, ScheduleContext]:
    data = YAML(typ="safe", pure=True).load(HVAC)
    data.update(changes)
    hvac = HvacConfig.model_validate(data)
    handler = CommandHandler(hvac, overrides=OverrideBook())
    return handler, ScheduleContext.for_site(hvac, "Asia/Shanghai")


def command(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "c-1",
        "expires": (NOW + timedelta(minutes=5)).isoformat(),
        "action": "override",
        "zone": "zone1",
        "setpoint": 27,
        "for": "1h",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def evaluate(handler: CommandHandler, context: ScheduleContext, raw: Any) -> dict[str, Any]:
    before = handler.overrides.to_json()
    reply = handler.evaluate(raw, now=NOW, context=context)
    assert set(reply) == {"id", "ok", "reason", "applied"}
    if not reply["ok"]:
        assert reply["applied"] is None
        assert handler.overrides.to_json() == before, "a refused command changed the overrides"
    return reply


MALFORMED = [
    pytest.param(b"\xff\xfe\x00", "not UTF-8", id="binary"),
    pytest.param(b"setpoint=22", "not JSON", id="not-json"),
    pytest.param(b"[1, 2]", "JSON object, not a list", id="list"),
    pytest.param(b"x" * 9000, "at most 8192", id="huge"),
    pytest.param(json.dumps(command(id=...)), "no `id`", id="no-id"),
    pytest.param(command(id=42), "`id` must be non-empty text", id="id-number"),
    pytest.param(command(expires=...), "no `expires`", id="no-expiry"),
    pytest.param(command(expires="soon"), "not an ISO 8601 time", id="expiry-text"),
    pytest.param(command(expires="2026-07-15T10:05:00"), "has no offset", id="expiry-naive"),
    pytest.param(command(setpiont=22), "unknown field 'setpiont' (did you mean", id="typo"),
    pytest.param(command(action=...), "no `action`", id="no-action"),
    pytest.param(command(action="boost"), "unknown action 'boost'", id="action"),
    pytest.param(command(setpoint="22"), "`setpoint` must be a number, not text", id="sp-text"),
    pytest.param(command(setpoint=True), "`setpoint` must be a number", id="sp-bool"),
    pytest.param(command(mode="auto"), "unknown mode 'auto'", id="mode"),
    pytest.param(
        command(setpoint=..., mode="on"), "mode on is for a switch zone; zone", id="on-thermostat"
    ),
    pytest.param(command(mode="off"), "mode off takes no setpoint", id="off-setpoint"),
    pytest.param(command(setpoint=..., mode=...), "needs a setpoint, a mode", id="empty"),
    pytest.param(command(**{"for": "forever"}), "`for`: 'forever' is not a duration", id="for"),
    pytest.param(
        command(until=(NOW + timedelta(hours=1)).isoformat()), "not both", id="until-and-for"
    ),
    pytest.param(command(action="clear", **{"for": ...}), "clear takes only a zone", id="clear"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED)
def test_malformed_commands_get_a_reason(raw: Any, reason: str) -> None:
    handler, context = setup()
    reply = evaluate(handler, context, raw)
    assert not reply["ok"]
    assert reason in reply["reason"]


def test_the_reply_names_the_command_when_it_can() -> None:
    handler, context = setup()
    assert evaluate(handler, context, command(setpoint="22"))["id"] == "c-1"
    assert evaluate(handler, context, b"nonsense")["id"] is None
    assert command_id_of(json.dumps(command(id="c-7"))) == "c-7"
    assert command_id_of(b"\xff") is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"setpoint": 40}, "outside zone zone1's range 5-35 °C"),
        ({"setpoint": -3}, "outside zone zone1's range"),
        ({"for": "13h"}, "longer than the longest override, 12 h"),
        ({"for": 0}, "`for`"),
        (
            {"for": ..., "until": (NOW + timedelta(hours=13)).isoformat()},
            "more than 12 h ahead",
        ),
        ({"for": ..., "until": (NOW - timedelta(minutes=1)).isoformat()}, "not in the future"),
    ],
)
def test_out_of_range_commands_are_refused(fields: dict[str, Any], reason: str) -> None:
    handler, context = setup()
    reply = evaluate(handler, context, command(**fields))
    assert not reply["ok"]
    assert reason in reply["reason"]


def test_an_unknown_zone_is_refused() -> None:
    handler, context = setup()
    reply = evaluate(handler, context, command(zone="zone3"))
    assert not reply["ok"]
    assert "unknown zone 'zone3'" in reply["reason"]
    assert "the zones are: zone1, zone2" in reply["reason"]


def test_an_expired_command_is_refused() -> None:
    handler, context = setup()
    reply = evaluate(handler, context, command(expires=(NOW - timedelta(seconds=1)).isoformat()))
    assert not reply["ok"]
    assert reply["reason"].startswith("expired at 2026-07-15T09:59:59+08:00")


def test_an_expiry_far_ahead_is_refused() -> None:
    handler, context = setup()
    reply = evaluate(handler, context, command(expires=(NOW + timedelta(hours=1)).isoformat()))
    assert not reply["ok"]
    assert "too far ahead: at most 10 min" in reply["reason"]


def test_a_replayed_command_is_refused() -> None:
    handler, context = setup()
    first = evaluate(handler, context, command())
    assert first["ok"], first
    handler.overrides.clear("zone1")
    replay = evaluate(handler, context, command())
    assert not replay["ok"]
    assert "replayed" in replay["reason"]
    assert "zone1" not in handler.overrides


def test_a_refused_command_spends_its_id() -> None:
    handler, context = setup()
    assert not evaluate(handler, context, command(zone="nowhere"))["ok"]
    reply = evaluate(handler, context, command())
    assert not reply["ok"]
    assert "replayed" in reply["reason"]


def test_the_id_memory_is_bounded_and_forgets_expired_ids() -> None:
    handler, context = setup()
    for n in range(16):
        assert evaluate(handler, context, command(id=f"c-{n}"))["ok"]
    full = evaluate(handler, context, command(id="c-16"))
    assert not full["ok"]
    assert "too many unexpired commands" in full["reason"]
    later = NOW + timedelta(minutes=6)
    fresh = command(id="c-17", expires=(later + timedelta(minutes=1)).isoformat())
    assert handler.evaluate(fresh, now=later, context=context)["ok"]
    stale = command(id="c-3", expires=(later + timedelta(minutes=1)).isoformat())
    # c-3 was forgotten only because it had expired: its old command cannot come back.
    assert handler.evaluate(stale, now=later, context=context)["ok"]


def test_a_22_degree_cooling_override_is_clamped_unless_exempt() -> None:
    handler, context = setup()
    reply = evaluate(handler, context, command(setpoint=22, mode="cool"))
    assert reply["ok"]
    assert reply["applied"]["setpoint"] == 26.0
    assert reply["applied"]["requested_setpoint"] == 22.0
    assert reply["applied"]["clamped"] is True
    assert (
        "clamp: 22 → 26 °C (cooling minimum 26 °C) (zone zone1 has no exemption)"
        in (reply["reason"])
    )
    exempt = evaluate(handler, context, command(id="c-2", zone="zone2", setpoint=22, mode="cool"))
    assert exempt["ok"]
    assert (exempt["applied"]["setpoint"], exempt["applied"]["clamped"]) == (22.0, False)
    override = handler.overrides["zone1"]
    assert (override.mode, override.setpoint, override.until) == (
        Mode.COOL,
        22.0,
        NOW + timedelta(hours=1),
    )


def test_without_until_or_for_an_override_holds_until_the_next_boundary() -> None:
    handler, context = setup()
    reply = evaluate(handler, context, command(**{"for": ...}))
    assert reply["ok"]
    assert reply["applied"]["until"] == "2026-07-15T12:00:00+08:00"


def test_an_override_without_a_mode_when_the_season_runs_none_is_refused() -> None:
    handler, context = setup(season={"otherwise": "off", "cooling": [], "heating": []})
    reply = evaluate(handler, context, command())
    assert not reply["ok"]
    assert "needs a mode" in reply["reason"]


def test_clear() -> None:
    handler, context = setup()
    handler.overrides.set(Override(zone="zone1", id="old", until=NOW + timedelta(hours=1)))
    reply = evaluate(handler, context, command(action="clear", setpoint=..., **{"for": ...}))
    assert reply == {
        "id": "c-1",
        "ok": True,
        "reason": "override old of zone zone1 cleared",
        "applied": {"zone": "zone1", "cleared": "old"},
    }
    again = evaluate(
        handler, context, command(id="c-2", action="clear", setpoint=..., **{"for": ...})
    )
    assert again["ok"]
    assert again["reason"] == "zone zone1 had no override"


def test_the_cli_builds_a_command_the_handler_accepts() -> None:
    handler, context = setup()
    cli = make_command("override", zone="zone1", now=NOW, setpoint=27.5, duration="90m")
    assert cli["id"].startswith("cli-")
    reply = handler.evaluate(json.dumps(cli).encode(), now=NOW, context=context, source="cli")
    assert reply["ok"], reply
    assert handler.overrides["zone1"].source == "cli"
    assert handler.overrides["zone1"].until == NOW + timedelta(minutes=90)


async def test_handle_audits_every_outcome() -> None:
    events: list[dict[str, Any]] = []

    async def audit(event: dict[str, Any]) -> None:
        events.append(event)

    data = YAML(typ="safe", pure=True).load(HVAC)
    hvac = HvacConfig.model_validate(data)
    handler = CommandHandler(hvac, overrides=OverrideBook(), audit=audit)
    context = ScheduleContext.for_site(hvac, "Asia/Shanghai")
    await handler.handle(command(), now=NOW, context=context)
    await handler.handle(b"{", now=NOW, context=context)
    assert [(e["event"], e["ok"]) for e in events] == [("command", True), ("command", False)]
