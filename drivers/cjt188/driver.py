"""The CJ/T 188 driver as the agent's registry sees it: a meter config on a serial link."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.errors import DeviceUnavailableError
from agent.core.links import Link
from agent.core.serial_port import LineClient, SerialSettings
from agent.core.source import Found, PolledDevice, SavedState
from drivers.cjt188.device import Cjt188Meter, ReplyMatcher
from drivers.cjt188.frame import (
    C_READ_ADDRESS,
    DI_ORDERS,
    DI_READ_ADDRESS,
    WILDCARD_ADDRESS,
    classify_meter_type,
    detect_di_order,
    encode_frame,
    read_address_request,
)
from drivers.cjt188.spec import Cjt188Device

__all__ = ["DRIVER", "Cjt188Driver"]


class Cjt188Driver:
    protocol = "cjt188"

    @contextlib.asynccontextmanager
    async def open_device(
        self, config: DeviceConfigBase, *, link: Link, state: SavedState, clock: Clock
    ) -> AsyncIterator[PolledDevice]:
        assert isinstance(config, Cjt188Device)
        line = link.shared("cjt188", lambda: LineClient(link, protocol="cjt188"))
        yield Cjt188Meter(config, line, clock=clock)


    async def scan(self, link: Link, *, settings: SerialSettings, wait: float) -> list[Found]:
        """Read address (03H, DI 810A, to the wildcard type and address) in both DI byte
        orders: only a lone meter may answer; the order it answers in is the one to configure."""
        line = LineClient(link, protocol="cjt188")
        found: list[Found] = []
        try:
            for order in DI_ORDERS:
                request = read_address_request(di_order=order, ser=0x5A)
                try:
                    frame = await line.transact(
                        "scan",
                        encode_frame(request),
                        ReplyMatcher(WILDCARD_ADDRESS, ser=None, function=C_READ_ADDRESS),
                        settings=settings,
                        timeout=wait,
                    )
                except DeviceUnavailableError:
                    continue
                answered = detect_di_order(frame.data, DI_READ_ADDRESS) or order
                kind = classify_meter_type(frame.meter_type)
                found.append(
                    Found(
                        frame.address,
                        f"CJ/T 188 {kind} meter (type {frame.meter_type:02X}H) at "
                        f"{settings.describe()}, di_order: {answered}",
                    )
                )
                break
        finally:
            await line.aclose()
        return found


DRIVER = Cjt188Driver()
