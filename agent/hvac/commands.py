"""Override commands, from upstream MQTT or the local CLI: validated into a reply, never trusted.

A command is a JSON object::

    {"id": "c-42", "expires": "2026-07-01T10:05:00+08:00", "action": "override",
     "zone": "zone1", "setpoint": 27, "mode": "cool", "for": "2h"}
    {"id": "c-43", "expires": "2026-07-01T10:06:00+08:00", "action": "clear", "zone": "zone1"}

- `id` (text, up to 128 characters) is used once: a second command with a seen id is refused as
  a replay, whatever the first one's outcome. Ids are remembered until their expiry.
- `expires` (ISO 8601 with an offset) must be in the future and at most `command_ttl_max` ahead,
  so the memory of ids covers every command that could still be accepted.
- `override`: `setpoint` (°C, within the zone's range) and/or `mode` (cool, heat, fan, off), and
  `until` (ISO 8601 with an offset) or `for` (a duration: seconds, or text like 90m or 2h), at
  most `override_max`; with neither, the override lasts until the next schedule boundary.
  The policy clamps the setpoint like any other (22 °C cooling becomes 26 °C unless the zone is
  exempt); the reply says so.
- `clear`: ends the zone's override.

Every command gets a reply ``{"id", "ok", "reason", "applied"}``; a refused or malformed one
changes nothing (``applied`` is null). Accepted overrides reach the devices through the
controller, whose writes are audited.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from agent.core.durations import parse_duration
from agent.core.suggest import did_you_mean
from agent.hvac.overrides import Override, OverrideBook
from agent.hvac.policy import zone_limits
from agent.hvac.program import HvacConfig, Mode
from agent.hvac.state import ScheduleContext, next_boundary, wanted_state

__all__ = ["MAX_COMMAND_BYTES", "CommandHandler", "SeenIds", "command_id_of", "make_command"]

MAX_COMMAND_BYTES = 8192
MAX_ID_LENGTH = 128
_FIELDS = ("id", "expires", "action", "zone", "setpoint", "mode", "until", "for")
_ACTIONS = ("override", "clear")

AuditSink = Callable[[dict[str, Any]], Awaitable[None]]


class _Refused(Exception):
    """A command refused with a reason (internal: it becomes a reply, never escapes)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SeenIds:
    """Command ids seen, each kept until its command expires; bounded."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._expires: dict[str, datetime] = {}

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._expires

    def __len__(self) -> int:
        return len(self._expires)

    def prune(self, now: datetime) -> None:
        # An id whose command has expired can go: the command is refused as expired anyway.
        # `now` is schedule time, which never goes back, so a pruned id never becomes valid.
        for command_id in [i for i, expires in self._expires.items() if expires <= now]:
            del self._expires[command_id]

    def add(self, command_id: str, expires: datetime) -> bool:
        """Remember ``command_id``; False when full of unexpired ids."""
        if len(self._expires) >= self.capacity:
            return False
        self._expires[command_id] = expires
        return True


def _reply(command_id: str | None, ok: bool, reason: str, applied: Any = None) -> dict[str, Any]:
    return {"id": command_id, "ok": ok, "reason": reason, "applied": applied}


def _parse_json(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if len(data) > MAX_COMMAND_BYTES:
            raise _Refused(f"the command is {len(data)} bytes; at most {MAX_COMMAND_BYTES}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(f"the command is not UTF-8 text (byte {exc.start})") from None
    elif isinstance(raw, str):
        text = raw
        if len(text.encode("utf-8")) > MAX_COMMAND_BYTES:
            raise _Refused(f"the command is longer than {MAX_COMMAND_BYTES} bytes")
    else:
        raise _Refused(f"a command must be JSON text, not {type(raw).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Refused(
            f"the command is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise _Refused("the command is nested far too deeply") from None
    if not isinstance(data, dict):
        raise _Refused(f"a command must be a JSON object, not {_json_kind(data)}")
    return data


def command_id_of(raw: bytes | str | Mapping[str, Any]) -> str | None:
    """The id of a command, if it has a usable one (for replies to commands not evaluated)."""
    try:
        data = _parse_json(raw)
    except _Refused:
        return None
    value = data.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH else None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _text(data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise _Refused(f"the command has no `{key}`")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _Refused(f"`{key}` must be non-empty text, not {_json_kind(value)}")
    return value


def _time(data: Mapping[str, Any], key: str) -> datetime | None:
    text = _text(data, key, required=False)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Refused(
            f"`{key}` {text!r} is not an ISO 8601 time, e.g. 2026-07-01T10:00:00+08:00"
        ) from None
    if when.tzinfo is None:
        raise _Refused(f"`{key}` {text!r} has no offset: write e.g. +08:00 or Z")
    return when


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Refused(f"`{key}` must be a number, not {_json_kind(value)}")
    return float(value)


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class CommandHandler:
    """Validates commands and applies accepted ones to the override book."""

    def __init__(
        self, hvac: HvacConfig, *, overrides: OverrideBook, audit: AuditSink | None = None
    ) -> None:
        self.hvac = hvac
        self.overrides = overrides
        self.seen = SeenIds(hvac.command_memory)
        self._audit = audit

    async def handle(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        now: datetime,
        context: ScheduleContext,
        source: str = "mqtt",
    ) -> dict[str, Any]:
        """The reply to one command; audits the outcome when an audit sink is set."""
        reply = self.evaluate(raw, now=now, context=context, source=source)
        if self._audit is not None:
            await self._audit({"event": "command", "source": source, **reply})
        return reply

    def evaluate(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        now: datetime,
        context: ScheduleContext,
        source: str = "mqtt",
    ) -> dict[str, Any]:
        """The reply to one command (without auditing)."""
        try:
            data = _parse_json(raw)
        except _Refused as refused:
            return _reply(None, False, refused.reason)
        raw_id = data.get("id")
        command_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= MAX_ID_LENGTH else None
        try:
            return self._decide(data, now=now, context=context, source=source)
        except _Refused as refused:
            return _reply(command_id, False, refused.reason)

    def _decide(
        self, data: Mapping[str, Any], *, now: datetime, context: ScheduleContext, source: str
    ) -> dict[str, Any]:
        command_id = self._check_id(data)
        self._check_keys(data)
        expires = self._check_expiry(data, now)
        if command_id in self.seen:
            raise _Refused(f"replayed: the command id {command_id!r} was already used")
        self.seen.prune(now)
        if not self.seen.add(command_id, expires):
            raise _Refused(f"too many unexpired commands ({self.seen.capacity}); try again later")
        # From here on the id is spent, whatever the outcome.
        action = _text(data, "action")
        if action not in _ACTIONS:
            hint = did_you_mean(str(action), _ACTIONS)
            raise _Refused(f"unknown action {action!r}{hint}; use override or clear")
        zone = self._check_zone(data)
        if action == "clear":
            return self._clear(command_id, zone, data)
        return self._override(command_id, zone, data, now=now, context=context, source=source)

    # ---- checks -----------------------------------------------------------------------------

    @staticmethod
    def _check_id(data: Mapping[str, Any]) -> str:
        value = data.get("id")
        if value is None:
            raise _Refused("the command has no `id`")
        if not isinstance(value, str) or not value.strip():
            raise _Refused(f"`id` must be non-empty text, not {_json_kind(value)}")
        if len(value) > MAX_ID_LENGTH:
            raise _Refused(f"`id` is longer than {MAX_ID_LENGTH} characters")
        return value

    @staticmethod
    def _check_keys(data: Mapping[str, Any]) -> None:
        for key in data:
            if key not in _FIELDS:
                hint = did_you_mean(str(key), _FIELDS)
                raise _Refused(f"unknown field {key!r}{hint}")

    def _check_expiry(self, data: Mapping[str, Any], now: datetime) -> datetime:
        expires = _time(data, "expires")
        if expires is None:
            raise _Refused("the command has no `expires`")
        if expires <= now:
            raise _Refused(
                f"expired at {expires.isoformat()}; the gateway's time is {now.isoformat()}"
            )
        limit = now + timedelta(seconds=self.hvac.command_ttl_max)
        if expires > limit:
            raise _Refused(
                f"`expires` is too far ahead: at most {_duration(self.hvac.command_ttl_max)}"
                " from now"
            )
        return expires

    def _check_zone(self, data: Mapping[str, Any]) -> str:
        zone = _text(data, "zone")
        assert zone is not None
        if zone not in self.hvac.zones:
            hint = did_you_mean(zone, self.hvac.zones)
            raise _Refused(
                f"unknown zone {zone!r}{hint}; the zones are: {', '.join(sorted(self.hvac.zones))}"
            )
        return zone

    # ---- actions ----------------------------------------------------------------------------

    def _clear(self, command_id: str, zone: str, data: Mapping[str, Any]) -> dict[str, Any]:
        extra = [k for k in ("setpoint", "mode", "until", "for") if k in data]
        if extra:
            raise _Refused(f"clear takes only a zone, not {', '.join(extra)}")
        previous = self.overrides.clear(zone)
        if previous is None:
            return _reply(command_id, True, f"zone {zone} had no override", {"zone": zone})
        return _reply(
            command_id,
            True,
            f"override {previous.id} of zone {zone} cleared",
            {"zone": zone, "cleared": previous.id},
        )

    def _override(
        self,
        command_id: str,
        zone: str,
        data: Mapping[str, Any],
        *,
        now: datetime,
        context: ScheduleContext,
        source: str,
    ) -> dict[str, Any]:
        setpoint = _number(data, "setpoint")
        mode_text = _text(data, "mode", required=False)
        mode: Mode | None = None
        if mode_text is not None:
            try:
                mode = Mode(mode_text)
            except ValueError:
                hint = did_you_mean(mode_text, [m.value for m in Mode])
                raise _Refused(
                    f"unknown mode {mode_text!r}{hint}; use cool, heat, fan or off"
                ) from None
        if setpoint is None and mode is None:
            raise _Refused("an override needs a setpoint, a mode or both")
        if setpoint is not None and mode in (Mode.OFF, Mode.FAN):
            raise _Refused(f"mode {mode.value} takes no setpoint")
        limits = zone_limits(self.hvac, zone)
        if setpoint is not None and not limits.allows(setpoint):
            raise _Refused(
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
            raise _Refused(
                "the season runs no mode now, so the override needs a mode (cool, heat or fan)"
            )
        self.overrides.set(override)
        applied = {
            "zone": zone,
            "mode": wanted.mode.value,
            "setpoint": wanted.setpoint,
            "on": wanted.on,
            "until": until.astimezone(context.tz).isoformat(),
            "requested_setpoint": setpoint,
            "clamped": wanted.clamp is not None,
        }
        reason = f"override set for zone {zone} until {until.astimezone(context.tz):%Y-%m-%d %H:%M}"
        if wanted.clamp is not None:
            reason += f"; {wanted.clamp.reason}"
            if limits.exemption is None:
                reason += f" (zone {zone} has no exemption)"
        return _reply(command_id, True, reason, applied)

    def _until(
        self, zone: str, data: Mapping[str, Any], now: datetime, context: ScheduleContext
    ) -> datetime:
        longest = timedelta(seconds=self.hvac.override_max)
        until = _time(data, "until")
        raw_for = data.get("for")
        if until is not None and raw_for is not None:
            raise _Refused("give `until` or `for`, not both")
        if raw_for is not None:
            try:
                seconds = parse_duration(raw_for)
            except ValueError as exc:
                raise _Refused(f"`for`: {exc}") from None
            if seconds <= 0:
                raise _Refused("`for` must be longer than zero")
            if seconds > self.hvac.override_max:
                raise _Refused(
                    f"`for` {_duration(seconds)} is longer than the longest override, "
                    f"{_duration(self.hvac.override_max)}"
                )
            return now + timedelta(seconds=seconds)
        if until is not None:
            if until <= now:
                raise _Refused(f"`until` {until.isoformat()} is not in the future")
            if until - now > longest:
                raise _Refused(
                    f"`until` is more than {_duration(self.hvac.override_max)} ahead, the "
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
