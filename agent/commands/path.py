"""The command path: every command, from MQTT or the local CLI, is checked, recorded, and only
then applied.

1. The envelope (`agent.commands.envelope`): JSON, ``id``, ``expires`` (in the future, at most
   ``ttl_max`` ahead), ``sender``; with a secret, MQTT commands must be signed
   (`agent.commands.signature`). A command refused here spends nothing.
2. The memory (`agent.commands.memory`): a replayed id, a sender over its quota, or a full memory
   is refused. Otherwise the id is spent, whatever the outcome of what the command asks.
3. The kind that claims the command (an HVAC override, a pulse counter setting) decides: a reply,
   and the change to make if accepted; nothing is changed yet.
4. The outcome is recorded (the audit event and the memory, in one transaction of the store).
   When that fails (a full disk, a read-only card), the command is refused — "cannot record this
   command now: <cause>" —, its id is not spent, and nothing is written to any device: a command
   nobody can account for is not carried out.
5. Only then is the change applied.

A kind is any object with a ``name`` (its audit events are ``<name>.command``), the ``fields``
it takes beside the envelope's, ``claims(data)`` and ``decide(data, command_id=, now=, source=)``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from agent.commands.envelope import (
    MAX_ID_LENGTH,
    Refused,
    duration_text,
    json_kind,
    parse_json,
    reply,
    sender_problem,
    time_field,
)
from agent.commands.memory import CommandMemory, OverQuota
from agent.commands.signature import SIG_FIELD, verify
from agent.core.errors import StoreError
from agent.core.suggest import did_you_mean

__all__ = [
    "ENVELOPE_FIELDS",
    "REFUSALS_RECORDED",
    "UNTRUSTED_CLOCK",
    "CommandKind",
    "CommandPath",
    "Decision",
    "Recorder",
]

log = logging.getLogger(__name__)

ENVELOPE_FIELDS = ("id", "expires", "sender", SIG_FIELD)
REFUSALS_RECORDED = 20
"""Refusals that changed nothing recorded per minute at most; the others are counted."""
UNTRUSTED_CLOCK = (
    "the gateway's clock is not synchronised yet: commands cannot be checked for expiry"
)

Recorder = Callable[[str, dict[str, Any], str | None], Awaitable[None]]
"""``record(event kind, detail, memory JSON or None)``: one transaction, committed on return;
StoreError when it cannot be."""


@dataclass
class Decision:
    """What a kind makes of a command: the reply, and (when accepted) the change to make once
    the outcome is recorded; ``detail`` goes into the audit event (e.g. a value before/after)."""

    reply: dict[str, Any]
    apply: Callable[[], Awaitable[None] | None] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class CommandKind(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def fields(self) -> tuple[str, ...]: ...

    def claims(self, data: Mapping[str, Any]) -> bool: ...

    def decide(
        self, data: Mapping[str, Any], *, command_id: str, now: datetime, source: str
    ) -> Decision: ...


@dataclass
class _Outcome:
    decision: Decision
    kind: str  # the audit family: a kind's name, or "" before a kind claimed the command
    sender: str | None
    spent: bool  # the id went into the memory (undone when recording fails)


# The fields that open the command kinds a gateway has only with the matching config: a command
# naming one where that part is missing is told so, rather than "unknown field".
_KINDS_NOT_HERE = {
    "action": "this gateway takes no HVAC commands: its config has no hvac section",
    "set_counter": "this gateway takes no set_counter commands: it has no pulse meters",
}


class CommandPath:
    """Commands through the envelope, the memory and their kind (see the module's doc)."""

    def __init__(
        self,
        kinds: Sequence[CommandKind],
        *,
        memory: CommandMemory,
        ttl_max: float,
        secret: bytes | None = None,
        record: Recorder | None = None,
    ) -> None:
        self.kinds = list(kinds)
        self.memory = memory
        self.ttl_max = ttl_max
        self.secret = secret
        self._record = record
        self._record_failing = False
        self._window_ends = -math.inf  # loop time: refusals recorded per minute
        self._window_recorded = 0
        self._unrecorded = 0  # refusals replied to but not recorded since the last record

    def add_kind(self, kind: CommandKind) -> None:
        self.kinds.append(kind)

    def evaluate(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        now: datetime | None,
        source: str = "mqtt",
        sender: str | None = None,
    ) -> dict[str, Any]:
        """The reply to one command, applied at once when accepted (nothing is recorded)."""
        outcome = self._decide(raw, now=now, source=source, sender=sender)
        if outcome.decision.apply is not None:
            pending = outcome.decision.apply()
            if inspect.isawaitable(pending):
                raise TypeError("this command's change is awaited: use CommandPath.handle")
        return outcome.decision.reply

    async def handle(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        now: datetime | None,
        source: str = "mqtt",
        sender: str | None = None,
    ) -> dict[str, Any]:
        """The reply to one command: recorded, then applied when accepted. ``now`` None: the
        clock is not trusted (every command is refused)."""
        outcome = self._decide(raw, now=now, source=source, sender=sender)
        decision = outcome.decision
        answer = decision.reply
        if self._record is not None:
            event = {
                "event": "command",
                "source": source,
                "sender": outcome.sender,
                **answer,
                **decision.detail,
            }
            if not self._worth_recording(outcome, event):
                return answer
            family = f"{outcome.kind}.command" if outcome.kind else "command"
            memory = self.memory.to_json() if outcome.spent else None
            try:
                await self._record(family, event, memory)
            except StoreError as exc:
                self._recording(exc)
                if not outcome.spent:
                    return answer  # a refusal that spent nothing stands (it changed nothing)
                assert answer["id"] is not None
                self.memory.forget(answer["id"])
                return reply(answer["id"], False, f"cannot record this command now: {exc}")
            self._recording(None)
        if decision.apply is not None:
            pending = decision.apply()
            if pending is not None:
                await pending
        return answer

    def _worth_recording(self, outcome: _Outcome, event: dict[str, Any]) -> bool:
        """Refusals that spent nothing (not JSON, unsigned, expired, replayed, over a quota)
        are recorded at most REFUSALS_RECORDED a minute; beyond that they are replied to and
        counted, and the count goes with the next recorded command (``unrecorded_refusals``),
        so a flood of junk does not become a write to the SD card per message."""
        if not outcome.spent:
            now = asyncio.get_running_loop().time()
            if now >= self._window_ends:
                self._window_ends, self._window_recorded = now + 60.0, 0
            if self._window_recorded >= REFUSALS_RECORDED:
                if not self._unrecorded:
                    log.warning(
                        "commands: more than %d refused a minute; the rest are counted, not "
                        "recorded one by one",
                        REFUSALS_RECORDED,
                    )
                self._unrecorded += 1
                return False
            self._window_recorded += 1
        if self._unrecorded:
            event["unrecorded_refusals"] = self._unrecorded
            log.info("commands: %d refused commands were counted, not recorded", self._unrecorded)
            self._unrecorded = 0
        return True

    def _recording(self, failure: StoreError | None) -> None:
        # One line when recording starts failing, one when it works again; not one a command.
        if failure is not None and not self._record_failing:
            log.warning(
                "commands: the store cannot record commands (%s); they are refused until it can",
                failure,
            )
        elif failure is None and self._record_failing:
            log.info("commands: the store records commands again")
        self._record_failing = failure is not None

    # ---- deciding -------------------------------------------------------------------------

    def _decide(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        now: datetime | None,
        source: str,
        sender: str | None,
    ) -> _Outcome:
        try:
            data = parse_json(raw)
        except Refused as refused:
            return _Outcome(Decision(reply(None, False, refused.reason)), "", sender, False)
        raw_id = data.get("id")
        command_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= MAX_ID_LENGTH else None
        kind = next((k for k in self.kinds if k.claims(data)), None)
        family = "" if kind is None else kind.name
        spent = False
        try:
            command_id, sender, now = self._admit(data, kind, now=now, sender=sender, source=source)
            assert kind is not None  # _admit refuses a command no kind claims
            spent = True  # from here on the id is spent, whatever the outcome
            decision = kind.decide(data, command_id=command_id, now=now, source=source)
        except OverQuota as refused:
            decision = Decision(reply(command_id, False, refused.reason))
            return _Outcome(decision, family, refused.sender, spent=False)
        except Refused as refused:
            decision = Decision(reply(command_id, False, refused.reason))
        return _Outcome(decision, family, sender, spent)

    def _admit(
        self,
        data: Mapping[str, Any],
        kind: CommandKind | None,
        *,
        now: datetime | None,
        sender: str | None,
        source: str,
    ) -> tuple[str, str, datetime]:
        """The envelope and the memory: the id (spent on return), the sender and the time."""
        if now is None:
            raise Refused(UNTRUSTED_CLOCK)
        now = self.memory.now(now)
        command_id = _check_id(data)
        sender = _sender(data, sender, source)
        if self.secret is not None and source != "cli":
            verify(data, self.secret)
        if kind is None:
            raise Refused(self._unclaimed(data))
        _check_keys(data, kind.fields)
        expires = self._check_expiry(data, now)
        self.memory.prune(now)
        self.memory.check(command_id, sender, now)
        self.memory.spend(command_id, sender, expires, now)
        return command_id, sender, now

    def _unclaimed(self, data: Mapping[str, Any]) -> str:
        if not self.kinds:
            return "this gateway takes no commands (no hvac section and no pulse meters)"
        known = [f for k in self.kinds for f in k.fields]
        for key in data:
            if key not in ENVELOPE_FIELDS and key not in known:
                if key in _KINDS_NOT_HERE:  # a real command, for a part this gateway lacks
                    return _KINDS_NOT_HERE[key]
                return f"unknown field {key!r}{did_you_mean(str(key), known)}"
        return "the command has no " + " or ".join(f"`{k.fields[0]}`" for k in self.kinds)

    def _check_expiry(self, data: Mapping[str, Any], now: datetime) -> datetime:
        expires = time_field(data, "expires")
        if expires is None:
            raise Refused("the command has no `expires`")
        if expires <= now:
            raise Refused(
                f"expired at {expires.isoformat()}; the gateway's time is {now.isoformat()}"
            )
        if expires > now + timedelta(seconds=self.ttl_max):
            raise Refused(
                f"`expires` is too far ahead: at most {duration_text(self.ttl_max)} from now"
            )
        return expires


def _check_id(data: Mapping[str, Any]) -> str:
    value = data.get("id")
    if value is None:
        raise Refused("the command has no `id`")
    if not isinstance(value, str) or not value.strip():
        raise Refused(f"`id` must be non-empty text, not {json_kind(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise Refused(f"`id` is longer than {MAX_ID_LENGTH} characters")
    return value


def _sender(data: Mapping[str, Any], given: str | None, source: str) -> str:
    """Who sent the command: the topic's (or the CLI's) when the transport says, else the
    command's ``sender``, else the source; a ``sender`` that contradicts the topic is refused."""
    named = data.get("sender")
    if named is not None and not isinstance(named, str):
        raise Refused(f"`sender` must be text, not {json_kind(named)}")
    if named is not None and (problem := sender_problem(named)) is not None:
        raise Refused(problem)
    if given is not None and named is not None and named != given:
        raise Refused(f"`sender` {named!r} does not match the topic's sender {given!r}")
    return given or named or source


def _check_keys(data: Mapping[str, Any], fields: Sequence[str]) -> None:
    known = (*ENVELOPE_FIELDS, *fields)
    for key in data:
        if key not in known:
            raise Refused(f"unknown field {key!r}{did_you_mean(str(key), known)}")
