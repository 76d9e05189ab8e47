"""One writing process per store (agent/store/lock.py): a second agent, `edge-agent sync` or a
repair on a data directory an agent is writing is refused with a sentence naming the holder;
the readers still work beside it; a holder that dies, however it dies, leaves no stale lock.
The service (started by systemd) waits for a held store instead of exiting into the unit's
start limit. Real parts: SQLite files on disk, child processes, the CLI, the simulated building
over Modbus TCP."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.core.clock import system_clock
from agent.core.errors import StoreError, StoreInUseError
from agent.daemon import AgentService
from agent.sdnotify import started_by_systemd
from agent.status import print_status, status_report
from agent.store import Store, read_stats
from agent.store.lock import StoreLock, writer_pid
from agent.store.maintenance import check_store
from hil.server import SimulatedBuilding
from tests.store_helpers import ENV, readings
from tests.test_reload import SITE, _started
from tests.test_store_damage import damage_page, filled

WINDOW = 0.05
ROOT = Path(__file__).resolve().parents[1]

# A child that opens the store, commits 50 readings, says so, and waits to be killed.
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from agent.store import Store
    from tests.store_helpers import readings

    async def main():
        async with Store(sys.argv[1], batch_window=0.05) as store:
            await store.append(readings(0, 50))
            await store.flush()
            print("holding", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_a_second_store_on_the_same_file_is_refused_and_the_first_goes_on(
    tmp_path: Path,
) -> None:
    db = tmp_path / "readings.db"
    async with Store(db, batch_window=WINDOW) as store:
        await store.append(readings(0, 10))
        second = Store(db, batch_window=WINDOW)
        with pytest.raises(StoreError, match=rf"in use by process {os.getpid()}\b.*stop it first"):
            await second.open()
        await second.aclose()  # a refused store closes quietly
        await store.append(readings(10, 10))
        await store.flush()
        assert store.last_seq == 20
    async with Store(db, batch_window=WINDOW) as again:  # closed: the lock went with it
        assert again.last_seq == 20
    assert read_stats(db).rows == 20


async def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(db), stdout=asyncio.subprocess.PIPE, env=ENV, cwd=ROOT
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"holding"
        with pytest.raises(StoreError, match=rf"in use by process {child.pid}\b"):
            async with Store(db, batch_window=WINDOW):
                pass
    finally:
        child.kill()  # as a power cut: no close, no clean-up
        await asyncio.wait_for(child.wait(), 10)
    assert child.returncode == -signal.SIGKILL
    async with Store(db, batch_window=WINDOW) as store:
        assert store.last_seq == 50


async def test_sync_is_refused_while_the_agent_writes_and_status_still_reads(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: s1, name: T}\ngateway: {id: g1}\nuplink: {url: 'mqtt://127.0.0.1:1'}\n",
        encoding="utf-8",
    )
    async with Store(data / "readings.db", batch_window=WINDOW) as store:
        await store.append(readings(0, 30))
        await store.flush()

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "agent", *args],
                capture_output=True, text=True, env=ENV, timeout=60, check=False,
            )  # fmt: skip

        synced = await asyncio.to_thread(
            cli, "sync", "--data-dir", str(data), "--config", str(site)
        )
        status = await asyncio.to_thread(cli, "status", "--data-dir", str(data))
        await store.append(readings(30, 5))  # the agent is not disturbed
        await store.flush()
        assert store.last_seq == 35
    assert synced.returncode == 1, synced.stderr
    assert f"is in use by process {os.getpid()}" in synced.stderr
    assert "systemctl stop edge-agent" in synced.stderr
    assert "Traceback" not in synced.stderr
    assert status.returncode == 0, status.stderr
    assert "30 readings" in status.stdout
    # status tells that the agent runs, and which process it is, without taking the lock
    assert f"agent:         running (process {os.getpid()} writes this store)" in status.stdout
    assert read_stats(data / "readings.db").unsynced == 35  # sync sent nothing


def test_status_says_whether_an_agent_writes_the_store(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    asyncio.run(filled(db))
    out = io.StringIO()
    print_status(db, as_json=False, out=out)
    assert "agent:         not running: the devices below are as its last run left them" in (
        out.getvalue()
    )
    assert status_report(db)["writer"] == {"running": False, "pid": None}
    held = StoreLock(db)
    held.acquire()
    try:
        assert status_report(db)["writer"] == {"running": True, "pid": os.getpid()}
        assert writer_pid(tmp_path / "other.db") is None  # no lock file: nobody writes it
    finally:
        held.release()
    assert writer_pid(db) is None


def test_a_repair_is_refused_while_the_store_is_held(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    asyncio.run(filled(db))
    damage_page(db)
    held = StoreLock(db)
    held.acquire()
    try:
        with pytest.raises(StoreError, match=r"in use by process \d+ .*repair the file itself"):
            check_store(db, repair=True, out=io.StringIO())
        assert not list(tmp_path.glob("readings.db.damaged-*")), "nothing was moved"
    finally:
        held.release()
    assert check_store(db, repair=True, out=io.StringIO()) == 0


async def test_a_file_system_without_flock_leaves_the_store_unguarded_not_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr("agent.store.lock.fcntl.flock", no_locks)
    db = tmp_path / "readings.db"
    with caplog.at_level(logging.WARNING, logger="agent.store.lock"):
        async with Store(db, batch_window=WINDOW) as store:
            await store.append(readings(0, 5))
            await store.flush()
            assert store.last_seq == 5
            # status cannot see a lock, and says it cannot tell rather than "not running"
            writer = status_report(db)["writer"]
            assert writer["running"] is None
            assert f"process {os.getpid()} writes it without a lock" in writer["why_unknown"]
    assert "running without the one-writer guard" in caplog.text
    assert status_report(db)["writer"] == {"running": False, "pid": None}  # closed: nobody


@contextlib.asynccontextmanager
async def service_with_store_held(
    tmp_path: Path, *, wait: bool
) -> AsyncIterator[tuple[AgentService, asyncio.Task[None], StoreLock]]:
    """The agent service on a simulated switchboard, started while another process (here a
    StoreLock of this one) holds its store."""
    async with SimulatedBuilding() as sim:
        host, port = sim.endpoints["switchboard"]
        config_path = tmp_path / "site.yaml"
        text = SITE.replace("{host}", host).replace("{port}", str(port)).format(interval="1s")
        config_path.write_text(text, encoding="utf-8")
        config = load_config(config_path)
        held = StoreLock(tmp_path / "data" / config.store.path)
        held.acquire()
        service = AgentService(
            config_path=config_path,
            data_dir=tmp_path / "data",
            stop=asyncio.Event(),
            reload=asyncio.Event(),
            clock=system_clock(),
            wait_for_store=wait,
        )
        task = asyncio.create_task(service.run(config))
        try:
            yield service, task, held
        finally:
            held.release()
            service.stop.set()
            with contextlib.suppress(StoreError):
                await asyncio.wait_for(task, 10)


async def test_the_service_waits_for_its_store_and_starts_when_it_is_free(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.service")
    async with service_with_store_held(tmp_path, wait=True) as (service, task, held):
        await asyncio.sleep(2.5)  # past the first retry
        agent = service.agent
        assert agent is not None
        assert not task.done(), "the service waits instead of exiting into systemd's limit"
        assert not agent.started.is_set()
        said = [r.getMessage() for r in caplog.records]
        waiting = [line for line in said if "waiting for it to end" in line]
        assert len(waiting) == 1, waiting  # said once, not at every retry
        assert f"in use by process {os.getpid()}" in waiting[0]
        held.release()
        await _started(service, 1)
        async with asyncio.timeout(10):
            while agent.readings_polled == 0:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.05)
        db = agent.db_path
    assert read_stats(db).rows == agent.readings_polled


async def test_a_stop_while_the_service_waits_for_its_store_ends_it_at_once(
    tmp_path: Path,
) -> None:
    async with service_with_store_held(tmp_path, wait=True) as (service, task, _held):
        await asyncio.sleep(0.5)
        service.stop.set()
        await asyncio.wait_for(task, 5)  # well before the next retry would matter
        assert service.agent is not None
        assert not service.agent.started.is_set()


async def test_an_agent_run_by_hand_on_a_held_store_says_so_and_stops(tmp_path: Path) -> None:
    async with service_with_store_held(tmp_path, wait=False) as (_service, task, _held):
        with pytest.raises(StoreInUseError, match=rf"in use by process {os.getpid()}\b"):
            await asyncio.wait_for(task, 5)


def test_only_the_process_systemd_started_counts_as_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SYSTEMD_EXEC_PID", raising=False)
    assert not started_by_systemd()  # a shell
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid() + 1))
    assert not started_by_systemd()  # a command that inherited a unit's environment
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    assert started_by_systemd()
