"""The demo's (and the soak's) pulse train on gpiozero's mock pin: the pin's record of every
change it went through must not grow for as long as the demo runs."""

from __future__ import annotations

import asyncio

from gpiozero.pins.mock import MockFactory

from agent.demo import _drive_pulses


class Train:
    """Three pulses due at every ask, counted."""

    def __init__(self) -> None:
        self.asked = 0

    def due(self) -> int:
        self.asked += 1
        return 3


async def test_the_mock_pin_keeps_no_history_of_the_pulses_it_drove() -> None:
    factory = MockFactory()
    try:
        pin = factory.pin(17)
        pin.drive_high()
        train, stop = Train(), asyncio.Event()
        task = asyncio.create_task(_drive_pulses(pin, train, stop))
        seen = 0
        async with asyncio.timeout(20):
            while train.asked < 4:  # three trains done, the fourth under way
                seen = max(seen, len(pin.states))
                await asyncio.sleep(0.05)
        stop.set()
        await task
        # A train is 3 pulses, 6 changes: cleared after each, never 3 trains' worth (at most
        # the first train's, after the pin's first state and the drive high above).
        assert train.asked >= 4
        assert seen <= 2 + 2 * 3, seen
        assert len(pin.states) <= 2 + 2 * 3
    finally:
        factory.close()
