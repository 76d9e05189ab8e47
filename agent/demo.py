"""``edge-agent demo``: the agent on the simulated building, with a compact live view."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from agent.config.loader import load_config_text
from agent.config.model import SiteConfig, UplinkConfig
from agent.core.links import BleAdapterConfig, GpioConfig, SerialLinkConfig, TcpLinkConfig
from agent.core.record import StoredReading, ms_to_iso
from agent.service import Agent
from drivers.ble.backend import FakeBackend
from drivers.ble.driver import BleDriver
from drivers.ble.spec import BleSensorConfig
from drivers.gpio.pulses import pin_backend
from drivers.gpio.spec import PulseMeterConfig
from hil.building import Building
from hil.rooms import BTHOME_SERVICE_UUID, PulseTrain, RoomSensor
from hil.server import SimulatedBuilding

__all__ = ["demo_config", "run_demo"]

REFRESH = 2.0  # seconds between live-view frames


def demo_config_text() -> str:
    """The shipped demo site config's text (installed with the package as agent.site_configs;
    also the file `edge-agent install` starts a gateway's config from)."""
    try:
        return (resources.files("agent.site_configs") / "demo.yaml").read_text("utf-8")
    except ModuleNotFoundError:
        # Run from a source checkout (not installed): config/ sits beside agent/.
        return (Path(__file__).resolve().parents[1] / "config" / "demo.yaml").read_text("utf-8")


def demo_config() -> SiteConfig:
    """The shipped demo site config."""
    return load_config_text(demo_config_text(), filename="demo.yaml")


def _retarget(
    config: SiteConfig,
    sim: SimulatedBuilding,
    mqtt_url: str | None,
    *,
    push_sources: bool = False,
) -> SiteConfig:
    """Point the demo's buses at the simulator's actual ports (TCP endpoints and the serial
    line's pty), and add the uplink if asked. The Bluetooth sensors and GPIO inputs are kept
    only with ``push_sources`` (the demo, which simulates them: `simulated_drivers`), their
    pins then on gpiozero's mock factory."""
    buses = dict(config.buses)
    devices = list(config.devices)
    for name, bus in config.buses.items():
        if isinstance(bus, BleAdapterConfig | GpioConfig) and not push_sources:
            del buses[name]
            devices = [d for d in devices if d.bus != name]
        elif isinstance(bus, GpioConfig):
            buses[name] = bus.model_copy(update={"pin_factory": "mock"})
    for name, (host, port) in sim.endpoints.items():
        bus = buses[name]
        assert isinstance(bus, TcpLinkConfig)
        buses[name] = bus.model_copy(update={"host": host, "port": port})
    for name, path in sim.serial_ports.items():
        line = buses[name]
        assert isinstance(line, SerialLinkConfig)
        buses[name] = line.model_copy(update={"port": path})
    update: dict[str, object] = {"buses": buses, "devices": devices}
    kept = {d.name for d in devices}
    if config.hvac is not None:
        # Zones whose room sensor was left out fall back to their controller's own sensor.
        zones = {
            name: zone
            if zone.room_sensor is None or zone.room_sensor.partition(".")[0] in kept
            else zone.model_copy(update={"room_sensor": None})
            for name, zone in config.hvac.zones.items()
        }
        update["hvac"] = config.hvac.model_copy(update={"zones": zones})
    if mqtt_url is not None:
        update["uplink"] = UplinkConfig(url=mqtt_url)
    return config.model_copy(update=update)


async def run_demo(
    stop: asyncio.Event,
    *,
    data_dir: Path,
    mqtt_url: str | None,
    duration: float | None,
    speed: float,
    platform: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    config = demo_config()
    if mqtt_url is not None:
        UplinkConfig(url=mqtt_url)  # a bad URL is reported before anything starts
    # With schedules in the config the agent runs the units; otherwise they follow office hours.
    building = Building(speed=speed, zones_follow_office_hours=config.hvac is None)
    async with (
        SimulatedBuilding(building=building) as sim,
        contextlib.AsyncExitStack() as stack,
    ):
        config = _retarget(config, sim, mqtt_url, push_sources=True)
        if platform:
            config = await _with_platform(config, data_dir, stack, out)
        adverts = FakeBackend()
        agent = Agent(
            config,
            data_dir=data_dir,
            drivers={"ble": BleDriver(backend_factory=lambda _config: adverts)},
        )
        where = ", ".join(
            [f"{n} {h}:{p}" for n, (h, p) in sim.endpoints.items()]
            + [f"{n} {path}" for n, path in sim.serial_ports.items()]
        )
        print(
            f"simulated building on {where}; "
            f"data in {data_dir}" + (f"; publishing to {mqtt_url}" if mqtt_url else ""),
            file=out,
        )
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        async with asyncio.TaskGroup() as group:
            group.create_task(agent.run(stop), name="demo[agent]")
            group.create_task(
                _room_sensors(agent, building, adverts, stop), name="demo[room-sensors]"
            )
            group.create_task(_pulses(agent, building, stop), name="demo[pulses]")
            view = group.create_task(_live_view(agent, stop, out), name="demo[live-view]")
            await stop.wait()
            view.cancel()
    await _summary(agent, out)
    return 0


ADVERT_EVERY_S = 2.5  # as a Xiaomi thermometer on BTHome firmware advertises


async def _room_sensors(
    agent: Agent, building: Building, adverts: FakeBackend, stop: asyncio.Event
) -> None:
    """The zones' BTHome thermometers (hil.rooms), heard through the fake scanner backend."""
    sensors = [
        RoomSensor(mac=d.mac, zone=d.zone)
        for d in agent.config.devices
        if isinstance(d, BleSensorConfig) and d.zone is not None
    ]
    await agent.started.wait()
    while not stop.is_set():
        for sensor in sensors:
            adverts.advertise(sensor.mac, {BTHOME_SERVICE_UUID: sensor.advert(building)})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ADVERT_EVERY_S):
                await stop.wait()


async def _pulses(agent: Agent, building: Building, stop: asyncio.Event) -> None:
    """The canteen's hot-water meter closing its reed switch once a litre, on a mock pin."""
    meters = [d for d in agent.config.devices if isinstance(d, PulseMeterConfig)]
    if not meters:
        return
    await agent.started.wait()
    pin = pin_backend(agent.links[meters[0].bus]).factory.pin(meters[0].pin)
    await _drive_pulses(pin, PulseTrain(building), stop)


async def _drive_pulses(pin: Any, train: PulseTrain, stop: asyncio.Event) -> None:
    """The pulses ``train`` says are due, on gpiozero's mock ``pin``, until ``stop``."""
    while not stop.is_set():
        for _ in range(train.due()):
            pin.drive_low()
            await asyncio.sleep(0.05)
            pin.drive_high()
            await asyncio.sleep(0.25)  # within the meter's 5 pulses a second
        # The mock pin keeps every change it went through, for tests' assertions: over a demo
        # or a soak of hours that list grew without end (a soak found it).
        pin.clear_states()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()


async def _live_view(agent: Agent, stop: asyncio.Event, out: TextIO) -> None:
    await agent.started.wait()
    tty = out.isatty()
    started = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(REFRESH)
        if agent.store is None:
            continue
        with contextlib.suppress(Exception):  # a frame that fails to draw is just skipped
            frame = await _frame(agent, time.monotonic() - started)
            if tty:
                out.write("\x1b[H\x1b[2J")  # home and clear: redraw in place
            out.write(frame + "\n")
            out.flush()


async def _frame(agent: Agent, elapsed: float) -> str:
    assert agent.store is not None
    latest = await agent.store.latest()
    stats = await agent.store.stats()
    width = shutil.get_terminal_size((120, 40)).columns
    by_device: dict[str, list[StoredReading]] = {}
    for reading in latest:
        by_device.setdefault(reading.device, []).append(reading)
    lines = [f"-- {agent.config.site.name} ({agent.config.site.id}) -- {elapsed:5.0f} s --"]
    states = {p.device.name: {True: "ok", False: "DOWN", None: "…"}[p.health.online]
              for p in agent.pollers}  # fmt: skip
    for name in agent.push_sources:  # a push source is as fresh as its latest readings
        fresh = [r.quality.label == "good" for r in by_device.get(name, [])]
        states[name] = "ok" if any(fresh) else ("STALE" if fresh else "…")
    for name, state in states.items():
        readings = sorted(by_device.get(name, []), key=_headline_rank)
        values = ""
        for reading in readings:
            more = f" (+{len(readings) - values.count('=')} more)"
            candidate = f"{values} {_fmt(reading)}".strip()
            if len(f"{name:<16} {state:<4} {candidate}{more}") > width:
                values += more
                break
            values = candidate
        lines.append(f"{name:<16} {state:<4} {values}")
    if agent.hvac is not None and agent.hvac.rooms:
        # Where each zone's room temperature comes from: the BLE sensor, or the fallback.
        rooms = [
            f"{zone} {'—' if room.value is None else f'{room.value:.1f} °C'} ({room.source})"
            for zone, room in agent.hvac.rooms.items()
        ]
        lines.append("rooms: " + ", ".join(rooms))
    sync = "no uplink"
    if agent.uplink is not None:
        last = agent.uplink.last_sync_ms
        sync = ("connected" if agent.uplink.connected else "disconnected") + (
            f", last sync {ms_to_iso(last)}" if last else ", nothing sent yet"
        )
    lines.append(
        f"buffer: {stats.rows} readings, {stats.unsynced} not yet sent, "
        f"{stats.bytes / 1024:.0f} KiB | uplink: {sync}"
    )
    return "\n".join(lines)


# The points a person looks at first; the rest follow alphabetically as space allows.
HEADLINE = (
    "active_power",
    "import_energy",
    "export_energy",
    "voltage_l1",
    "current_l1",
    "frequency",
    "outdoor_temperature",
    "zone1_temperature",
    "zone1_setpoint",
    "zone1_mode",
    "zone1_on",
    "zone2_temperature",
    "zone3_temperature",
    "daily_yield",
    "total_yield",
)


def _headline_rank(reading: StoredReading) -> tuple[int, str]:
    rank = HEADLINE.index(reading.point) if reading.point in HEADLINE else len(HEADLINE)
    return rank, reading.point


def _fmt(reading: StoredReading) -> str:
    if reading.value is None:
        return f"{reading.point}=— ({reading.quality.label})"
    value = reading.value
    if isinstance(value, float):
        # Counters read 1234567.8, not 1.23457e+06; small values keep 4 significant digits.
        text = f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    else:
        text = str(value)
    return f"{reading.point}={text}{(' ' + reading.unit) if reading.unit else ''}"


DEMO_PLATFORM_KEY = "demo-platform-16"  # 16 characters; the reference platform knows it


async def _with_platform(
    config: SiteConfig, data_dir: Path, stack: contextlib.AsyncExitStack, out: TextIO
) -> SiteConfig:
    """The reference energy-monitoring platform (hil.platform_server) on loopback, and the
    config's `platform:` section pointing at it (docs/platform.md)."""
    from agent.platform.config import PlatformConfig, PlatformMeter
    from hil.platform_server import PlatformServer

    key_file, key = data_dir / "platform.key", DEMO_PLATFORM_KEY

    def write_key() -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key + "\n", encoding="utf-8")

    await asyncio.to_thread(write_key)
    server = await stack.enter_async_context(PlatformServer(key=key.encode(), secret=key))
    meters = ["main_import", "lighting", "hvac", "power"]
    section = PlatformConfig(
        host="127.0.0.1",
        port=server.port,
        building_id="421000A001",
        gateway_id="01",
        key_file=key_file,
        meters=[PlatformMeter(meter=name, id=i) for i, name in enumerate(meters, start=1)],
    )
    print(f"reference platform on 127.0.0.1:{server.port} (reports every 15 min)", file=out)
    return config.model_copy(update={"platform": section})


async def _summary(agent: Agent, out: TextIO) -> None:
    from agent.store import read_stats

    if not agent.db_path.exists():
        return
    stats = await asyncio.to_thread(read_stats, agent.db_path)
    print(
        f"stopped cleanly: {agent.readings_polled} readings polled in this run; "
        f"{stats.rows} stored in {agent.db_path} ({stats.unsynced} not sent upstream). "
        f"See them with: edge-agent export --data-dir {agent.data_dir}",
        file=out,
    )
