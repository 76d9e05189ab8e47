"""The faults the soak (hil.soak) injects into a running agent, each undone after a while.

- `Broker`: a real Mosquitto on a free loopback port, stopped and started again on the same port
  (what a platform-side broker restart looks like to the gateway: the link drops, reconnects).
- device drop: one simulated device stops answering (`SimulatedBuilding.set_offline`, silence,
  as a dead RS-485 meter) and comes back.
- `DiskPressure`: the agent's RLIMIT_FSIZE lowered to one byte with prlimit(2), so that every
  write that grows a file fails with EFBIG, as on a full or read-only SD card; no root is needed
  to lower a soft limit of one's own process and to raise it again up to the hard limit.
  (CPython ignores SIGXFSZ, so the agent sees the error instead of being killed.)

Each fault is an async context manager: entering injects it, leaving undoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import resource
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from hil.net import free_port
from hil.server import SimulatedBuilding

__all__ = [
    "FAULT_KINDS",
    "Broker",
    "DiskPressure",
    "FaultKind",
    "ScheduledFault",
    "device_drop",
    "fault_plan",
]

FaultKind = Literal["broker_restart", "device_drop", "disk_full"]
FAULT_KINDS: tuple[FaultKind, ...] = ("broker_restart", "device_drop", "disk_full")

_BROKER_START_TIMEOUT_S = 5.0
_BROKER_STOP_TIMEOUT_S = 5.0



class Broker:
    """One mosquitto process listening only on 127.0.0.1:<port>, which can be restarted."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).is_file():
            raise FileNotFoundError("the soak needs mosquitto (apt install mosquitto)")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            # As root, mosquitto would drop to the `mosquitto` user and lose access to workdir.
            f"user {getpass.getuser()}\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n",
            encoding="utf-8",
        )
        self._proc: asyncio.subprocess.Process | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start (again, on the same port) and return once it accepts connections."""
        if self._proc is not None and self._proc.returncode is None:
            return
        with self.log.open("ab") as log_file:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                "-c",
                str(self.conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BROKER_START_TIMEOUT_S
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self.log}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), timeout=0.5
                )
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.url}; see {self.log}")

    async def stop(self) -> None:
        """SIGTERM (SIGKILL after a while) and wait: clients see the link drop."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(_BROKER_STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """The broker is away while inside; started again on the same port on leaving."""
        await self.stop()
        try:
            yield
        finally:
            await self.start()
            self.restarts += 1


@contextlib.asynccontextmanager
async def device_drop(sim: SimulatedBuilding, device: str) -> AsyncIterator[None]:
    """``device`` stops answering (silence) while inside, and answers again on leaving."""
    sim.set_offline(device, True, reply="silence")
    try:
        yield
    finally:
        sim.set_offline(device, False)


class DiskPressure:
    """Writes that grow a file fail with EFBIG in process ``pid`` while inside."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._saved: tuple[int, int] | None = None

    async def __aenter__(self) -> Self:
        soft, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        self._saved = (soft, hard)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (1, hard))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:
            # The process may have exited meanwhile: nothing left to restore then.
            with contextlib.suppress(ProcessLookupError):
                resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self._saved)
            self._saved = None


@dataclass(frozen=True)
class ScheduledFault:
    """One injection: ``kind`` at ``at`` seconds into the run, for ``lasting`` seconds."""

    at: float
    kind: FaultKind
    lasting: float
    target: str = ""  # the device of a device drop

    def label(self) -> str:
        return f"{self.kind}({self.target})" if self.target else self.kind


def fault_plan(
    *,
    duration: float,
    every: float,
    lasting: float,
    kinds: Sequence[FaultKind] = FAULT_KINDS,
    devices: Sequence[str] = ("main_meter",),
    first_at: float | None = None,
    drop_lasting: float | None = None,
) -> list[ScheduledFault]:
    """One fault every ``every`` seconds, the kinds (and the dropped devices) in turn, each ending
    before the next starts and before the run ends (the agent is given as long as the fault
    lasted to recover). Device drops last ``drop_lasting`` when given."""
    lengths = {kind: lasting for kind in FAULT_KINDS}
    if drop_lasting is not None:
        lengths["device_drop"] = drop_lasting
    if every <= 0 or min(lengths.values()) <= 0:
        raise ValueError("the fault period and lengths must be positive")
    if max(lengths.values()) >= every:
        raise ValueError(f"a fault must end before the next starts ({every:g} s later)")
    plan: list[ScheduledFault] = []
    at = every if first_at is None else first_at
    drops = 0
    while kinds and at + 2 * lengths[kinds[len(plan) % len(kinds)]] <= duration:
        kind = kinds[len(plan) % len(kinds)]
        target = ""
        if kind == "device_drop":
            target = devices[drops % len(devices)]
            drops += 1
        plan.append(ScheduledFault(at=at, kind=kind, lasting=lengths[kind], target=target))
        at += every
    return plan
