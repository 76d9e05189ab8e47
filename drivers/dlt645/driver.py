"""The DL/T 645 driver as the agent's registry sees it: a meter config on a serial link."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.errors import DeviceUnavailableError
from agent.core.links import Link
from agent.core.serial_port import LINE_CLIENT, LineClient, SerialSettings
from agent.core.source import Found, PolledDevice, SavedState
from drivers.dlt645.data import decode_value, lookup
from drivers.dlt645.device import Dlt645Meter, reply_matcher
from drivers.dlt645.errors import Dlt645Error
from drivers.dlt645.frame import (
    Frame,
    FrameDecoder,
    Function,
    parse_address_reply,
    parse_read_reply,
    read_address_request,
    read_request,
)
from drivers.dlt645.spec import Dlt645Device

__all__ = ["DRIVER", "Dlt645Driver"]


class Dlt645Driver:
    protocol = "dlt645"

    @contextlib.asynccontextmanager
    async def open_device(
        self, config: DeviceConfigBase, *, link: Link, state: SavedState, clock: Clock
    ) -> AsyncIterator[PolledDevice]:
        assert isinstance(config, Dlt645Device)
        # One DL/T 645 client per line; its meters take turns on the line's lock.
        line = link.shared(LINE_CLIENT, lambda: LineClient(link, protocol="meters"))
        yield Dlt645Meter(config, line, state=state, saved=await state.load(), clock=clock)


    async def scan(self, link: Link, *, settings: SerialSettings, wait: float) -> list[Found]:
        """Read address (13H to the all-AA address): only a lone meter may answer it; its
        import energy is read too, so the technician sees a value (DL/T 645-2007 only: 1997
        meters have no 13H)."""
        line = LineClient(link, protocol="dlt645")
        try:
            try:
                frame = await line.transact(
                    "scan",
                    read_address_request(),
                    WildcardMatcher(Function.READ_ADDRESS),
                    settings=settings,
                    timeout=wait,
                )
            except DeviceUnavailableError:
                return []
            address = parse_address_reply(frame)
            detail = f"DL/T 645-2007 meter at {settings.describe()}"
            try:
                entry = lookup(IMPORT_ENERGY_DI, "2007")
                reply = await line.transact(
                    "scan",
                    read_request(address, IMPORT_ENERGY_DI),
                    reply_matcher(address, Function.READ, di=IMPORT_ENERGY_DI),
                    settings=settings,
                    timeout=wait,
                )
                value = decode_value(entry, parse_read_reply(reply, IMPORT_ENERGY_DI))
                detail += f", import energy {value} {entry.unit}"
            except (DeviceUnavailableError, Dlt645Error, ValueError):
                pass
            return [Found(address, detail)]
        finally:
            await line.aclose()


IMPORT_ENERGY_DI = 0x00010000  # DL/T 645-2007 appendix A: combined active energy, total


class WildcardMatcher:
    """The first reply frame of ``function`` from any meter (a reply to a wildcard request)."""

    def __init__(self, function: int) -> None:
        self.function = function
        self.decoder = FrameDecoder()
        self._seen = 0

    def __call__(self, received: bytes) -> Frame | None:
        chunk, self._seen = received[self._seen :], len(received)
        for frame in self.decoder.feed(chunk):
            if frame.is_from_meter and frame.function == self.function:
                return frame
        return None


DRIVER = Dlt645Driver()
