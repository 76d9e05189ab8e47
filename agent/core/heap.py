"""Hand the C heap's free pages back to the kernel now and then (glibc's ``malloc_trim``).

glibc keeps what a process frees in its free lists, for reuse, and gives memory back to the
kernel only from the top of the heap, past a threshold that grows with the process's largest
allocations. A service that runs for months keeps, resident, the high-water mark of every burst
it ever had — a backfill after an outage, an eviction, a reload — and in between its free lists
fragment. Two-hour soaks of the agent showed exactly that: what malloc held free grew about
3 to 6 KiB a minute while what it had handed out stayed flat, and one ``malloc_trim(0)`` on an
agent 25 minutes into a soak returned 1.8 MB at once (docs/memory.md).

``malloc_trim(0)`` returns every whole free page inside the heap too (``MADV_DONTNEED``, since
glibc 2.8), not only its top; it takes well under a millisecond on the agent's heap. Elsewhere
(musl, other systems) there is nothing to call and ``trim`` says so by returning False.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
from collections.abc import Callable

# Often enough that a burst's pages go back within a minute; rarely enough to cost nothing
# (a trim is under a millisecond here, a few on a Pi).
TRIM_EVERY_S = 60.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # The process's own symbols, the C library's among them (no ctypes.util: 0.7 MB of
        # imports to find a library already loaded).
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: no such call
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def trim() -> bool:
    """Give malloc's free pages back to the kernel; False when this C library cannot."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)  # its result only says whether anything went back
    return True


async def trim_heap(every: float = TRIM_EVERY_S, *, trim: Callable[[], bool] = trim) -> None:
    """``trim`` every ``every`` seconds until cancelled (stops at once where it cannot trim)."""
    while True:
        # Paced in real time, as the pollers are: a test's manual clock must not spin it.
        await asyncio.sleep(every)
        if not trim():
            return
