"""Capped exponential backoff with jitter: the one backoff of the agent.

Reconnecting to a broker uses full jitter (a delay drawn uniformly from zero to the current
ceiling), which spreads the retries of many gateways that lost the same broker at the same moment,
so they do not all come back in step. A TCP device link draws from the upper half (a dead device
should not be retried almost at once), and the poller retries a device that is down on a plain
doubling of its interval (no jitter: one device, nothing to spread).
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive retries: the ceiling doubles from ``initial`` up to ``cap``.

    ``next_delay()`` returns a delay drawn from ``[(1 - jitter) * ceiling, ceiling]`` and then
    raises the ceiling; ``reset()`` starts over after a success. ``jitter`` is 1 for full jitter,
    0 for none. ``rand`` returns a float in [0, 1) and is there for tests.
    """

    def __init__(
        self,
        *,
        initial: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        jitter: float = 1.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1 and 0 <= jitter <= 1")
        self.jitter = jitter
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
        delay = self._ceiling * (1 - self.jitter + self.jitter * self._rand())
        self.attempts += 1
        # Multiplying step by step (rather than initial * factor**attempts) cannot overflow.
        self._ceiling = min(self.cap, self._ceiling * self.factor)
        return delay

    def reset(self) -> None:
        self._ceiling = self.initial
        self.attempts = 0
