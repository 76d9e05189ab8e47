"""The CJ/T 188 driver as the agent's registry sees it: a meter config on a serial link."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from agent.core.clock import Clock
from agent.core.configbase import DeviceConfigBase
from agent.core.errors import DeviceUnavailableError
from agent.core.links import Link
from agent.core.serial_port import LINE_CLIENT, LineClient, SerialSettings
from agent.core.source import Found, PolledDevice, SavedState
from drivers.cjt188.device import Cjt188Meter, ReplyMatcher
from drivers.cjt188.frame import (
    C_READ_ADDRESS,
    DI_ORDERS,
    DI_READ_DATA,
    WILDCARD_ADDRESS,
    DiOrder,
    Frame,
    classify_meter_type,
    detect_di_order,
    encode_frame,
    read_address_request,
    read_data_request,
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
        line = link.shared(LINE_CLIENT, lambda: LineClient(link, protocol="meters"))
        yield Cjt188Meter(config, line, clock=clock)


    async def scan(self, link: Link, *, settings: SerialSettings, wait: float) -> list[Found]:
        """Read address (03H, DI 810A, to the wildcard type and address) in both DI byte
        orders: only a lone meter may answer. A meter echoes that request's DI in whichever
        order it came, so the order to configure is found by reading 901F in each order: the
        one the meter answers normally."""
        line = LineClient(link, protocol="cjt188")
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
                kind = classify_meter_type(frame.meter_type)
                data_order = await _data_order(line, frame, settings=settings, wait=wait)
                return [
                    Found(
                        frame.address,
                        f"CJ/T 188 {kind} meter (type {frame.meter_type:02X}H) at "
                        f"{settings.describe()}, di_order: "
                        f"{data_order or 'unknown (it answered a 901F read in neither order)'}",
                    )
                ]
        finally:
            await line.aclose()
        return []


async def _data_order(
    line: LineClient, meter: Frame, *, settings: SerialSettings, wait: float
) -> DiOrder | None:
    """The DI byte order in which ``meter`` (its read-address reply) answers a 901F read."""
    for ser, order in enumerate(DI_ORDERS, start=0x5B):
        try:
            request = read_data_request(meter.address, meter.meter_type, di_order=order, ser=ser)
        except ValueError:  # an address that is not all digits cannot be read by it
            return None
        try:
            reply = await line.transact(
                "scan",
                encode_frame(request),
                ReplyMatcher(meter.address, ser=ser),
                settings=settings,
                timeout=wait,
            )
        except DeviceUnavailableError:
            continue  # silence: the meter does not know the DI in this order
        if not reply.is_abnormal and detect_di_order(reply.data, DI_READ_DATA) == order:
            return order
    return None


DRIVER = Cjt188Driver()
