"""The alert state machine: each alert is raised once, stays raised, and is cleared once.

Events are plain dicts handed to an injected sink (the lead wires it to the store and to MQTT:
retained state per key plus an event stream). An event looks like::

    {"type": "alert", "state": "raised", "key": "quota:site-month:100", "kind": "quota_threshold",
     "ts": "2026-07-28T10:15:00.000Z", "rule": "site-month", "target": "site:electricity",
     "message": "...", ...details}

A cleared event repeats kind, rule and target, gives `raised_at` and a `reason`. The set of raised
alerts (`raised()`) is plain JSON: store it and pass it back to a new book after a restart, so a
restart neither repeats nor forgets an alert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.core.record import ms_to_iso

__all__ = ["AlertBook", "Sink"]

Sink = Callable[[dict[str, Any]], None]
_CARRIED = ("kind", "rule", "target", "meter", "period_start", "period_end")


class AlertBook:
    """Raised alerts by key; transitions go to the sink, repeats do not."""

    def __init__(
        self, sink: Sink, *, raised: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self._sink = sink
        self._raised: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (raised or {}).items()}

    def is_raised(self, key: str) -> bool:
        return key in self._raised

    def raised(self) -> dict[str, dict[str, Any]]:
        """The raised alerts' events by key (a copy), for status and persistence."""
        return {key: dict(event) for key, event in self._raised.items()}

    def keys(self, prefix: str = "") -> list[str]:
        return [key for key in self._raised if key.startswith(prefix)]

    def raise_alert(self, key: str, *, ts_ms: int, kind: str, message: str, **details: Any) -> bool:
        """Raise `key` unless it is already raised; True when an event was sent."""
        if key in self._raised:
            return False
        event = {
            "type": "alert",
            "state": "raised",
            "key": key,
            "kind": kind,
            "ts": ms_to_iso(ts_ms),
            "message": message,
            **details,
        }
        self._raised[key] = event
        self._sink(dict(event))
        return True

    def clear_alert(self, key: str, *, ts_ms: int, reason: str, **details: Any) -> bool:
        """Clear `key` if it is raised; True when an event was sent."""
        raised = self._raised.pop(key, None)
        if raised is None:
            return False
        event: dict[str, Any] = {"type": "alert", "state": "cleared", "key": key}
        event.update({name: raised[name] for name in _CARRIED if name in raised})
        event.update(
            {"ts": ms_to_iso(ts_ms), "raised_at": raised["ts"], "reason": reason, **details}
        )
        self._sink(event)
        return True

    def clear_prefix(self, prefix: str, *, ts_ms: int, reason: str) -> int:
        """Clear every raised key that starts with `prefix`; how many were cleared."""
        return sum(self.clear_alert(key, ts_ms=ts_ms, reason=reason) for key in self.keys(prefix))
