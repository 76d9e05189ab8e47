"""systemd's watchdog (agent.watchdog, agent.daemon): WATCHDOG=1 only while the agent makes
progress, heard on a stand-in NOTIFY_SOCKET (a real AF_UNIX datagram socket in tmp_path).

A blocked event loop needs real time (WATCHDOG_USEC of 1 s: a ping every 0.5 s); a stalled
poller is judged on an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config.loader import load_config_text
from agent.core.clock import ManualClock, system_clock
from agent.core.errors import DeviceUnavailableError
from agent.core.record import Reading
from agent.core.source import PointInfo
from agent.daemon import AgentService
from agent.sources.poller import IntervalPoller
from agent.store import Store
from agent.watchdog import (
    POLLER_GRACE_S,
    STORE_STALL_S,
    PollerProgress,
    StoreProbe,
    TaskAlive,
    Watchdog,
    watchdog_interval,
)
from hil.server import SimulatedBuilding


@dataclass
class Notifications:
    """Datagrams received on the stand-in NOTIFY_SOCKET, with when they arrived."""

    received: list[tuple[float, str]] = field(default_factory=list)

    def states(self, name: str, *, after: float = 0.0, before: float = float("inf")) -> list[str]:
        return [
            state
            for at, state in list(self.received)
            if after < at < before and state.startswith(f"{name}=")
        ]

    async def wait_for(self, state: str) -> None:
        async with asyncio.timeout(10):
            while not any(s == state for _, s in list(self.received)):  # noqa: ASYNC110 - a thread's list
                await asyncio.sleep(0.02)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Notifications]:
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(0.1)
    heard = Notifications()
    done = threading.Event()

    def receive() -> None:  # a thread: it hears pings even while the loop is blocked
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                data = server.recv(4096)
                heard.received.append((time.monotonic(), data.decode()))

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield heard
    done.set()
    thread.join(5)
    server.close()


def test_the_interval_is_half_of_watchdog_usec_and_only_for_this_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


SITE = """
site: {{id: dog-test, name: Watchdog}}
store: {{batch_window: 100ms}}
buses:
  switchboard: {{kind: modbus_tcp, host: {host}, port: {port}, timeout: 200ms}}
  nowhere: {{kind: modbus_tcp, host: 127.0.0.1, port: {dead}, timeout: 200ms}}
devices:
  - {{name: main_meter, bus: switchboard, unit_id: 1, profile: eastron-sdm630, interval: 200ms}}
  - {{name: gone_meter, bus: nowhere, unit_id: 1, profile: eastron-sdm630, interval: 200ms}}
"""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def running_service(tmp_path: Path) -> AsyncIterator[AgentService]:
    """A real agent under AgentService with a 1 s watchdog: a meter that answers and one
    whose gateway refuses every connection (a stuck device: it must not stop the pings)."""
    async with SimulatedBuilding() as sim:
        host, port = sim.endpoints["switchboard"]
        text = SITE.format(host=host, port=port, dead=_closed_port())
        config_path = tmp_path / "site.yaml"
        config_path.write_text(text, encoding="utf-8")
        clock = system_clock()
        service = AgentService(
            config_path=config_path,
            data_dir=tmp_path / "data",
            stop=asyncio.Event(),
            reload=asyncio.Event(),
            clock=clock,
            watchdog=Watchdog(0.5, clock=clock),  # WATCHDOG_USEC=1000000
        )
        task = asyncio.create_task(service.run(load_config_text(text, filename=str(config_path))))
        try:
            yield service
        finally:
            service.stop.set()
            async with asyncio.timeout(10):
                await task


async def test_pings_while_healthy_none_while_the_loop_is_blocked(
    tmp_path: Path, notify_socket: Notifications, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_service(tmp_path) as service:
        await notify_socket.wait_for("READY=1")
        states = [state for _, state in notify_socket.received]
        # The start-up timeout was extended while the store opened, before the agent was ready.
        assert states.index("EXTEND_TIMEOUT_USEC=60000000") < states.index("READY=1")
        start = time.monotonic()
        await asyncio.sleep(1.6)
        assert service.agent is not None
        gone = next(p for p in service.agent.pollers if p.name == "gone_meter")
        assert gone.health.online is False, "the dead meter should be flagged, not waited for"
        assert len(notify_socket.states("WATCHDOG", after=start)) >= 2

        blocked_at = time.monotonic()
        time.sleep(2.0)  # noqa: ASYNC251 - the fault under test: this blocks the event loop
        unblocked_at = time.monotonic()
        # One ping may have been on its way as the block began; none after.
        assert notify_socket.states("WATCHDOG", after=blocked_at + 0.1, before=unblocked_at) == []
        await asyncio.sleep(1.2)
        assert notify_socket.states("WATCHDOG", after=unblocked_at), "pings resume"

    stuck = [r.getMessage() for r in caplog.records if "event loop has not run" in r.getMessage()]
    assert len(stuck) == 1, stuck
    assert "test_pings_while_healthy_none_while_the_loop_is_blocked" in stuck[0], stuck[0]


async def test_a_dead_source_task_stops_the_pings_and_says_which(
    tmp_path: Path, notify_socket: Notifications, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_service(tmp_path) as service:
        await notify_socket.wait_for("READY=1")
        await asyncio.sleep(0.6)
        assert service.agent is not None
        assert notify_socket.states("WATCHDOG"), "pings before the fault"
        task = service.agent.source_tasks[0]
        task.cancel()  # a source task that ends while the agent runs on
        ended_at = time.monotonic()
        await asyncio.sleep(1.5)
        # The tick already under way may still ping; none after.
        assert notify_socket.states("WATCHDOG", after=ended_at + 0.6) == []
    withheld = [r.getMessage() for r in caplog.records if "not telling systemd" in r.getMessage()]
    assert len(withheld) == 1, "logged once, not every tick"
    assert f"task {task.get_name()} was cancelled" in withheld[0]


START = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
POINTS = {"flow": PointInfo(unit="m3/h", interval=0.05)}


class HungDevice:
    """A driver that awaits a reply without a timeout: its poller never completes a cycle."""

    name = "hung_meter"
    points = POINTS

    async def read(self, names: Sequence[str]) -> list[Reading]:
        await asyncio.Event().wait()
        raise AssertionError("never")


class SilentDevice:
    """A device that does not answer (its read times out at once): a fault, not a stall."""

    name = "silent_meter"
    points = POINTS

    async def read(self, names: Sequence[str]) -> list[Reading]:
        raise DeviceUnavailableError(self.name, "no reply within 200 ms")


async def test_a_poller_that_never_completes_a_cycle_stops_the_pings_a_silent_device_does_not(
    notify_socket: Notifications, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START)
    hung = IntervalPoller(HungDevice(), sink=_discard, clock=clock)
    silent = IntervalPoller(SilentDevice(), sink=_discard, clock=clock)
    dog = Watchdog(15.0, clock=clock)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(p.run(), name=f"test[{p.name}].poll") for p in (hung, silent)]
        now = clock.monotonic()
        dog.watch(
            [TaskAlive(t) for t in tasks]
            + [PollerProgress(p, now=now) for p in (hung, silent)]
        )
        await asyncio.sleep(0.2)
        limit = PollerProgress(hung, now=now).limit()  # twice 50 ms, plus the grace
        assert limit == pytest.approx(POLLER_GRACE_S + 0.1)
        # The silent device is down: its poller retries less often and is allowed longer.
        assert PollerProgress(silent, now=now).limit() > limit
        assert dog.tick(), "nothing has stalled yet"
        clock.advance(limit - 1)
        assert dog.tick()
        for _ in range(3):  # the silent device's poller retries (real time) and ticks on
            cycles = silent.health.cycles
            async with asyncio.timeout(5):
                while silent.health.cycles == cycles:  # noqa: ASYNC110 - the poller has no such event
                    await asyncio.sleep(0.05)
            clock.advance(limit / 2)
            assert dog.stalls() == [
                "device hung_meter's poller has not completed a cycle for "
                f"{clock.monotonic() - now:.0f} s (at most {limit:.0f} s expected)"
            ]
        assert not dog.tick()
        for task in tasks:
            task.cancel()
    assert notify_socket.states("WATCHDOG") == ["WATCHDOG=1", "WATCHDOG=1"]
    assert any("hung_meter's poller" in r.getMessage() for r in caplog.records)
    assert silent.health.online is False


async def _discard(readings: Sequence[Reading]) -> None:
    pass


async def test_a_store_writer_that_stops_answering_stops_the_pings(tmp_path: Path) -> None:
    """The writer thread held up in one job (as by I/O that never returns on a dying card): the
    probe's query waits behind it, and after STORE_STALL_S on the injected clock that is a
    stall; once the writer moves again, the next answer clears it."""
    clock = ManualClock(START)
    released = threading.Event()
    async with Store(tmp_path / "readings.db", clock=clock) as store:
        probe = StoreProbe(store, clock=clock, every=15.0)
        dog = Watchdog(15.0, clock=clock, send=lambda state: True)
        dog.watch([probe])
        # Stand-in for a write that hangs: the only way into the writer thread is a job.
        held = asyncio.ensure_future(store._call("a hung write", lambda _w: released.wait(30)))
        probing = asyncio.create_task(probe.run(), name="test[probe]")
        try:
            await asyncio.sleep(0.05)
            assert dog.tick()
            clock.advance(STORE_STALL_S + 1)
            stalled = f"the store's writer has not answered for {STORE_STALL_S + 1:.0f} s"
            assert dog.stalls() == [stalled]
            assert not dog.tick()
        finally:
            released.set()
            await held
        async with asyncio.timeout(5):
            while dog.stalls():  # noqa: ASYNC110 - the probe's answer has no event
                await asyncio.sleep(0.01)
        assert dog.tick()
        probing.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # we cancelled it ourselves
            await probing
