"""One connection to the platform: identity check, heartbeats and acknowledged reports.

``async with PlatformSession(config, ...) as session`` opens the TCP connection (bounded by the
config's timeout); ``login()`` runs the MD5 challenge, ``heartbeat()`` returns the platform's
time, ``send_report()`` returns once the platform has acknowledged. Messages go one at a time
(stop and wait): the protocol has no message id to match an ack to its report except the
report's time, which is checked when the ack carries one. Anything unexpected (a bad CRC, text
that is not XML, an unknown message, a replayed challenge, a frame over the profile's size) raises
a PlatformError subclass: the caller drops the connection and reconnects, and no report is marked
delivered on such an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from agent.core.clock import Clock
from agent.platform.config import PlatformConfig
from agent.platform.crypto import AesKey, decrypt, encrypt, md5_answer
from agent.platform.envelope import Frame, encode_frame, read_frame
from agent.platform.errors import AuthRefusedError, PlatformError, ProtocolError
from agent.platform.messages import Message, build_message, parse_message, parse_time
from agent.platform.profiles import AckStyle, Encrypted

__all__ = ["PlatformSession", "PlatformTime"]

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_S = 2.0
_CHALLENGES_KEPT = 256


@dataclass(frozen=True, slots=True)
class PlatformTime:
    """The platform's clock as read from a heartbeat reply."""

    platform: datetime  # aware, UTC
    offset_s: float  # platform minus the gateway's wall clock, at the reply's midpoint


class PlatformSession:
    """One connection; not re-entrant. ``challenges`` carries the challenges seen in earlier
    sessions so that a replayed one is refused."""

    def __init__(
        self,
        config: PlatformConfig,
        *,
        tz: str,
        clock: Clock,
        challenges: set[str] | None = None,
    ) -> None:
        self.config = config
        self.profile = config.profile_settings
        self._tz = ZoneInfo(tz)
        self._clock = clock
        self._challenges = challenges if challenges is not None else set()
        self._key: AesKey | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sequence = 0

    async def __aenter__(self) -> PlatformSession:
        self._key = self.config.aes_key()
        try:
            async with asyncio.timeout(self.config.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.config.host, self.config.port
                )
        except TimeoutError:
            raise PlatformError(
                f"no answer from {self.config.host}:{self.config.port} within "
                f"{self.config.timeout:g} s"
            ) from None
        except OSError as exc:
            raise PlatformError(
                f"cannot connect to {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await asyncio.shield(writer.wait_closed())

    # ---- the protocol's exchanges ------------------------------------------------------

    async def login(self) -> datetime | None:
        """The identity check; returns the platform's time if its result carried one."""
        await self._send("id_validate", "request")
        challenge = await self._expect("id_validate", "sequence")
        sequence = challenge.fields.get("sequence", "")
        if not sequence:
            raise ProtocolError("the platform's challenge carries no sequence")
        if sequence in self._challenges:
            raise ProtocolError(f"the platform repeated an earlier challenge {sequence!r}: refused")
        if len(self._challenges) >= _CHALLENGES_KEPT:
            self._challenges.clear()
        self._challenges.add(sequence)
        answer = md5_answer(self.config.secret(), sequence, self.profile.md5_order)
        await self._send("id_validate", "md5", [("md5", answer)])
        result = await self._expect("id_validate", "result")
        if result.fields.get("result", "").lower() != "pass":
            raise AuthRefusedError(self.config.building_id, self.config.gateway_id)
        stamp = result.fields.get("time")
        return self._aware(parse_time(stamp)) if stamp else None

    async def heartbeat(self) -> PlatformTime:
        sent = self._clock.time()
        await self._send("heart_beat", "notify")
        reply = await self._expect("heart_beat", "time")
        received = self._clock.time()
        platform = self._aware(parse_time(reply.fields.get("time", "")))
        midpoint = (sent + received) / 2
        # The stamp has whole seconds, cut off: the platform's clock stood half a second later
        # on average, which keeps the offset unbiased (its resolution stays one second).
        return PlatformTime(platform, platform.timestamp() + 0.5 - midpoint)

    async def send_report(self, payload: bytes, *, time: str) -> None:
        """Send one report (XML built by agent.platform.reports); return once it is acked."""
        await self._send_payload(payload, data=True)
        if self.profile.ack is AckStyle.REPORT_ACK:
            ack = await self._expect("report_config", "report_ack", data=True)
            ok = ack.fields.get("report_ack", "").lower() == "pass"
        else:
            ack = await self._receive(data=True)
            if ack.element != "data" or ack.operation not in ("report", "continuous"):
                raise ProtocolError(f"the platform answered a report with {_name(ack)}")
            ok = ack.fields.get("ack", "").upper() == "OK"
        acked_time = ack.fields.get("time")
        if acked_time and acked_time != time:
            raise ProtocolError(
                f"the platform acknowledged the report of {acked_time}, not the one of {time}"
            )
        if not ok:
            raise ProtocolError(f"the platform did not accept the report of {time}")

    # ---- frames -------------------------------------------------------------------------

    def _aware(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self._tz).astimezone(UTC)

    def _encrypts(self, *, data: bool) -> bool:
        return self.profile.encrypted is Encrypted.ALL or (
            data and self.profile.encrypted is Encrypted.DATA
        )

    async def _send(
        self, element: str, operation: str, fields: list[tuple[str, str]] | None = None
    ) -> None:
        payload = build_message(
            self.config.building_id,
            self.config.gateway_id,
            element,
            operation,
            fields or [],
            encoding=self.profile.encoding,
        )
        await self._send_payload(payload, data=False)

    async def _send_payload(self, payload: bytes, *, data: bool) -> None:
        if self._writer is None or self._key is None:
            raise PlatformError("the platform connection is closed")
        if self._encrypts(data=data):
            payload = encrypt(self._key, payload, self.profile.padding)
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        self._writer.write(encode_frame(self.profile, Frame(self._sequence, payload)))
        try:
            async with asyncio.timeout(self.config.timeout):
                await self._writer.drain()
        except TimeoutError:
            raise PlatformError(
                f"the platform took more than {self.config.timeout:g} s to take a frame"
            ) from None

    async def _receive(self, *, data: bool = False) -> Message:
        if self._reader is None or self._key is None:
            raise PlatformError("the platform connection is closed")
        try:
            async with asyncio.timeout(self.config.timeout):
                frame = await read_frame(self.profile, self._reader)
        except TimeoutError:
            raise PlatformError(
                f"no answer from the platform within {self.config.timeout:g} s"
            ) from None
        except asyncio.IncompleteReadError:
            raise PlatformError("the platform closed the connection") from None
        payload = frame.payload
        if self._encrypts(data=data):
            payload = decrypt(self._key, payload, self.profile.padding)
        return parse_message(payload, encoding=self.profile.encoding)

    async def _expect(self, element: str, operation: str, *, data: bool = False) -> Message:
        message = await self._receive(data=data)
        if message.element != element or message.operation != operation:
            raise ProtocolError(
                f"the platform sent {_name(message)} where "
                f'<{element} operation="{operation}"> was due'
            )
        return message


def _name(message: Message) -> str:
    return f'<{message.element} operation="{message.operation}">'
