"""A saturated line and a saturating poll load, with real parts: pymodbus TCP servers on
loopback, the agent's own pollers, a store file in tmp_path and a real broker.

- On a line that cannot keep every device's interval, the devices take it in turn, a whole
  cycle each (a meter's requests back to back, never interleaved with another's), none starved;
  each poller counts the ticks it missed, once per tick, and `edge-agent status` says which
  device's interval was not kept.
- Under a poll load the store and the uplink cannot absorb, the pollers wait for them (and
  report overruns) and the uplink keeps publishing.

Assertions are on counts and order, never on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import itertools
import json
import struct
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.config.loader import load_config_text
from agent.core.clock import system_clock
from agent.core.record import Reading
from agent.service import Agent
from agent.sources.compose import open_devices, open_links
from agent.sources.poller import IntervalPoller
from agent.status import print_status, status_report
from agent.store import Store, facade
from tests.conftest import MosquittoBroker, subscribe
from tests.helpers import discard

# Three float32 points per meter, more than 125 registers apart: three requests per cycle.
CLUSTER_STARTS = (0, 200, 400)


def meter_words(unit: int, points: int) -> list[int]:
    words: list[int] = []
    for i in range(points):
        words += struct.unpack(">HH", struct.pack(">f", 230.0 + unit + i / 10))
    return words


@contextlib.asynccontextmanager
async def meters(
    units: int, *, latency: float, points: int = 1, starts: tuple[int, ...] = CLUSTER_STARTS
) -> AsyncIterator[tuple[int, list[tuple[int, int]]]]:
    """A Modbus TCP server on loopback whose units 1..``units`` each hold ``points`` float32
    points at every cluster start; yields its port and the log of (unit, address) of every
    request it answered, in order."""
    answered: list[tuple[int, int]] = []

    async def action(unit: int, _fc: int, _start: int, address: int, *_: object) -> None:
        answered.append((unit, address))
        if latency:
            await asyncio.sleep(latency)

    def meter(unit: int) -> SimDevice:
        holding = [
            SimData(address=start, values=meter_words(unit, points), datatype=DataType.REGISTERS)
            for start in starts
        ]
        bits = [SimData(address=0, count=16, values=False, datatype=DataType.BITS)]
        none = [SimData(address=0, count=1, datatype=DataType.INVALID)]
        return SimDevice(
            id=unit,
            simdata=(bits, bits, holding, none),  # type: ignore[arg-type]
            action=functools.partial(action, unit),
        )

    server = ModbusTcpServer(
        context=[meter(u) for u in range(1, units + 1)], address=("127.0.0.1", 0)
    )
    await server.serve_forever(background=True)
    try:
        port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield int(port), answered
    finally:
        await server.shutdown()


def site_yaml(
    port: int,
    *,
    units: int,
    lines: int = 1,
    interval: str,
    points: int = 1,
    mqtt_url: str | None = None,
) -> str:
    text = ["site: {id: fair, name: Fairness}", "gateway: {id: gw1}", "store: {path: readings.db}"]
    if mqtt_url is not None:
        text.append(f"uplink: {{url: '{mqtt_url}', topic_prefix: t}}")
    text.append("buses:")
    text += [
        f"  line{n}: {{kind: modbus_tcp, host: 127.0.0.1, port: {port}, timeout: 1s}}"
        for n in range(lines)
    ]
    text.append("devices:")
    for unit in range(1, units + 1):
        text += [
            f"  - name: m{unit}",
            f"    bus: line{unit % lines}",
            f"    unit_id: {unit}",
            f"    interval: {interval}",
            "    points:",
        ]
        text += [
            f"      c{start}_{i}: {{register: {start + 2 * i}, type: float32, unit: W}}"
            for start in CLUSTER_STARTS
            for i in range(points)
        ]
    return "\n".join(text) + "\n"


async def test_devices_on_a_saturated_line_take_it_in_turn_a_whole_cycle_each() -> None:
    """Six meters of three requests each at 5 ms per request on one connection, every 50 ms:
    a round of the line takes about twice the interval."""
    units, interval, rounds = 6, 0.05, 6
    async with meters(units, latency=0.005) as (port, answered):
        config = load_config_text(
            site_yaml(port, units=units, interval="50ms"), filename="site.yaml"
        )
        async with contextlib.AsyncExitStack() as stack:
            links = await open_links(config.buses, stack)
            devices = await open_devices(config.devices, links, stack=stack, clock=system_clock())
            pollers = [IntervalPoller(d, sink=discard) for d in devices.values()]
            started = time.monotonic()
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(p.run()) for p in pollers]
                async with asyncio.timeout(30):
                    while len(answered) < units * len(CLUSTER_STARTS) * rounds:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                for task in tasks:
                    task.cancel()
            elapsed = time.monotonic() - started

    # Each device's requests come back to back: a whole cycle per turn (the last may be cut).
    turns = [(unit, len(list(run))) for unit, run in itertools.groupby(u for u, _ in answered)]
    assert all(length == len(CLUSTER_STARTS) for _, length in turns[:-1]), turns
    # ... and the turns go round: every run of six consecutive turns has every device.
    order = [unit for unit, _ in turns]
    for i in range(len(order) - units + 1):
        assert sorted(order[i : i + units]) == list(range(1, units + 1)), order
    cycles = [p.health.cycles for p in pollers]
    assert max(cycles) - min(cycles) <= 1, cycles
    for poller in pollers:
        health = poller.health
        # Every interval was missed, and said so: once per tick, not once per point (a tick is
        # kept by a cycle or counted missed, never both: the misses are at most the ticks that
        # passed).
        assert health.overruns > 0, poller.name
        assert health.overruns <= elapsed / interval + 1, (poller.name, health)
        assert health.missed_interval == interval
        assert health.last_overrun_ms is not None


async def test_a_long_read_gives_way_to_a_waiting_device() -> None:
    """A device whose cycle is thirty requests of 20 ms keeps the bus for half a second at
    most: a device waiting meanwhile goes before the long read ends."""
    starts = tuple(200 * n for n in range(30))
    async with meters(2, latency=0.02, starts=starts) as (port, answered):
        text = [
            f"buses: {{line: {{kind: modbus_tcp, host: 127.0.0.1, port: {port}, timeout: 1s}}}}",
            "devices:",
            "  - {name: long, bus: line, unit_id: 1, interval: 60s, points: {"
            + ", ".join(f"c{a}: {{register: {a}, type: float32}}" for a in starts)
            + "}}",
            "  - {name: short, bus: line, unit_id: 2, interval: 60s, "
            "points: {c0: {register: 0, type: float32}}}",
        ]
        config = load_config_text(
            "site: {id: s, name: S}\ngateway: {id: gw1}\n" + "\n".join(text) + "\n",
            filename="site.yaml",
        )
        async with contextlib.AsyncExitStack() as stack:
            links = await open_links(config.buses, stack)
            devices = await open_devices(config.devices, links, stack=stack, clock=system_clock())
            async with asyncio.TaskGroup() as group:  # one cycle each, started together
                group.create_task(devices["long"].read())
                group.create_task(devices["short"].read())
    order = [unit for unit, _ in answered]
    assert order.count(1) == len(starts)
    assert order.count(2) == 1
    short_at = order.index(2)
    assert order[:short_at] == [1] * short_at
    assert 2 <= short_at < len(starts), order  # the long read kept the bus, but not to the end


async def test_status_names_the_devices_whose_interval_was_not_kept(tmp_path: Path) -> None:
    units = 3
    async with meters(units, latency=0.005) as (port, _):
        config = load_config_text(
            site_yaml(port, units=units, interval="20ms"), filename="site.yaml"
        )
        agent = Agent(config, data_dir=tmp_path)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(agent.run(stop))
            async with asyncio.timeout(20):
                await agent.started.wait()
                while min(p.health.cycles for p in agent.pollers) < 5:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            stop.set()
    overruns = {p.name: p.health.overruns for p in agent.pollers}
    assert all(overruns.values()), overruns

    report = status_report(agent.db_path)
    for name, count in overruns.items():
        late = report["devices"][name]["overruns"]
        assert late["ticks_missed"] == count  # the last counts, written at the clean stop
        assert late["interval_s"] == 0.02
    out = io.StringIO()
    print_status(agent.db_path, as_json=False, out=out)
    text = out.getvalue()
    assert text.count("interval 0.02 s not kept") == units, text
    for count in overruns.values():
        assert f"{count} ticks missed" in text, text


async def test_the_uplink_publishes_under_a_saturating_poll_load(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve meters of 120 points on four connections, polled every 10 ms with no latency:
    far more readings than one process can poll, store and publish (here the simulated meters
    and the subscriber share the agent's process too). The live backlog the uplink may leave is
    made small so that what reaches the broker is never more than about a second old."""
    monkeypatch.setattr(facade, "MAX_UNACKED_LIVE", 2_000)
    units, points = 12, 40
    async with (
        meters(units, latency=0.0, points=points) as (port, _),
        subscribe(mosquitto, "t/fair/gw1/readings") as inbox,
    ):
        config = load_config_text(
            site_yaml(
                port, units=units, lines=4, interval="10ms", points=points,
                mqtt_url=mosquitto.url,
            ),
            filename="site.yaml",
        )  # fmt: skip
        agent = Agent(config, data_dir=tmp_path)
        stop = asyncio.Event()
        seen: set[str] = set()

        def every_meter_twice(messages: list[object]) -> bool:
            counts: dict[str, int] = {}
            for message in messages:
                for reading in json.loads(message.payload)["readings"]:  # type: ignore[attr-defined]
                    counts[reading["device"]] = counts.get(reading["device"], 0) + 1
            seen.update(counts)
            return len(counts) == units and min(counts.values()) >= 2 * 3 * points

        async with asyncio.TaskGroup() as group:
            group.create_task(agent.run(stop))
            await inbox.wait_for(every_meter_twice, within=30)
            stop.set()
    # The load was saturating: the pollers could not keep their interval.
    assert all(p.health.overruns for p in agent.pollers)
    assert agent.uplink is not None
    assert agent.uplink.sent > 0


async def test_appends_wait_for_a_held_up_writer_never_for_a_backfilling_uplink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling gives way to a writer that cannot keep up (memory stays bounded), but never to
    an uplink that is behind: after an outage the uplink acknowledges old readings for a long
    while, and holding the pollers up then would leave gaps in what the meters measured."""
    monkeypatch.setattr(facade, "MAX_QUEUED_JOBS", 2)
    seq = iter(range(10**6))

    def batch(count: int) -> list[Reading]:
        return [
            Reading("m1", f"p{next(seq)}", 1_700_000_000_000 + i, 1.0, "W") for i in range(count)
        ]

    async with Store(tmp_path / "readings.db") as store:
        # A backlog of 30,000 (an outage), then the uplink backfilling the oldest in order:
        # appends go on at once.
        for _ in range(30):
            await store.append(batch(1_000))
            await store.flush()
        store.uplink_connected(store.last_seq + 1)  # as the uplink does when it connects
        await store.mark_synced(list(range(1, 11)))
        for _ in range(20):
            async with asyncio.timeout(2):
                await store.append(batch(10))
            await store.mark_synced([store.last_seq - 25_000])
        await store.flush()
        assert store.last_seq == 30_200
        # The writer held up (a stalled disk): the queue fills and an append waits.
        gate, entered = threading.Event(), threading.Event()

        def hold(_writer: object) -> bool:
            entered.set()
            return gate.wait(10)

        held = asyncio.create_task(store._call("held up", hold))
        assert await asyncio.to_thread(entered.wait, 5)
        for _ in range(2):
            await store.append(batch(1))
        waiting = asyncio.create_task(store.append(batch(1)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        # A stop while it waits: what it read is stored all the same.
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        gate.set()
        await held
        await store.flush()
        assert store.last_seq == 30_203


async def test_appends_wait_for_an_uplink_that_acknowledges_but_cannot_keep_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(facade, "MAX_UNACKED_LIVE", 100)
    now = [1000.0]  # the store's monotonic clock, moved by hand
    seq = iter(range(10**6))

    def batch(count: int) -> list[Reading]:
        return [
            Reading("m1", f"p{next(seq)}", 1_700_000_000_000 + i, 1.0, "W") for i in range(count)
        ]

    async with Store(tmp_path / "readings.db", monotonic=lambda: now[0]) as store:
        # An outage's backlog of 500; the uplink connects and acknowledges the oldest of it:
        # polling goes on while the backlog is worked down.
        await store.append(batch(500))
        await store.flush()
        store.uplink_connected(501)
        await store.mark_synced(list(range(1, 11)))
        await store.append(batch(100))
        await store.flush()
        # Then the polling outruns it: 101 committed since the connection, none acknowledged,
        # and the next append waits until the uplink has caught up.
        await store.append(batch(1))
        await store.flush()
        waiting = asyncio.create_task(store.append(batch(1)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await store.mark_synced(list(range(501, 560)))
        async with asyncio.timeout(5):
            await waiting
        # An uplink that stops acknowledging (the broker went away) holds nothing up.
        await store.append(batch(300))
        await store.flush()
        waiting = asyncio.create_task(store.append(batch(1)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        now[0] += 10
        async with asyncio.timeout(5):
            await waiting
        await store.flush()
        assert store.last_seq == 903
