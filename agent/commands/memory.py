"""The memory of spent command ids, with a quota per sender; saved in the store with each
command's audit event, so a restart (a retained command delivered again) still refuses a replay.

An id is spent once the command passed its envelope checks (id, expiry, signature), whatever
the outcome of what it asked. It is kept until its command expires (it could not be accepted
after that anyway) and at least ``window`` after it was spent (so the quota can count it). Time
here never goes back: the memory keeps the latest moment it saw, and takes the later of that and
the time it is given, so an id forgotten at its expiry cannot become valid again after a clock
step or a restart on a clock that is behind.

The quota: at most ``per_sender`` ids spent by one sender within ``window``. One sender's junk
(valid ids, any content) fills only its own quota; commands from every other sender go on being
accepted. ``capacity`` bounds the whole memory (the quotas are meant to keep well below it).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent.commands.envelope import Refused, duration_text

__all__ = ["CommandMemory", "OverQuota", "Spent"]


class OverQuota(Refused):
    """A sender has used its quota (the command path records these sparingly)."""

    def __init__(self, sender: str, reason: str) -> None:
        self.sender = sender
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Spent:
    """One spent id: who spent it, when, and until when its command was valid."""

    sender: str
    at: datetime
    expires: datetime


class CommandMemory:
    """Spent command ids, bounded in all and per sender (no I/O: the command path saves it)."""

    def __init__(
        self, *, capacity: int, per_sender: int | None = None, window: float = 0.0
    ) -> None:
        if capacity < 1 or (per_sender is not None and (per_sender < 1 or window <= 0)):
            raise ValueError(
                "a command memory needs capacity >= 1, and per_sender >= 1 with a window"
            )
        self.capacity = capacity
        self.per_sender = per_sender
        self.window = timedelta(seconds=window)
        self._spent: dict[str, Spent] = {}
        self.latest: datetime | None = None

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._spent

    def __len__(self) -> int:
        return len(self._spent)

    def now(self, now: datetime) -> datetime:
        """``now``, or the latest moment seen when that is later (time never goes back here)."""
        if self.latest is not None and self.latest > now:
            return self.latest
        return now

    def prune(self, now: datetime) -> None:
        now = self.now(now)
        self.latest = now
        for command_id in [i for i, s in self._spent.items() if self._gone(s, now)]:
            del self._spent[command_id]

    def _gone(self, spent: Spent, now: datetime) -> bool:
        counted = self.per_sender is not None and spent.at + self.window > now
        return spent.expires <= now and not counted

    def check(self, command_id: str, sender: str, now: datetime) -> None:
        """Refused when ``command_id`` was spent, ``sender`` has used its quota, or the memory
        is full; nothing is changed."""
        now = self.now(now)
        if command_id in self._spent:
            raise Refused(f"replayed: the command id {command_id!r} was already used")
        if len(self._spent) >= self.capacity:
            raise Refused(f"too many unexpired commands ({self.capacity}); try again later")
        quota = self.per_sender
        if quota is None:
            return
        recent = sorted(
            s.at for s in self._spent.values() if s.sender == sender and s.at + self.window > now
        )
        if len(recent) >= quota:
            retry = (recent[len(recent) - quota] + self.window - now).total_seconds()
            raise OverQuota(
                sender,
                f"too many commands from sender {sender!r}: at most {quota} in "
                f"{duration_text(self.window.total_seconds())}; try again in {max(retry, 1):.0f} s"
            )

    def spend(self, command_id: str, sender: str, expires: datetime, now: datetime) -> None:
        self._spent[command_id] = Spent(sender=sender, at=self.now(now), expires=expires)

    def forget(self, command_id: str) -> None:
        """Un-spend an id (its command could not be recorded, so it was not taken)."""
        self._spent.pop(command_id, None)

    def senders(self) -> Counter[str]:
        return Counter(s.sender for s in self._spent.values())

    # ---- saved in the store -----------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "latest": None if self.latest is None else self.latest.isoformat(),
                "spent": {
                    i: [s.sender, s.at.isoformat(), s.expires.isoformat()]
                    for i, s in self._spent.items()
                },
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def restore(self, text: str) -> None:
        """Take back what `to_json` saved; ValueError when it cannot be read."""
        try:
            data: Any = json.loads(text)
            latest = data["latest"]
            spent = {
                str(i): Spent(str(s), datetime.fromisoformat(a), datetime.fromisoformat(e))
                for i, (s, a, e) in data["spent"].items()
            }
            when = None if latest is None else datetime.fromisoformat(latest)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the saved command memory cannot be read: {exc}") from None
        self._spent, self.latest = spent, when
