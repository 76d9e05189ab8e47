"""HVAC override commands, from upstream MQTT or the local CLI: validated into a reply, never
trusted.

A command is a JSON object::

    {"id": "c-42", "expires": "2026-07-01T10:05:00+08:00", "action": "override",
     "zone": "zone1", "setpoint": 27, "mode": "cool", "for": "2h"}
    {"id": "c-43", "expires": "2026-07-01T10:06:00+08:00", "action": "clear", "zone": "zone1"}

- The envelope (`id` used once, `expires` at most `command_ttl_max` ahead, `sender`, `sig`) is
  checked by the command path (agent.commands.path), the same for every kind of command.
- `override`: `setpoint` (°C, within the zone's range) and/or `mode` (cool, heat, fan, off), and
  `until` (ISO 8601 with an offset) or `for` (a duration: seconds, or text like 90m or 2h), at
  most `override_max`; with neither, the override lasts until the next schedule boundary.
  The policy clamps the setpoint like any other (22 °C cooling becomes 26 °C unless the zone is
  exempt); the reply says so.
  A zone of `kind: switch` has no mode nor setpoint: mode `on` switches it on and `off` off
  (any other mode also switches it on); its reply says `on` or `off` as its mode (as the
  schedule preview does), and a setpoint for it is refused. `on` for a thermostat is refused.
- `clear`: ends the zone's override.

Every command gets a reply ``{"id", "ok", "reason", "applied"}``; a refused or malformed one
changes nothing (``applied`` is null). An accepted one changes the override book only once the
command path has recorded it; the overrides reach the devices through the controller, whose
writes are audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from agent.commands.envelope import (
    Refused,
    command_id_of,
    duration_text,
    number_field,
    reply,
    text_field,
    time_field,
)
from agent.commands.memory import CommandMemory
from agent.commands.path import CommandPath, Decision, Recorder
from agent.core.durations import parse_duration
from agent.core.suggest import did_you_mean
from agent.hvac.overrides import Override, OverrideBook
from agent.hvac.policy import zone_limits
from agent.hvac.program import HvacConfig, Mode
from agent.hvac.state import SWITCH_ON, ScheduleContext, mode_shown, next_boundary, wanted_state

__all__ = ["CommandHandler", "command_id_of", "make_command"]

_FIELDS = ("action", "zone", "setpoint", "mode", "until", "for")
_ACTIONS = ("override", "clear")


class CommandHandler:
    """The HVAC command kind (`agent.commands.path.CommandKind`): decides ``action`` commands
    against the override book; the change is made only when the command path applies it.

    On its own (tests, a controller without the agent), `evaluate` and `handle` run commands
    through a path of their own with an in-memory id memory; ``audit`` records each outcome.
    ``context`` gives the schedule context of the moment when the path asks for a decision.
    """

    name = "hvac"
    fields = _FIELDS

    def __init__(
        self,
        hvac: HvacConfig,
        *,
        overrides: OverrideBook,
        audit: Callable[[dict[str, Any]], Any] | None = None,
        context: Callable[[], ScheduleContext] | None = None,
    ) -> None:
        self.hvac = hvac
        self.overrides = overrides
        self._context_of = context
        self._given: ScheduleContext | None = None
        record: Recorder | None = None
        if audit is not None:

            async def record(kind: str, event: dict[str, Any], memory: str | None) -> None:
                await audit(event)

        memory = CommandMemory(capacity=hvac.command_memory)
        self.path = CommandPath([self], memory=memory, ttl_max=hvac.command_ttl_max, record=record)

    @contextmanager
    def _using(self, context: ScheduleContext) -> Iterator[None]:
        self._given = context
        try:
            yield
        finally:
            self._given = None

    async def handle(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        now: datetime | None,
        context: ScheduleContext,
        source: str = "mqtt",
    ) -> dict[str, Any]:
        """The reply to one command; audits the outcome when an audit sink is set."""
        with self._using(context):
            return await self.path.handle(raw, now=now, source=source)

    def evaluate(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        now: datetime,
        context: ScheduleContext,
        source: str = "mqtt",
    ) -> dict[str, Any]:
        """The reply to one command (without auditing); an accepted one is applied at once."""
        with self._using(context):
            return self.path.evaluate(raw, now=now, source=source)

    # ---- the kind ---------------------------------------------------------------------------

    def claims(self, data: Mapping[str, Any]) -> bool:
        return "action" in data

    def decide(
        self, data: Mapping[str, Any], *, command_id: str, now: datetime, source: str
    ) -> Decision:
        context = self._given
        if context is None:
            if self._context_of is None:
                raise RuntimeError("CommandHandler.decide needs a schedule context")
            context = self._context_of()
        action = text_field(data, "action")
        if action not in _ACTIONS:
            hint = did_you_mean(str(action), _ACTIONS)
            raise Refused(f"unknown action {action!r}{hint}; use override or clear")
        zone = self._check_zone(data)
        if action == "clear":
            return self._clear(command_id, zone, data)
        return self._override(command_id, zone, data, now=now, context=context, source=source)

    def _check_zone(self, data: Mapping[str, Any]) -> str:
        zone = text_field(data, "zone")
        assert zone is not None
        if zone not in self.hvac.zones:
            hint = did_you_mean(zone, self.hvac.zones)
            raise Refused(
                f"unknown zone {zone!r}{hint}; the zones are: {', '.join(sorted(self.hvac.zones))}"
            )
        return zone

    # ---- actions ----------------------------------------------------------------------------

    def _clear(self, command_id: str, zone: str, data: Mapping[str, Any]) -> Decision:
        extra = [k for k in ("setpoint", "mode", "until", "for") if k in data]
        if extra:
            raise Refused(f"clear takes only a zone, not {', '.join(extra)}")
        previous = self.overrides.get(zone)

        def apply() -> None:
            self.overrides.clear(zone)

        if previous is None:
            answer = reply(command_id, True, f"zone {zone} had no override", {"zone": zone})
            return Decision(answer, apply)
        answer = reply(
            command_id,
            True,
            f"override {previous.id} of zone {zone} cleared",
            {"zone": zone, "cleared": previous.id},
        )
        return Decision(answer, apply)

    def _override(
        self,
        command_id: str,
        zone: str,
        data: Mapping[str, Any],
        *,
        now: datetime,
        context: ScheduleContext,
        source: str,
    ) -> Decision:
        setpoint = number_field(data, "setpoint")
        mode_text = text_field(data, "mode", required=False)
        switch = self.hvac.zones[zone].kind == "switch"
        mode: Mode | None = None
        if mode_text == SWITCH_ON:
            if not switch:
                raise Refused(
                    f"mode on is for a switch zone; zone {zone} is a thermostat: use cool, heat, "
                    "fan or off"
                )
            mode = Mode.FAN  # a switch's "on": running without a setpoint (agent.hvac.state)
        elif mode_text is not None:
            try:
                mode = Mode(mode_text)
            except ValueError:
                hint = did_you_mean(mode_text, [*(m.value for m in Mode), SWITCH_ON])
                raise Refused(
                    f"unknown mode {mode_text!r}{hint}; use cool, heat, fan or off (on or off "
                    "for a switch zone)"
                ) from None
        if setpoint is None and mode is None:
            raise Refused("an override needs a setpoint, a mode or both")
        if switch and setpoint is not None:
            raise Refused(
                f"zone {zone} is a switch: it takes no setpoint; mode on switches it on, mode "
                "off off"
            )
        if setpoint is not None and mode in (Mode.OFF, Mode.FAN):
            raise Refused(f"mode {mode.value} takes no setpoint")
        limits = zone_limits(self.hvac, zone)
        if setpoint is not None and not limits.allows(setpoint):
            raise Refused(
                f"setpoint {setpoint:g} °C is outside zone {zone}'s range "
                f"{limits.setpoint_min:g}-{limits.setpoint_max:g} °C"
            )
        until = self._until(zone, data, now, context)
        override = Override(
            zone=zone,
            id=command_id,
            until=until,
            mode=mode,
            setpoint=setpoint,
            source=source,
            set_at=now,
        )
        overrides = {**context.overrides, zone: override}
        wanted = wanted_state(zone, now, replace(context, overrides=overrides))
        if mode is None and not wanted.on:
            raise Refused(
                "the season runs no mode now, so the override needs a mode (cool, heat or fan)"
            )
        applied = {
            "zone": zone,
            "mode": mode_shown(self.hvac, zone, wanted),
            "setpoint": wanted.setpoint,
            "on": wanted.on,
            "until": until.astimezone(context.tz).isoformat(),
            "requested_setpoint": setpoint,
            "clamped": wanted.clamp is not None,
        }
        ends = f"until {until.astimezone(context.tz):%Y-%m-%d %H:%M}"
        reason = f"override set for zone {zone} {ends}"
        if switch:
            reason = f"override set: switch {zone} {applied['mode']} {ends}"
        if wanted.clamp is not None:
            reason += f"; {wanted.clamp.reason}"
            if limits.exemption is None:
                reason += f" (zone {zone} has no exemption)"

        def apply() -> None:
            self.overrides.set(override)

        return Decision(reply(command_id, True, reason, applied), apply)

    def _until(
        self, zone: str, data: Mapping[str, Any], now: datetime, context: ScheduleContext
    ) -> datetime:
        longest = timedelta(seconds=self.hvac.override_max)
        until = time_field(data, "until")
        raw_for = data.get("for")
        if until is not None and raw_for is not None:
            raise Refused("give `until` or `for`, not both")
        if raw_for is not None:
            try:
                seconds = parse_duration(raw_for)
            except ValueError as exc:
                raise Refused(f"`for`: {exc}") from None
            if seconds <= 0:
                raise Refused("`for` must be longer than zero")
            if seconds > self.hvac.override_max:
                raise Refused(
                    f"`for` {duration_text(seconds)} is longer than the longest override, "
                    f"{duration_text(self.hvac.override_max)}"
                )
            return now + timedelta(seconds=seconds)
        if until is not None:
            if until <= now:
                raise Refused(f"`until` {until.isoformat()} is not in the future")
            if until - now > longest:
                raise Refused(
                    f"`until` is more than {duration_text(self.hvac.override_max)} ahead, the "
                    f"longest override"
                )
            return until
        # Neither: a "temporary hold" until the schedule's next boundary.
        others = {z: o for z, o in context.overrides.items() if z != zone}
        boundary = next_boundary(zone, now, replace(context, overrides=others))
        return min(boundary, now + longest)


def make_command(
    action: str,
    *,
    zone: str,
    now: datetime,
    setpoint: float | None = None,
    mode: str | None = None,
    until: datetime | None = None,
    duration: str | None = None,
    ttl: float = 60.0,
) -> dict[str, Any]:
    """A command as the CLI sends it: a fresh id, expiring ``ttl`` seconds from ``now``."""
    command: dict[str, Any] = {
        "id": f"cli-{uuid.uuid4().hex}",
        "expires": (now + timedelta(seconds=ttl)).isoformat(),
        "action": action,
        "zone": zone,
    }
    if setpoint is not None:
        command["setpoint"] = setpoint
    if mode is not None:
        command["mode"] = mode
    if until is not None:
        command["until"] = until.isoformat()
    if duration is not None:
        command["for"] = duration
    return command
