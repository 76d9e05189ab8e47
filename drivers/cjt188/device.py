"""One CJ/T 188 meter on a serial line: one 901F read gives every point.

The reply must come from the addressed meter, answer the read-data function, echo the request's
data identifier in the configured byte order and its sequence number (SER): a late reply to an
abandoned request (a slow meter) carries the old SER and is skipped, never taken for the new
answer. A digit that is not BCD or an unknown unit code makes the whole reply bad (every point of
the read is a bad reading, never a number); an abnormal reply (C | 40H) is a refusal, logged once.
The meter's own clock is never used: readings are stamped with the gateway's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from agent.core.clock import Clock, system_clock
from agent.core.errors import DeviceUnavailableError
from agent.core.record import Quality, Reading, Value
from agent.core.serial_port import LineClient, SerialSettings
from agent.core.source import PointInfo
from drivers.cjt188.data import decode_901f, layout_for
from drivers.cjt188.errors import AbnormalReplyError, Cjt188Error
from drivers.cjt188.frame import (
    C_READ_DATA,
    DiOrder,
    Frame,
    FrameDecoder,
    encode_frame,
    parse_data_reply,
    read_data_request,
)
from drivers.cjt188.profiles import Cjt188Profile, load_profile
from drivers.cjt188.spec import Cjt188Device

__all__ = ["Cjt188Meter", "ReplyMatcher"]

log = logging.getLogger(__name__)



class ReplyMatcher:
    """A ``complete`` function for LineClient.transact: the first read-data reply from the meter
    at ``address`` that echoes ``ser`` (with ``ser`` None: any read-data reply from it)."""

    def __init__(self, address: str, *, ser: int | None, function: int = C_READ_DATA) -> None:
        self.address = address.upper()
        self.ser = ser
        self.function = function
        self.decoder = FrameDecoder()
        self._seen = 0

    def __call__(self, received: bytes) -> Frame | None:
        chunk, self._seen = received[self._seen :], len(received)
        for frame in self.decoder.feed(chunk):
            if not frame.is_reply or frame.function != self.function:
                continue
            if self.address != "AAAAAAAAAAAAAA" and frame.address.upper() != self.address:
                continue
            # A normal reply echoes DI, SER; an abnormal one SER, ST ST.
            at = 0 if frame.is_abnormal else 2
            stale = self.ser is not None and len(frame.data) > at and frame.data[at] != self.ser
            if stale:
                continue  # a late reply to an earlier request
            return frame
        return None


class Cjt188Meter:
    """The driver's polled device (agent.core.source.PolledDevice). No I/O until a read."""

    def __init__(
        self, config: Cjt188Device, line: LineClient, *, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.line = line
        self.profile: Cjt188Profile = load_profile(config.profile)
        self.meter_type = (
            config.meter_type if config.meter_type is not None else self.profile.meter_type
        )
        self.di_order: DiOrder = config.di_order or self.profile.di_order
        self._clock = clock if clock is not None else system_clock()
        self.settings = SerialSettings.for_device(
            line.line,
            baudrate=config.baudrate,
            parity=config.parity,
            default_baudrate=config.default_baudrate,
            default_parity=config.default_parity,
        )
        units = {p.name: p.unit for p in self.profile.points}
        self._points: Mapping[str, PointInfo] = MappingProxyType(
            {
                name: PointInfo(unit=units[name], interval=config.interval)
                for name in config.point_names()
            }
        )
        self._ser = 0
        self._refused = False
        self.frames = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def points(self) -> Mapping[str, PointInfo]:
        return self._points

    async def write(self, point: str, value: Value) -> None:
        raise ValueError(f"CJ/T 188 point {point!r} of {self.name!r} is read-only here")

    def _next_ser(self) -> int:
        self._ser = (self._ser + 1) % 0x100
        return self._ser

    async def read_raw(self) -> dict[str, float | int]:
        """One 901F read: every point the layout holds (Cjt188Error on a reply that carries
        no usable value, DeviceUnavailableError when nothing answers)."""
        ser = self._next_ser()
        request = read_data_request(
            self.config.address, self.meter_type, di_order=self.di_order, ser=ser
        )
        self.frames += 1
        frame = await self.line.transact(
            self.name,
            encode_frame(request, preamble=self.config.preamble),
            ReplyMatcher(self.config.address, ser=ser),
            settings=self.settings,
            timeout=self.config.timeout,
        )
        reply = parse_data_reply(frame, di_order=self.di_order, ser=ser)
        return decode_901f(reply.body, layout=layout_for(self.profile.kind))

    async def read(self, points: Sequence[str] | None = None) -> list[Reading]:
        names = list(points) if points is not None else list(self._points)
        values: Mapping[str, Value] = {}
        try:
            values = await self.read_raw()
            self._refused = False
        except AbnormalReplyError as exc:
            if not self._refused:
                log.warning("meter %s refused the read: %s", self.name, exc)
            self._refused = True
        except (Cjt188Error, ValueError) as exc:
            log.warning("meter %s: unusable reply: %s", self.name, exc)
        except DeviceUnavailableError as exc:
            raise DeviceUnavailableError(self.name, exc.reason) from exc
        ts = self._clock.now_ms()
        return [
            Reading(
                self.name,
                name,
                ts,
                values.get(name),
                self._points[name].unit if name in self._points else "",
                Quality.GOOD if name in values else Quality.BAD,
            )
            for name in names
        ]
