"""A reference energy-monitoring platform (the data centre's side of the collector protocol).

Written from the protocol as public implementations describe it (framing variants A and B,
CRC-16/XMODEM, MD5 challenge, AES-128-CBC with IV = key, XML messages; docs/platform.md cites
them), not from the agent's client: it has its own table of wire variants, its own CRC and its own
XML handling, so a mistake shared by the client and this server does not hide itself.

It listens on loopback, checks identity, answers heartbeats with its time, acknowledges reports
in the variant's style, and keeps what it received: every accepted report by (building, time),
how many arrived twice, what the logins and heartbeats were. Faults for tests and the demo:
refusing the identity check, an outage (connections refused), dropping the connection when a
report arrives, never acknowledging, acknowledging late, a slow link, and one-shot bad replies
(a wrong CRC, text that is not XML, an unknown message, a 10 MB length field, a replayed
challenge).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Literal, Self
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.core.clock import Clock, system_clock

__all__ = ["VARIANTS", "Faults", "PlatformServer", "ReceivedReport", "Variant"]

log = logging.getLogger(__name__)

BadReply = Literal["bad-crc", "not-xml", "unknown", "huge", "wrong-ack-time"]


@dataclass(frozen=True)
class Variant:
    """The wire conventions of one platform (PROTOCOLS.md §3.2-3.5 of the project's notes)."""

    start: bytes
    end: bytes
    little_length: bool = True
    little_sequence: bool = True
    crc_from_start: bool = True  # CRC over start..payload; else over sequence+payload
    little_crc: bool = False
    cipher: Literal["all", "data", "none"] = "all"
    fill: Literal["zero", "pkcs7", "ascii-zero"] = "zero"
    hash_sequence_first: bool = False
    charset: str = "utf-8"
    ack: Literal["data", "report_ack"] = "data"


VARIANTS = {
    "guideline-a": Variant(start=b"\x68\x68\x16\x16", end=b"\x55\xaa\x55\xaa"),
    "guideline-a-java": Variant(
        start=b"\x68\x68\x16\x16",
        end=b"\x55\xaa\x55\xaa",
        crc_from_start=False,
        little_crc=True,
        cipher="data",
        fill="pkcs7",
    ),
    "zhejiang-b": Variant(
        start=b"\x55\xaa\x55\xaa",
        end=b"\x68\x68\x16\x16",
        crc_from_start=False,
        little_crc=True,
        hash_sequence_first=True,
        charset="gb2312",
        ack="report_ack",
    ),
}


@dataclass
class Faults:
    """What the platform does wrong; tests flip these while the server runs."""

    refuse_auth: bool = False
    down: bool = False  # every connection is closed at once (an outage)
    drop_on_report: int = 0  # close the connection on this many coming reports, unacked
    never_ack: bool = False
    ack_delay: float = 0.0  # seconds before each ack
    slow_link: float = 0.0  # seconds per 64 bytes written
    nack: bool = False  # answer reports with a refusal
    challenge: str | None = None  # a fixed challenge (to replay one)
    bad_reply: BadReply | None = None  # one-shot: the next reply is bad in this way


@dataclass(frozen=True)
class ReceivedReport:
    building_id: str
    gateway_id: str
    operation: str
    time: str
    meters: dict[int, dict[int, tuple[str, float, str]]]  # id -> function id -> (code, v, err)
    items: dict[str, tuple[float, str]]


@dataclass
class _Tally:
    logins: int = 0
    refused: int = 0
    heartbeats: int = 0
    reports_seen: int = 0
    duplicates: int = 0
    bad_frames: int = 0
    connections: int = 0
    operations: list[str] = field(default_factory=list)


def _crc(data: bytes) -> int:
    # Bit by bit, CRC-16/XMODEM: polynomial 0x1021, initial 0, no reflection, no final xor.
    value = 0
    for byte in data:
        value ^= byte << 8
        for _ in range(8):
            value <<= 1
            if value & 0x10000:
                value ^= 0x11021
    return value


class PlatformServer:
    """``async with PlatformServer(key=..., secret=...) as server``: listening on ``port``."""

    def __init__(
        self,
        *,
        key: bytes,
        secret: str,
        variant: str = "guideline-a",
        iv: bytes | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tz: str = "Asia/Shanghai",
        clock: Clock | None = None,
        time_offset_s: float = 0.0,
    ) -> None:
        self.variant = VARIANTS[variant]
        self.key, self.iv, self.secret = key, iv or key, secret
        self.host, self._port = host, port
        self.tz = ZoneInfo(tz)
        self.clock = clock if clock is not None else system_clock()
        self.time_offset_s = time_offset_s
        self.faults = Faults()
        self.tally = _Tally()
        self.accepted: dict[tuple[str, str], ReceivedReport] = {}
        self.arrivals: list[tuple[str, str]] = []  # (operation, time) of each report, in order
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Condition()

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, self._port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Until ``predicate()`` is true (real seconds); TimeoutError otherwise."""
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # ---- one connection -----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.tally.connections += 1
        try:
            if not self.faults.down:
                await self._conversation(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            log.info("platform server: connection ended: %s", exc)
        finally:
            self._writers.discard(writer)
            writer.close()
            self._handlers.discard(task)
            await self._notify()

    async def _conversation(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        challenge: str | None = None
        authenticated = False
        while not self.faults.down:
            root = await self._read(reader)
            if root is None:
                self.tally.bad_frames += 1
                return
            common = root.find("common")
            op = next((c for c in root if c.tag != "common"), None)
            if common is None or op is None:
                return
            ids = (common.findtext("building_id") or "", common.findtext("gateway_id") or "")
            kind = (op.tag, op.get("operation", ""))
            self.tally.operations.append(f"{kind[0]}/{kind[1]}")
            if kind == ("id_validate", "request"):
                challenge = self.faults.challenge or f"{random.randrange(10**8):08d}"
                await self._reply(writer, ids, "id_validate", "sequence", [("sequence", challenge)])
            elif kind == ("id_validate", "md5") and challenge is not None:
                text = (
                    challenge + self.secret
                    if self.variant.hash_sequence_first
                    else (self.secret + challenge)
                )
                wanted = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
                authenticated = op.findtext("md5") == wanted and not self.faults.refuse_auth
                self.tally.logins += authenticated
                self.tally.refused += not authenticated
                await self._reply(
                    writer,
                    ids,
                    "id_validate",
                    "result",
                    [("result", "pass" if authenticated else "fail"), ("time", self._now())],
                )
                if not authenticated:
                    return
            elif not authenticated:
                return  # anything before a passed identity check ends the connection
            elif kind == ("heart_beat", "notify"):
                self.tally.heartbeats += 1
                await self._reply(writer, ids, "heart_beat", "time", [("time", self._now())])
            elif op.tag == "data" and kind[1] in ("report", "continuous"):
                if not await self._report(writer, ids, op):
                    return
            else:
                return
            await self._notify()

    async def _report(
        self, writer: asyncio.StreamWriter, ids: tuple[str, str], op: ET.Element
    ) -> bool:
        self.tally.reports_seen += 1
        self.arrivals.append((op.get("operation", ""), op.findtext("time") or ""))
        if self.faults.drop_on_report > 0:
            self.faults.drop_on_report -= 1
            return False
        if self.faults.never_ack:
            return True
        if self.faults.ack_delay:
            await asyncio.sleep(self.faults.ack_delay)
        stamp = op.findtext("time") or ""
        if not self.faults.nack:
            report = ReceivedReport(
                building_id=ids[0],
                gateway_id=ids[1],
                operation=op.get("operation", ""),
                time=stamp,
                meters={
                    int(m.get("id", "0")): {
                        int(f.get("id", "0")): (
                            f.get("coding", ""),
                            float(f.text or "nan"),
                            f.get("error", ""),
                        )
                        for f in m.iter("function")
                    }
                    for m in op.iter("meter")
                },
                items={
                    e.get("code", ""): (float(e.text or "nan"), e.get("error", ""))
                    for e in op.iter("energy_item")
                },
            )
            if (ids[0], stamp) in self.accepted:
                self.tally.duplicates += 1
            self.accepted[(ids[0], stamp)] = report
            log.info(
                "platform server: %s %s of %s/%s: %d meters, items %s",
                report.operation,
                stamp,
                ids[0],
                ids[1],
                len(report.meters),
                {code: value for code, (value, _) in report.items.items()},
            )
        if self.variant.ack == "report_ack":
            fields = [("report_ack", "fail" if self.faults.nack else "pass")]
            await self._reply(writer, ids, "report_config", "report_ack", fields, data=True)
        else:
            fields = [("time", stamp), ("ack", "FAIL" if self.faults.nack else "OK")]
            await self._reply(writer, ids, "data", op.get("operation", ""), fields, data=True)
        return True

    def _now(self) -> str:
        moment = self.clock.wall() + timedelta(seconds=self.time_offset_s)
        return moment.astimezone(self.tz).strftime("%Y%m%d%H%M%S")

    # ---- frames -------------------------------------------------------------------------

    def _aes(self, data: bytes, *, encrypt: bool) -> bytes:
        cipher = Cipher(algorithms.AES(self.key), modes.CBC(self.iv))
        if encrypt:
            fill = -len(data) % 16
            if self.variant.fill == "pkcs7":
                data += bytes([fill or 16]) * (fill or 16)
            else:
                data += (b"0" if self.variant.fill == "ascii-zero" else b"\0") * fill
            enc = cipher.encryptor()
            return enc.update(data) + enc.finalize()
        dec = cipher.decryptor()
        plain = dec.update(data) + dec.finalize()
        if self.variant.fill == "pkcs7":
            return plain[: -plain[-1]]
        return plain[: plain.rfind(b">") + 1]

    async def _read(self, reader: asyncio.StreamReader) -> ET.Element | None:
        v = self.variant
        head = await reader.readexactly(8)
        length = int.from_bytes(head[4:], "little" if v.little_length else "big")
        if head[:4] != v.start or not 4 <= length <= 1 << 20:
            return None
        rest = await reader.readexactly(length + 6)
        body, crc, end = rest[:length], rest[length : length + 2], rest[length + 2 :]
        covered = head + body if v.crc_from_start else body
        if end != v.end or int.from_bytes(crc, "little" if v.little_crc else "big") != _crc(
            covered
        ):
            return None
        payload = body[4:]
        if not payload.lstrip().startswith(b"<"):
            payload = self._aes(payload, encrypt=False)
        text = payload.decode("gbk" if v.charset == "gb2312" else "utf-8")
        text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
        try:
            return ET.fromstring(text)
        except ET.ParseError:
            return None

    async def _reply(
        self,
        writer: asyncio.StreamWriter,
        ids: tuple[str, str],
        element: str,
        operation: str,
        fields: list[tuple[str, str]],
        *,
        data: bool = False,
    ) -> None:
        bad, self.faults.bad_reply = self.faults.bad_reply, None
        if bad == "wrong-ack-time" and not data:  # it waits for a report's ack
            bad, self.faults.bad_reply = None, bad
        if bad == "unknown":
            element, operation, fields = "surprise", "whatever", []
        if bad == "wrong-ack-time":
            fields = [("time", "20000101000000"), *fields[1:]]
        v = self.variant
        charset = "GB2312" if v.charset == "gb2312" else "UTF-8"
        xml = (
            f'<?xml version="1.0" encoding="{charset}"?><root><common>'
            f"<building_id>{ids[0]}</building_id><gateway_id>{ids[1]}</gateway_id>"
            f'<type>{operation}</type></common><{element} operation="{operation}">'
            + "".join(f"<{k}>{val}</{k}>" for k, val in fields)
            + f"</{element}></root>"
        )
        payload = xml.encode(v.charset)
        if bad == "not-xml":
            payload = b"<root><common>this is not closed"
        if v.cipher == "all" or (v.cipher == "data" and data):
            payload = self._aes(payload, encrypt=True)
        body = (
            random.randrange(1 << 32).to_bytes(4, "little" if v.little_sequence else "big")
            + payload
        )
        head = v.start + len(body).to_bytes(4, "little" if v.little_length else "big")
        crc = _crc(head + body if v.crc_from_start else body)
        if bad == "bad-crc":
            crc ^= 0x0101
        frame = head + body + crc.to_bytes(2, "little" if v.little_crc else "big") + v.end
        if bad == "huge":
            frame = v.start + (10 << 20).to_bytes(4, "little" if v.little_length else "big")
        await self._write(writer, frame)

    async def _write(self, writer: asyncio.StreamWriter, frame: bytes) -> None:
        if not self.faults.slow_link:
            writer.write(frame)
        else:
            for at in range(0, len(frame), 64):
                writer.write(frame[at : at + 64])
                await writer.drain()
                await asyncio.sleep(self.faults.slow_link)
        await writer.drain()


async def _serve_until_stopped(server: PlatformServer) -> None:
    async with server:
        log.info("platform server: listening on %s:%d", server.host, server.port)
        await asyncio.Event().wait()  # until Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """``python -m hil.platform_server --key-file F [--port 6001] [--variant NAME]``: the
    reference platform on its own, for the demo or a trial of a gateway's `platform:` section."""
    parser = argparse.ArgumentParser(prog="python -m hil.platform_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6001)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="guideline-a")
    parser.add_argument("--key-file", required=True, help="16-character AES key (and secret)")
    args = parser.parse_args(argv)
    with open(args.key_file, encoding="utf-8") as handle:
        key = handle.read().strip()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = PlatformServer(
        key=key.encode(), secret=key, variant=args.variant, host=args.host, port=args.port
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(server))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
