"""A store that cannot write does not take the agent down with a command: the command is refused
("cannot record this command now: <cause>"), nothing reaches a device, the agent keeps polling;
and no exception of a command handler ends the uplink."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

import agent.service
from agent.config.loader import load_config_text
from agent.config.model import SiteInfo, UplinkConfig
from agent.core.clock import system_clock
from agent.core.errors import StoreError
from agent.demo import _retarget, demo_config
from agent.service import Agent
from agent.store import Store, StoreEvent
from agent.uplink import Uplink
from hil.building import Building
from hil.server import SimulatedBuilding

BASE = "bea/jz-demo-office/gw1"


class UnwritableStore(Store):
    """The real store, whose writes of events and meta fail like a card gone bad while
    ``failing`` is set (readings still reach the writer thread)."""

    failing = False

    def _fault(self) -> None:
        if self.failing:
            raise StoreError(f"cannot write {self.path}: disk I/O error")

    async def add_event(self, kind: str, detail: dict[str, Any]) -> StoreEvent:
        self._fault()
        return await super().add_event(kind, detail)

    async def add_events(
        self,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        meta: Mapping[str, str] | None = None,
        intervals: Any = (),
    ) -> list[StoreEvent]:
        self._fault()
        return await super().add_events(events, meta=meta, intervals=intervals)

    async def set_meta(self, key: str, value: str) -> None:
        self._fault()
        await super().set_meta(key, value)


def _is_connected(part: Agent | Uplink) -> bool:
    uplink = part if isinstance(part, Uplink) else part.uplink
    return uplink is not None and uplink.connected


async def _connected(part: Agent | Uplink) -> None:
    async with asyncio.timeout(10):
        while not _is_connected(part):  # noqa: ASYNC110 - the uplink has no event for this
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the uplink subscribes right after connecting


def _override(command_id: str) -> bytes:
    expires = (system_clock().wall() + timedelta(minutes=5)).isoformat()
    command = {"id": command_id, "expires": expires, "action": "override", "zone": "zone1",
               "mode": "cool", "setpoint": 27, "for": "1h"}  # fmt: skip
    return json.dumps(command).encode()


async def test_a_command_while_the_store_cannot_write_is_refused_and_the_agent_goes_on(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.service, "Store", UnwritableStore)
    async with SimulatedBuilding(building=Building(zones_follow_office_hours=False)) as sim:
        service = Agent(_retarget(demo_config(), sim, mosquitto.url), data_dir=tmp_path)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        async with mqtt_subscribe(mosquitto, f"{BASE}/commands/reply") as sub:
            async with asyncio.timeout(10):
                await service.started.wait()
            await _connected(service)
            store = service.store
            assert isinstance(store, UnwritableStore)
            assert service.hvac is not None
            store.failing = True
            polled = service.readings_polled
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as upstream:
                await upstream.publish(f"{BASE}/commands", _override("c-1"), qos=1)
                await sub.wait_for(lambda m: len(m) == 1, within=10)
                refused = json.loads(sub.payloads()[0])
                # Polling goes on while the store refuses to record.
                async with asyncio.timeout(10):
                    while service.readings_polled <= polled:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                assert not task.done()
                assert "zone1" not in service.hvac.overrides  # nothing to write to a device
                # Once the store writes again, the same command is taken: its id was not spent.
                store.failing = False
                await upstream.publish(f"{BASE}/commands", _override("c-1"), qos=1)
                await sub.wait_for(lambda m: len(m) == 2, within=10)
                accepted = json.loads(sub.payloads()[1])
        stop.set()
        await asyncio.wait_for(task, 15)
    assert refused == {
        "id": "c-1",
        "ok": False,
        "reason": f"cannot record this command now: cannot write {store.path}: disk I/O error",
        "applied": None,
    }
    assert accepted["ok"] is True, accepted


async def test_a_failing_command_handler_gets_a_reply_and_the_uplink_stays(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[bytes, str | None]] = []

    async def handler(raw: bytes, sender: str | None) -> dict[str, Any]:
        calls.append((raw, sender))
        if len(calls) == 1:
            raise StoreError("the store is closed")
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return {"id": "c-3", "ok": True, "reason": "fine", "applied": {}}

    async with Store(tmp_path / "readings.db") as store:
        uplink = Uplink(
            UplinkConfig(url=mosquitto.url),
            site=SiteInfo(id="s", name="S"),
            gateway_id="gw1",
            store=store,
            birth={},
            on_command=handler,
        )
        async with mqtt_subscribe(mosquitto, "bea/s/gw1/commands/reply") as sub:
            task = asyncio.create_task(uplink.run())
            await _connected(uplink)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as upstream:
                await upstream.publish("bea/s/gw1/commands", b'{"id": "c-1"}', qos=1)
                await upstream.publish("bea/s/gw1/commands/ems", b'{"id": "c-2"}', qos=1)
                await upstream.publish("bea/s/gw1/commands/ems", b'{"id": "c-3"}', qos=1)
                await sub.wait_for(lambda m: len(m) == 3, within=10)
            assert uplink.connected
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    replies = [json.loads(p) for p in sub.payloads()]
    assert replies[0] == {
        "id": "c-1",
        "ok": False,
        "applied": None,
        "reason": "cannot record this command now: the store is closed",
    }
    assert replies[1]["id"] == "c-2"
    assert replies[1]["reason"] == (
        "the gateway failed to handle this command (RuntimeError: a bug)"
    )
    assert replies[2]["ok"] is True
    # The sender is the topic's last level; the replies topic is not a command.
    assert [sender for _, sender in calls] == [None, "ems", "ems"]
    refusals = [r for r in caplog.records if "a command was refused" in r.getMessage()]
    assert len(refusals) == 2
    assert all(r.exc_info is None for r in refusals)  # one line each, no traceback


PULSES_SITE = """
site: {{id: fsize-test, name: File size limit}}
store: {{batch_window: 50ms}}
uplink: {{url: "{url}"}}
commands: {{trust_clock: true}}
buses:
  pins: {{kind: gpio, pin_factory: mock}}
devices:
  - {{name: canteen_hot_water, protocol: gpio, bus: pins, pin: 17, point: volume, unit: m3,
     per_pulse: 0.001, bounce: 1ms, max_rate: 50, interval: 100ms}}
"""


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE on this process: a write at or beyond ``limit`` bytes fails with EFBIG, as on
    a card whose writes fail (Python ignores SIGXFSZ, so the write returns the error)."""
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)


async def test_a_command_while_writes_fail_with_efbig_is_refused(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    config = load_config_text(PULSES_SITE.format(url=mosquitto.url), filename="site.yaml")
    service = Agent(config, data_dir=tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    topic = "bea/fsize-test/gw1"
    expires = (system_clock().wall() + timedelta(minutes=5)).isoformat()
    dial = {"device": "canteen_hot_water", "value": 42.0}
    command = json.dumps({"id": "set-1", "expires": expires, "set_counter": dial})
    async with mqtt_subscribe(mosquitto, f"{topic}/commands/reply") as sub:
        async with asyncio.timeout(10):
            await service.started.wait()
        await _connected(service)
        source = service.push_sources["canteen_hot_water"]
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as upstream:
            with _file_size_limit(1):  # every write of the store's files fails now
                await upstream.publish(f"{topic}/commands", command, qos=1)
                await sub.wait_for(lambda m: len(m) == 1, within=10)
                polled = service.readings_polled
                async with asyncio.timeout(5):  # the source goes on meanwhile
                    while service.readings_polled <= polled:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                assert not task.done()
                value_during = source.value  # type: ignore[attr-defined]
            await upstream.publish(f"{topic}/commands", command, qos=1)
            await sub.wait_for(lambda m: len(m) == 2, within=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    refused, accepted = (json.loads(p) for p in sub.payloads())
    assert (refused["id"], refused["ok"], refused["applied"]) == ("set-1", False, None)
    assert refused["reason"].startswith("cannot record this command now: "), refused
    assert "disk I/O error" in refused["reason"], refused  # how SQLite reports EFBIG
    assert value_during == 0  # nothing was set while the command could not be recorded
    assert accepted["ok"] is True, accepted  # the id was not spent by the refusal
