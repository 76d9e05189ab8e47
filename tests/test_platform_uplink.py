"""The platform uplink end to end: energy intervals in a SQLite store on disk, the real uplink,
the reference platform (hil.platform_server) on a loopback port; the clock is virtual, so a day
of 15-minute periods passes in seconds while every byte crosses a real TCP connection."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.core.backoff import Backoff
from agent.core.clock import VirtualClock
from agent.energy.config import EnergyConfig, MeterConfig
from agent.platform.config import PlatformConfig, PlatformMeter
from agent.platform.reports import LEDGER_KEY, Ledger
from agent.platform.session import PlatformTime
from agent.platform.summary import print_platform_rates
from agent.platform.uplink import RATE_EVENT, PlatformUplink
from agent.store import Store
from hil.platform_server import PlatformServer
from tests.helpers import ROOT

TZ = "Asia/Shanghai"
DAY0 = datetime(2026, 3, 10, 0, 0, tzinfo=ZoneInfo(TZ))
T0 = int(DAY0.timestamp() * 1000)
PERIOD = 900_000
STEP = 30.0  # the uplink looks at the store every 30 virtual seconds when idle
KEY = "k3y-0f-the-pl4tf"  # 16 characters
PER_PERIOD = {"main": 5.0, "light": 2.0, "hvac": 2.5}  # kWh in each 15 minutes

ENERGY = EnergyConfig(
    interval_minutes=15,
    meters=[
        MeterConfig(name="main", device="m", point="import_energy", role="main"),
        MeterConfig(name="light", device="l", point="import_energy", sub_item="01A00"),
        MeterConfig(name="hvac", device="h", point="import_energy", sub_item="01B00"),
    ],
)


def rows(period: int, *, estimated: bool = False) -> list[dict[str, Any]]:
    start = T0 + period * PERIOD
    return [
        {
            "meter": name,
            "start_ms": start,
            "end_ms": start + PERIOD,
            "value": value + period / 100,
            "unit": "kWh",
            "quality": "estimated" if estimated and name == "hvac" else "measured",
            "flags": ["gap"] if estimated and name == "hvac" else [],
            "energy_type": "electricity",
            "sub_item": ENERGY.meter(name).code,
            "role": ENERGY.meter(name).role.value,
        }
        for name, value in PER_PERIOD.items()
    ]


def platform_config(port: int, key_file: Path, **extra: Any) -> PlatformConfig:
    settings: dict[str, Any] = {"continuous_gap": 0, "timeout": 2.0, **extra}
    return PlatformConfig(
        host="127.0.0.1",
        port=port,
        building_id="421000A001",
        gateway_id="01",
        key_file=key_file,
        meters=[
            PlatformMeter(meter="main", id=1),
            PlatformMeter(meter="light", id=2),
            PlatformMeter(meter="hvac", id=3),
        ],
        **settings,
    )


@dataclass
class Rig:
    store: Store
    server: PlatformServer
    clock: VirtualClock
    config: PlatformConfig
    times: list[PlatformTime]
    task: asyncio.Task[None] | None = None
    uplink: PlatformUplink | None = None

    def start(self) -> PlatformUplink:
        self.uplink = PlatformUplink(
            self.config,
            energy=ENERGY,
            tz=TZ,
            store=self.store,
            clock=self.clock,
            on_time=self.times.append,
            backoff=Backoff(initial=1.0, cap=30.0, rand=lambda: 0.5),
            idle=STEP,
        )
        self.task = asyncio.create_task(self.uplink.run(), name="test[platform].run")
        return self.uplink

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def idle(self) -> None:
        """Until the uplink waits on the clock again (its network and store work is done)."""
        async with asyncio.timeout(5):
            # The clock offers no event for "someone sleeps on me": poll it.
            while self.task is not None and not self.task.done() and not self.clock.sleepers:  # noqa: ASYNC110
                await asyncio.sleep(0.001)

    async def run_for(self, seconds: float, *, step: float = STEP) -> None:
        """Virtual time passes, in steps that each wait for the uplink's real I/O."""
        target = self.clock.monotonic() + seconds
        while self.clock.monotonic() < target:
            await self.idle()
            await self.clock.advance(min(step, target - self.clock.monotonic()))

    async def until(self, predicate: Callable[[], bool], *, step: float = STEP) -> None:
        """Let virtual time pass in small steps until ``predicate()`` (a few real seconds)."""
        async with asyncio.timeout(10):
            while not predicate():
                await self.idle()
                await self.clock.advance(step)
                await asyncio.sleep(0.001)  # the real network moves


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, *, variant: str = "guideline-a", **extra: Any) -> AsyncIterator[Rig]:
    key_file = tmp_path / "platform.key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    clock = VirtualClock(DAY0)
    async with (
        Store(tmp_path / "readings.db", clock=clock, max_bytes=None) as store,
        PlatformServer(key=KEY.encode(), secret=KEY, variant=variant, clock=clock) as server,
    ):
        profile = {} if variant == "guideline-a" else {"profile": variant}
        config = platform_config(server.port, key_file, **profile, **extra)
        r = Rig(store, server, clock, config, [])
        try:
            yield r
        finally:
            await r.stop()


async def test_one_period_is_reported_with_the_stored_values_and_acked(tmp_path: Path) -> None:
    async with rig(tmp_path, trust_time=True) as r:
        await r.store.add_events([], intervals=rows(0))
        uplink = r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        await r.run_for(PERIOD / 1000)
        await r.until(lambda: len(r.server.accepted) == 1)
        report = r.server.accepted[("421000A001", "20260310000000")]
        assert report.operation == "report"
        assert report.meters[1] == {1: ("01000", 5.0, "0"), 2: ("01000", 5.0, "0")}
        assert report.meters[2][2] == ("01A00", 2.0, "0")
        assert report.items == {"01000": (5.0, "0"), "01A00": (2.0, "0"), "01B00": (2.5, "0")}
        await r.until(lambda: uplink.ledger is not None and uplink.ledger.frontier > T0)
        saved = await r.store.get_meta(LEDGER_KEY)
        assert saved is not None
        assert Ledger.from_json(saved).frontier == T0 + PERIOD
        assert r.times  # trust_time: the heartbeat's time was offered to the clock trust
        assert abs(r.times[-1].offset_s) < 2


@pytest.mark.parametrize("variant", ["guideline-a-java", "zhejiang-b"])
async def test_the_other_shipped_profiles_report_to_their_platform(
    tmp_path: Path, variant: str
) -> None:
    async with rig(tmp_path, variant=variant) as r:
        await r.store.add_events([], intervals=rows(0, estimated=True))
        r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        await r.run_for(PERIOD / 1000)
        await r.until(lambda: len(r.server.accepted) == 1)
        (report,) = r.server.accepted.values()
        assert report.meters[3][2] == ("01B00", 2.5, "1")  # estimated by the accounting
        assert report.items["01B00"] == (2.5, "1")
        assert report.items["01A00"] == (2.0, "0")


def stamp(period: int) -> str:
    return datetime.fromtimestamp((T0 + period * PERIOD) / 1000, ZoneInfo(TZ)).strftime(
        "%Y%m%d%H%M%S"
    )


async def test_a_day_with_two_outages_and_a_restart_arrives_complete_and_once(
    tmp_path: Path,
) -> None:
    # The platform is down for periods 20-27 and 60-67 (two hours each); the uplink is
    # restarted while the second backlog drains (one continuous report a minute).
    down = {*range(20, 28), *range(60, 68)}
    async with rig(tmp_path, continuous_gap=60, heartbeat=600) as r:
        r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        for period in range(96):
            await r.store.add_events([], intervals=rows(period))
            r.server.faults.down = period in down
            if period in down:
                r.server.drop_connections()
            if period == 68:  # the platform is back; restart while the backlog drains
                await r.run_for(300)
                resent = {t for (_, t) in r.server.accepted} & {stamp(p) for p in range(60, 68)}
                assert 0 < len(resent) < 8
                await r.stop()
                r.start()
                await r.run_for(PERIOD / 1000 - 300)
            else:
                await r.run_for(PERIOD / 1000)
            if period not in down:
                await r.until(lambda p=period: ("421000A001", stamp(p)) in r.server.accepted)
        await r.until(lambda: len(r.server.accepted) == 96, step=STEP)
        await r.clock.advance(120)  # past midnight: the day's figure is announced

        assert r.server.tally.duplicates == 0
        assert r.server.tally.reports_seen == 96  # nothing was sent twice
        for period in range(96):
            report = r.server.accepted[("421000A001", stamp(period))]
            for meter_id, name in ((1, "main"), (2, "light"), (3, "hvac")):
                value = PER_PERIOD[name] + period / 100
                assert report.meters[meter_id][2][1] == pytest.approx(value)
                cumulative = sum(PER_PERIOD[name] + p / 100 for p in range(period + 1))
                assert report.meters[meter_id][1][1] == pytest.approx(cumulative)
        arrivals = r.server.arrivals
        # After each outage the current period goes first, as a report; the missed ones follow,
        # oldest first, as continuous reports.
        # After each outage the newest period goes first, as a report (on time); the missed
        # ones follow, oldest first, as continuous reports, one a minute.
        for first, newest in ((20, 27), (60, 67)):
            back = arrivals.index(("report", stamp(newest)))
            resent = [t for op, t in arrivals[back:] if op == "continuous"][: newest - first]
            assert resent == [stamp(p) for p in range(first, newest)]
        assert [op for op, _ in arrivals].count("continuous") == 14
        events = await r.store.events_after(0, 100, kind=RATE_EVENT)
        assert events[-1].detail == {
            "day": "2026-03-10",
            "delivered": 96,
            "due": 96,
            "rate_percent": 100.0,
        }
        shown = io.StringIO()  # as `edge-agent energy` prints it
        print_platform_rates(tmp_path / "readings.db", out=shown, now_ms=r.clock.now_ms())
        day_line = next(line for line in shown.getvalue().splitlines() if "2026-03-10" in line)
        assert day_line.split() == ["2026-03-10", "96/96", "100.0", "%"]


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        ("bad-crc", "CRC mismatch"),
        ("not-xml", "not well-formed XML"),
        ("unknown", '<surprise operation="whatever">'),
        ("huge", "more than the 1048576 this profile accepts"),
        ("wrong-ack-time", "acknowledged the report of 20000101000000"),
    ],
)
async def test_bad_input_from_the_platform_gets_a_log_line_and_a_clean_reconnect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str, logged: str
) -> None:
    async with rig(tmp_path) as r:
        uplink = r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        await r.store.add_events([], intervals=rows(0))
        # The next reply is bad: the heartbeat's, or (for a wrong ack) the report's ack.
        r.server.faults.bad_reply = fault  # type: ignore[assignment]
        await r.run_for(PERIOD / 1000)
        await r.until(lambda: len(r.server.accepted) == 1 and r.server.tally.logins >= 2)
        assert logged in caplog.text
        assert r.task is not None
        assert not r.task.done()
        if fault == "wrong-ack-time":
            # The first ack named another period: not taken as delivery; the report went again.
            assert r.server.tally.reports_seen == 2
        assert uplink.ledger is not None
        assert uplink.ledger.days == {"2026-03-10": 1}


async def test_a_replayed_challenge_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path) as r:
        r.server.faults.challenge = "12345678"
        r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        r.server.drop_connections()
        await r.until(lambda: "repeated an earlier challenge" in caplog.text)
        assert r.server.tally.logins == 1  # the replay was not answered
        r.server.faults.challenge = None
        await r.until(lambda: r.server.tally.logins == 2)


async def test_a_refused_identity_check_is_named_and_retried_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path) as r:
        r.server.faults.refuse_auth = True
        uplink = r.start()
        await r.until(lambda: r.server.tally.refused >= 3)
        assert "refused the identity check of building 421000A001 gateway 01" in caplog.text
        assert uplink.state["state"] == "refused"
        r.server.faults.refuse_auth = False
        await r.until(lambda: uplink.state["state"] == "online", step=STEP)


@pytest.mark.parametrize("fault", ["never_ack", "drop_on_report", "nack", "ack_delay"])
async def test_a_report_is_delivered_only_when_acked(tmp_path: Path, fault: str) -> None:
    async with rig(tmp_path, timeout=0.4) as r:
        uplink = r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        await r.store.add_events([], intervals=rows(0))
        if fault == "drop_on_report":
            r.server.faults.drop_on_report = 2
        elif fault == "ack_delay":
            r.server.faults.ack_delay = 0.6  # real seconds, beyond the timeout
        else:
            setattr(r.server.faults, fault, True)
        await r.run_for(PERIOD / 1000)
        await r.until(lambda: r.server.tally.reports_seen >= 2)
        assert uplink.ledger is not None
        assert uplink.ledger.frontier == T0  # not delivered
        setattr(r.server.faults, fault, 0 if fault in ("drop_on_report", "ack_delay") else False)
        await r.until(lambda: uplink.ledger is not None and uplink.ledger.frontier > T0)
        assert len(r.server.accepted) == 1


async def test_a_slow_link_still_delivers(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.server.faults.slow_link = 0.01  # 10 ms per 64 bytes: a GPRS-class link
        r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        await r.store.add_events([], intervals=rows(0))
        await r.run_for(PERIOD / 1000)
        await r.until(lambda: len(r.server.accepted) == 1)


async def _spawn(tmp_path: Path, port: int) -> asyncio.subprocess.Process:
    start = (DAY0 + timedelta(days=1, minutes=10)).isoformat()
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.platform_child",
        str(tmp_path / "readings.db"),
        str(port),
        str(tmp_path / "platform.key"),
        start,
        cwd=ROOT,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_a_kill_9_mid_backlog_neither_loses_nor_repeats(tmp_path: Path) -> None:
    (tmp_path / "platform.key").write_text(KEY, encoding="utf-8")
    async with Store(tmp_path / "readings.db", max_bytes=None) as store:
        for period in range(96):
            await store.add_events([], intervals=rows(period))
    async with PlatformServer(key=KEY.encode(), secret=KEY) as server:
        child = await _spawn(tmp_path, server.port)
        try:
            await server.wait_for(lambda: len(server.accepted) >= 30, within=20)
            # Kill it with a report on the wire that the platform has not acknowledged.
            server.faults.never_ack = True
            seen = server.tally.reports_seen
            await server.wait_for(lambda: server.tally.reports_seen > seen, within=5)
            child.kill()  # SIGKILL: no cleanup of any kind
            await child.wait()
            assert 30 <= len(server.accepted) < 96
            server.faults.never_ack = False
            child = await _spawn(tmp_path, server.port)
            await server.wait_for(lambda: len(server.accepted) == 96, within=20)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert server.tally.duplicates == 0
    for period in range(96):
        report = server.accepted[("421000A001", stamp(period))]
        assert report.meters[2][2][1] == pytest.approx(PER_PERIOD["light"] + period / 100)
        cumulative = sum(PER_PERIOD["light"] + p / 100 for p in range(period + 1))
        assert report.meters[2][1][1] == pytest.approx(cumulative)


async def test_a_new_report_period_goes_on_from_what_was_delivered(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.store.add_events([], intervals=[x for p in range(4) for x in rows(p)])
        r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        await r.run_for(2 * PERIOD / 1000)
        await r.until(lambda: len(r.server.accepted) == 2)
        await r.stop()
        r.config = platform_config(r.server.port, tmp_path / "platform.key", period=1800)
        r.start()
        await r.run_for(2 * PERIOD / 1000)
        await r.until(lambda: len(r.server.accepted) == 3)
        half_hour = r.server.accepted[("421000A001", stamp(2))]
        light = [PER_PERIOD["light"] + p / 100 for p in range(4)]
        assert half_hour.meters[2][2][1] == pytest.approx(light[2] + light[3])
        assert half_hour.meters[2][1][1] == pytest.approx(sum(light))
        assert r.server.tally.duplicates == 0


async def test_missing_data_is_never_invented_and_lowers_the_rate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path) as r:
        # Period 0 has every meter; period 1 lacks hvac (silent meter); period 2 has nothing.
        period1 = [x for x in rows(1) if x["meter"] != "hvac"]
        await r.store.add_events([], intervals=rows(0) + period1 + rows(3))
        uplink = r.start()
        await r.until(lambda: r.server.tally.logins == 1)
        await r.run_for(4 * PERIOD / 1000 + 600)  # past the settling time of period 3
        await r.until(lambda: len(r.server.accepted) == 3)
        assert set(r.server.accepted) == {("421000A001", stamp(p)) for p in (0, 1, 3)}
        partial = r.server.accepted[("421000A001", stamp(1))]
        assert set(partial.meters) == {1, 2}  # hvac is left out, not reported as zero
        assert "01B00" not in partial.items
        assert "no meter has data from 2026-03-09T16:30:00.000Z on" in caplog.text
        assert uplink.ledger is not None
        assert uplink.ledger.meters_missing == 1
        out = io.StringIO()
        print_platform_rates(tmp_path / "readings.db", out=out, now_ms=r.clock.now_ms())
        assert "3/4" in out.getvalue()
        assert "75.0 %" in out.getvalue()
