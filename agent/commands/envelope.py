"""What every command has, whatever it asks for: JSON text, an id, an expiry, a sender; and the
reply shape ``{"id", "ok", "reason", "applied"}``.

A command is refused by raising `Refused` with a sentence; the command path turns it into a
reply, so a refusal never escapes as an exception.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agent.core.suggest import did_you_mean

__all__ = [
    "MAX_COMMAND_BYTES",
    "MAX_ID_LENGTH",
    "Refused",
    "command_id_of",
    "duration_text",
    "json_kind",
    "number_field",
    "object_field",
    "parse_json",
    "reply",
    "sender_problem",
    "text_field",
    "time_field",
]

MAX_COMMAND_BYTES = 8192
MAX_ID_LENGTH = 128
SENDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A sender's name: it may come from an MQTT topic level, so no /, + or #."""


class Refused(Exception):
    """A command refused with a reason (it becomes a reply, never escapes the command path)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def reply(command_id: str | None, ok: bool, reason: str, applied: Any = None) -> dict[str, Any]:
    """The reply to a command, accepted or not (``applied`` is None when nothing changed)."""
    return {"id": command_id, "ok": ok, "reason": reason, "applied": applied}


def parse_json(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """The command's JSON object; Refused with the reason when it is not one."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if len(data) > MAX_COMMAND_BYTES:
            raise Refused(f"the command is {len(data)} bytes; at most {MAX_COMMAND_BYTES}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused(f"the command is not UTF-8 text (byte {exc.start})") from None
    elif isinstance(raw, str):
        text = raw
        if len(text.encode("utf-8", "surrogatepass")) > MAX_COMMAND_BYTES:
            raise Refused(f"the command is longer than {MAX_COMMAND_BYTES} bytes")
    else:
        raise Refused(f"a command must be JSON text, not {type(raw).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(
            f"the command is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise Refused("the command is nested far too deeply") from None
    if not isinstance(data, dict):
        raise Refused(f"a command must be a JSON object, not {json_kind(data)}")
    return data


def command_id_of(raw: bytes | str | Mapping[str, Any]) -> str | None:
    """The id of a command, if it has a usable one (for replies to commands not evaluated)."""
    try:
        data = parse_json(raw)
    except Refused:
        return None
    value = data.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH else None


def json_kind(value: object) -> str:
    """What a JSON value is, as a reason names it."""
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


def object_field(data: Mapping[str, Any], key: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """``data[key]``, an object whose fields are all among ``keys`` (a misspelt one is named,
    with the nearest); refused otherwise."""
    body = data[key]
    if not isinstance(body, Mapping):
        raise Refused(f"`{key}` must be an object, not {json_kind(body)}")
    for name in body:
        if name not in keys:
            raise Refused(f"`{key}`: unknown field {name!r}{did_you_mean(str(name), keys)}")
    return body


def text_field(data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise Refused(f"the command has no `{key}`")
        return None
    if not isinstance(value, str) or not value.strip():
        raise Refused(f"`{key}` must be non-empty text, not {json_kind(value)}")
    return value


def time_field(data: Mapping[str, Any], key: str) -> datetime | None:
    text = text_field(data, key, required=False)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(
            f"`{key}` {text!r} is not an ISO 8601 time, e.g. 2026-07-01T10:00:00+08:00"
        ) from None
    if when.tzinfo is None:
        raise Refused(f"`{key}` {text!r} has no offset: write e.g. +08:00 or Z")
    return when


def number_field(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused(f"`{key}` must be a number, not {json_kind(value)}")
    return float(value)


def duration_text(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def sender_problem(sender: str) -> str | None:
    """Why ``sender`` cannot name a sender (None: it can)."""
    if SENDER.match(sender) is None:
        return (
            f"sender {sender[:70]!r} is not a name: 1-64 letters, digits, _, . and -, "
            "starting with a letter or digit"
        )
    return None
