"""Alert events: what upstream must hear about, kept in the store until the uplink publishes it.

The events live in the ``events`` table (migration 0002) next to the readings; the writer thread
records and prunes them (``_Writer.add_event``), the uplink publishes them, and
``edge-agent status`` reads them (:func:`agent.store.queries.read_events`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.core.record import ms_to_iso

# Published events older than the newest this many are pruned; unpublished ones only beyond
# the second bound (a pathological flood during an outage must not eat the readings' budget).
_EVENTS_KEPT = (1000, 100_000)


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """Something upstream must hear about, kept in the store until the uplink publishes it.

    The store's own kinds: ``readings_dropped`` (unsent readings deleted to stay within the
    budget or a full disk; ``detail`` has ``count``, ``first_seq``, ``last_seq``, ``first_ts``,
    ``last_ts``, ``reason``) and ``readings_lost`` (readings never stored because the in-memory
    hold overflowed while the disk refused writes; ``detail`` has ``count`` and ``reason``).
    Other parts of the agent add theirs with :meth:`Store.add_event` (e.g. ``hvac.*``).
    """

    id: int
    ts_ms: int
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": ms_to_iso(self.ts_ms),
            "kind": self.kind,
            "detail": dict(self.detail),
        }
