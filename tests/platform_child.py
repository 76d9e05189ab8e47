"""A process that runs only the platform uplink on a store, for the kill -9 test.

    python -m tests.platform_child DB PORT KEY_FILE START_ISO

Its clock is a ManualClock standing at START_ISO (its sleeps move it), and it reports the whole
day before as a backlog (backfill one day), as fast as the platform acks.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

from agent.core.clock import ManualClock
from agent.platform.uplink import PlatformUplink
from agent.store import Store
from tests.test_platform_uplink import ENERGY, TZ, platform_config


async def main(db: Path, port: int, key_file: Path, start: datetime) -> None:
    clock = ManualClock(start)
    config = platform_config(port, key_file, backfill=86_400 + 600)
    async with Store(db, clock=clock, max_bytes=None) as store:
        await PlatformUplink(config, energy=ENERGY, tz=TZ, store=store, clock=clock).run()


if __name__ == "__main__":
    asyncio.run(
        main(
            Path(sys.argv[1]),
            int(sys.argv[2]),
            Path(sys.argv[3]),
            datetime.fromisoformat(sys.argv[4]),
        )
    )
