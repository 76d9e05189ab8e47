"""Shared fixtures: a real Mosquitto broker on a free loopback port, and an MQTT subscriber.

    async def test_x(mosquitto):
        async with subscribe(mosquitto, "bea/#") as sub:
            ...                                     # publish something
            await sub.wait_for(lambda msgs: len(msgs) >= 3, within=5)

Every clock of a test run can start at a chosen moment (see "Tests at a chosen moment" in the
README): ``pytest --clock-start=sunday-night`` or ``--clock-start=2026-02-17T10:00+08:00``, or the
same in ``EDGE_AGENT_TEST_CLOCK_START``. The offset from now to that moment is computed once and
exported as ``EDGE_AGENT_CLOCK_OFFSET``, which every `system_clock()` of the run reads, in this
process and in the agents and CLIs it starts, so they all agree on the time.

The broker can be stopped, started again on the same port, frozen (SIGSTOP: connections stay
open but nothing answers) and thawed, for fault tests. `mosquitto_factory` makes more brokers, or
one with persistence (sessions and queued QoS 1 messages survive a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiomqtt
import pytest

from agent.core.clock import CLOCK_OFFSET_ENV, system_clock
from hil.net import free_port
from tests.helpers import find_program

__all__ = ["Collector", "MosquittoBroker", "subscribe"]

_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0

CLOCK_START_ENV = "EDGE_AGENT_TEST_CLOCK_START"
# Moments where a wall-clock dependence shows itself (2026 calendar: State Council notice of
# 2025-11-04): evening and weekend outside office hours, a Spring Festival day off, a make-up
# working Saturday (调休), and the last seconds of a UTC year (already the new year in Beijing).
CLOCK_MOMENTS = {
    "sunday-night": "2026-11-29T21:30:00+08:00",
    "spring-festival": "2026-02-17T10:00:00+08:00",
    "makeup-saturday": "2026-02-28T10:00:00+08:00",
    "utc-new-year": "2026-12-31T23:59:55+00:00",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-start",
        default=None,
        help="start every clock of the run at this moment: an ISO 8601 time with its offset, "
        f"or one of {', '.join(CLOCK_MOMENTS)} (also from ${CLOCK_START_ENV})",
    )


def _clock_start(text: str) -> datetime:
    moment = datetime.fromisoformat(CLOCK_MOMENTS.get(text, text))
    if moment.tzinfo is None:
        raise pytest.UsageError(
            f"--clock-start {text!r}: give the moment with its UTC offset, e.g. +08:00"
        )
    return moment


def pytest_configure(config: pytest.Config) -> None:
    text = config.getoption("--clock-start") or os.environ.get(CLOCK_START_ENV, "")
    if text:
        offset = _clock_start(text).timestamp() - time.time()
        os.environ[CLOCK_OFFSET_ENV] = f"{offset:.3f}"


def pytest_report_header(config: pytest.Config) -> str:
    clock = system_clock()
    if not clock.offset:
        return "clock: the real clock"
    return f"clock: started at {clock.wall().isoformat()} (offset {clock.offset:+.0f} s)"


def _find_mosquitto() -> str:
    return find_program("mosquitto", debian_path="/usr/sbin/mosquitto")



class MosquittoBroker:
    """One mosquitto process listening only on 127.0.0.1:<port>."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, persistence: bool = False) -> None:
        self.binary = _find_mosquitto()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistence = persistence
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            # As root, mosquitto would drop to the `mosquitto` user and lose access to workdir.
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type all",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 0"]
        else:
            lines.append("persistence false")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        return f"MosquittoBroker({self.url}, running={self.running}, frozen={self._frozen})"

    def start(self) -> None:
        """Start the broker (again, on the same port) and wait until it accepts connections."""
        if self.running:
            return
        with self.log.open("ab") as log_file:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                pytest.fail(
                    f"mosquitto exited at start ({self._proc.returncode}):\n{self.log_text()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        self.stop()
        pytest.fail(
            f"mosquitto did not listen on {self.url} within {_START_TIMEOUT_S} s:\n"
            f"{self.log_text()}"
        )

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL) and wait: clients see the link drop."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if self._frozen:
            proc.send_signal(signal.SIGCONT)
            self._frozen = False
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL: the broker dies without saving anything."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT_S)
        self._frozen = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: sockets stay open, the kernel still accepts connections, nothing answers."""
        assert self._proc is not None, "the broker is not running"
        assert self.running, "the broker is not running"
        self._proc.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        if self._proc is not None and self._frozen:
            self._proc.send_signal(signal.SIGCONT)
        self._frozen = False

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Start brokers on demand: ``mosquitto_factory(persistence=True)``; all stop at the end."""
    brokers: list[MosquittoBroker] = []

    def make(*, persistence: bool = False) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto{len(brokers)}", persistence=persistence)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A fresh broker for this test (function scope: stopping or freezing it harms no one)."""
    return mosquitto_factory()


@dataclass
class Collector:
    """Messages received by a `subscribe()` block, in arrival order."""

    messages: list[aiomqtt.Message] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, message: aiomqtt.Message) -> None:
        self.messages.append(message)
        self._changed.set()

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [
            bytes(m.payload)  # type: ignore[arg-type]
            for m in self.messages
            if topic is None or m.topic.matches(topic)
        ]

    async def wait_for(
        self, predicate: Callable[[list[aiomqtt.Message]], bool], *, within: float
    ) -> list[aiomqtt.Message]:
        """Wait until ``predicate(messages)`` holds; fail the test after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not predicate(self.messages):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(
                f"condition not met within {within} s; got {len(self.messages)} messages:"
                f" {[(str(m.topic), m.payload) for m in self.messages][-5:]}"
            )
        return self.messages


@contextlib.asynccontextmanager
async def subscribe(
    broker: MosquittoBroker, *topics: str, client_id: str | None = None
) -> AsyncIterator[Collector]:
    """Subscribe (QoS 1) and collect messages in the background until the block ends.

    With ``client_id`` the session is persistent (clean_session false): on a broker with
    persistence, messages published while the subscriber was cut off are delivered when it
    reconnects. The subscriber reconnects by itself when the broker goes away and comes back.
    """
    collector = Collector()
    subscribed = asyncio.Event()

    async def listen() -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    broker.host,
                    broker.port,
                    identifier=client_id,
                    clean_session=False if client_id else None,
                    timeout=2,
                ) as client:
                    for topic in topics:
                        await client.subscribe(topic, qos=1)
                    subscribed.set()
                    async for message in client.messages:
                        collector.add(message)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    task = asyncio.create_task(listen(), name=f"test-subscriber{topics}")
    try:
        async with asyncio.timeout(5):
            await subscribed.wait()
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def mqtt_subscribe() -> Callable[..., contextlib.AbstractAsyncContextManager[Collector]]:
    """`subscribe` as a fixture, for tests that prefer not to import from conftest."""
    return subscribe
