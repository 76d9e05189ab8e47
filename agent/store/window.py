"""The readings the writer committed last, kept in memory for the uplink: the live hand-off.

Reading every commit back from SQLite to publish it (a SELECT and an object per row) was the
uplink's largest cost per point (issue #14). Instead the writer, once a commit has succeeded,
puts that commit's readings here as :class:`StoredReading` (with their seqs, the values as the
file gives them back), and the uplink takes them from here. The window answers only when it is
sure to be complete: from the seq asked on, every committed reading is in it, in order.
Otherwise (a seq it no longer holds, a gap, nothing added since it was emptied) it says
``None`` and the uplink reads the store as before.

The writer empties it before anything that changes or deletes committed unsent readings behind
the uplink's back (unsent readings evicted under the budget, a clock correction, a rebuild of
the file), under the same lock the uplink takes them with: what the uplink takes after that
comes from the file. (A batch taken just before is as one read from the file just before: the
store's documents say what such a batch may do.)
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence

from agent.core.record import Quality, Reading, StoredReading, Value
from agent.store.clocktrust import UntrustedReading

LIVE_WINDOW = 5_000
"""Readings kept for the uplink, at most: five commits of 1,000 (`batch_max`), while the uplink
takes up to 1,000 after each commit. It takes them as it goes, so the window is nearly empty
while it keeps up; it fills only while the uplink is away or far behind, and is then of no use
(the file answers): kept small, as it is held then (about 120 bytes a reading)."""


class LiveWindow:
    """Committed readings not yet taken by the uplink, consecutive by seq (thread-safe)."""

    __slots__ = ("_items", "_lock", "_next", "capacity", "enabled")

    def __init__(self, capacity: int = LIVE_WINDOW) -> None:
        self._items: deque[StoredReading] = deque()
        self._lock = threading.Lock()
        # The seq after the last one added; None: nothing known (new, or emptied).
        self._next: int | None = None
        self.capacity = capacity
        # Set once an uplink has connected: a store nobody publishes from builds nothing.
        self.enabled = False

    def add(self, first_seq: int, batch: Sequence[Reading]) -> None:
        """The writer thread, after the commit that gave ``batch`` the seqs ``first_seq``,
        ``first_seq + 1``, ... (only then: an uncommitted reading is never here)."""
        stored_reading = StoredReading
        stored = [
            # nearly every reading: a finite float, as taken, the clock trusted
            stored_reading(seq, r.device, r.point, r.ts_ms, r.value, r.unit, r.quality, False)
            if type(r.value) is float
            and r.value == r.value  # not NaN
            and type(r) is Reading
            and type(r.quality) is Quality
            else _as_stored(seq, r)
            for seq, r in enumerate(batch, first_seq)
        ]
        with self._lock:
            items = self._items
            if self._next != first_seq:  # not the continuation: what is here is no longer all
                items.clear()
            items.extend(stored)
            for _ in range(len(items) - self.capacity):
                items.popleft()
            self._next = first_seq + len(batch)

    def drop(self) -> None:
        """The writer thread, before it changes or deletes committed unsent readings."""
        with self._lock:
            self._items.clear()
            self._next = None

    def take(self, from_seq: int, limit: int) -> list[StoredReading] | None:
        """Up to ``limit`` readings from seq ``from_seq`` on, oldest first, removed from the
        window; ``[]`` when none was committed from there; None when the window cannot tell
        (ask the file)."""
        with self._lock:
            items, after = self._items, self._next
            if after is None or from_seq > after:
                return None
            while items and items[0].seq < from_seq:
                items.popleft()
            if not items:
                return [] if from_seq == after else None
            if items[0].seq != from_seq:  # the window starts later: the ones between are not here
                return None
            return [items.popleft() for _ in range(min(limit, len(items)))]


_QUALITY_OF = {int(q): q for q in Quality}


def _as_stored(seq: int, r: Reading) -> StoredReading:
    """The reading as the file gives it back (agent.store.schema._to_stored of its row)."""
    value = r.value
    if type(value) is not float or value != value:  # noqa: PLR0124 - NaN, the one float changed
        value = stored_value(value)
    quality = r.quality
    if type(quality) is not Quality:
        quality = _QUALITY_OF[int(quality)]
    return StoredReading(
        seq,
        r.device,
        r.point,
        r.ts_ms,
        value,
        r.unit,
        quality,
        isinstance(r, UntrustedReading),
    )


def stored_value(value: Value) -> Value:
    """What SQLite returns for a value bound as a parameter: NaN comes back as NULL, a bool
    as its integer, a subclass of int, float or str as the plain type."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return float(value)
    if isinstance(value, int):  # bool included
        return int(value)
    if isinstance(value, str):
        return str(value)
    return value
