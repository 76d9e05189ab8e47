"""The HVAC controller: applies each zone's wanted state to its zone controller, verifiably.

    controller = HvacController(hvac, devices={name: device}, tz=..., audit=sink)
    await controller.run(stop)                       # or: await controller.step() per cycle
    reply = await controller.handle_command(payload)  # MQTT or CLI command -> reply dict

Each cycle (at every schedule boundary, and every `check_interval` between them):

1. Time: nothing is done until the clock is trusted; the schedule runs on schedule time, which
   never goes back (agent.hvac.clock explains both rules).
2. Read every zone's setpoint, mode and on/off points back from the devices, through the
   devices' own drivers (agent.core.source.PolledDevice: the same planner, learned quirks and
   link lock as polling), so control and polling never disagree on how to read a device.
3. A value that differs from what the controller last wrote or saw, made by nobody but the
   thermostat's user, is a *local change*: audited, then handled by the zone's rule —
   `reassert` writes the schedule back at once; `respect_until_boundary` leaves it until the
   next schedule boundary (or until the wanted state changes otherwise, e.g. by an override).
   A respected local setpoint beyond the policy limits is still clamped.
4. Write what differs from the wanted state (so: only on a change, at a boundary, or to reassert),
   only to points declared writable, within the zone's dial range and the register's range,
   through a token bucket per device; read each write back, retry `verify_retries` times, then
   report a device fault (once, and once more when the device recovers).

Each zone's room temperature (agent.hvac.room: its BLE room sensor while fresh, else its
device's own point) is worked out every cycle, audited when its source changes, and carried by
every write event; it is reported, not regulated on.

Every write, refusal, clamp, local change, fault, clock step and command outcome is an audit
event ``dict`` passed to the injected ``async def audit(event) -> None``; the sink must be local
(e.g. the store), never wait on the uplink. A clamp is audited once per zone, source and value,
not on every cycle. Nothing here depends on the uplink: with it down, the same writes happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.clock import Clock, system_clock
from agent.core.errors import DriverError
from agent.core.record import Quality, ms_to_iso
from agent.core.source import PointInfo, PolledDevice
from agent.hvac.calendar import HolidayCalendar
from agent.hvac.clock import ClockStep, ScheduleClock, timesyncd_synchronized
from agent.hvac.commands import CommandHandler
from agent.hvac.overrides import OverrideBook
from agent.hvac.policy import apply_policy, zone_limits
from agent.hvac.program import HvacConfig, LocalChangeRule, Mode, Season, ZoneConfig
from agent.hvac.room import LatestSource, RoomTemperature, choose_room
from agent.hvac.state import (
    ScheduleContext,
    Wanted,
    next_boundary,
    season_from_outdoor,
    wanted_state,
)

__all__ = ["AuditSink", "HvacController"]

log = logging.getLogger(__name__)

AuditSink = Callable[[dict[str, Any]], Awaitable[None]]

ROLES = ("mode", "setpoint", "on")  # the order in which a zone is switched on
RETRY_DELAY_S = 0.5
MIN_DELAY_S = 0.01
UNTRUSTED_RECHECK_S = 5.0
Value = float | bool


class _Unwritable(Exception):
    """A value the controller will not write (it becomes a "refused" audit event)."""


@dataclass(frozen=True, slots=True)
class _Ref:
    """One device point the controller reads or writes, through the device's driver."""

    device: PolledDevice
    name: str

    @property
    def info(self) -> PointInfo:
        return self.device.points[self.name]


class _TokenBucket:
    """Writes per device: `rate` per second, at most `burst` at once (monotonic time)."""

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst, self._tokens + max(now - self._at, 0.0) * self._rate)
        self._at = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self._rate)


@dataclass(frozen=True, slots=True)
class _RoomWiring:
    """Where a zone's room temperature comes from: a room sensor's latest measurement (a push
    source that keeps it), else the zone device's own temperature point."""

    sensor: LatestSource | None
    point: str
    own: _Ref | None


@dataclass
class _ZoneRuntime:
    expected: dict[str, Value] = field(default_factory=dict)  # what the device last held
    respect_until: datetime | None = None
    respected: Wanted | None = None  # the wanted state when the local change was respected
    faults: dict[str, str] = field(default_factory=dict)  # role (or "read") -> reason
    refused: set[tuple[str, Value]] = field(default_factory=set)
    last_toggle: float | None = None  # monotonic time the on/off point last changed
    deferred: Value | None = None  # an on/off value waiting for min_interval (audited once)
    deferred_until: float | None = None  # monotonic time it may be written


class HvacController:
    """Runs the HVAC schedules of one site. Constructing it does no I/O but start the child
    process that reads the public holiday calendar (agent.hvac.china_days)."""

    def __init__(
        self,
        hvac: HvacConfig,
        *,
        devices: Mapping[str, PolledDevice],
        tz: str,
        audit: AuditSink,
        clock: Clock | None = None,
        time_trusted: Callable[[], bool] | None = None,
        overrides: OverrideBook | None = None,
        calendar: HolidayCalendar | None = None,
        room_sensors: Mapping[str, object] | None = None,
    ) -> None:
        self.hvac = hvac
        self.tz = ZoneInfo(tz)
        self.overrides = overrides if overrides is not None else OverrideBook()
        self.calendar = calendar if calendar is not None else HolidayCalendar(hvac.calendar)
        self._audit_sink = audit
        self._clock: Clock = clock if clock is not None else system_clock()
        # This year's and next year's public calendar, read by a child process while the agent
        # opens its devices (the first cycle and the year-end warning need both).
        self.calendar.prefetch(self._calendar_years())
        self._time_trusted = time_trusted or (lambda: hvac.trust_clock or timesyncd_synchronized())
        self._schedule = ScheduleClock(hold_max=hvac.clock_hold_max)
        self.commands = CommandHandler(
            hvac, overrides=self.overrides, audit=self._audit, context=self.context
        )
        self._refs: dict[str, dict[str, _Ref]] = {
            zone: self._zone_refs(zone, config, devices) for zone, config in hvac.zones.items()
        }
        self._rooms_from = {
            zone: self._room_wiring(zone, config, devices, room_sensors or {})
            for zone, config in hvac.zones.items()
            if config.temperature is not None or config.room_sensor is not None
        }
        self.rooms: dict[str, RoomTemperature] = {}
        """Each zone's room temperature in the last cycle, with its source (zones that have
        one)."""
        self._outdoor: _Ref | None = None
        if hvac.season.outdoor is not None:
            rule = hvac.season.outdoor
            self._outdoor = self._ref(devices, rule.device, rule.point, "season.outdoor")
        self._runtime = {zone: _ZoneRuntime() for zone in hvac.zones}
        now = self._clock.monotonic()
        rate = hvac.writes_per_minute / 60.0
        self._buckets = {
            name: _TokenBucket(rate=rate, burst=hvac.write_burst, now=now)
            for name in {refs["on"].device.name for refs in self._refs.values()}
        }
        self._limited: set[str] = set()  # devices out of write tokens (reported once)
        self._deferred: set[str] = set()  # devices whose writes waited in this cycle
        self._trusted = False
        self._untrusted_reported = False
        self._reported: set[tuple[Any, ...]] = set()  # clamps and warnings audited once
        self._season: Season | None = None
        self._outdoor_average: float | None = None
        self._outdoor_at = 0.0
        self._wake = asyncio.Event()
        self.now: datetime | None = None  # the schedule time of the last cycle

    # ---- wiring -------------------------------------------------------------------------------

    @staticmethod
    def _ref(
        devices: Mapping[str, PolledDevice], device_name: str, point: str, where: str
    ) -> _Ref:
        device = devices.get(device_name)
        if device is None:
            raise ValueError(f"{where}: no device {device_name!r}")
        if point not in device.points:
            raise ValueError(f"{where}: device {device_name!r} has no point {point!r}")
        return _Ref(device=device, name=point)

    def _zone_refs(
        self, zone: str, config: ZoneConfig, devices: Mapping[str, PolledDevice]
    ) -> dict[str, _Ref]:
        refs: dict[str, _Ref] = {}
        for role in ROLES:
            point = getattr(config, role)
            if point is not None:
                refs[role] = self._ref(devices, config.device, point, f"zone {zone}")
        return refs

    def _room_wiring(
        self,
        zone: str,
        config: ZoneConfig,
        devices: Mapping[str, PolledDevice],
        room_sensors: Mapping[str, object],
    ) -> _RoomWiring:
        own = None
        if config.temperature is not None:
            own = self._ref(devices, config.device, config.temperature, f"zone {zone}")
        room = config.room_sensor_point()
        if room is None:
            return _RoomWiring(None, "", own)
        name, point = room
        sensor = room_sensors.get(name)
        if not isinstance(sensor, LatestSource):
            raise TypeError(
                f"zone {zone}: room_sensor {name!r} is not a room sensor that keeps its latest "
                "reading (a BLE sensor)"
            )
        return _RoomWiring(sensor, point, own)

    def context(self) -> ScheduleContext:
        """The schedule context of this moment: overrides in force and the live season."""
        reason = "" if self._season is None else self._season_reason()
        return ScheduleContext(
            hvac=self.hvac,
            tz=self.tz,
            calendar=self.calendar,
            overrides=dict(self.overrides),
            season=self._season,
            season_reason=reason,
        )

    def _season_reason(self) -> str:
        assert self._season is not None
        average = self._outdoor_average
        detail = "" if average is None else f", outdoor average {average:.1f} °C"
        return f"season: {self._season.value} (by outdoor temperature{detail})"

    # ---- audit ------------------------------------------------------------------------------

    async def _audit(self, event: dict[str, Any]) -> None:
        stamped = {
            "event": event.pop("event"),
            "ts": ms_to_iso(self._clock.now_ms()),
        }
        if self.now is not None:
            stamped["schedule_time"] = self.now.astimezone(self.tz).isoformat()
        stamped.update(event)
        await self._audit_sink(stamped)

    async def _audit_once(self, key: tuple[Any, ...], event: dict[str, Any]) -> None:
        if key not in self._reported:
            self._reported.add(key)
            await self._audit(event)

    # ---- time -------------------------------------------------------------------------------

    async def _is_trusted(self) -> bool:
        if self._trusted:
            return True
        if self._time_trusted():
            self._trusted = True
            if self._untrusted_reported:
                await self._audit({"event": "clock_trusted"})
            return True
        if not self._untrusted_reported:
            self._untrusted_reported = True
            log.warning("HVAC control waits for the clock to be synchronised")
            await self._audit(
                {
                    "event": "waiting_for_clock",
                    "reason": "the clock is not synchronised yet (no "
                    "/run/systemd/timesync/synchronized); nothing is written until it is",
                }
            )
        return False

    async def _advance(self) -> datetime:
        wall = self._clock.wall().astimezone(self.tz)
        now, step = self._schedule.advance(wall, self._clock.monotonic())
        self.now = now
        if step is not None:
            await self._report_step(step, wall)
        return now

    async def _report_step(self, step: ClockStep, wall: datetime) -> None:
        log.warning("wall clock stepped %+.0f s: %s", step.seconds, step.action)
        event: dict[str, Any] = {
            "event": "clock_step",
            "seconds": round(step.seconds, 3),
            "action": step.action,
            "wall_time": wall.isoformat(),
        }
        if step.hold_until is not None:
            event["hold_until"] = step.hold_until.astimezone(self.tz).isoformat()
        await self._audit(event)

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Cycle until ``stop`` is set (or the task is cancelled)."""
        stop = stop if stop is not None else asyncio.Event()
        # The public calendar comes from a child process started with the controller: wait for
        # it off the event loop, so that the pollers' first cycles are not held up.
        await asyncio.to_thread(self.calendar.load, self._calendar_years())
        while not stop.is_set():
            delay = await self.step()
            await self._pause(delay, stop)

    async def _pause(self, delay: float, stop: asyncio.Event) -> None:
        if self._wake.is_set() or stop.is_set():
            return
        waits = [
            asyncio.create_task(self._clock.sleep(delay), name="hvac.sleep"),
            asyncio.create_task(self._wake.wait(), name="hvac.wake"),
            asyncio.create_task(stop.wait(), name="hvac.stop"),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            for task in waits:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def step(self) -> float:
        """One cycle. Returns the seconds until the next one is due."""
        self._wake.clear()
        if not await self._is_trusted():
            return UNTRUSTED_RECHECK_S
        now = await self._advance()
        for ended in self.overrides.prune(now):
            await self._audit({"event": "override_ended", "zone": ended.zone, "id": ended.id})
        await self._calendar_warnings(now)
        await self._update_season()
        context = self.context()
        readings = await self._read_all()
        await self._update_rooms()
        self._deferred.clear()
        for zone in self.hvac.zones:
            await self._cycle_zone(zone, now, context, readings)
        # A device is rate limited until a cycle defers none of its writes: reported once.
        self._limited &= self._deferred
        return self._next_delay(now, context)

    def _next_delay(self, now: datetime, context: ScheduleContext) -> float:
        delay = self.hvac.check_interval
        for zone in self.hvac.zones:
            boundary = next_boundary(zone, now, context)
            delay = min(delay, (boundary - now).total_seconds())
            respect_until = self._runtime[zone].respect_until
            if respect_until is not None:
                delay = min(delay, (respect_until - now).total_seconds())
        mono = self._clock.monotonic()
        for device in self._limited:
            delay = min(delay, self._buckets[device].wait(mono))
        for runtime in self._runtime.values():
            if runtime.deferred_until is not None:
                delay = min(delay, runtime.deferred_until - mono)
        return max(delay, MIN_DELAY_S)

    async def command_time(self) -> datetime | None:
        """The schedule time against which a command's expiry is checked; None while the clock
        is not trusted (every command is then refused)."""
        if not await self._is_trusted():
            return None
        return await self._advance()

    def wake(self) -> None:
        """Run a cycle now (an accepted command is applied at once)."""
        self._wake.set()

    async def handle_command(
        self, raw: bytes | str | Mapping[str, Any], *, source: str = "mqtt"
    ) -> dict[str, Any]:
        """Validate, audit and apply one command; the reply goes back to the sender. A refused
        command changes nothing; an accepted one wakes the loop so that it is applied at once.
        (The agent sends commands through its own command path, agent.inbox, instead.)"""
        now = await self.command_time()
        reply = await self.commands.handle(raw, now=now, context=self.context(), source=source)
        if reply["ok"]:
            self.wake()
        return reply

    # ---- season and calendar ------------------------------------------------------------------

    def _calendar_years(self) -> tuple[int, int]:
        this_year = self._clock.wall().astimezone(self.tz).year
        return this_year, this_year + 1

    async def _calendar_warnings(self, now: datetime) -> None:
        for message in self.calendar.warnings(now.astimezone(self.tz).date()):
            if ("calendar", message) not in self._reported:
                log.warning("%s", message)
            await self._audit_once(
                ("calendar", message), {"event": "calendar_missing", "message": message}
            )

    async def _update_season(self) -> None:
        rule = self.hvac.season.outdoor
        if rule is None or self._outdoor is None:
            return
        ref = self._outdoor
        try:
            value = float(await self._read_point(ref))
        except DriverError as exc:
            if self._season is not None or ("outdoor", "fault") not in self._reported:
                self._reported.add(("outdoor", "fault"))
                await self._audit(
                    {"event": "season_fallback", "reason": f"no outdoor temperature: {exc}"}
                )
            self._season, self._outdoor_average = None, None
            return
        mono = self._clock.monotonic()
        if self._outdoor_average is None:
            self._outdoor_average = value
        else:
            weight = 1.0 - math.exp(-max(mono - self._outdoor_at, 0.0) / rule.averaging)
            self._outdoor_average += weight * (value - self._outdoor_average)
        self._outdoor_at = mono
        otherwise = Season(self.hvac.season.otherwise)
        season = season_from_outdoor(self._season, self._outdoor_average, rule, otherwise)
        if season is not self._season:
            self._reported.discard(("outdoor", "fault"))
            await self._audit(
                {
                    "event": "season",
                    "season": season.value,
                    "previous": None if self._season is None else self._season.value,
                    "outdoor_average": round(self._outdoor_average, 2),
                }
            )
            self._season = season

    # ---- room temperatures --------------------------------------------------------------------

    async def _update_rooms(self) -> None:
        """Each zone's room temperature: the room sensor's latest measurement while fresh, else
        the device's own point (read only then); a change of source is audited and logged."""
        mono = self._clock.monotonic()
        sensed: dict[str, tuple[tuple[float, float] | None, float]] = {}
        needed: list[_Ref] = []
        for zone, wiring in self._rooms_from.items():
            latest, stale_after = None, math.inf
            if wiring.sensor is not None:
                latest, stale_after = wiring.sensor.latest(wiring.point), wiring.sensor.stale_after
            sensed[zone] = (latest, stale_after)
            fresh = latest is not None and mono - latest[1] < stale_after
            if wiring.own is not None and not fresh:
                needed.append(wiring.own)
        own = await self._read_optional(needed)
        for zone, wiring in self._rooms_from.items():
            latest, stale_after = sensed[zone]
            value: float | str | None = None
            if wiring.own is not None:
                value = own.get((wiring.own.device.name, wiring.own.name))
            room = choose_room(
                self.hvac.zones[zone],
                sensor=latest,
                stale_after=stale_after,
                now=mono,
                own=value if isinstance(value, float) else None,
                own_problem=value if isinstance(value, str) else "",
            )
            previous = self.rooms.get(zone)
            self.rooms[zone] = room
            if previous is not None and previous.source == room.source:
                continue
            note = f" ({room.note})" if room.note else ""
            if previous is None:
                log.info("zone %s: room temperature from %s%s", zone, room.source, note)
            else:
                # Falling back is worth a warning; coming back to the preferred source is not.
                level = logging.WARNING if room.note else logging.INFO
                log.log(
                    level,
                    "zone %s: room temperature now from %s, was %s%s",
                    zone,
                    room.source,
                    previous.source,
                    note,
                )
            await self._audit(
                {
                    "event": "room_source",
                    "zone": zone,
                    "previous": None if previous is None else previous.source,
                    **room.to_dict(),
                }
            )

    @staticmethod
    async def _read_optional(refs: list[_Ref]) -> dict[tuple[str, str], float | str]:
        """The values of ``refs`` by (device, point), one read per device; a point that could
        not be read maps to the sentence that says why (it makes no zone fault)."""
        by_device: dict[str, list[_Ref]] = {}
        for ref in refs:
            by_device.setdefault(ref.device.name, []).append(ref)
        found: dict[tuple[str, str], float | str] = {}
        for name, group in by_device.items():
            try:
                readings = await group[0].device.read([ref.name for ref in group])
            except DriverError as exc:
                found.update({(name, ref.name): str(exc) for ref in group})
                continue
            for reading in readings:
                value = reading.value
                if reading.quality is Quality.GOOD and isinstance(value, int | float):
                    found[(name, reading.point)] = float(value)
                else:
                    found[(name, reading.point)] = f"could not be read ({reading.quality.label})"
        return found

    # ---- reading ------------------------------------------------------------------------------

    async def _read_point(self, ref: _Ref) -> Value:
        return (await self._read_device([ref]))[ref.name]

    async def _read_all(self) -> dict[str, dict[str, Value] | DriverError]:
        """Every zone point, grouped by device: one driver read per device (the driver plans
        the requests, with what it has learned of the device)."""
        by_device: dict[str, dict[str, _Ref]] = {}
        for refs in self._refs.values():
            for ref in refs.values():
                by_device.setdefault(ref.device.name, {})[ref.name] = ref
        found: dict[str, dict[str, Value] | DriverError] = {}
        for device, refs in by_device.items():
            try:
                found[device] = await self._read_device(list(refs.values()))
            except DriverError as exc:
                found[device] = exc
        return found

    @staticmethod
    async def _read_device(refs: list[_Ref]) -> dict[str, Value]:
        """The values of ``refs`` (all of one device); DriverError when one is not a number or
        a state the controller can use."""
        device = refs[0].device
        values: dict[str, Value] = {}
        for reading in await device.read([ref.name for ref in refs]):
            value = reading.value
            if reading.quality is not Quality.GOOD or value is None or isinstance(value, str):
                raise DriverError(
                    f"point {reading.point!r} of {device.name!r} could not be read "
                    f"({reading.quality.label})"
                )
            values[reading.point] = value if isinstance(value, bool) else float(value)
        return values

    # ---- one zone -----------------------------------------------------------------------------

    def _current(
        self, zone: str, readings: Mapping[str, dict[str, Value] | DriverError]
    ) -> dict[str, Value] | DriverError:
        refs = self._refs[zone]
        device = refs["on"].device.name
        values = readings.get(device)
        if values is None:
            return DriverError(f"device {device!r} was not read")
        if isinstance(values, DriverError):
            return values
        current: dict[str, Value] = {role: values[ref.name] for role, ref in refs.items()}
        current["on"] = bool(current["on"])
        return current

    async def _cycle_zone(
        self,
        zone: str,
        now: datetime,
        context: ScheduleContext,
        readings: Mapping[str, dict[str, Value] | DriverError],
    ) -> None:
        runtime = self._runtime[zone]
        config = self.hvac.zones[zone]
        wanted = wanted_state(zone, now, context)
        if wanted.clamp is not None:
            await self._report_clamp(zone, wanted)
        current = self._current(zone, readings)
        if isinstance(current, DriverError):
            await self._fault(zone, "read", str(current))
            return
        await self._recovered(zone, "read")

        changed = self._local_changes(zone, current)
        respect_until: datetime | None = None
        if changed and config.local_change is LocalChangeRule.RESPECT:
            respect_until = next_boundary(zone, now, context)
            runtime.respect_until, runtime.respected = respect_until, wanted
        for role in changed:
            await self._audit(
                {
                    "event": "local_change",
                    "zone": zone,
                    "point": self._refs[zone][role].name,
                    "role": role,
                    "expected": runtime.expected[role],
                    "found": current[role],
                    "rule": config.local_change.value,
                    "respect_until": (
                        None
                        if respect_until is None
                        else respect_until.astimezone(self.tz).isoformat()
                    ),
                }
            )
        if "on" in changed:
            runtime.last_toggle = self._clock.monotonic()  # switched by hand: it counts too
        runtime.expected.update(current)
        if runtime.respect_until is not None and (
            now >= runtime.respect_until or not wanted.same_state(runtime.respected)
        ):
            runtime.respect_until, runtime.respected = None, None

        if runtime.respect_until is not None:
            desired = await self._clamp_local(zone, current)
            source, reasons = "policy", ["clamp of a local change"]
        else:
            desired = self._desired(zone, wanted)
            source = "reassert" if changed else wanted.source
            reasons = wanted.reasons
        await self._apply(zone, desired, current, source=source, reasons=reasons)

    async def _apply(
        self,
        zone: str,
        desired: Mapping[str, Value],
        current: Mapping[str, Value],
        *,
        source: str,
        reasons: list[str],
    ) -> None:
        """Write what differs, in order; the rest waits for the next cycle after the first
        write that is not made (rate limit, fault, refusal, a toggle deferred)."""
        if self._runtime[zone].deferred is not None and self._same(
            self._refs[zone]["on"], current["on"], desired.get("on", current["on"])
        ):
            await self._drop_deferral(zone)
        for role in self._write_order(desired):
            value = desired[role]
            ref = self._refs[zone][role]
            if self._same(ref, current[role], value):
                continue
            if role == "on" and not await self._toggle_allowed(zone, value):
                break
            written = await self._write(
                zone, role, value, previous=current[role], source=source, reasons=reasons
            )
            if not written:
                break  # the rest waits for the next cycle (rate limit, fault or refusal)

    def _local_changes(self, zone: str, current: Mapping[str, Value]) -> list[str]:
        runtime = self._runtime[zone]
        expected = runtime.expected
        if not expected:
            return []  # first look at the zone: nothing to compare with
        changed = []
        for role, ref in self._refs[zone].items():
            if role not in expected:
                continue
            if role != "on" and not (current["on"] and expected.get("on")):
                continue  # the mode and setpoint of a unit that is off do not matter
            if not self._same(ref, current[role], expected[role]):
                changed.append(role)
        return changed

    async def _clamp_local(self, zone: str, current: Mapping[str, Value]) -> dict[str, Value]:
        """While a local change is respected, only the policy limits are enforced."""
        config = self.hvac.zones[zone]
        if "setpoint" not in current or not current["on"]:
            return {}
        mode: Mode | None = None
        if "mode" in current:
            mode = config.mode_values.mode(float(current["mode"]))
        else:
            assert self.now is not None  # set by the cycle that called this
            mode = wanted_state(zone, self.now, self.context()).mode
        if mode not in (Mode.COOL, Mode.HEAT):
            return {}
        setpoint = float(current["setpoint"])
        applied, clamp = apply_policy(mode, setpoint, zone_limits(self.hvac, zone))
        if clamp is None:
            return {}
        await self._audit_once(
            ("clamp", zone, "local", mode, setpoint),
            {
                "event": "clamp",
                "zone": zone,
                "source": "local",
                "mode": mode.value,
                "requested": clamp.requested,
                "applied": clamp.applied,
                "limit": clamp.limit,
            },
        )
        return {"setpoint": applied}

    async def _report_clamp(self, zone: str, wanted: Wanted) -> None:
        clamp = wanted.clamp
        assert clamp is not None
        origin = wanted.override_id if wanted.source == "override" else "schedule"
        key = ("clamp", zone, origin, clamp.mode, clamp.requested, clamp.applied)
        if key not in self._reported:
            log.warning("zone %s: %s", zone, clamp.reason)
        await self._audit_once(
            key,
            {
                "event": "clamp",
                "zone": zone,
                "source": wanted.source,
                "override_id": wanted.override_id,
                "mode": clamp.mode.value,
                "requested": clamp.requested,
                "applied": clamp.applied,
                "limit": clamp.limit,
                "reasons": wanted.reasons,
            },
        )

    def _desired(self, zone: str, wanted: Wanted) -> dict[str, Value]:
        refs = self._refs[zone]
        if not wanted.on:
            return {"on": False}
        desired: dict[str, Value] = {}
        if "mode" in refs and wanted.mode is not Mode.OFF:
            desired["mode"] = float(self.hvac.zones[zone].mode_values.value(wanted.mode))
        if wanted.setpoint is not None:
            desired["setpoint"] = wanted.setpoint
        desired["on"] = True
        return desired

    @staticmethod
    def _write_order(desired: Mapping[str, Value]) -> list[str]:
        # Off first when switching off; mode and setpoint before on when switching on.
        if desired.get("on") is False:
            return ["on"]
        return [role for role in ROLES if role in desired]

    @staticmethod
    def _same(ref: _Ref, held: Value, wanted: Value) -> bool:
        return bool(ref.info.same(held, ref.info.quantise(wanted)))

    # ---- writing ------------------------------------------------------------------------------

    async def _write(
        self,
        zone: str,
        role: str,
        value: Value,
        *,
        previous: Value,
        source: str,
        reasons: list[str],
    ) -> bool:
        ref = self._refs[zone][role]
        runtime = self._runtime[zone]
        config = self.hvac.zones[zone]
        device = ref.device.name
        try:
            self._check_range(zone, role, value)
        except _Unwritable as exc:
            await self._refuse(zone, role, value, str(exc))
            return False
        reason = ""
        readback: Value | None = None
        for attempt in range(1, self.hvac.verify_retries + 2):
            if not await self._take_token(device):
                return False
            try:
                await ref.device.write(ref.name, value)
                if role == "on" and attempt == 1:
                    runtime.last_toggle = self._clock.monotonic()
                readback = await self._read_point(ref)
            except DriverError as exc:
                retry_after = getattr(exc, "retry_after", None)
                if role == "on" and isinstance(retry_after, int | float):
                    # The device keeps a minimum interval of its own (a GPIO relay): a
                    # deferral, not a fault.
                    await self._defer(zone, value, float(retry_after), str(exc), by="device")
                    return False
                reason = str(exc)
            except ValueError as exc:  # the point cannot hold the value: nothing was written
                await self._refuse(zone, role, value, str(exc))
                return False
            else:
                if self._same(ref, readback, value):
                    runtime.expected[role] = readback
                    if role == "on":
                        runtime.deferred = runtime.deferred_until = None
                    await self._audit(
                        {
                            "event": "write",
                            "zone": zone,
                            "device": device,
                            "point": ref.name,
                            "role": role,
                            "value": _plain(value, role, config),
                            "previous": _plain(previous, role, config),
                            "source": source,
                            "reasons": reasons,
                            "attempts": attempt,
                            "verified": True,
                            **self._room_of(zone),
                        }
                    )
                    log.info("zone %s: wrote %s = %s (%s)", zone, ref.name, value, source)
                    await self._recovered(zone, role)
                    return True
                reason = f"wrote {value} but read back {readback}"
            if attempt <= self.hvac.verify_retries:
                await self._clock.sleep(RETRY_DELAY_S)
        if readback is not None:
            runtime.expected[role] = readback  # so the next cycle does not see a local change
        await self._fault(zone, role, f"{ref.name}: {reason}")
        return False

    async def _take_token(self, device: str) -> bool:
        """A write token of ``device``; without one the write waits (reported once)."""
        if self._buckets[device].take(self._clock.monotonic()):
            return True
        self._deferred.add(device)
        if device not in self._limited:
            self._limited.add(device)
            await self._audit(
                {
                    "event": "rate_limited",
                    "device": device,
                    "writes_per_minute": self.hvac.writes_per_minute,
                }
            )
        return False

    # ---- minimum interval of the on/off point -------------------------------------------------

    async def _toggle_allowed(self, zone: str, value: Value) -> bool:
        """Whether the zone's on/off point may change now (its min_interval); a toggle asked
        sooner is deferred and audited once."""
        minimum = self.hvac.zones[zone].min_interval
        last = self._runtime[zone].last_toggle
        if last is None or minimum is None:
            return True
        since = self._clock.monotonic() - last
        if since >= minimum:
            return True
        reason = f"switched {since:.0f} s ago; the zone's min_interval is {minimum:g} s"
        await self._defer(zone, value, minimum - since, reason, by="zone")
        return False

    async def _defer(self, zone: str, value: Value, wait: float, reason: str, *, by: str) -> None:
        runtime = self._runtime[zone]
        runtime.deferred_until = self._clock.monotonic() + wait
        if runtime.deferred is not None and runtime.deferred == value:
            return  # the same toggle, still waiting: audited when first deferred
        runtime.deferred = value
        ref = self._refs[zone]["on"]
        until = None if self.now is None else self.now + timedelta(seconds=wait)
        log.info("zone %s: switching %s deferred by %.0f s: %s", zone, ref.name, wait, reason)
        await self._audit(
            {
                "event": "toggle_deferred",
                "zone": zone,
                "device": ref.device.name,
                "point": ref.name,
                "value": bool(value),
                "by": by,  # zone: the zone's min_interval; device: the device refused
                "wait_s": round(wait, 1),
                "until": None if until is None else until.astimezone(self.tz).isoformat(),
                "reason": reason,
            }
        )

    async def _drop_deferral(self, zone: str) -> None:
        """The wanted state went back before a deferred toggle could be made: it never is."""
        runtime = self._runtime[zone]
        value, runtime.deferred, runtime.deferred_until = runtime.deferred, None, None
        ref = self._refs[zone]["on"]
        await self._audit(
            {
                "event": "toggle_dropped",
                "zone": zone,
                "device": ref.device.name,
                "point": ref.name,
                "value": None if value is None else bool(value),
                "reason": "the wanted state went back before the toggle was allowed",
            }
        )

    def _room_of(self, zone: str) -> dict[str, Any]:
        """The zone's room temperature and its source, for an audit event (zones that have
        one): the state of the room when the schedule acted on it."""
        room = self.rooms.get(zone)
        return {} if room is None else {"room": room.to_dict()}

    async def _refuse(self, zone: str, role: str, value: Value, reason: str) -> None:
        """A value the controller will not write: audited once per zone, role and value."""
        runtime = self._runtime[zone]
        if (role, value) in runtime.refused:
            return
        runtime.refused.add((role, value))
        ref = self._refs[zone][role]
        log.warning("zone %s: refused to write %s: %s", zone, ref.name, reason)
        await self._audit(
            {
                "event": "refused",
                "zone": zone,
                "device": ref.device.name,
                "point": ref.name,
                "value": value,
                "reason": reason,
            }
        )

    def _check_range(self, zone: str, role: str, value: Value) -> None:
        config = self.hvac.zones[zone]
        if role == "setpoint" and not config.setpoint_min <= float(value) <= config.setpoint_max:
            raise _Unwritable(
                f"{value} °C is outside the zone's range "
                f"{config.setpoint_min:g}-{config.setpoint_max:g} °C"
            )
        if not self._refs[zone][role].info.writable:
            raise _Unwritable(f"point {self._refs[zone][role].name!r} is not declared writable")

    async def _fault(self, zone: str, role: str, reason: str) -> None:
        faults = self._runtime[zone].faults
        if role in faults:
            return
        faults[role] = reason
        ref = self._refs[zone].get(role) or self._refs[zone]["on"]
        log.warning("zone %s: device fault: %s", zone, reason)
        await self._audit(
            {
                "event": "device_fault",
                "zone": zone,
                "device": ref.device.name,
                "role": role,
                "reason": reason,
            }
        )

    async def _recovered(self, zone: str, role: str) -> None:
        faults = self._runtime[zone].faults
        if faults.pop(role, None) is None:
            return
        ref = self._refs[zone].get(role) or self._refs[zone]["on"]
        log.info("zone %s: device %s answers again", zone, ref.device.name)
        await self._audit(
            {"event": "device_recovered", "zone": zone, "device": ref.device.name, "role": role}
        )


def _plain(value: Value, role: str, config: ZoneConfig) -> Any:
    """An audit value as a person reads it: modes by name."""
    if role == "mode":
        mode = config.mode_values.mode(float(value))
        return mode.value if mode is not None else value
    if role == "on":
        return bool(value)
    return value
