"""The policy limits clamp every setpoint, whatever its source, unless the zone is exempt with a
reason (建科[2008]115号 Art. 3: cooling not below 26 °C, heating not above 20 °C)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ruamel.yaml import YAML

from agent.hvac.overrides import Override
from agent.hvac.policy import apply_policy, zone_limits
from agent.hvac.program import HvacConfig, Mode
from agent.hvac.state import ScheduleContext, wanted_state

SHANGHAI = ZoneInfo("Asia/Shanghai")

HVAC = """
zones:
  office: {device: d, setpoint: s, mode: m, on: o, programme: summer}
  theatre:
    device: d
    setpoint: s2
    on: o2
    programme: summer
    exemption: {reason: "operating theatre (GB 50333: 21-25 °C)", cooling_min: 21}
  lab:
    device: d
    setpoint: s3
    on: o3
    programme: summer
    exemption: {reason: "process cooling approved by the city energy office"}
programmes:
  summer:
    workday:
      - {start: "08:00", mode: cool, setpoint: 22}
      - {start: "12:00", mode: heat, setpoint: 24}
      - {start: "18:00", level: off}
"""


def hvac(**policy: Any) -> HvacConfig:
    data = YAML(typ="safe", pure=True).load(HVAC)
    if policy:
        data["policy"] = policy
    return HvacConfig.model_validate(data)


@pytest.mark.parametrize(
    ("mode", "requested", "applied"),
    [
        (Mode.COOL, 22.0, 26.0),
        (Mode.COOL, 26.0, 26.0),
        (Mode.COOL, 27.5, 27.5),
        (Mode.HEAT, 24.0, 20.0),
        (Mode.HEAT, 18.0, 18.0),
    ],
)
def test_site_limits(mode: Mode, requested: float, applied: float) -> None:
    value, clamp = apply_policy(mode, requested, zone_limits(hvac(), "office"))
    assert value == applied
    assert (clamp is None) == (requested == applied)
    if clamp is not None:
        assert f"{requested:g} → {applied:g} °C" in clamp.reason


def test_an_exemption_sets_its_own_limits_or_none() -> None:
    config = hvac()
    assert apply_policy(Mode.COOL, 22.0, zone_limits(config, "theatre")) == (22.0, None)
    assert apply_policy(Mode.COOL, 20.0, zone_limits(config, "theatre"))[0] == 21.0
    assert apply_policy(Mode.COOL, 18.0, zone_limits(config, "lab")) == (18.0, None)
    assert zone_limits(config, "lab").exemption == (
        "process cooling approved by the city energy office"
    )


def test_the_dial_range_bounds_everything() -> None:
    value, clamp = apply_policy(Mode.COOL, 2.0, zone_limits(hvac(), "lab"))
    assert value == 5.0
    assert clamp is not None
    assert "setpoint range" in clamp.limit


def test_a_stricter_site_limit_needs_no_reason() -> None:
    value, _ = apply_policy(Mode.COOL, 26.0, zone_limits(hvac(cooling_min=27), "office"))
    assert value == 27.0


def test_a_laxer_site_limit_with_its_reason() -> None:
    config = hvac(cooling_min=24, relaxed_reason="hospital: wards and clinics")
    assert apply_policy(Mode.COOL, 22.0, zone_limits(config, "office"))[0] == 24.0


@pytest.mark.parametrize(
    ("hour", "zone", "mode", "setpoint"),
    [
        (9, "office", Mode.COOL, 26.0),
        (9, "theatre", Mode.COOL, 22.0),
        (13, "office", Mode.HEAT, 20.0),
        (13, "lab", Mode.HEAT, 24.0),
    ],
)
def test_schedule_setpoints_are_clamped_with_the_reason(
    hour: int, zone: str, mode: Mode, setpoint: float
) -> None:
    context = ScheduleContext.for_site(hvac(), "Asia/Shanghai")
    wanted = wanted_state(zone, datetime(2026, 7, 15, hour, tzinfo=SHANGHAI), context)
    assert (wanted.mode, wanted.setpoint, wanted.on) == (mode, setpoint, True)
    clamped = any(reason.startswith("clamp:") for reason in wanted.reasons)
    assert clamped == (wanted.clamp is not None)
    assert clamped == (zone == "office")


def test_override_setpoints_are_clamped_too() -> None:
    config = hvac()
    at = datetime(2026, 7, 15, 20, tzinfo=SHANGHAI)  # after hours: the schedule has it off
    override = Override(
        zone="office",
        id="c1",
        until=datetime(2026, 7, 15, 22, tzinfo=SHANGHAI),
        mode=Mode.COOL,
        setpoint=22.0,
    )
    context = ScheduleContext.for_site(config, "Asia/Shanghai")
    context = ScheduleContext(
        hvac=config, tz=context.tz, calendar=context.calendar, overrides={"office": override}
    )
    wanted = wanted_state("office", at, context)
    assert (wanted.mode, wanted.setpoint, wanted.on, wanted.source) == (
        Mode.COOL,
        26.0,
        True,
        "override",
    )
    assert wanted.clamp is not None
