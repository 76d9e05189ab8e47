"""The command guard: the memory of spent ids outlives a restart (a retained command is not
applied twice), one sender's junk cannot lock out another sender, and with a secret every MQTT
command must carry a good HMAC-SHA256 signature; every refusal says why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from agent.commands.counters import CounterKind, Meter
from agent.commands.memory import CommandMemory
from agent.commands.path import REFUSALS_RECORDED, CommandPath
from agent.commands.signature import canonical, sign
from agent.config.loader import load_config_text
from agent.core.clock import system_clock
from agent.service import Agent
from agent.store import Store, read_events
from drivers.gpio.pulses import pin_backend
from drivers.gpio.source import PulseMeterSource

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 15, 10, 0, tzinfo=SHANGHAI)
SECRET = b"0123456789abcdef0123456789abcdef"
BASE = "bea/cmd-test/gw1"

SITE = """
site: {{id: cmd-test, name: Commands}}
store: {{batch_window: 50ms}}
uplink: {{url: "{url}"}}
commands: {{trust_clock: true, secret_file: "{secret}", per_sender: 20, window: 10m}}
buses:
  pins: {{kind: gpio, pin_factory: mock}}
  plant: {{kind: tcp, host: 127.0.0.1, port: 9, timeout: 200ms}}
devices:
  - {{name: canteen_hot_water, protocol: gpio, bus: pins, pin: 17, point: volume, unit: m3,
     per_pulse: 0.001, bounce: 1ms, max_rate: 50, interval: 200ms}}
  - {{name: main_meter, bus: plant, unit_id: 1, profile: eastron-sdm120, interval: 1m}}
"""


class Counter:
    """A pulse meter's counter as the command sees it (drivers.gpio.source.PulseMeterSource)."""

    def __init__(self) -> None:
        self.value = 10.0

    async def set(self, value: float) -> tuple[float, float]:
        old, self.value = self.value, value
        return old, value


def _path(*, per_sender: int | None = 100, secret: bytes | None = None) -> CommandPath:
    kind = CounterKind({"water": Meter(Counter(), "m3")}, others={"main": "modbus"})
    memory = CommandMemory(capacity=1024, per_sender=per_sender, window=600)
    return CommandPath([kind], memory=memory, ttl_max=600, secret=secret)


def _command(
    command_id: str, value: float = 12.5, *, now: datetime = NOW, **extra: Any
) -> dict[str, Any]:
    return {
        "id": command_id,
        "expires": (now + timedelta(minutes=5)).isoformat(),
        "set_counter": {"device": "water", "value": value},
        **extra,
    }


def _signed(command: dict[str, Any], secret: bytes = SECRET) -> dict[str, Any]:
    return {**command, "sig": sign(command, secret)}


# ---- quotas ------------------------------------------------------------------------------------


async def test_junk_from_one_sender_does_not_lock_out_another(tmp_path: Path) -> None:
    path = _path(per_sender=100)
    async with Store(tmp_path / "readings.db") as store:

        async def record(kind: str, event: dict[str, Any], memory: str | None) -> None:
            await store.add_events([(kind, event)], meta={"m": memory} if memory else None)

        path = CommandPath(path.kinds, memory=path.memory, ttl_max=600, record=record)
        # 1,100 commands with valid, fresh ids from one sender (more than the memory holds).
        junk = [
            await path.handle(_command(f"junk-{n}", -1), now=NOW, sender="junk")
            for n in range(1100)
        ]
        real = await path.handle(_command("real-1"), now=NOW, sender="platform")
        # The window moves on: the junk sender may send again.
        later = NOW + timedelta(minutes=10, seconds=1)
        again = await path.handle(_command("junk-again", now=later), now=later, sender="junk")
    assert all(not r["ok"] for r in junk)
    assert junk[0]["reason"] == "`set_counter.value` must be a finite number >= 0, not -1"
    quota = "too many commands from sender 'junk': at most 100 in 10 min; try again in 600 s"
    assert [r["reason"] for r in junk[100:]] == [quota] * 1000
    assert real["ok"], real
    assert again["ok"], again
    # Recorded: the 100 commands that spent an id, 20 refusals over the quota (in a minute),
    # the real command, which carries the count of the refusals not recorded one by one (the
    # store is not written 1,000 times for junk), and the junk sender's next one.
    events = list(reversed(read_events(tmp_path / "readings.db", limit=2000)))
    assert len(events) == 100 + REFUSALS_RECORDED + 2
    assert [e.detail["reason"] for e in events[100:120]] == [quota] * REFUSALS_RECORDED
    real_event = events[120].detail
    assert (real_event["id"], real_event["sender"]) == ("real-1", "platform")
    assert real_event["unrecorded_refusals"] == 1000 - REFUSALS_RECORDED
    assert "unrecorded_refusals" not in events[121].detail


async def test_the_sender_comes_from_the_topic_or_the_command() -> None:
    path = _path(per_sender=1)
    assert (await path.handle(_command("a", sender="ems"), now=NOW))["ok"]
    named = await path.handle(_command("b", sender="ems"), now=NOW)
    assert named["reason"].startswith("too many commands from sender 'ems'")
    assert (await path.handle(_command("c"), now=NOW, sender="bms"))["ok"]
    clash = await path.handle(_command("d", sender="ems"), now=NOW, sender="bms")
    assert clash["reason"] == "`sender` 'ems' does not match the topic's sender 'bms'"
    bad = await path.handle(_command("e", sender="a/b"), now=NOW)
    assert bad["reason"].startswith("sender 'a/b' is not a name")


# ---- signatures --------------------------------------------------------------------------------


def test_the_canonical_form_is_rfc_8785() -> None:
    # RFC 8785 §3.2.2: members sorted, no whitespace, numbers as ECMAScript writes them.
    command = {"zone": "zone1", "id": "c-1", "setpoint": 27.0, "big": 1e21, "tiny": 1e-7,
               "text": "室温\n\"x\"", "sig": "ignored", "list": [0.5, True, None]}  # fmt: skip
    assert (
        canonical(command)
        == (
            '{"big":1e+21,"id":"c-1","list":[0.5,true,null],"setpoint":27,'
            '"text":"室温\\n\\"x\\"","tiny":1e-7,"zone":"zone1"}'
        ).encode()
    )
    # Any spacing and member order the sender's JSON library chooses signs the same.
    spaced = json.loads(json.dumps(command, indent=4, sort_keys=False))
    assert sign(spaced, SECRET) == sign(command, SECRET)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c, None),
        (lambda c: {k: v for k, v in c.items() if k != "sig"}, "the command is not signed"),
        (lambda c: {**c, "sig": "00" * 32}, "the signature does not match"),
        (lambda c: {**c, "sig": "xyz"}, "`sig` must be 64 hexadecimal digits"),
        (lambda c: {**c, "set_counter": {"device": "water", "value": 99}}, "does not match"),
        (
            lambda c: _signed({k: v for k, v in c.items() if k != "sig"}, b"another secret!!!"),
            "does not match",
        ),
    ],
    ids=["good", "missing", "bad", "malformed", "tampered", "other-secret"],
)
async def test_signed_commands(change: Callable[[dict[str, Any]], dict[str, Any]],
                               reason: str | None) -> None:  # fmt: skip
    path = _path(secret=SECRET)
    reply = await path.handle(change(_signed(_command("c-1"))), now=NOW, sender="platform")
    if reason is None:
        assert reply["ok"], reply
        return
    assert not reply["ok"]
    assert reason in reply["reason"]
    assert "c-1" not in path.memory  # a forged command spends nobody's id


async def test_local_commands_need_no_signature() -> None:
    path = _path(secret=SECRET)
    assert (await path.handle(_command("cli-1"), now=NOW, source="cli", sender="cli"))["ok"]


# ---- pulse counter commands --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"device": "boiler", "value": 1}, "unknown device 'boiler'; the pulse meters are: water"),
        ({"device": "main", "value": 1}, "device 'main' is not a pulse meter (modbus)"),
        ({"device": "water"}, "`set_counter` has no `value` (the meter's dial, in m3)"),
        ({"device": "water", "value": "12"}, "`set_counter.value` must be a number, not text"),
        ({"device": "water", "value": 12, "unit": "L"}, "counts in 'm3'"),
        ({"device": "water", "valeu": 12}, "unknown field 'valeu' (did you mean 'value'?)"),
        ([1], "`set_counter` must be an object, not a list"),
    ],
)
async def test_set_counter_refusals_say_why(body: Any, reason: str) -> None:
    path = _path()
    reply = await path.handle({**_command("c-1"), "set_counter": body}, now=NOW)
    assert (reply["ok"], reply["applied"]) == (False, None)
    assert reason in reply["reason"]


async def test_a_command_for_a_part_this_gateway_lacks_says_so() -> None:
    path = _path()  # pulse meters, no hvac section
    command = {k: v for k, v in _command("c-1").items() if k != "set_counter"}
    reply = await path.handle({**command, "action": "override", "zone": "z1"}, now=NOW)
    assert reply["ok"] is False
    assert reply["reason"] == "this gateway takes no HVAC commands: its config has no hvac section"


# ---- the running agent: memory across a restart, signatures, set_counter over MQTT --------------


async def _run(config: Any, data_dir: Path, work: Callable[[Agent], Awaitable[None]]) -> None:
    service = Agent(config, data_dir=data_dir)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    async with asyncio.timeout(10):
        await service.started.wait()
        while service.uplink is None or not service.uplink.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await work(service)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_retained_command_is_not_applied_again_after_a_restart(
    tmp_path: Path, mosquitto: Any, mqtt_subscribe: Any
) -> None:
    secret = tmp_path / "command.secret"
    secret.write_bytes(SECRET + b"\n")
    config = load_config_text(SITE.format(url=mosquitto.url, secret=secret), filename="site.yaml")
    expires = (system_clock().wall() + timedelta(minutes=5)).isoformat()
    dial = {"device": "canteen_hot_water", "value": 1234.5, "unit": "m3"}
    setting = {"id": "set-1", "expires": expires, "set_counter": dial}
    others = [
        {**setting, "id": "set-2"},  # unsigned
        {**_signed({**setting, "id": "set-3"}), "expires": expires[:-1] + "1"},  # changed
        _signed({**setting, "id": "set-4", "set_counter": {"device": "main_meter", "value": 1}}),
    ]
    values: list[float] = []

    def replies(sub: Any) -> list[dict[str, Any]]:
        return [json.loads(p) for p in sub.payloads(f"{BASE}/commands/reply")]

    async def first(service: Agent) -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as upstream:
            # Retained: the broker hands it to every new subscription, so to the next run too.
            await upstream.publish(f"{BASE}/commands/platform", json.dumps(_signed(setting)),
                                   qos=1, retain=True)  # fmt: skip
            for command in others:
                await upstream.publish(f"{BASE}/commands/platform", json.dumps(command), qos=1)
        await sub.wait_for(lambda _: len(replies(sub)) == 4, within=10)
        source = service.push_sources["canteen_hot_water"]
        assert isinstance(source, PulseMeterSource)
        values.append(source.value)
        pin = pin_backend(service.links["pins"]).factory.pin(17)
        for _ in range(5):
            pin.drive_low()
            await asyncio.sleep(0.03)
            pin.drive_high()
            await asyncio.sleep(0.03)
        values.append(source.value)

    async def second(service: Agent) -> None:
        await sub.wait_for(lambda _: len(replies(sub)) == 5, within=10)
        source = service.push_sources["canteen_hot_water"]
        assert isinstance(source, PulseMeterSource)
        values.append(source.value)

    async with mqtt_subscribe(mosquitto, f"{BASE}/commands/reply") as sub:
        await _run(config, tmp_path, first)
        await _run(config, tmp_path, second)
    got = replies(sub)
    assert got[0] == {
        "id": "set-1",
        "ok": True,
        "reason": "counter of canteen_hot_water set from 0 to 1234.5 m3",
        "applied": {"device": "canteen_hot_water", "before": 0.0, "after": 1234.5, "unit": "m3"},
    }
    assert [(r["id"], r["ok"]) for r in got[1:4]] == [("set-2", False), ("set-3", False),
                                                      ("set-4", False)]  # fmt: skip
    assert got[1]["reason"].startswith("the command is not signed")
    assert got[2]["reason"].startswith("the signature does not match")
    assert "'main_meter' is not a pulse meter (modbus)" in got[3]["reason"]
    assert got[4] == {
        "id": "set-1",
        "ok": False,
        "reason": "replayed: the command id 'set-1' was already used",
        "applied": None,
    }
    # Set once, then counting on: the replay after the restart did not set it back.
    assert values == [1234.5, 1234.505, 1234.505]
    events = [e for e in read_events(tmp_path / "readings.db", limit=100)
              if e.kind == "pulses.command"]  # fmt: skip
    assert [(e.detail["id"], e.detail["ok"], e.detail["sender"]) for e in reversed(events)] == [
        ("set-1", True, "platform"),
        ("set-2", False, "platform"),
        ("set-3", False, "platform"),
        ("set-4", False, "platform"),
        ("set-1", False, "platform"),
    ]
    assert events[-1].detail["counter"] == {
        "device": "canteen_hot_water", "before": 0.0, "after": 1234.5, "unit": "m3"
    }  # fmt: skip


async def test_the_saved_memory_keeps_ids_and_time_across_a_restart() -> None:
    path = _path()
    assert (await path.handle(_command("c-1"), now=NOW))["ok"]
    saved = path.memory.to_json()
    restarted = _path()
    restarted.memory.restore(saved)
    replay = await restarted.handle(_command("c-1"), now=NOW + timedelta(seconds=1))
    assert replay["reason"] == "replayed: the command id 'c-1' was already used"
    # Restarted on a clock an hour behind: the memory's time does not go back with it, so a
    # command that had already expired (and may have been forgotten) is still refused.
    behind = NOW - timedelta(hours=1)
    stale = await restarted.handle(_command("c-0", now=behind), now=behind)
    assert stale["reason"].startswith("expired at 2026-07-15T09:05:00+08:00")
    with pytest.raises(ValueError, match="cannot be read"):
        restarted.memory.restore('{"spent": 3}')
