"""The HVAC controller against the simulated building over loopback Modbus TCP, on injected time.

The building's clock is the controller's ManualClock, so a simulated week passes in a second or
two; every write goes through pymodbus to the simulated zone controller and is read back, and
the tests check the simulator's own state (and its HVAC meter) independently of the audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ruamel.yaml import YAML

from agent.config.loader import load_config
from agent.core.clock import ManualClock
from agent.demo import _retarget
from agent.hvac.controller import HvacController
from agent.hvac.program import HvacConfig
from agent.sources.compose import open_devices, open_links
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.spec import Table
from hil.building import Building, HvacMode
from hil.server import SimulatedBuilding
from tests.helpers import DEMO_YAML

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def ControlledBuilding(**options: Any) -> Building:
    """The simulated building with its zones left to the agent: only occupancy (heat gains,
    lighting) follows office hours, so what a zone does is what the agent wrote."""
    return Building(zones_follow_office_hours=False, **options)


def zone_yaml(name: str, programme: str, **extra: str) -> str:
    n = name[-1]
    fields = {
        "device": "hvac_controller",
        "setpoint": f"zone{n}_setpoint",
        "mode": f"zone{n}_mode",
        "on": f"zone{n}_on",
        "programme": programme,
        **extra,
    }
    return f"  {name}: {{{', '.join(f'{k}: {v}' for k, v in fields.items())}}}\n"


OFFICE = """
programmes:
  office:
    workday:
      - {start: "07:30", level: comfort}
      - {start: "12:00", level: setback}
      - {start: "13:30", level: comfort}
      - {start: "18:00", level: off}
check_interval: 15m
"""


def hvac_config(text: str) -> HvacConfig:
    return HvacConfig.model_validate(YAML(typ="safe", pure=True).load(text))


Write = tuple[str, str, str, Any]  # schedule time, zone, role, value


@dataclass
class Harness:
    clock: ManualClock
    building: Building
    sim: SimulatedBuilding
    controller: HvacController
    buses: dict[str, ModbusBusClient]
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def writes(self) -> list[Write]:
        return [(e["schedule_time"], e["zone"], e["role"], e["value"]) for e in self.of("write")]

    async def run_until(
        self, end: datetime, actions: dict[datetime, Callable[[], None]] | None = None
    ) -> None:
        """Cycle the controller as its loop would, doing `actions` when the wall clock gets
        there (a clock step, a change at a thermostat)."""
        pending = sorted((actions or {}).items())
        while self.clock.wall() < end:
            while pending and self.clock.wall() >= pending[0][0]:
                pending.pop(0)[1]()
            delay = await self.controller.step()
            limit = pending[0][0] if pending else end
            self.clock.advance(max(min(delay, (limit - self.clock.wall()).total_seconds()), 0.0))

    async def hvac_meter_kwh(self) -> float:
        words = await self.buses["switchboard"].read(
            device="hvac_meter", unit_id=3, table=Table.HOLDING, address=0x101E, count=2
        )
        return float(struct.unpack(">f", struct.pack(">HH", *words))[0])

    async def device_setpoint(self, zone: int) -> float:
        words = await self.buses["hvac"].read(
            device="hvac_controller", unit_id=1, table=Table.HOLDING, address=zone - 1, count=1
        )
        return int(words[0]) * 0.1


@contextlib.asynccontextmanager
async def harness(
    hvac: HvacConfig,
    start: datetime,
    *,
    trusted: Callable[[], bool] = lambda: True,
    clock: ManualClock | None = None,
) -> AsyncIterator[Harness]:
    clock = clock or ManualClock(start)
    building = ControlledBuilding(clock=clock.time, seed=3)
    site = load_config(DEMO_YAML)
    async with SimulatedBuilding(building=building) as sim, contextlib.AsyncExitStack() as stack:
        site = _retarget(site, sim, None)
        links = await open_links(site.buses, stack)
        # The devices' own Modbus client of each TCP link: the test's reads share its lock.
        buses = {
            name: link.shared("modbus", lambda link=link: ModbusBusClient(link))
            for name, link in links.items()
            if name in sim.endpoints
        }
        devices = await open_devices(site.devices, links, stack=stack, clock=clock)
        events: list[dict[str, Any]] = []

        async def audit(event: dict[str, Any]) -> None:
            events.append(event)

        controller = HvacController(
            hvac,
            devices=devices,
            tz="Asia/Shanghai",
            audit=audit,
            clock=clock,
            time_trusted=trusted,
        )
        yield Harness(clock, building, sim, controller, buses, events)


def workday_writes(
    day: datetime, zone: str, *, first: list[tuple[str, Any]] | None = None
) -> list[Write]:
    def stamp(hour: int, minute: int) -> str:
        return at(day.year, day.month, day.day, hour, minute).isoformat()

    return [
        *[(stamp(7, 30), zone, role, value) for role, value in first or []],
        (stamp(7, 30), zone, "on", True),
        (stamp(12, 0), zone, "setpoint", 16.0),
        (stamp(13, 30), zone, "setpoint", 20.0),
        (stamp(18, 0), zone, "on", False),
    ]


class StoppingClock(ManualClock):
    """A ManualClock whose sleeps end the controller's loop at `end`; it notes, after every
    cycle, what the simulated zone controller holds."""

    def __init__(self, start: datetime, end: datetime, stop: Any) -> None:
        super().__init__(start)
        self.end = end
        self.stop = stop
        self.building: Building | None = None
        self.seen: list[tuple[datetime, dict[str, tuple[float, HvacMode, bool]]]] = []

    async def sleep(self, seconds: float) -> None:
        if self.building is not None:
            zones = self.building.zones
            self.seen.append(
                (self.wall(), {n: (z.setpoint, z.mode, z.on) for n, z in zones.items()})
            )
        remaining = (self.end - self.wall()).total_seconds()
        await super().sleep(max(min(seconds, remaining), 0.0))
        if self.wall() >= self.end:
            self.stop.set()


async def test_a_week_through_new_year_and_a_make_up_sunday() -> None:
    hvac = hvac_config(
        "zones:\n" + zone_yaml("zone1", "office") + zone_yaml("zone2", "office") + OFFICE
    )
    start, end = at(2025, 12, 29), at(2026, 1, 5)
    stop = asyncio.Event()
    clock = StoppingClock(start, end, stop)
    async with harness(hvac, start, clock=clock) as h:
        clock.building = h.building
        h.building.set_mode("zone1", HvacMode.COOL)  # so that the first morning writes the mode
        await h.controller.run(stop)
        expected: list[Write] = []
        for day in (at(2025, 12, 29), at(2025, 12, 30), at(2025, 12, 31), at(2026, 1, 4)):
            first = [("mode", "heat")] if day == start else []
            expected += workday_writes(day, "zone1", first=first)
            expected += workday_writes(day, "zone2")
        key = lambda w: (w[0], w[1])  # noqa: E731 - time, then zone; roles keep write order
        assert sorted(h.writes(), key=key) == sorted(expected, key=key)
        assert h.of("refused") == h.of("device_fault") == h.of("clamp") == []
        assert all(e["verified"] and e["attempts"] == 1 for e in h.of("write"))
        # The simulator's own state after each cycle, against the schedule.
        checks = {
            at(2025, 12, 29, 7, 30): (20.0, True),
            at(2025, 12, 29, 12, 0): (16.0, True),
            at(2025, 12, 31, 13, 30): (20.0, True),
            at(2025, 12, 31, 18, 0): (20.0, False),
            at(2026, 1, 1, 9, 0): (20.0, False),  # New Year's Day
            at(2026, 1, 2, 9, 0): (20.0, False),  # the day off moved from Sunday
            at(2026, 1, 4, 9, 0): (20.0, True),  # the make-up Sunday
            at(2026, 1, 4, 12, 15): (16.0, True),
        }
        seen = dict(clock.seen)
        for moment, (setpoint, on) in checks.items():
            state = seen[moment]
            for zone in ("zone1", "zone2"):
                assert state[zone] == (setpoint, HvacMode.HEAT, on), (moment, zone)
            assert state["zone3"][2] is False  # not a configured zone: left alone


async def test_clock_steps_neither_repeat_nor_skip_writes() -> None:
    hvac = hvac_config(
        "zones:\n" + zone_yaml("zone1", "office") + zone_yaml("zone2", "office") + OFFICE
    )
    start = at(2025, 12, 29)
    async with harness(hvac, start) as h:
        await h.run_until(
            at(2025, 12, 31),
            {
                at(2025, 12, 29, 11): lambda: h.clock.step(2 * HOUR),  # 11:00 -> 13:00
                at(2025, 12, 29, 19): lambda: h.clock.step(-8 * HOUR),  # 19:00 -> 11:00
            },
        )

        def monday(hour: int, minute: int) -> str:
            return at(2025, 12, 29, hour, minute).isoformat()

        expected: list[Write] = []
        for zone in ("zone1", "zone2"):
            expected += [
                (monday(7, 30), zone, "on", True),
                (monday(13, 0), zone, "setpoint", 16.0),  # the lunch setback, on the new time
                (monday(13, 30), zone, "setpoint", 20.0),
                (monday(18, 0), zone, "on", False),
            ]
            # Back to 11:00 on Monday: nothing is re-written; Tuesday runs exactly once.
            expected += workday_writes(at(2025, 12, 30), zone)
        key = lambda w: (w[0], w[1])  # noqa: E731
        assert sorted(h.writes(), key=key) == sorted(expected, key=key)
        steps = [(e["action"], e["seconds"]) for e in h.of("clock_step")]
        assert steps == [("catch_up", 2 * HOUR), ("hold", -8 * HOUR)]
        # Held until the last schedule time acted on: the 18:45 cycle, just before the step.
        assert h.of("clock_step")[1]["hold_until"] == "2025-12-29T18:45:00+08:00"


async def test_local_changes_are_respected_until_the_boundary_or_reasserted() -> None:
    hvac = hvac_config(
        "zones:\n"
        + zone_yaml("zone1", "office", local_change="respect_until_boundary")
        + zone_yaml("zone2", "office", local_change="reassert")
        + OFFICE
    )
    start = at(2025, 12, 29, 7)
    async with harness(hvac, start) as h:
        b = h.building

        def user_turns_dials(value: float) -> Callable[[], None]:
            def turn() -> None:
                b.set_setpoint("zone1", value)
                b.set_setpoint("zone2", value)

            return turn

        await h.run_until(
            at(2025, 12, 29, 12, 30),
            {
                at(2025, 12, 29, 9): user_turns_dials(18.0),
                at(2025, 12, 29, 10): lambda: b.set_setpoint("zone1", 24.0),  # above 20 heating
            },
        )
        changes = [(e["schedule_time"][11:16], e["zone"], e["found"]) for e in h.of("local_change")]
        assert changes == [
            ("09:00", "zone1", 18.0),
            ("09:00", "zone2", 18.0),
            ("10:00", "zone1", 24.0),
        ]
        after_start = [w for w in h.writes() if w[0] > at(2025, 12, 29, 7, 30).isoformat()]
        assert [(w[0][11:16], w[1], w[2], w[3]) for w in after_start] == [
            ("09:00", "zone2", "setpoint", 20.0),  # reasserted at once
            ("10:00", "zone1", "setpoint", 20.0),  # respected, but clamped to the 20 °C limit
            ("12:00", "zone1", "setpoint", 16.0),  # the boundary ends the respect
            ("12:00", "zone2", "setpoint", 16.0),
        ]
        sources = [e["source"] for e in h.of("write") if e["schedule_time"] > "2025-12-29T08"]
        assert sources == ["reassert", "policy", "schedule", "schedule"]
        clamps = h.of("clamp")
        assert [(c["zone"], c["source"], c["requested"], c["applied"]) for c in clamps] == [
            ("zone1", "local", 24.0, 20.0)
        ]


async def run_summer_day(zones_yaml: str, programme: str) -> tuple[float, Harness]:
    hvac = hvac_config(
        f"zones:\n{zones_yaml}programmes:\n  summer:\n{programme}check_interval: 15m\n"
    )
    start = at(2026, 7, 15)  # a Wednesday
    async with harness(hvac, start) as h:
        before = await h.hvac_meter_kwh()
        await h.run_until(at(2026, 7, 16))
        used = await h.hvac_meter_kwh() - before
        h.setpoints = [await h.device_setpoint(n) for n in (1, 2, 3)]  # type: ignore[attr-defined]
    return used, h


COOL_22 = """    workday:
      - {start: "08:00", mode: cool, setpoint: 22}
      - {start: "18:00", level: off}
"""
ALL_OFF = "    workday: []\n"


def three_zones(**extra: str) -> str:
    return "".join(zone_yaml(f"zone{n}", "summer", **extra) for n in (1, 2, 3))


async def test_the_clamp_and_the_schedule_change_hvac_energy() -> None:
    exempt = 'exemption: {reason: "test: operating theatre"}'
    clamped_kwh, clamped = await run_summer_day(three_zones(), COOL_22)
    exempt_kwh, unclamped = await run_summer_day(
        three_zones().replace("programme: summer", f"programme: summer, {exempt}"), COOL_22
    )
    off_kwh, _ = await run_summer_day(three_zones(), ALL_OFF)
    # 22 °C requested: 26 °C on the device unless exempt, and the clamp audited once per zone.
    assert clamped.setpoints == [26.0, 26.0, 26.0]  # type: ignore[attr-defined]
    assert unclamped.setpoints == [22.0, 22.0, 22.0]  # type: ignore[attr-defined]
    assert [(c["zone"], c["requested"], c["applied"]) for c in clamped.of("clamp")] == [
        ("zone1", 22.0, 26.0),
        ("zone2", 22.0, 26.0),
        ("zone3", 22.0, 26.0),
    ]
    assert unclamped.of("clamp") == []
    # The simulated HVAC sub-meter sees it: cooling to 22 °C costs clearly more than to 26 °C,
    # and a day with the units off costs (nearly) nothing.
    assert exempt_kwh > clamped_kwh * 1.15, (exempt_kwh, clamped_kwh)
    assert off_kwh < 0.1 * clamped_kwh, (off_kwh, clamped_kwh)


async def test_commands_reach_the_device_only_when_valid() -> None:
    hvac = hvac_config(
        "zones:\n" + zone_yaml("zone1", "office") + OFFICE + "setpoints: {cooling_comfort: 27}\n"
    )
    start = at(2026, 7, 15, 9)
    async with harness(hvac, start) as h:
        await h.run_until(at(2026, 7, 15, 9, 30))
        writes_before = len(h.of("write"))
        now = h.clock.wall()

        def cmd(**fields: Any) -> dict[str, Any]:
            base = {
                "id": "c-1",
                "expires": (now + timedelta(minutes=5)).isoformat(),
                "action": "override",
                "zone": "zone1",
                "mode": "cool",
                "setpoint": 22,
                "for": "1h",
            }
            base.update(fields)
            return base

        refused: list[bytes | dict[str, Any]] = [
            b"\x00\x01garbage",
            cmd(setpoint=99, id="c-range"),
            cmd(zone="zone9", id="c-zone"),
            cmd(expires=(now - timedelta(minutes=1)).isoformat(), id="c-old"),
        ]
        for raw in refused:
            reply = await h.controller.handle_command(raw)
            assert not reply["ok"], reply
            assert reply["reason"]
        accepted = await h.controller.handle_command(cmd())
        assert accepted["ok"], accepted
        assert accepted["applied"]["setpoint"] == 26.0
        replay = await h.controller.handle_command(cmd())
        assert not replay["ok"]
        assert "replayed" in replay["reason"]
        assert len(h.of("write")) == writes_before  # replies come before any write
        assert len(h.of("command")) == 6
        assert await h.device_setpoint(1) == 27.0  # the comfort level
        await h.run_until(at(2026, 7, 15, 10, 29))
        assert await h.device_setpoint(1) == 26.0  # 22 requested, clamped
        assert len(h.of("clamp")) == 1  # once, not every cycle
        override_writes = [e for e in h.of("write") if e["source"] == "override"]
        assert [(e["role"], e["value"]) for e in override_writes] == [("setpoint", 26.0)]
        assert override_writes[0]["schedule_time"] == now.astimezone(SHANGHAI).isoformat()
        await h.run_until(at(2026, 7, 15, 11))
        assert await h.device_setpoint(1) == 27.0  # back to the comfort level at the end
        assert [e["id"] for e in h.of("override_ended")] == ["c-1"]


async def test_nothing_is_done_before_the_clock_is_trusted() -> None:
    hvac = hvac_config("zones:\n" + zone_yaml("zone1", "office") + OFFICE)
    trusted = [False]
    async with harness(hvac, at(2025, 12, 29, 7, 40), trusted=lambda: trusted[0]) as h:
        for _ in range(3):
            assert await h.controller.step() == 5.0
            h.clock.advance(5.0)
        reply = await h.controller.handle_command({"id": "c-1"})
        assert (reply["id"], reply["ok"]) == ("c-1", False)
        assert "not synchronised" in reply["reason"]
        assert [e["event"] for e in h.events] == ["waiting_for_clock", "command"]
        assert h.building.zones["zone1"].on is False
        trusted[0] = True
        await h.controller.step()
        assert h.building.zones["zone1"].on is True
        assert [e["event"] for e in h.events][2:] == ["clock_trusted", "write"]


async def test_device_faults_are_reported_once_and_recovery_too() -> None:
    hvac = hvac_config("zones:\n" + zone_yaml("zone1", "office") + OFFICE)
    async with harness(hvac, at(2025, 12, 29, 7)) as h:
        h.sim.set_offline("hvac_controller", reply="gateway")
        await h.run_until(at(2025, 12, 29, 8))
        faults = h.of("device_fault")
        assert [(f["zone"], f["role"]) for f in faults] == [("zone1", "read")]
        assert h.of("write") == []
        h.sim.set_offline("hvac_controller", False)
        await h.run_until(at(2025, 12, 29, 8, 30))
        assert [e["role"] for e in h.of("device_recovered")] == ["read"]
        assert [(w[2], w[3]) for w in h.writes()] == [("on", True)]  # caught up at once


async def test_a_write_the_device_refuses_becomes_one_device_fault() -> None:
    hvac = hvac_config(
        "zones:\n"
        + zone_yaml("zone1", "hot", setpoint_max="40", exemption='{reason: "drying room"}')
        + 'programmes:\n  hot:\n    workday:\n      - {start: "08:00", mode: heat, setpoint: 38}\n'
        + "check_interval: 15m\nverify_retries: 2\n"
    )
    async with harness(hvac, at(2025, 12, 29, 7, 55)) as h:
        await h.run_until(at(2025, 12, 29, 9))
        faults = h.of("device_fault")
        assert [(f["role"], "exception 03" in f["reason"]) for f in faults] == [("setpoint", True)]
        assert h.building.zones["zone1"].setpoint != 38.0
        assert h.building.zones["zone1"].on is False  # nothing after the failed setpoint


async def test_writes_are_rate_limited_per_device() -> None:
    hvac = hvac_config(
        "zones:\n"
        + "".join(zone_yaml(f"zone{n}", "office") for n in (1, 2, 3))
        + OFFICE
        + "writes_per_minute: 2\nwrite_burst: 1\n"
    )
    async with harness(hvac, at(2025, 12, 29, 7, 29)) as h:
        await h.run_until(at(2025, 12, 29, 7, 35))
        times = [datetime.fromisoformat(e["schedule_time"]) for e in h.of("write")]
        assert len(times) == 3
        assert all(b - a >= timedelta(seconds=29.9) for a, b in itertools.pairwise(times))
        assert len(h.of("rate_limited")) == 1
        assert all(h.building.zones[z].on for z in ("zone1", "zone2", "zone3"))


@pytest.mark.parametrize("rule", ["respect_until_boundary", "reassert"])
async def test_a_unit_switched_on_after_hours(rule: str) -> None:
    hvac = hvac_config("zones:\n" + zone_yaml("zone1", "office", local_change=rule) + OFFICE)
    async with harness(hvac, at(2025, 12, 29, 19)) as h:
        await h.run_until(
            at(2025, 12, 30, 0, 30),
            {at(2025, 12, 29, 20): lambda: h.building.set_on("zone1", True)},
        )
        (write,) = h.of("write")
        expected = "20:00" if rule == "reassert" else "00:00"  # midnight is the next boundary
        assert (write["schedule_time"][11:16], write["role"], write["value"]) == (
            expected,
            "on",
            False,
        )


async def test_the_outdoor_temperature_decides_the_season() -> None:
    # A January morning in Jingzhou is about 2 °C: with cooling from 0 °C the rule picks cooling.
    hvac = hvac_config(
        "zones:\n"
        + zone_yaml("zone1", "office")
        + OFFICE
        + "season:\n  outdoor: {device: hvac_controller, point: outdoor_temperature,"
        + " cooling_above: 0, heating_below: -10, hysteresis: 1}\n"
    )
    async with harness(hvac, at(2026, 1, 5, 7)) as h:
        await h.run_until(at(2026, 1, 5, 8))
        (season,) = h.of("season")
        assert (season["season"], season["previous"]) == ("cooling", None)
        assert [(w[2], w[3]) for w in h.writes()] == [
            ("mode", "cool"),
            ("setpoint", 26.0),
            ("on", True),
        ]
        assert "by outdoor temperature" in h.of("write")[0]["reasons"][-1]
        assert h.building.zones["zone1"].mode is HvacMode.COOL


async def test_a_missing_calendar_for_next_year_is_reported_once() -> None:
    hvac = hvac_config("zones:\n" + zone_yaml("zone1", "office") + OFFICE)
    async with harness(hvac, at(2026, 12, 20, 7)) as h:
        await h.run_until(at(2026, 12, 20, 9))
        (missing,) = h.of("calendar_missing")
        assert "2027" in missing["message"]
