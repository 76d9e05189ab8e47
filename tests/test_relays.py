"""Relay outputs on the HVAC schedule machinery: a GPIO relay (gpiozero on MockFactory pins) as a
writable point, switched by a `kind: switch` zone through China's holidays and make-up days, with
overrides, verified read-back (from a contactor's auxiliary contact when wired), and never more
often than its minimum interval; the same zone kind on a Modbus coil of the simulated building.
Time is a ManualClock: the controller, the relay and its saved state share it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockConnectedPin  # type: ignore[import-untyped]
from pydantic import ValidationError
from ruamel.yaml import YAML

from agent.config.loader import load_config
from agent.core.clock import ManualClock
from agent.core.links import GpioConfig, Link
from agent.core.record import Quality
from agent.demo import _retarget
from agent.hvac.commands import make_command
from agent.hvac.controller import HvacController
from agent.hvac.preview import format_rows, preview_rows
from agent.hvac.program import HvacConfig, hvac_problems
from agent.sources.compose import MemoryState, open_devices, open_links
from drivers.gpio.driver import RELAY_DRIVER
from drivers.gpio.pulses import pin_backend
from drivers.gpio.relay import RelayDevice, ToggleTooSoonError, relay_state
from drivers.gpio.spec import RelayConfig
from hil.building import Building
from hil.server import SimulatedBuilding
from tests.helpers import DEMO_YAML

SHANGHAI = ZoneInfo("Asia/Shanghai")
RELAY_PIN, FEEDBACK_PIN = 22, 23


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def hvac_config(zone: str = "", *, programme: str = "") -> HvacConfig:
    text = f"""
zones:
  dhw: {{kind: switch, device: dhw_heater, on: "on", programme: dhw{zone}}}
programmes:
  dhw:
    workday: [{{start: "06:30", level: comfort}}, {{start: "19:00", level: off}}]
{programme}
check_interval: 15m
"""
    return HvacConfig.model_validate(YAML(typ="safe", pure=True).load(text))


def relay_config(**changes: Any) -> RelayConfig:
    fields: dict[str, Any] = {
        "name": "dhw_heater",
        "protocol": "relay",
        "bus": "pins",
        "pin": RELAY_PIN,
        "min_interval": None,
        **changes,
    }
    return RelayConfig.model_validate(fields)


@dataclass
class Rig:
    clock: ManualClock
    relay: RelayDevice
    controller: HvacController
    factory: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    seen: list[tuple[datetime, bool]] = field(default_factory=list)  # after every cycle

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    @property
    def pin(self) -> Any:
        return self.factory.pin(RELAY_PIN)

    async def run_until(
        self, end: datetime, actions: dict[datetime, Callable[[], Any]] | None = None
    ) -> None:
        """Cycle the controller as its loop would, noting the relay pin after each cycle."""
        pending = sorted((actions or {}).items())
        while self.clock.wall() < end:
            while pending and self.clock.wall() >= pending[0][0]:
                result = pending.pop(0)[1]()
                if result is not None:
                    await result
            delay = await self.controller.step()
            self.seen.append((self.clock.wall().astimezone(SHANGHAI), bool(self.pin.state)))
            limit = pending[0][0] if pending else end
            self.clock.advance(max(min(delay, (limit - self.clock.wall()).total_seconds()), 0.0))

    def switched(self) -> list[tuple[str, bool]]:
        """The moments the pin changed, as noted after the cycles."""
        changes, last = [], None
        for moment, state in self.seen:
            if state != last:
                changes.append((moment.strftime("%m-%d %H:%M"), state))
                last = state
        return changes

    async def command(self, **fields: Any) -> dict[str, Any]:
        now = self.clock.wall().astimezone(SHANGHAI)
        return await self.controller.handle_command(make_command(now=now, zone="dhw", **fields))


@contextlib.asynccontextmanager
async def rig(
    start: datetime,
    hvac: HvacConfig,
    relay: RelayConfig,
    *,
    state: MemoryState | None = None,
    wire: Callable[[Any], None] | None = None,
) -> AsyncIterator[Rig]:
    clock = ManualClock(start)
    async with Link("pins", GpioConfig(kind="gpio", pin_factory="mock")) as link:
        factory = pin_backend(link).factory
        if wire is not None:
            wire(factory)
        async with RELAY_DRIVER.open_device(
            relay, link=link, state=state or MemoryState(), clock=clock
        ) as device:
            assert isinstance(device, RelayDevice)
            events: list[dict[str, Any]] = []

            async def audit(event: dict[str, Any]) -> None:
                events.append(event)

            controller = HvacController(
                hvac,
                devices={"dhw_heater": device},
                tz="Asia/Shanghai",
                audit=audit,
                clock=clock,
                time_trusted=lambda: True,
            )
            yield Rig(clock, device, controller, factory, events)


def contactor(*, follows: bool) -> Callable[[Any], None]:
    """The contactor's auxiliary contact on the feedback pin: it follows the relay's output
    (a MockConnectedPin drives it), or it is stuck open (a welded coil, a tripped breaker)."""

    def wire(factory: Any) -> None:
        feedback = factory.pin(FEEDBACK_PIN)
        if follows:
            factory.pin(RELAY_PIN, pin_class=MockConnectedPin, input_pin=feedback)

    return wire


async def test_a_relay_follows_its_programme_through_national_day_and_a_make_up_saturday() -> None:
    # Wed 30 Sep 2026 to Sun 11 Oct: 1-7 Oct off (国庆节, with 5-7 Oct moved days), Thu 8 and
    # Fri 9 workdays, Sat 10 Oct a make-up workday (调休), Sun 11 off.
    async with rig(at(9, 30), hvac_config(), relay_config()) as r:
        await r.run_until(at(10, 12))
        assert r.switched() == [
            ("09-30 00:00", False),
            ("09-30 06:30", True),
            ("09-30 19:00", False),
            ("10-08 06:30", True),
            ("10-08 19:00", False),
            ("10-09 06:30", True),
            ("10-09 19:00", False),
            ("10-10 06:30", True),
            ("10-10 19:00", False),
        ]
        writes = r.of("write")
        assert len(writes) == 8  # the first cycle found it off already: nothing to write
        assert all(w["verified"] and w["point"] == "on" and w["role"] == "on" for w in writes)
        make_up = next(w for w in writes if w["schedule_time"].startswith("2026-10-10T06:30"))
        assert make_up["value"] is True
        assert "make-up workday" in make_up["reasons"][0]
        assert r.relay.toggles == 8
        assert r.of("device_fault") == []


def test_the_preview_shows_a_switch_on_and_off_without_a_season() -> None:
    rows = preview_rows(hvac_config(), "Asia/Shanghai", start=at(10, 10).date(), days=1)
    text = format_rows(rows)
    assert "06:30 - 19:00" in text
    assert [(row.mode, row.on) for row in rows] == [("off", False), ("on", True), ("off", False)]
    assert "season" not in text  # a switch is on in its periods whatever the season


async def test_an_override_switches_the_relay_off_and_its_end_back_on() -> None:
    async with rig(at(10, 9, 10), hvac_config(), relay_config()) as r:
        await r.run_until(at(10, 9, 10, 1))
        assert r.pin.state
        reply = await r.command(action="override", mode="off", duration="1h")
        assert reply["ok"], reply
        await r.run_until(at(10, 9, 11, 30))
        assert r.switched() == [
            ("10-09 10:00", True),
            ("10-09 10:01", False),
            ("10-09 11:01", True),
        ]
        off = next(w for w in r.of("write") if w["value"] is False)
        assert off["source"] == "override"
        assert r.of("override_ended")


async def test_an_override_reply_says_on_or_off_for_a_switch_never_a_fan_mode() -> None:
    # A switch zone has no mode: the reply (what `edge-agent override` prints and MQTT sends
    # back) and the audited command say on or off, as the preview does.
    async with rig(at(10, 9, 10), hvac_config(), relay_config()) as r:
        await r.run_until(at(10, 9, 10, 1))
        off = await r.command(action="override", mode="off", duration="1h")
        assert off["ok"], off
        assert (off["applied"]["mode"], off["applied"]["on"]) == ("off", False)
        assert "switch dhw off until 2026-10-09 11:01" in off["reason"]
        for mode in ("fan", "cool", "heat"):
            on = await r.command(action="override", mode=mode, duration="1h")
            assert on["ok"], on
            assert (on["applied"]["mode"], on["applied"]["on"]) == ("on", True)
            assert on["applied"]["setpoint"] is None
            assert "switch dhw on until" in on["reason"]
        audited = [e["applied"]["mode"] for e in r.of("command")]
        assert audited == ["off", "on", "on", "on"]
        await r.run_until(at(10, 9, 10, 3))
        assert r.pin.state  # and it did switch on


async def test_a_setpoint_for_a_switch_zone_is_refused_with_the_reason() -> None:
    async with rig(at(10, 9, 10), hvac_config(), relay_config()) as r:
        reply = await r.command(action="override", setpoint=27, duration="1h")
        assert not reply["ok"]
        assert reply["applied"] is None
        assert "zone dhw is a switch: it takes no setpoint" in reply["reason"]
        assert "dhw" not in r.controller.overrides


async def test_a_switch_zone_takes_mode_on_and_a_thermostat_refuses_it() -> None:
    # A technician says "on" for a relay, not "fan": on and off are a switch's own words, both
    # ways (the reply says on). A thermostat refuses "on" (tests/test_hvac_commands.py).
    async with rig(at(10, 9, 10), hvac_config(), relay_config()) as r:
        await r.run_until(at(10, 9, 10, 1))
        off = await r.command(action="override", mode="off", duration="1h")
        assert off["ok"], off
        await r.run_until(at(10, 9, 10, 2))
        assert not r.pin.state
        on = await r.command(action="override", mode="on", duration="1h")
        assert on["ok"], on
        assert (on["applied"]["mode"], on["applied"]["on"]) == ("on", True)
        await r.run_until(at(10, 9, 10, 4))
        assert r.pin.state
        typo = await r.command(action="override", mode="onn", duration="1h")
        assert not typo["ok"]
        assert "did you mean 'on'" in typo["reason"], typo["reason"]


async def test_the_relay_never_toggles_sooner_than_its_min_interval() -> None:
    # The device's own min_interval (10 min): an override asks for off one minute after the
    # schedule switched it on; the toggle is refused by the relay, deferred, and made at 06:40.
    async with rig(at(10, 9, 6, 29), hvac_config(), relay_config(min_interval="10m")) as r:
        actions = {
            at(10, 9, 6, 31): lambda: r.command(action="override", mode="off", duration="2h")
        }
        await r.run_until(at(10, 9, 7, 0), actions)
        assert r.switched() == [
            ("10-09 06:29", False),
            ("10-09 06:30", True),
            ("10-09 06:40", False),
        ]
        [deferred] = r.of("toggle_deferred")
        assert (deferred["by"], deferred["value"], deferred["wait_s"]) == ("device", False, 540.0)
        assert deferred["until"] == at(10, 9, 6, 40).isoformat()
        assert "min_interval (600 s)" in deferred["reason"]
        assert r.relay.toggles == 2
        assert r.of("device_fault") == []  # a deferral is no fault


async def test_a_zone_min_interval_defers_and_a_toggle_that_became_moot_is_dropped() -> None:
    hvac = hvac_config(", min_interval: 15m")
    async with rig(at(10, 9, 6, 29), hvac, relay_config()) as r:
        actions = {
            at(10, 9, 6, 35): lambda: r.command(action="override", mode="off", duration="5m"),
        }
        await r.run_until(at(10, 9, 7, 0), actions)
        # Off was asked at 06:35 for 5 min: deferred (zone) and moot when the override ended at
        # 06:40, so the relay stayed on.
        assert r.switched() == [("10-09 06:29", False), ("10-09 06:30", True)]
        [deferred] = r.of("toggle_deferred")
        assert (deferred["by"], deferred["value"]) == ("zone", False)
        assert "the zone's min_interval is 900 s" in deferred["reason"]
        [dropped] = r.of("toggle_dropped")
        assert dropped["schedule_time"] == at(10, 9, 6, 40).isoformat()
        assert r.relay.toggles == 1


async def test_the_min_interval_survives_a_restart() -> None:
    state = MemoryState()
    relay = relay_config(min_interval="10m")
    async with rig(at(10, 9, 6, 29), hvac_config(), relay, state=state) as r:
        await r.run_until(at(10, 9, 6, 31))
        assert r.relay.toggles == 1
        saved = json.loads(state.value or "")
        assert saved["on"] is True
    # The agent restarts at 06:33 (the pin came back off, as the relay's `initial` says): the
    # schedule wants it on, but it switched at 06:30: not before 06:40.
    async with rig(at(10, 9, 6, 33), hvac_config(), relay, state=state) as r:
        with pytest.raises(ToggleTooSoonError) as caught:
            await r.relay.write("on", True)
        assert caught.value.retry_after == pytest.approx(420.0)
        await r.run_until(at(10, 9, 6, 45))
        assert r.switched() == [("10-09 06:33", False), ("10-09 06:40", True)]
        assert r.of("toggle_deferred")[0]["by"] == "device"


async def test_with_a_feedback_contact_the_state_is_verified_on_the_contactor() -> None:
    relay = relay_config(feedback_pin=FEEDBACK_PIN, feedback_pull="down")
    async with rig(at(10, 9, 6, 29), hvac_config(), relay, wire=contactor(follows=True)) as r:
        await r.run_until(at(10, 9, 6, 31))
        [write] = r.of("write")
        assert (write["value"], write["verified"], write["attempts"]) == (True, True, 1)
        assert r.factory.pin(FEEDBACK_PIN).state


async def test_a_contactor_that_does_not_pull_in_is_a_device_fault_not_a_toggle_loop() -> None:
    relay = relay_config(feedback_pin=FEEDBACK_PIN, feedback_pull="down")
    async with rig(at(10, 9, 6, 29), hvac_config(), relay, wire=contactor(follows=False)) as r:
        await r.run_until(at(10, 9, 7, 30))
        assert r.of("write") == []  # nothing verified
        [fault] = r.of("device_fault")
        assert (fault["zone"], fault["role"]) == ("dhw", "on")
        assert "wrote True but read back False" in fault["reason"]
        assert r.pin.state  # the output is on; its contactor is not
        assert r.relay.toggles == 1  # retries and later cycles switch nothing again


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"feedback_pin": RELAY_PIN}, "feedback_pin must be another pin"),
        ({"pin": "GPIO 22"}, "is not a pin"),
        ({"initial": "maybe"}, "Input should be 'off', 'on' or 'keep'"),
    ],
)
def test_relay_config_mistakes_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        relay_config(**changes)


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("{kind: switch, device: d, on: o, setpoint: s, programme: p}", "remove setpoint"),
        ("{device: d, on: o, programme: p}", "an hvac zone needs its `setpoint` point"),
    ],
)
def test_switch_and_hvac_zones_are_told_apart(zone: str, message: str) -> None:
    text = f"zones:\n  z: {zone}\nprogrammes:\n  p: {{}}\n"
    with pytest.raises(ValidationError, match=message):
        HvacConfig.model_validate(YAML(typ="safe", pure=True).load(text))


def test_a_relay_and_its_switch_zone_pass_the_config_cross_check() -> None:
    site = load_config(DEMO_YAML)
    devices = [*site.devices, relay_config()]
    assert hvac_problems(hvac_config(), devices) == []
    wrong = HvacConfig.model_validate(
        YAML(typ="safe", pure=True).load(
            'zones:\n  dhw: {kind: switch, device: dhw_heater, on: "onn", programme: p}\n'
            "programmes:\n  p: {}\n"
        )
    )
    problems = dict(hvac_problems(wrong, devices))
    assert "has no point 'onn' (did you mean 'on'?)" in problems[("hvac", "zones", "dhw", "on")]


async def test_a_switch_zone_on_a_modbus_coil_keeps_its_min_interval() -> None:
    # Corridor lighting on a Modbus relay module's coil (here the simulated controller's third
    # zone coil): switched on at 06:30, an override asks for off at 06:32, the zone's 5-minute
    # min_interval holds it until 06:35.
    hvac = HvacConfig.model_validate(
        YAML(typ="safe", pure=True).load(
            "zones:\n  corridor: {kind: switch, device: hvac_controller, on: zone3_on,\n"
            "             programme: p, min_interval: 5m}\n"
            'programmes:\n  p: {workday: [{start: "06:30", level: comfort}]}\n'
        )
    )
    clock = ManualClock(at(10, 9, 6, 29))
    building = Building(zones_follow_office_hours=False, clock=clock.time, seed=3)
    async with SimulatedBuilding(building=building) as sim, contextlib.AsyncExitStack() as stack:
        site = _retarget(load_config(DEMO_YAML), sim, None)
        wanted = [d for d in site.devices if d.name == "hvac_controller"]
        links = await open_links({d.bus: site.buses[d.bus] for d in wanted}, stack)
        devices = await open_devices(wanted, links, stack=stack, clock=clock)
        events: list[dict[str, Any]] = []

        async def audit(event: dict[str, Any]) -> None:
            events.append(event)

        controller = HvacController(
            hvac, devices=devices, tz="Asia/Shanghai", audit=audit, clock=clock,
            time_trusted=lambda: True,
        )  # fmt: skip
        seen: list[tuple[str, bool]] = []
        commanded = False
        while clock.wall() < at(10, 9, 6, 40):
            if not commanded and clock.wall() >= at(10, 9, 6, 32):
                command = make_command(
                    "override", zone="corridor", mode="off", duration="1h",
                    now=clock.wall().astimezone(SHANGHAI),
                )  # fmt: skip
                assert (await controller.handle_command(command))["ok"]
                commanded = True
            delay = await controller.step()
            state = building.zones["zone3"].on
            if not seen or seen[-1][1] != state:
                seen.append((clock.wall().astimezone(SHANGHAI).strftime("%H:%M"), state))
            limit = at(10, 9, 6, 32) if not commanded else at(10, 9, 6, 40)
            clock.advance(max(min(delay, (limit - clock.wall()).total_seconds()), 0.0))
        assert seen == [("06:29", False), ("06:30", True), ("06:35", False)]
        [deferred] = [e for e in events if e["event"] == "toggle_deferred"]
        assert (deferred["by"], deferred["wait_s"]) == ("zone", 180.0)
        writes = [(e["schedule_time"][11:16], e["value"]) for e in events if e["event"] == "write"]
        assert writes == [("06:30", True), ("06:35", False)]


async def test_the_relay_reads_back_its_output_and_refuses_values_it_cannot_hold() -> None:
    relay = relay_config(initial="on", active_high=False)
    async with rig(at(10, 9, 12), hvac_config(), relay) as r:
        [state, unknown] = await r.relay.read(["on", "off"])
        assert (state.value, state.quality) == (True, Quality.GOOD)
        assert (unknown.value, unknown.quality) == (None, Quality.BAD)
        assert not r.pin.state  # active low: energised by a low pin
        with pytest.raises(ValueError, match="switched on"):
            await r.relay.write("on", 0.5)
        await r.relay.write("on", 0)  # a coil's 0/1 is understood
        assert r.pin.state
        assert [relay_state(v) for v in (True, 1, 0.0)] == [True, True, False]
