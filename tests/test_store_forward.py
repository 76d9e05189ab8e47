"""Store and forward under faults: the real agent in a subprocess, the simulated building, a real
Mosquitto broker and a QoS 1 subscriber that counts what arrives.

Faults, and how many per run (the seed of the random kill points is printed; set
``TORTURE_SEED`` to replay one):

- kill -9 of the agent: 5 kills at random moments while it polls, writes and publishes (each
  shortly after a readings message arrived, so mid-way between publish and mark-synced), then a
  clean restart that drains what is left;
- the broker frozen (SIGSTOP) for 3 s and thawed, then restarted (SIGTERM, start): 2 broker faults
  with the agent running, a persistent-session subscriber on a broker with persistence;
- a simulated day offline: 144,000 readings (100 points every minute) waiting when the agent
  starts, drained oldest first under a rate cap while live readings keep arriving within seconds;
- an outage longer than a 1 MiB budget holds: the broker is down while the store fills past its
  budget; the file stays within it, synced readings go before unsent ones, the drops are counted
  and announced, and what is left arrives when the broker returns.

Every run of the agent ends with kill -9 too (a clean stop is covered by tests/test_cli.py), and
then ``edge-agent sync`` pushes what the killed agent had stored but not sent, exiting 0 only once
the broker has it all. After each: ``PRAGMA integrity_check`` is ``ok``, every stored seq reached
the subscriber with the stored value, and duplicates are counted (printed; allowed, since delivery
is at least once). Longer soaks: bench/bench_store.py, run by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import random
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

import agent
from agent.core.clock import system_clock
from agent.core.record import Reading
from agent.store import Store, export_readings, read_events, read_stats
from agent.sync import sync_command

pytestmark = pytest.mark.slow

AGENT_ROOT = Path(agent.__file__).resolve().parent.parent
SITE, GATEWAY = "jz-demo-office", "gw1"
POINTS = 55  # the demo site's points

# The agent of the demo site, with the uplink and store settings a test gives as JSON.
AGENT_CHILD = r"""
import asyncio, json, logging, signal, sys
from pathlib import Path

import agent.service
import agent.uplink
from agent.core.backoff import Backoff
from agent.config.model import StoreConfig, UplinkConfig
from agent.demo import _retarget, demo_config
from agent.service import Agent
from hil.server import SimulatedBuilding

opts = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(relativeCreated)6d %(name)s: %(message)s")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
# Test shortcuts, not behaviour: reconnect within a second (the service's 60 s cap would only
# make the test wait), and the budget and backfill rate until the service and UplinkConfig
# take them from the config (they are set in the config too).
agent.uplink.Backoff = lambda **_: Backoff(initial=0.1, cap=1.0)
store_config = {"batch_window": opts["window"]}
if opts.get("max_bytes"):
    store_config["max_bytes"] = opts["max_bytes"]
    _Store = agent.service.Store

    def _budgeted(path, **kw):
        kw.setdefault("max_bytes", opts["max_bytes"])
        return _Store(path, **kw)

    agent.service.Store = _budgeted
uplink = {"url": opts["url"], "topic_prefix": opts["prefix"], "timeout": 1.0, "keepalive": 2,
          "batch_size": opts["batch_size"]}
if "backfill_rate" in UplinkConfig.model_fields:
    uplink["backfill_rate"] = opts["backfill_rate"]
else:
    agent.uplink.DEFAULT_BACKFILL_RATE = opts["backfill_rate"]


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with SimulatedBuilding() as sim:
        config = _retarget(demo_config(), sim, None)
        devices = [d.model_copy(update={"interval": opts["interval"]}) for d in config.devices]
        config = config.model_copy(update={
            "devices": devices, "store": StoreConfig(**store_config),
            "uplink": UplinkConfig(**uplink)})
        service = Agent(config, data_dir=Path(opts["data"]))
        task = asyncio.create_task(service.run(stop))
        await service.started.wait()
        print("ready", flush=True)
        await task
    print("stopped", service.readings_polled, flush=True)


asyncio.run(main())
"""


@dataclass
class AgentProcess:
    """One run of the agent as a child process; its log goes to a file."""

    proc: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(cls, broker: Any, data: Path, prefix: str, **options: Any) -> AgentProcess:
        opts = {
            "url": broker.url,
            "prefix": prefix,
            "data": str(data),
            "interval": 0.1,
            "window": 0.1,
            "batch_size": 50,
            "backfill_rate": 1000.0,
            **options,
        }
        data.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a test's setup
        log = data.parent / f"agent-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                AGENT_CHILD,
                json.dumps(opts),
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=data.parent,
                env={**os.environ, "PYTHONPATH": str(AGENT_ROOT)},
            )
        child = cls(proc, log)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(15):
                line = await proc.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await child.kill()
            pytest.fail(f"the agent did not start:\n{child.log_tail()}")
        return child

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-30:])

    async def kill(self) -> None:
        """SIGKILL: no goodbye, no final commit: what a power cut does to the process."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


@contextlib.asynccontextmanager
async def agent_running(
    broker: Any, data: Path, prefix: str, **opts: Any
) -> AsyncIterator[AgentProcess]:
    child = await AgentProcess.start(broker, data, prefix, **opts)
    try:
        yield child
    finally:
        if child.proc.returncode is None:
            await child.kill()


def timed(collector: Any) -> list[tuple[float, aiomqtt.Message]]:
    """Record the wall-clock arrival time of each message the collector gets."""
    arrivals: list[tuple[float, aiomqtt.Message]] = []
    add = collector.add

    def add_timed(message: aiomqtt.Message) -> None:
        arrivals.append((system_clock().time(), message))
        add(message)

    collector.add = add_timed
    return arrivals


def bodies(messages: Iterable[aiomqtt.Message], suffix: str) -> list[dict[str, Any]]:
    return [
        json.loads(bytes(m.payload))  # type: ignore[arg-type]
        for m in messages
        if str(m.topic).endswith(suffix)
    ]


def received(messages: Iterable[aiomqtt.Message]) -> dict[int, list[dict[str, Any]]]:
    """Every record that arrived, by seq (a list: duplicates are kept, to be counted)."""
    got: dict[int, list[dict[str, Any]]] = {}
    for body in bodies(messages, "/readings"):
        assert (body["site"], body["gateway"]) == (SITE, GATEWAY)
        for record in body["readings"]:
            got.setdefault(record["seq"], []).append(record)
    return got


class SeqTally:
    """The seqs received so far, parsing each message once (``wait_for`` asks after each)."""

    def __init__(self) -> None:
        self.seqs: set[int] = set()
        self._parsed = 0

    def __call__(self, messages: list[aiomqtt.Message]) -> set[int]:
        self.seqs.update(received(messages[self._parsed :]))
        self._parsed = len(messages)
        return self.seqs


def assert_intact(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def check_delivery(db: Path, messages: list[aiomqtt.Message], what: str) -> dict[str, int]:
    """Integrity ok, and every stored seq arrived with the stored value; counts duplicates."""
    assert_intact(db)
    stored = {r.seq: r.to_record() for r in export_readings(db)}
    got = received(messages)
    missing = sorted(stored.keys() - got.keys())
    assert not missing, f"{what}: {len(missing)} stored readings never arrived: {missing[:10]}"
    altered = [s for s in stored if any(record != stored[s] for record in got[s])]
    assert not altered, f"{what}: readings arrived altered: {altered[:10]}"
    duplicates = sum(len(records) - 1 for records in got.values())
    figures = {
        "stored": len(stored),
        "received": sum(map(len, got.values())),
        "duplicates": duplicates,
    }
    print(f"{what}: {figures}")
    return figures


async def push_the_tail(data: Path, sub: Any) -> None:
    """`edge-agent sync`, as for a gateway being swapped: what the killed agent stored but had
    not sent goes out now; it exits 0 only when the broker has acknowledged all of it."""
    out = io.StringIO()
    assert await asyncio.to_thread(sync_command, data, out=out) == 0, out.getvalue()
    stored = {r.seq for r in export_readings(data / "readings.db")}
    tally = SeqTally()
    await sub.wait_for(lambda m: tally(m) >= stored, within=10)


def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def eventually(condition: Any, within: float, what: str, every: float = 0.05) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling a file the child writes
            await asyncio.sleep(every)
    assert condition(), what


# --- the agent killed -------------------------------------------------------------------------

KILLS = 5


async def test_kill_9_at_random_moments_loses_nothing(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    seed = int(os.environ.get("TORTURE_SEED", random.randrange(2**32)))
    print(f"TORTURE_SEED={seed}")
    rng = random.Random(seed)
    data, prefix = tmp_path / "data", topic_prefix()
    db = data / "readings.db"
    async with mqtt_subscribe(mosquitto, f"{prefix}/#") as sub:
        for _ in range(KILLS):
            child = await AgentProcess.start(mosquitto, data, prefix)
            try:
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                # Kill right after a readings message arrived: mid-way through publishing.
                count = len(sub.messages)
                await sub.wait_for(lambda m, n=count: len(m) > n, within=5)
                await asyncio.sleep(rng.uniform(0, 0.03))
            finally:
                await child.kill()
            assert_intact(db)
        before = {r.seq for r in export_readings(db)}
        async with agent_running(mosquitto, data, prefix):  # one more run drains the backlog
            tally = SeqTally()
            await sub.wait_for(lambda m: tally(m) >= before, within=10)
        await push_the_tail(data, sub)
    figures = check_delivery(db, sub.messages, f"{KILLS} kills")
    stored = [r.seq for r in export_readings(db)]
    assert sorted(stored) == list(range(1, len(stored) + 1)), "a seq was lost or reused"
    stats = read_stats(db)
    assert stats.unsynced == 0
    assert stats.evicted_unsynced == stats.dropped == 0
    assert figures["stored"] > KILLS * POINTS


# --- the broker frozen and restarted ----------------------------------------------------------


async def test_a_frozen_then_restarted_broker_loses_nothing(
    tmp_path: Path, mosquitto_factory: Any, mqtt_subscribe: Any
) -> None:
    broker = mosquitto_factory(persistence=True)
    data, prefix = tmp_path / "data", topic_prefix()
    db = data / "readings.db"
    # A persistent session: what the broker queued for the consumer survives the restart.
    async with mqtt_subscribe(broker, f"{prefix}/#", client_id=f"consumer-{prefix}") as sub:
        async with agent_running(broker, data, prefix):
            await sub.wait_for(lambda m: len(bodies(m, "/readings")) >= 3, within=5)
            broker.freeze()  # connections stay open, nothing answers: publishes time out
            try:
                await asyncio.sleep(3.0)
            finally:
                broker.thaw()
            count = len(sub.messages)
            await sub.wait_for(lambda m: len(m) > count + 3, within=10)
            await asyncio.to_thread(broker.restart)
            count = len(sub.messages)
            await sub.wait_for(lambda m: len(m) > count + 3, within=10)
        await push_the_tail(data, sub)
    check_delivery(db, sub.messages, "broker frozen and restarted")
    assert read_stats(db).unsynced == 0


# --- a day offline -----------------------------------------------------------------------------

DAY_POINTS, DAY_STEP_MS = 100, 60_000  # a typical site: 100 points every minute
DAY = DAY_POINTS * 24 * 60  # 144,000 readings


async def store_a_day(db: Path) -> None:
    """The readings of a day during which the broker was unreachable."""
    rng = random.Random(1)
    start = system_clock().now_ms() - 24 * 3600 * 1000
    values = [rng.uniform(0, 1000) for _ in range(DAY_POINTS)]
    async with Store(db, batch_window=1.0, batch_max=10_000) as store:
        for minute in range(24 * 60):
            batch = []
            for point in range(DAY_POINTS):
                values[point] += rng.uniform(-1, 1)
                batch.append(
                    Reading(
                        f"sub_meter_{point // 10}",
                        f"p{point}",
                        start + minute * DAY_STEP_MS,
                        round(values[point], 3),
                        "kWh",
                    )
                )
            await store.append(batch)


async def test_a_day_of_backlog_drains_in_order_while_live_readings_arrive_within_seconds(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    data, prefix = tmp_path / "data", topic_prefix()
    db = data / "readings.db"
    await store_a_day(db)
    rate = 40_000.0
    async with mqtt_subscribe(mosquitto, f"{prefix}/{SITE}/{GATEWAY}/readings") as sub:
        arrivals = timed(sub)
        async with agent_running(
            mosquitto, data, prefix, batch_size=500, backfill_rate=rate, interval=0.5
        ):
            tally = SeqTally()
            await sub.wait_for(lambda m: len(tally(m)) >= DAY, within=30)
            await asyncio.sleep(1.0)  # live readings after the backlog too
        await push_the_tail(data, sub)
    figures = check_delivery(db, sub.messages, "a day offline")
    assert figures["duplicates"] <= 500, "at most the batch in flight at the final kill"
    timeline = [(t, json.loads(bytes(m.payload))) for t, m in arrivals]  # type: ignore[arg-type]
    backlog = [(t, body) for t, body in timeline if body["backfill"]]
    live = [(t, body) for t, body in timeline if not body["backfill"]]
    backlog_seqs = [r["seq"] for _, body in backlog for r in body["readings"]]
    # Oldest first, every one of them, once: the day and whatever was stored before connecting.
    # (After it, `push_the_tail` may send as backfill what the killed agent had sent live but
    # not had acknowledged: later seqs, in order, counted as duplicates above.)
    drained = next((i for i, seq in enumerate(backlog_seqs) if seq != i + 1), len(backlog_seqs))
    assert drained >= DAY, f"the backlog broke off at {drained}: {backlog_seqs[drained]}"
    tail = backlog_seqs[drained:]
    assert tail == sorted(set(tail))
    assert all(seq > drained for seq in tail)
    # Live readings kept arriving while the backlog drained, each within seconds of its reading.
    drained_at = next(t for t, body in backlog if body["readings"][-1]["seq"] >= drained)
    during = [(t, body) for t, body in live if t < drained_at]
    assert len(during) >= 3, "live readings waited for the backlog"
    lag = max(t - _ms(record["ts"]) / 1000 for t, body in live for record in body["readings"])
    assert lag < 2.0, f"a live reading took {lag:.1f} s"
    # The rate cap held: the day took at least DAY / rate seconds (less one batch of burst).
    span = drained_at - backlog[0][0]
    print(
        f"a day offline: {len(backlog_seqs)} backlog readings in {span:.1f} s "
        f"({len(backlog_seqs) / span:,.0f}/s, cap {rate:,.0f}/s); "
        f"{len(during)} live messages meanwhile, live lag at most {lag:.2f} s"
    )
    assert span >= (DAY - 500) / rate * 0.95


def _ms(iso: str) -> int:
    from agent.core.record import iso_to_ms

    return iso_to_ms(iso)


# --- an outage longer than the budget ---------------------------------------------------------

BUDGET = 1024 * 1024  # about 29,000 readings
SYNCED, UNSENT = 3_000, 20_000  # what the store holds when the outage starts


async def store_history(db: Path) -> None:
    async with Store(db, batch_window=1.0, batch_max=10_000, max_bytes=BUDGET) as store:
        for start in range(0, SYNCED + UNSENT, 1000):
            await store.append(
                [
                    Reading("history", f"p{i % 50}", 1_700_000_000_000 + i, float(i), "W")
                    for i in range(start, start + 1000)
                ]
            )
        await store.flush()
        await store.mark_synced(list(range(1, SYNCED + 1)))
        stats = await store.stats()
    assert (stats.rows, stats.unsynced) == (SYNCED + UNSENT, UNSENT), "all fit in the budget"


async def test_an_outage_longer_than_the_budget_keeps_the_store_within_it(
    tmp_path: Path, mosquitto_factory: Any, mqtt_subscribe: Any
) -> None:
    broker = mosquitto_factory(persistence=True)
    data, prefix = tmp_path / "data", topic_prefix()
    db = data / "readings.db"
    await store_history(db)
    largest = 0

    def size() -> int:
        nonlocal largest
        total = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
        largest = max(largest, total)
        assert total <= BUDGET, f"{total} bytes on disk, budget {BUDGET}"
        return total

    # A persistent session on a broker with persistence: it gets what is sent on reconnect.
    async with mqtt_subscribe(broker, f"{prefix}/#", client_id=f"consumer-{prefix}") as sub:
        await asyncio.to_thread(broker.stop)
        async with agent_running(
            broker,
            data,
            prefix,
            max_bytes=BUDGET,
            interval=0.05,
            batch_size=200,
            backfill_rate=20_000.0,
        ):
            # The broker is down; the store fills past its budget and must drop unsent readings.
            async with asyncio.timeout(30):
                while size() and not read_stats(db).evicted_unsynced:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # polling the file another process writes
            for _ in range(20):  # and it keeps within the budget while that goes on
                size()
                await asyncio.sleep(0.05)
            at_drop = read_stats(db)
            await asyncio.to_thread(broker.start)
            async with asyncio.timeout(20):
                while read_stats(db).unsynced > 500:
                    size()
                    await asyncio.sleep(0.1)
        await push_the_tail(data, sub)
        alerts = {e.id for e in read_events(db)}
        assert alerts, "the drops were recorded as events"
        await sub.wait_for(lambda m: {b["id"] for b in bodies(m, "/events")} >= alerts, within=5)
    check_delivery(db, sub.messages, "an outage longer than the budget")
    stored = {r.seq for r in export_readings(db)}
    stats = read_stats(db)
    # Every synced reading went before the first unsent one; the drops are counted...
    assert at_drop.evicted_synced == SYNCED
    assert stats.evicted_unsynced >= at_drop.evicted_unsynced > 0
    kept = sorted(stored)
    assert kept == list(range(kept[0], kept[-1] + 1)), "only the oldest were evicted"
    assert kept[0] - 1 == stats.evicted_synced + stats.evicted_unsynced
    # ... and announced upstream. Every evicted seq after the synced history either reached the
    # subscriber (it was sent before it went) or lies in an announced range: none vanished.
    published = {b["id"]: b for b in bodies(sub.messages, "/events")}
    assert published.keys() == alerts  # each at least once
    events = [e for e in published.values() if e["kind"] == "readings_dropped"]
    assert sum(e["detail"]["count"] for e in events) == stats.evicted_unsynced
    ranges = sorted((e["detail"]["first_seq"], e["detail"]["last_seq"]) for e in events)
    assert ranges[0][0] == SYNCED + 1, "the first unsent reading was the first to go"
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
    announced = {seq for first, last in ranges for seq in range(first, last + 1)}
    got = received(sub.messages).keys()
    assert set(range(SYNCED + 1, kept[0])) <= announced | got
    # A batch being published when the store evicted it may arrive anyway: at most that.
    assert len(announced & got) <= 200 * len(events)
    print(
        f"outage past the budget: largest {largest} bytes (budget {BUDGET}); "
        f"{stats.evicted_synced} synced and {stats.evicted_unsynced} unsent readings evicted, "
        f"{len(events)} events"
    )
