"""The agent hands malloc's free pages back to the kernel (agent.core.heap): measured on this
very process, glibc's malloc (Debian, Raspberry Pi OS)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agent.core.heap import trim, trim_heap


def anon_kib() -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def test_a_trim_gives_free_pages_inside_the_heap_back() -> None:
    # 32 MB in blocks of 64 KB (past pymalloc, below malloc's mmap threshold: in the heap),
    # every other one freed: holes of whole pages between blocks still in use (kept blocks as
    # large as the holes, so that no old small free chunk elsewhere serves them), which malloc
    # keeps resident and only a trim gives back.
    blocks = [bytearray(64_000) for _ in range(500)]
    del blocks[::2]
    before = anon_kib()
    assert trim()
    after = anon_kib()
    assert before - after > 12_000, (before, after)
    del blocks


async def test_the_trim_runs_on_its_period_and_stops_where_it_cannot() -> None:
    calls: list[int] = []

    def counting() -> bool:
        calls.append(1)
        return True

    task = asyncio.create_task(trim_heap(0.01, trim=counting))
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(calls) >= 3
    # A C library without malloc_trim: the loop ends after its first try.
    await asyncio.wait_for(trim_heap(0.01, trim=lambda: False), timeout=2)
