"""Capped exponential backoff with full jitter, for reconnect loops.

Full jitter (a delay drawn uniformly from zero to the current ceiling) spreads the retries of many
gateways that lost the same broker at the same moment, so they do not all come back in step.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive retries: the ceiling doubles from ``initial`` up to ``cap``.

    ``next_delay()`` returns ``rand() * ceiling`` and then raises the ceiling; ``reset()`` starts
    over after a success. ``rand`` returns a float in [0, 1) and is there for tests.
    """

    def __init__(
        self,
        *,
        initial: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= cap and factor >= 1")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self._rand = rand
        self._ceiling = initial
        self.attempts = 0
        """Delays handed out since the last reset."""

    @property
    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        return self._ceiling

    def next_delay(self) -> float:
        delay = self._rand() * self._ceiling
        self.attempts += 1
        # Multiplying step by step (rather than initial * factor**attempts) cannot overflow.
        self._ceiling = min(self.cap, self._ceiling * self.factor)
        return delay

    def reset(self) -> None:
        self._ceiling = self.initial
        self.attempts = 0
