"""One DL/T 645 meter on a serial line: its points read in as few frames as it accepts.

A read of several points first asks the profile's block identifiers (…FF00: one frame returns a
group, e.g. the three phase voltages) that cover at least two wanted points, then single
identifiers for the rest. What the meter refuses with an abnormal reply saying "no requested
data" (D1H / C1H with error-word bit 1) is learned and kept in the device's saved state, so a
block the meter lacks is never asked again (its points are asked one by one) and an identifier
it lacks becomes a bad reading without a frame, as the Modbus planner learns refusals. Any other
abnormal reply ("other error", "unauthorised") is a bad reading this time only: it says nothing
lasting about the identifier. A reply with a digit that is not BCD or a wrong checksum is a bad
reading, never a number. A reply that echoes another identifier (a slow meter's late answer to
an abandoned request) is skipped while the awaited one is still expected. Only a meter that does
not answer at all raises DeviceUnavailableError.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from agent.core.clock import Clock, system_clock
from agent.core.errors import DeviceUnavailableError
from agent.core.record import Quality, Reading, Value
from agent.core.serial_port import LineClient, SerialSettings
from agent.core.source import PointInfo, SavedState
from drivers.dlt645.data import BlockEntry, DataEntry, decode_value
from drivers.dlt645.errors import AbnormalReplyError, BcdError, Dlt645Error
from drivers.dlt645.frame import (
    DI_LENGTH,
    Frame,
    FrameDecoder,
    Version,
    parse_read_reply,
    read_request,
)
from drivers.dlt645.profiles import Dlt645Profile, load_profile
from drivers.dlt645.spec import Dlt645Device

__all__ = ["Dlt645Meter", "reply_matcher"]

log = logging.getLogger(__name__)



# Error-word bit 1, "no requested data": the meter lacks the identifier (errors.ERROR_WORD_BITS).
NO_REQUESTED_DATA = 0x02


def reply_matcher(
    address: str, function: int, *, di: int | None = None, version: Version = "2007"
) -> FrameMatcher:
    """A ``complete`` function for LineClient.transact: the first frame from the meter at
    ``address`` answering ``function`` and, when ``di`` is given, echoing it (a late reply to
    another request, noise and frames of other meters are skipped)."""
    return FrameMatcher(address, function, di=di, version=version)


class FrameMatcher:
    """Feeds received bytes to a fresh decoder and picks the awaited reply."""

    def __init__(
        self, address: str, function: int, *, di: int | None = None, version: Version = "2007"
    ) -> None:
        self.address = address
        self.function = function
        self.echo = None if di is None else di.to_bytes(DI_LENGTH[version], "little")
        self.decoder = FrameDecoder()
        self._seen = 0

    def __call__(self, received: bytes) -> Frame | None:
        chunk, self._seen = received[self._seen :], len(received)
        for frame in self.decoder.feed(chunk):
            if (
                frame.is_from_meter
                and frame.function == self.function
                and frame.address == self.address
                # An abnormal reply carries no DI: it cannot be told from a late one.
                and (self.echo is None or frame.is_abnormal or frame.data.startswith(self.echo))
            ):
                return frame
        return None


class Dlt645Meter:
    """The driver's polled device (agent.core.source.PolledDevice). No I/O until a read."""

    def __init__(
        self,
        config: Dlt645Device,
        line: LineClient,
        *,
        state: SavedState | None = None,
        saved: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.line = line
        self.profile: Dlt645Profile = load_profile(config.profile)
        self._state = state
        self._clock = clock if clock is not None else system_clock()
        self.settings = SerialSettings.for_device(
            line.line,
            baudrate=config.baudrate,
            parity=config.parity,
            default_baudrate=config.default_baudrate,
            default_parity=config.default_parity,
        )
        names = config.point_names()
        self._entries = {name: self.profile.entries[name] for name in names}
        self._points: Mapping[str, PointInfo] = MappingProxyType(
            {n: PointInfo(unit=e.unit, interval=config.interval) for n, e in self._entries.items()}
        )
        # What the meter refused (abnormal reply), learned and saved: never asked again.
        self.unsupported: set[int] = set()
        self.no_blocks: set[int] = set()
        if saved:
            self._restore(saved)
        self.frames = 0  # requests sent, for benchmarks and the live view

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def points(self) -> Mapping[str, PointInfo]:
        return self._points

    async def write(self, point: str, value: Value) -> None:
        raise ValueError(f"DL/T 645 point {point!r} of {self.name!r} is read-only here")

    # ---- reading ------------------------------------------------------------------------------

    def plan(self, names: Sequence[str]) -> list[BlockEntry | DataEntry]:
        """The frames a read of ``names`` takes: usable blocks first, then single identifiers
        (identifiers the meter is known to lack take none)."""
        wanted = [n for n in dict.fromkeys(names) if n in self._entries]
        left = set(wanted)
        steps: list[BlockEntry | DataEntry] = []
        if self.config.blocks:
            for block in self.profile.blocks:
                if block.di in self.no_blocks:
                    continue
                covered = [n for n in self.profile.block_points(block) if n in left]
                if len(covered) >= 2:
                    steps.append(block)
                    left -= set(covered)
        steps.extend(
            self._entries[n]
            for n in wanted
            if n in left and self._entries[n].di not in self.unsupported
        )
        return steps

    async def read(self, points: Sequence[str] | None = None) -> list[Reading]:
        names = list(points) if points is not None else list(self._entries)
        values: dict[str, Value] = {}
        failed: dict[str, str] = {}
        answered = False
        try:
            for step in self.plan(names):
                if isinstance(step, BlockEntry):
                    got = await self._read_block(step, failed)
                    if got is None:  # refused: its points one by one, now and from now on
                        for name in self.profile.block_points(step):
                            if name in names and name not in values:
                                await self._read_single(self._entries[name], values, failed)
                    else:
                        values.update({k: v for k, v in got.items() if k in names})
                else:
                    await self._read_single(step, values, failed)
                answered = True
        except DeviceUnavailableError as exc:
            await self._save_if_learned()
            readings = self._readings(names, values, failed) if answered else []
            raise DeviceUnavailableError(
                self.name, exc.reason, readings=[r for r in readings if r.point in values]
            ) from exc
        await self._save_if_learned()
        return self._readings(names, values, failed)

    def _readings(
        self, names: Sequence[str], values: Mapping[str, Value], failed: Mapping[str, str]
    ) -> list[Reading]:
        ts = self._clock.now_ms()
        out = []
        for name in names:
            entry = self._entries.get(name)
            unit = entry.unit if entry is not None else ""
            if name in values:
                out.append(Reading(self.name, name, ts, values[name], unit, Quality.GOOD))
            else:
                out.append(Reading(self.name, name, ts, None, unit, Quality.BAD))
        return out

    async def _request(self, di: int) -> bytes:
        """The value bytes of a read of ``di``; AbnormalReplyError / Dlt645Error on a reply
        that carries no value, DeviceUnavailableError when nothing answers."""
        version = self.profile.version
        request = read_request(
            self.config.address, di, version=version, preamble=self.config.preamble
        )
        function = 0x11 if version == "2007" else 0x01
        self.frames += 1
        frame = await self.line.transact(
            self.name,
            request,
            reply_matcher(self.config.address, function, di=di, version=version),
            settings=self.settings,
            timeout=self.config.timeout,
        )
        return parse_read_reply(frame, di, version=version)

    async def _read_block(
        self, block: BlockEntry, failed: dict[str, str]
    ) -> dict[str, Value] | None:
        try:
            raw = await self._request(block.di)
            decoded: dict[str, Value] = {**self.profile.decode_block(block, raw)}
        except AbnormalReplyError as exc:
            if not exc.error_word & NO_REQUESTED_DATA:
                # Not "I lack it": read its points one by one this time only.
                log.debug("meter %s: block %s refused: %s", self.name, block.di_text, exc)
                return None
            log.info(
                "meter %s: block %s refused (%s); reading its points one by one from now on",
                self.name,
                block.di_text,
                ", ".join(exc.reasons) or "abnormal reply",
            )
            self.no_blocks.add(block.di)
            self._learned = True
            return None
        except (Dlt645Error, ValueError) as exc:
            # A bad digit or a short block: its points are read one by one this time only.
            log.debug("meter %s: block %s unusable: %s", self.name, block.di_text, exc)
            for name in self.profile.block_points(block):
                failed.setdefault(name, str(exc))
            return None
        return decoded

    async def _read_single(
        self, entry: DataEntry, values: dict[str, Value], failed: dict[str, str]
    ) -> None:
        name = next(n for n, e in self._entries.items() if e.di == entry.di)
        try:
            raw = await self._request(entry.di)
            values[name] = decode_value(entry, raw)
            failed.pop(name, None)
        except AbnormalReplyError as exc:
            if not exc.error_word & NO_REQUESTED_DATA:
                log.debug("meter %s: %s refused: %s", self.name, name, exc)
                failed[name] = str(exc)
                return
            log.info(
                "meter %s: %s (%s) refused (%s); not asked again",
                self.name,
                name,
                entry.di_text,
                ", ".join(exc.reasons) or "abnormal reply",
            )
            self.unsupported.add(entry.di)
            self._learned = True
            failed[name] = "refused by the meter"
        except BcdError as exc:
            log.warning("meter %s: %s is not a number: %s", self.name, name, exc)
            failed[name] = str(exc)
        except (Dlt645Error, ValueError) as exc:
            log.debug("meter %s: %s unusable: %s", self.name, name, exc)
            failed[name] = str(exc)

    # ---- learned refusals ---------------------------------------------------------------------

    _learned = False

    def _restore(self, saved: str) -> None:
        try:
            data = json.loads(saved)
            self.unsupported = {int(d) for d in data.get("unsupported", [])}
            self.no_blocks = {int(d) for d in data.get("no_blocks", [])}
        except (ValueError, TypeError, AttributeError):
            log.warning("meter %s: saved refusals are unreadable; learning afresh", self.name)

    def saved(self) -> str:
        return json.dumps(
            {"unsupported": sorted(self.unsupported), "no_blocks": sorted(self.no_blocks)}
        )

    async def _save_if_learned(self) -> None:
        if self._learned and self._state is not None:
            self._learned = False
            await self._state.save(self.saved())
