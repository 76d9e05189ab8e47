"""The uplink against a real Mosquitto broker and a real store: delivery, faults, status."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

import agent
from agent.config.model import SiteInfo, UplinkConfig
from agent.core.backoff import Backoff
from agent.core.errors import AgentError, UplinkError
from agent.core.record import Quality, Reading, StoredReading, iso_to_ms, ms_to_iso
from agent.store import Store, StoreEvent, export_readings, read_stats
from agent.sync import sync_command
from agent.uplink import Uplink, _Pacer, encode_event, encode_readings, sync_all

AGENT_ROOT = Path(agent.__file__).resolve().parent.parent  # PYTHONPATH for child processes
SITE = SiteInfo(id="site1", name="Test building")
GATEWAY = "gw1"
WINDOW = 0.05


def config_for(broker: Any, **overrides: Any) -> UplinkConfig:
    """A config on a topic prefix of its own, with short timeouts."""
    values: dict[str, Any] = {
        "url": broker.url,
        "topic_prefix": f"t{uuid.uuid4().hex[:8]}",
        "timeout": 5.0,
        "keepalive": 5,
        "batch_size": 10,
    }
    values.update(overrides)
    return UplinkConfig(**values)


def make_uplink(config: UplinkConfig, store: Store, **birth: Any) -> Uplink:
    return Uplink(
        config,
        site=SITE,
        gateway_id=GATEWAY,
        store=store,
        birth=birth,
        backoff=Backoff(initial=0.05, cap=0.2),
        backfill_rate=None,  # the pacing has its own test
    )


def readings(start: int, count: int) -> list[Reading]:
    """Values of every type, so that what arrives can be compared with what was stored."""
    kinds: list[Callable[[int], Any]] = [
        lambda i: i,
        lambda i: i + 0.25,
        lambda i: f"s{i}",
        lambda i: None,
        lambda i: i % 2 == 0,
    ]
    return [
        Reading(
            device=f"m{i % 2}",
            point=f"p{i % 3}",
            ts_ms=1_700_000_000_000 + i,
            value=kinds[i % len(kinds)](i),
            unit="W",
            quality=Quality(i % 3),
        )
        for i in range(start, start + count)
    ]


def records(messages: Iterable[aiomqtt.Message], topic: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.topic.matches(topic):
            body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            assert body["site"] == SITE.id
            assert body["gateway"] == GATEWAY
            out.extend(body["readings"])
    return out


def seqs(messages: Iterable[aiomqtt.Message], topic: str) -> list[int]:
    return [r["seq"] for r in records(messages, topic)]


async def eventually(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll plain attributes (``uplink.connected``) that have no event to wait on."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the attribute itself
            await asyncio.sleep(0.01)
    assert condition(), what


async def until_synced(store: Store, *, within: float) -> None:
    async with asyncio.timeout(within):
        while (await store.stats()).unsynced:  # noqa: ASYNC110 - the store has no such event
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run(), name="test-uplink")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stored_by_seq(store: Store) -> dict[int, StoredReading]:
    return {r.seq: r for r in await store.unsynced(10_000)}


# --- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_every_reading_arrives_with_its_stored_value(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any, protocol: str
) -> None:
    config = config_for(mosquitto, batch_size=10, protocol=protocol)
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        await store.append(readings(0, 25))
        await store.flush()
        stored = await stored_by_seq(store)
        uplink = make_uplink(config, store, config_hash="abc123")
        topic = uplink.readings_topic
        async with mqtt_subscribe(mosquitto, f"{config.topic_prefix}/#") as sub:
            async with running(uplink):
                await sub.wait_for(lambda m: set(seqs(m, topic)) >= set(stored), within=5)
                # Oldest first, in messages of batch_size, with the stored values.
                assert seqs(sub.messages, topic) == sorted(stored)
                assert [len(json.loads(p)["readings"]) for p in sub.payloads(topic)] == [10, 10, 5]
                for record in records(sub.messages, topic):
                    assert record == stored[record["seq"]].to_record()
                await eventually(lambda: uplink.sent == 25, 2, "sent counts acknowledged")
                assert (await store.stats()).unsynced == 0
                assert uplink.connected
                assert uplink.last_sync_ms is not None

                # New readings are sent as they are committed (no polling delay).
                await store.append(readings(25, 3))
                await sub.wait_for(lambda m: set(seqs(m, topic)) >= {26, 27, 28}, within=3)
                await eventually(lambda: uplink.sent == 28, 2, "all 28 acknowledged")

                # Status and birth are retained: a consumer that comes later sees them.
                async with mqtt_subscribe(
                    mosquitto, uplink.status_topic, uplink.birth_topic
                ) as late:
                    await late.wait_for(lambda m: len(m) >= 2, within=3)
                    assert all(m.retain for m in late.messages)
                    assert late.payloads(uplink.status_topic) == [b"online"]
                    birth = json.loads(late.payloads(uplink.birth_topic)[0])
                    assert birth["config_hash"] == "abc123"
                    assert birth["agent_version"] == agent.__version__
                    assert birth["time"].endswith("Z")
            # A graceful stop says offline itself.
            await sub.wait_for(
                lambda m: sub.payloads(uplink.status_topic)[-1:] == [b"offline"], within=3
            )
        assert not uplink.connected
        stats = await store.stats()
        assert stats.unsynced == 0
        assert stats.last_sync_ms == pytest.approx(uplink.last_sync_ms, abs=1000)
    assert seqs(sub.messages, topic) == list(range(1, 29)), "no duplicates without faults"


async def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, mosquitto_factory: Any, mqtt_subscribe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.uplink")
    # Persistence on, and a persistent consumer session: what the broker acknowledged before
    # the restart, or received while the consumer was reconnecting, still reaches the consumer.
    broker = mosquitto_factory(persistence=True)
    config = config_for(broker, batch_size=7)
    total = 80
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        uplink = make_uplink(config, store)
        topic = uplink.readings_topic
        async with (
            mqtt_subscribe(broker, topic, client_id="consumer-restart") as sub,
            running(uplink),
        ):

            async def produce() -> None:
                for i in range(total):
                    await store.append(readings(i, 1))
                    await asyncio.sleep(0.015)

            producer = asyncio.create_task(produce())
            await sub.wait_for(lambda m: len(seqs(m, topic)) >= 10, within=5)
            caplog.clear()  # count from the start of the outage
            await asyncio.to_thread(broker.stop)
            await eventually(lambda: not uplink.connected, 3, "the uplink saw the broker go")
            await asyncio.sleep(0.3)  # readings keep coming while the broker is away
            await asyncio.to_thread(broker.start)
            await producer
            await store.flush()
            await sub.wait_for(lambda m: set(seqs(m, topic)) >= set(range(1, total + 1)), within=10)
            await eventually(lambda: uplink.connected, 3, "the uplink came back")
            stats = await store.stats()
            assert (stats.rows, stats.unsynced) == (total, 0)
    got = seqs(sub.messages, topic)
    duplicates = len(got) - len(set(got))
    print(f"broker restart: {len(got)} readings received, {duplicates} duplicates")
    assert set(got) == set(range(1, total + 1))
    assert uplink.sent >= total
    assert_one_warning_per_outage(caplog)


def assert_one_warning_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    records = [r for r in caplog.records if r.name.startswith("agent.uplink")]
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert any("again after" in r.getMessage() for r in records)


async def test_a_frozen_broker_times_out_warns_once_and_recovers(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.uplink")
    config = config_for(mosquitto, timeout=0.5)
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        uplink = make_uplink(config, store)
        topic = uplink.readings_topic
        async with mqtt_subscribe(mosquitto, topic) as sub, running(uplink):
            await store.append(readings(0, 5))
            await sub.wait_for(lambda m: set(seqs(m, topic)) >= set(range(1, 6)), within=5)
            await until_synced(store, within=3)
            caplog.clear()  # count from the start of the outage
            mosquitto.freeze()
            try:
                await store.append(readings(5, 5))  # its publish gets no PUBACK
                await eventually(lambda: not uplink.connected, 3, "publish timed out")
                await asyncio.sleep(1.2)  # several reconnects fail (no CONNACK)
                assert (await store.stats()).unsynced == 5
            finally:
                mosquitto.thaw()
            await sub.wait_for(lambda m: set(seqs(m, topic)) >= set(range(1, 11)), within=5)
            await eventually(lambda: uplink.connected, 3, "reconnected")
            await eventually(lambda: uplink.sent >= 10, 3, "acknowledged")
    attempts = [r for r in caplog.records if "connecting to" in r.getMessage()]
    assert len(attempts) >= 2, "reconnects are logged at info, each attempt"
    assert_one_warning_per_outage(caplog)


async def test_stopping_is_bounded_even_when_the_broker_hangs(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(mosquitto, timeout=0.5)
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        uplink = make_uplink(config, store)
        task = asyncio.create_task(uplink.run())
        await eventually(lambda: uplink.connected, 3, "connected")
        mosquitto.freeze()
        try:
            await asyncio.sleep(0.05)
            started = asyncio.get_running_loop().time()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert asyncio.get_running_loop().time() - started < 4.0
            # And cancelling while a connect hangs (no CONNACK from the frozen broker).
            task = asyncio.create_task(uplink.run())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            mosquitto.thaw()
    assert not uplink.connected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


WILL_CHILD = """
import asyncio, sys
from pathlib import Path
from agent.core.backoff import Backoff
from agent.config.model import SiteInfo, UplinkConfig
from agent.store import Store
from agent.uplink import Uplink

async def main():
    config = UplinkConfig(url=sys.argv[2], topic_prefix=sys.argv[3], timeout=2, keepalive=5)
    async with Store(Path(sys.argv[1]), batch_window=0.05) as store:
        uplink = Uplink(config, site=SiteInfo(id="site1", name="t"), gateway_id="gw1",
                        store=store, birth={})
        await uplink.run()

asyncio.run(main())
"""


async def test_the_last_will_says_offline_when_the_process_dies(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto)
    status = f"{config.topic_prefix}/{SITE.id}/{GATEWAY}/status"
    env = {**os.environ, "PYTHONPATH": str(AGENT_ROOT)}
    async with mqtt_subscribe(mosquitto, status) as sub:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WILL_CHILD,
            str(tmp_path / "r.db"),
            mosquitto.url,
            config.topic_prefix,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await sub.wait_for(lambda m: sub.payloads()[-1:] == [b"online"], within=10)
            child.send_signal(signal.SIGKILL)  # no goodbye: only the will can tell
            await child.wait()
            await sub.wait_for(lambda m: sub.payloads()[-1:] == [b"offline"], within=5)
        finally:
            if child.returncode is None:
                child.kill()
            await child.communicate()
    async with mqtt_subscribe(mosquitto, status) as late:
        await late.wait_for(lambda m: len(m) >= 1, within=3)
        assert late.payloads() == [b"offline"]
        assert late.messages[0].retain


# --- one-shot sync ---------------------------------------------------------------------------


async def test_sync_all_pushes_the_backlog_once(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto, batch_size=4)
    topic = f"{config.topic_prefix}/{SITE.id}/{GATEWAY}/readings"
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        await store.append(readings(0, 10))
        await store.flush()
        async with mqtt_subscribe(mosquitto, topic) as sub:
            count = await sync_all(config, site=SITE, gateway_id=GATEWAY, store=store)
            assert count == 10
            await sub.wait_for(lambda m: set(seqs(m, topic)) == set(range(1, 11)), within=3)
        assert (await store.stats()).unsynced == 0
        assert await sync_all(config, site=SITE, gateway_id=GATEWAY, store=store) == 0


async def test_sync_all_reports_an_unreachable_broker(tmp_path: Path, mosquitto: Any) -> None:
    config = config_for(mosquitto, timeout=0.5)
    await asyncio.to_thread(mosquitto.stop)
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        await store.append(readings(0, 3))
        await store.flush()
        with pytest.raises(UplinkError, match="could not push readings"):
            await sync_all(config, site=SITE, gateway_id=GATEWAY, store=store)
        assert (await store.stats()).unsynced == 3


# --- payload and backoff ---------------------------------------------------------------------


def test_payload_shape_and_non_finite_values() -> None:
    batch = [
        StoredReading(
            seq=7,
            device="m1",
            point="p",
            ts_ms=1_700_000_000_123,
            value=1.5,
            unit="kWh",
            quality=Quality.GOOD,
        ),
        StoredReading(
            seq=8,
            device="m1",
            point="p",
            ts_ms=1_700_000_000_124,
            value=math.inf,
            unit="kWh",
            quality=Quality.GOOD,
        ),
    ]
    body = json.loads(encode_readings("site1", "gw1", batch))
    assert body == {
        "gateway": "gw1",
        "site": "site1",
        "backfill": False,
        "readings": [
            {
                "seq": 7,
                "device": "m1",
                "point": "p",
                "ts": "2023-11-14T22:13:20.123Z",
                "value": 1.5,
                "unit": "kWh",
                "quality": "good",
            },
            {
                "seq": 8,
                "device": "m1",
                "point": "p",
                "ts": "2023-11-14T22:13:20.124Z",
                "value": None,
                "unit": "kWh",
                "quality": "bad",
            },
        ],
    }


def test_payload_bytes_are_those_of_json_dumps_of_each_record() -> None:
    # encode_readings writes its JSON by hand, for speed: byte for byte what json.dumps of the
    # records gives, whatever the values, names and flags.
    values: list[Any] = [1.5, -0.0, 1e-7, 1.0e22, 123456789.123, 3, -2**70, 0, True, False,
                         None, "", "on", 'q"uote\\back\nline\x01', "中文 café", math.nan,
                         -math.inf, Quality.BAD]  # fmt: skip
    names = ["m1", "电表/1", 'a"b', "tab\there", "\u2028"]
    batch = [
        StoredReading(
            seq=2**40 + i,
            device=names[i % len(names)],
            point=names[(i + 1) % len(names)],
            # in pairs: a stamp shared by neighbours is written once per batch
            ts_ms=(-1_001, 0, 999, 1_700_000_000_123, 4_102_444_799_999)[i // 2 % 5],
            value=value,
            unit=names[(i + 2) % len(names)] if i % 3 else "",
            quality=Quality(i % 3),
            clock_untrusted=i % 4 == 1,
        )
        for i, value in enumerate(values)
    ]
    for backfill in (False, True):
        records = []
        for reading in batch:
            record = reading.to_record()
            if isinstance(record["value"], float) and not math.isfinite(record["value"]):
                record["value"], record["quality"] = None, "bad"
            records.append(record)
        body = {"gateway": "gw/一", "site": 's"1', "backfill": backfill, "readings": records}
        expected = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        assert encode_readings('s"1', "gw/一", batch, backfill=backfill) == expected.encode()
    empty = b'{"gateway":"g","site":"s","backfill":false,"readings":[]}'
    assert encode_readings("s", "g", []) == empty


def test_the_documented_payload_matches_what_is_sent() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "payload.md").read_text("utf-8")
    bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    documented = next(body for body in bodies if "readings" in body)
    sample = StoredReading(
        seq=1, device="d", point="p", ts_ms=0, value=1, unit="W", quality=Quality.GOOD
    )
    assert documented.keys() == json.loads(encode_readings("s", "g", [sample])).keys()
    for record in documented["readings"]:
        assert record.keys() == sample.to_record().keys()
        assert Quality.from_label(record["quality"]).label == record["quality"]
        assert ms_to_iso(iso_to_ms(record["ts"])) == record["ts"]
    birth = next(body for body in bodies if "agent_version" in body)
    assert {"site", "gateway", "time"} <= birth.keys()
    event = next(body for body in bodies if "kind" in body)
    sent = StoreEvent(
        id=event["id"], ts_ms=iso_to_ms(event["time"]), kind=event["kind"], detail=event["detail"]
    )
    assert json.loads(encode_event(event["site"], event["gateway"], sent)) == event


def test_backoff_doubles_to_the_cap_with_full_jitter_and_resets() -> None:
    backoff = Backoff(initial=1.0, cap=60.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.attempts == 9
    backoff.reset()
    assert backoff.next_delay() == 1.0
    zero = Backoff(initial=1.0, cap=60.0, rand=lambda: 0.0)
    assert zero.next_delay() == 0.0
    half = Backoff(initial=2.0, cap=5.0, rand=lambda: 0.5)
    assert [half.next_delay() for _ in range(4)] == [1.0, 2.0, 2.5, 2.5]
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial=0)


# --- backlog after an outage -----------------------------------------------------------------


def test_the_pacer_spaces_backlog_batches_to_the_rate() -> None:
    now = [100.0]
    pacer = _Pacer(200.0, clock=lambda: now[0])
    assert pacer.delay() == 0  # the first batch goes at once
    pacer.spend(100, started_at=100.0)
    assert pacer.delay() == pytest.approx(0.5)
    now[0] = 100.2
    assert pacer.delay() == pytest.approx(0.3)
    now[0] = 103.0  # idle for a while: no credit builds up
    assert pacer.delay() == 0
    pacer.spend(100, started_at=103.0)
    assert pacer.delay() == pytest.approx(0.5)
    now[0] = 104.0  # sending took longer than the rate allows: the next may go at once
    pacer.spend(100, started_at=103.5)
    assert pacer.delay() == 0
    assert _Pacer(None).delay() == 0
    with pytest.raises(ValueError, match="positive"):
        _Pacer(0)


def message_body(message: aiomqtt.Message) -> dict[str, Any]:
    return json.loads(bytes(message.payload))  # type: ignore[arg-type,no-any-return]


async def test_a_commit_of_many_live_readings_goes_in_messages_of_batch_size(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    # Live readings are read and marked a commit at a time, but each message still carries at
    # most batch_size of them, oldest first.
    config = config_for(mosquitto, batch_size=7)
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        uplink = make_uplink(config, store)
        topic = uplink.readings_topic
        async with mqtt_subscribe(mosquitto, topic) as sub, running(uplink):
            await store.append(readings(0, 1))  # the uplink is sending live once this is out
            await sub.wait_for(lambda m: len(seqs(m, topic)) >= 1, within=5)
            await store.append(readings(1, 30))  # one commit
            await store.flush()
            await sub.wait_for(lambda m: len(seqs(m, topic)) >= 31, within=5)
            await until_synced(store, within=3)
            sizes = [len(json.loads(p)["readings"]) for p in sub.payloads(topic)]
            assert seqs(sub.messages, topic) == list(range(1, 32))
            assert sizes == [1, 7, 7, 7, 7, 2]
            assert not any(json.loads(p)["backfill"] for p in sub.payloads(topic)[1:])
            assert uplink.sent == 31


async def test_after_an_outage_live_readings_flow_while_the_backlog_drains_paced(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    backlog, rate, size = 3000, 3000.0, 100
    config = config_for(mosquitto, batch_size=size)
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        await store.append(readings(0, backlog))  # stored while the broker was away
        await store.flush()
        uplink = Uplink(
            config,
            site=SITE,
            gateway_id=GATEWAY,
            store=store,
            birth={},
            backoff=Backoff(initial=0.05, cap=0.2),
            backfill_rate=rate,
        )
        topic = uplink.readings_topic
        appended: dict[int, float] = {}  # live value -> when it was appended
        async with mqtt_subscribe(mosquitto, topic) as sub:
            arrivals: list[tuple[float, aiomqtt.Message]] = []
            add = sub.add
            sub.add = lambda m: (arrivals.append((time.monotonic(), m)), add(m))[1]
            async with running(uplink):
                for i in range(30):  # live readings keep coming while the backlog drains
                    appended[backlog + i] = time.monotonic()
                    await store.append(readings(backlog + i, 1))
                    await asyncio.sleep(0.05)
                await sub.wait_for(lambda m: len(set(seqs(m, topic))) >= backlog + 30, within=10)
                await until_synced(store, within=3)
    stored = {r.seq: r for r in export_readings(tmp_path / "r.db")}
    live = [(t, message_body(m)) for t, m in arrivals if not message_body(m)["backfill"]]
    old = [(t, message_body(m)) for t, m in arrivals if message_body(m)["backfill"]]
    old_seqs = [r["seq"] for _, body in old for r in body["readings"]]
    live_seqs = [r["seq"] for _, body in live for r in body["readings"]]
    # The backlog went oldest first, in full batches, as the flag says.
    assert old_seqs == list(range(1, backlog + 1))
    assert sorted(live_seqs) == list(range(backlog + 1, backlog + 31))
    # Live readings did not wait behind it: they arrived within a few batch windows.
    for t, body in live:
        for record in body["readings"]:
            value = record["value"] if isinstance(record["value"], int) else None
            if value in appended:
                assert t - appended[value] < 0.5, f"live seq {record['seq']} waited"
    assert live[0][0] < old[-1][0], "live readings were interleaved with the backlog"
    # And the backlog kept to the rate cap: 30 batches of 100 at 3000/s take at least 0.97 s.
    span = old[-1][0] - old[0][0]
    assert span >= (backlog - size) / rate * 0.95
    assert uplink.backfilled == backlog
    for record in records((m for _, m in arrivals), topic):
        assert record == stored[record["seq"]].to_record()


async def test_alert_events_reach_the_broker_once(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto, batch_size=1000)
    async with Store(tmp_path / "r.db", batch_window=WINDOW, max_bytes=1024 * 1024) as store:
        for start in range(0, 40_000, 1000):  # more than a 1 MiB store holds: unsent ones go
            await store.append(readings(start, 1000))
        await store.flush()
        events = await store.unpublished_events()
        assert events
        uplink = make_uplink(config, store)
        async with mqtt_subscribe(mosquitto, uplink.events_topic) as sub, running(uplink):
            await sub.wait_for(lambda m: len(m) >= len(events), within=5)
            await eventually(lambda: uplink.sent > 0, 3, "readings flow after the events")
            await until_synced(store, within=10)
            assert await store.unpublished_events() == []
            assert (await store.stats()).events_unpublished == 0
            # Another part of the agent adds one (an HVAC write): it goes out at once, with no
            # reading to wake the uplink.
            write = await store.add_event("hvac.write", {"zone": "z1", "setpoint": 26.0})
            events.append(write)
            await sub.wait_for(lambda m: len(m) >= len(events), within=1)
    bodies = [message_body(m) for m in sub.messages]
    assert bodies == [{"gateway": GATEWAY, "site": SITE.id, **e.to_record()} for e in events]
    assert bodies[-1]["detail"] == {"zone": "z1", "setpoint": 26.0}
    assert bodies[0]["kind"] == "readings_dropped"
    assert bodies[0]["detail"]["first_seq"] == 1


async def test_alert_state_is_retained_per_alert_and_emptied_when_cleared(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto)
    key = "quota:site-month:100"
    async with Store(tmp_path / "r.db", batch_window=WINDOW) as store:
        uplink = make_uplink(config, store)
        topic = f"{uplink.alerts_topic}/quota:site-month:100"
        async with running(uplink):
            await eventually(lambda: uplink.connected, 5, "the uplink connects")
            await store.add_event("energy.alert", {"state": "raised", "key": key})
            async with mqtt_subscribe(mosquitto, f"{uplink.alerts_topic}/#") as late:
                # A dashboard that connects after the alert still sees it: it is retained.
                await late.wait_for(lambda m: len(m) == 1, within=5)
                assert late.messages[0].topic.matches(topic)
                assert message_body(late.messages[0])["detail"]["state"] == "raised"
                await store.add_event("energy.alert", {"state": "cleared", "key": key})
                await late.wait_for(lambda m: len(m) == 2, within=5)
                assert bytes(late.messages[1].payload) == b""  # cleared: nothing retained
        async with mqtt_subscribe(mosquitto, f"{uplink.alerts_topic}/#") as after:
            await asyncio.sleep(0.5)
            assert after.messages == []


# --- edge-agent sync -------------------------------------------------------------------------


def site_yaml(tmp_path: Path, broker: Any, prefix: str, *, uplink: bool = True) -> Path:
    path = tmp_path / "site.yaml"
    text = f"site: {{id: {SITE.id}, name: T}}\ngateway: {{id: {GATEWAY}}}\n"
    if uplink:
        text += f"uplink: {{url: '{broker.url}', topic_prefix: {prefix}, timeout: 2s}}\n"
    path.write_text(text, encoding="utf-8")
    return path


async def test_sync_command_pushes_everything_and_exits_0(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto, batch_size=50)
    data = tmp_path / "data"
    async with Store(data / "readings.db", batch_window=WINDOW) as store:
        await store.append(readings(0, 120))
        await store.flush()
        await store.mark_synced([1, 2, 3])
        stored = await stored_by_seq(store)
    topic = f"{config.topic_prefix}/{SITE.id}/{GATEWAY}/readings"
    out, err = io.StringIO(), io.StringIO()
    async with mqtt_subscribe(mosquitto, topic) as sub:
        code = await asyncio.to_thread(
            sync_command,
            data,
            config_path=site_yaml(tmp_path, mosquitto, config.topic_prefix),
            out=out,
            err=err,
        )
        assert code == 0, err.getvalue()
        await sub.wait_for(lambda m: set(seqs(m, topic)) >= set(stored), within=3)
    assert "the broker has acknowledged every reading up to seq 120" in out.getvalue()
    assert all(message_body(m)["backfill"] for m in sub.messages)
    for record in records(sub.messages, topic):
        assert record == stored[record["seq"]].to_record()
    assert read_stats(data / "readings.db").unsynced == 0
    # Again: nothing left, and it says so without a broker.
    await asyncio.to_thread(mosquitto.stop)
    out = io.StringIO()
    yaml = site_yaml(tmp_path, mosquitto, config.topic_prefix)
    code = await asyncio.to_thread(
        sync_command, data, config_path=yaml, mqtt_url="mqtt://127.0.0.1:1", out=out
    )
    assert code == 0
    assert out.getvalue().startswith("nothing to send")


async def test_sync_command_finds_the_broker_the_agent_used(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = config_for(mosquitto, timeout=0.5)
    data = tmp_path / "data"
    await asyncio.to_thread(mosquitto.stop)  # the uplink is down the whole time the agent runs
    async with Store(data / "readings.db", batch_window=WINDOW) as store:
        uplink = make_uplink(config, store)
        async with running(uplink):
            await store.append(readings(0, 30))
            await store.flush()
            await asyncio.sleep(0.2)
    await asyncio.to_thread(mosquitto.start)
    topic = f"{config.topic_prefix}/{SITE.id}/{GATEWAY}/readings"
    out = io.StringIO()
    async with mqtt_subscribe(mosquitto, topic) as sub:
        assert await asyncio.to_thread(sync_command, data, out=out) == 0
        await sub.wait_for(lambda m: set(seqs(m, topic)) == set(range(1, 31)), within=3)
    assert f"30 readings sent to {mosquitto.url}" in out.getvalue()


async def test_sync_command_failures_are_one_sentence(tmp_path: Path, mosquitto: Any) -> None:
    data = tmp_path / "data"
    with pytest.raises(AgentError, match="there is no buffer at"):
        sync_command(data, mqtt_url=mosquitto.url)
    async with Store(data / "readings.db", batch_window=WINDOW) as store:
        await store.append(readings(0, 5))
    with pytest.raises(AgentError, match="give --config FILE"):
        sync_command(data, mqtt_url=mosquitto.url)
    with pytest.raises(AgentError, match="has no uplink section"):
        sync_command(data, config_path=site_yaml(tmp_path, mosquitto, "p", uplink=False))
    err = io.StringIO()
    yaml = site_yaml(tmp_path, mosquitto, "p")
    assert sync_command(data, config_path=yaml, mqtt_url="http://x", err=err) == 2
    assert err.getvalue().count("\n") == 1
    assert "--mqtt: 'http://x' is not an MQTT URL" in err.getvalue()
    await asyncio.to_thread(mosquitto.stop)
    with pytest.raises(AgentError, match=r"could not push readings to .* \(0 sent"):
        await asyncio.to_thread(sync_command, data, config_path=yaml)
    assert read_stats(data / "readings.db").unsynced == 5
