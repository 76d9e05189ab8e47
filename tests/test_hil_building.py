"""The simulated building: physics under an injected clock, and its Modbus TCP face on loopback.

Every Modbus test talks to real pymodbus servers on 127.0.0.1 through pymodbus's own client and
decodes registers with struct, independently of hil.devices' encoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ModbusPDU

from hil.building import (
    Building,
    EnergyCounters,
    HvacMode,
    clear_sky_pv_kw,
    outdoor_temperature,
)
from hil.devices import DataType, SimPoint, Table, WordOrder, building_devices, point_maps
from hil.server import SimulatedBuilding

SHANGHAI = ZoneInfo("Asia/Shanghai")
LOOPBACK = "127.0.0.1"


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


class FakeClock:
    """Wall time that moves only when a test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


def building_at(
    start: datetime, *, seed: int = 1, speed: float = 1.0
) -> tuple[Building, FakeClock]:
    clock = FakeClock(start)
    return Building(clock=clock, seed=seed, speed=speed), clock


def delta(after: EnergyCounters, before: EnergyCounters, name: str) -> float:
    return float(getattr(after, name) - getattr(before, name))


# ---- physics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        pytest.param(local(2024, 7, 13), id="summer-saturday-exports"),
        pytest.param(local(2024, 1, 10), id="winter-weekday-heats"),
    ],
)
def test_energy_balance_holds_over_a_simulated_day(day: datetime) -> None:
    building, clock = building_at(day)
    start = previous = building.energy()
    for _ in range(96):
        clock.advance(15 * 60)
        building.update()
        now = building.energy()
        for field in fields(EnergyCounters):
            if field.name != "pv_daily":  # resets at midnight, tested below
                assert getattr(now, field.name) >= getattr(previous, field.name), field.name
        net = delta(now, previous, "main_import") - delta(now, previous, "main_export")
        loads = sum(delta(now, previous, name) for name in ("lighting", "hvac", "other"))
        assert net == pytest.approx(loads - delta(now, previous, "pv_total"), abs=1e-6)
        previous = now
    assert delta(previous, start, "main_import") > 50  # a building draws power every day
    if day.weekday() == 5:  # a sunny Saturday with the offices empty: PV exports at noon
        assert delta(previous, start, "main_export") > 1
    else:
        assert delta(previous, start, "hvac") > 20


@pytest.mark.parametrize("month", [1, 7])
def test_pv_is_zero_at_night_and_positive_at_noon(month: int) -> None:
    building, clock = building_at(local(2024, month, 15, 0, 30))
    assert building.pv_power_kw == 0.0
    clock.set(local(2024, month, 15, 12, 30))
    building.update()
    assert building.pv_power_kw > 4.0
    assert building.pv_dc_voltage > 500
    clock.set(local(2024, month, 15, 23, 0))
    building.update()
    assert building.pv_power_kw == 0.0
    assert building.pv_dc_current == 0.0


def test_summer_days_are_longer_and_stronger_than_winter_days() -> None:
    assert (
        clear_sky_pv_kw(local(2024, 7, 15, 6, 0)) > 0 == clear_sky_pv_kw(local(2024, 1, 15, 7, 0))
    )
    assert clear_sky_pv_kw(local(2024, 7, 15, 12, 30)) > clear_sky_pv_kw(local(2024, 1, 15, 12, 30))


@pytest.mark.parametrize(("month", "mean"), [(1, 4.1), (7, 28.8)])
def test_outdoor_temperature_is_coldest_at_five_and_warmest_at_two(month: int, mean: float) -> None:
    by_hour = {hour: outdoor_temperature(local(2024, month, 15, hour)) for hour in range(24)}
    assert min(by_hour, key=by_hour.__getitem__) == 5
    assert max(by_hour, key=by_hour.__getitem__) == 14
    assert max(by_hour.values()) - min(by_hour.values()) == pytest.approx(8.0, abs=0.3)
    assert sum(by_hour.values()) / 24 == pytest.approx(mean, abs=2.0)


@pytest.mark.parametrize(
    ("month", "mode", "setpoint"), [(7, HvacMode.COOL, 26.0), (1, HvacMode.HEAT, 20.0)]
)
def test_default_setpoints_are_the_national_limits(
    month: int, mode: HvacMode, setpoint: float
) -> None:
    building, _ = building_at(local(2024, month, 10, 10, 0))
    for zone in building.zones.values():
        assert (zone.mode, zone.setpoint, zone.on) == (mode, setpoint, True)


def test_heating_a_zone_raises_its_temperature_and_hvac_power() -> None:
    heated, heated_clock = building_at(local(2024, 1, 10, 9, 0))
    unheated, unheated_clock = building_at(local(2024, 1, 10, 9, 0))
    heated.set_mode("zone1", HvacMode.HEAT)
    heated.set_setpoint("zone1", 24.0)
    unheated.set_on("zone1", False)
    before = heated.energy()
    for clock in (heated_clock, unheated_clock):
        clock.advance(3600)
    heated.update()
    unheated.update()
    # 15 kW against ~11 kW of net loss on a 3 °C morning: the zone warms, but slowly.
    assert 21.5 < heated.zones["zone1"].temperature < 24.0
    assert heated.zones["zone1"].thermal_kw == pytest.approx(15.0)  # still at full capacity
    assert unheated.zones["zone1"].temperature < 18.0  # drifts toward the cold outdoors
    assert heated.hvac_power_kw > unheated.hvac_power_kw
    assert delta(heated.energy(), before, "hvac") > delta(unheated.energy(), before, "hvac")


def test_cool_mode_never_heats_and_fan_mode_moves_no_heat() -> None:
    building, clock = building_at(local(2024, 1, 10, 9, 0))
    building.set_mode("zone1", HvacMode.COOL)
    building.set_mode("zone2", HvacMode.FAN)
    clock.advance(1800)
    building.update()
    for name in ("zone1", "zone2"):
        zone = building.zones[name]
        assert zone.temperature < 20.0
        assert zone.thermal_kw == 0.0
        assert zone.electric_kw == pytest.approx(0.4)  # the fan alone


def test_pv_daily_yield_resets_at_local_midnight_only() -> None:
    building, clock = building_at(local(2024, 7, 15, 7, 0))
    morning = building.energy().pv_daily
    clock.set(local(2024, 7, 15, 9, 0))  # crosses UTC midnight (08:00 local): no reset
    building.update()
    assert building.energy().pv_daily > morning > 0
    clock.set(local(2024, 7, 15, 23, 59) + timedelta(seconds=50))
    building.update()
    evening = building.energy()
    assert evening.pv_daily > 50
    clock.advance(20)
    building.update()
    after = building.energy()
    assert after.pv_daily == 0.0
    assert after.pv_total == evening.pv_total


def test_the_schedule_switches_zones_at_opening_and_writes_stick_in_between() -> None:
    building, clock = building_at(local(2024, 7, 15, 7, 50))
    assert not any(zone.on for zone in building.zones.values())
    clock.set(local(2024, 7, 15, 8, 10))
    building.update()
    assert all(zone.on for zone in building.zones.values())
    building.set_on("zone2", False)
    clock.set(local(2024, 7, 15, 12, 0))
    building.update()
    assert [zone.on for zone in building.zones.values()] == [True, False, True]
    assert building.lighting_power_kw >= 18.0


def test_speed_runs_simulated_time_faster_and_a_clock_going_back_changes_nothing() -> None:
    start = local(2024, 7, 15, 10, 0)
    building, clock = building_at(start, speed=60)
    clock.advance(10)
    building.update()
    assert building.now == pytest.approx(start.timestamp() + 600)
    counters = building.energy()
    clock.advance(-5)
    building.update()
    assert building.energy() == counters


# ---- register maps ------------------------------------------------------------------------------


def test_point_maps_follow_the_published_layouts() -> None:
    maps = point_maps()
    assert set(maps) == {
        "main_meter",
        "lighting_meter",
        "hvac_meter",
        "hvac_controller",
        "pv_inverter",
    }
    total = maps["main_meter"]["active_power"]
    assert (total.table, total.address, total.datatype, total.word_order) == (
        Table.INPUT,
        0x0034,
        DataType.FLOAT32,
        WordOrder.BIG,
    )
    assert maps["main_meter"]["total_active_energy"].address == 0x0156
    energy = maps["lighting_meter"]["import_energy"]
    assert (energy.table, energy.address, energy.datatype, energy.scale) == (
        Table.HOLDING,
        62,
        DataType.INT32,
        0.01,
    )
    assert maps["hvac_meter"]["voltage_l1"].scale == 0.1
    assert maps["hvac_meter"]["import_energy"].address == 0x101E
    setpoint = maps["hvac_controller"]["zone2_setpoint"]
    assert (setpoint.table, setpoint.address, setpoint.writable) == (Table.HOLDING, 1, True)
    assert maps["hvac_controller"]["zone3_on"].table is Table.COIL
    assert maps["hvac_controller"]["zone3_mode"].address == 12
    total_yield = maps["pv_inverter"]["total_yield"]
    assert (total_yield.address, total_yield.datatype, total_yield.word_order) == (
        5003,
        DataType.UINT32,
        WordOrder.LITTLE,
    )


def test_no_two_points_of_a_device_share_a_register() -> None:
    for device in building_devices():
        for table in Table:
            taken = [addr for point in device.points_in(table) for addr in point.addresses]
            assert len(taken) == len(set(taken)), (device.name, table)


_REGISTER_POINTS = [
    point
    for device in point_maps().values()
    for point in device.values()
    if point.datatype is not DataType.BIT
]


@given(point=st.sampled_from(_REGISTER_POINTS), fraction=st.floats(0.0, 1.0))
def test_encode_then_decode_gives_the_value_back(point: SimPoint, fraction: float) -> None:
    value = fraction * 50_000 * point.scale  # inside every type's range
    if point.datatype is DataType.INT16:
        value -= 20_000 * point.scale
    decoded = point.decode(point.encode(value))
    tolerance = abs(value) * 1e-6 if point.datatype is DataType.FLOAT32 else point.scale / 2
    assert decoded == pytest.approx(value, abs=tolerance + 1e-9)


# ---- over Modbus TCP on loopback ----------------------------------------------------------------


def float32(registers: Sequence[int], offset: int = 0) -> float:
    """High word first (Eastron, Chint)."""
    value: float = struct.unpack(">f", struct.pack(">HH", *registers[offset : offset + 2]))[0]
    return value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(local(2024, 7, 15, 10, 0))  # a summer Monday morning: offices busy


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[SimulatedBuilding]:
    async with SimulatedBuilding(building=Building(clock=clock, seed=3)) as building:
        yield building


@contextlib.asynccontextmanager
async def connect(
    sim: SimulatedBuilding,
    bus: str,
    *,
    answer_within: float = 1.0,
    trace_connect: Callable[[bool], None] | None = None,
) -> AsyncIterator[AsyncModbusTcpClient]:
    host, port = sim.endpoints[bus]
    assert host == LOOPBACK
    client = AsyncModbusTcpClient(
        host, port=port, timeout=answer_within, retries=0, trace_connect=trace_connect
    )
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


def exception_code(response: ModbusPDU) -> int | None:
    return response.exception_code if response.isError() else None


async def test_sdm630_float32_registers_decode_to_physical_values(sim: SimulatedBuilding) -> None:
    building = sim.building
    async with connect(sim, "switchboard") as client:
        block = await client.read_input_registers(0x0000, count=0x4C, device_id=1)
        lines = await client.read_input_registers(0x00C8, count=6, device_id=1)
        total = await client.read_input_registers(0x0156, count=2, device_id=1)
    assert not block.isError()
    regs = block.registers
    volts = [float32(regs, 2 * n) for n in range(3)]
    amps = [float32(regs, 6 + 2 * n) for n in range(3)]
    watts = [float32(regs, 12 + 2 * n) for n in range(3)]
    assert all(210 < v < 230 for v in volts)
    assert all(a > 1 for a in amps)
    assert float32(regs, 0x34) == pytest.approx(sum(watts), rel=1e-5)
    assert float32(regs, 0x34) == pytest.approx(building.main_power_kw * 1000, rel=1e-5)
    assert 0.92 <= float32(regs, 0x3E) <= 0.97
    assert float32(regs, 0x46) == pytest.approx(50.0, abs=0.1)
    energy = building.energy()
    assert float32(regs, 0x48) == pytest.approx(energy.main_import, abs=0.125)  # float32 ulp
    assert float32(regs, 0x4A) == pytest.approx(energy.main_export, abs=0.01)
    for n, line_volts in enumerate(float32(lines.registers, 2 * n) for n in range(3)):
        assert line_volts == pytest.approx(math.sqrt(3) * volts[n], rel=0.01)
    assert float32(total.registers) == pytest.approx(
        energy.main_import + energy.main_export, abs=0.2
    )
    # Registers the SDM630 defines between the mapped ones read as 0.0 (apparent power L1).
    assert regs[0x12:0x14] == [0, 0]


async def test_counters_move_between_reads_as_the_building_runs(
    sim: SimulatedBuilding, clock: FakeClock
) -> None:
    async with connect(sim, "switchboard") as client:
        first = await client.read_holding_registers(62, count=2, device_id=2)
        clock.advance(3600)
        second = await client.read_holding_registers(62, count=2, device_id=2)
    # ADW300: int32, high word first, x 0.01 kWh.
    kwh = [struct.unpack(">i", struct.pack(">HH", *r.registers))[0] * 0.01 for r in (first, second)]
    assert kwh[1] - kwh[0] == pytest.approx(21.5, abs=4)  # an office hour of lighting
    assert kwh[1] == pytest.approx(sim.building.energy().lighting, abs=0.01)


async def test_strict_device_answers_exception_02_on_a_gap_spanning_read(clock: FakeClock) -> None:
    building = Building(clock=clock)
    async with (
        SimulatedBuilding(building=building, strict=["main_meter"]) as sim,
        connect(sim, "switchboard") as client,
    ):
        spanning = await client.read_input_registers(0x0000, count=0x36, device_id=1)
        in_gap = await client.read_input_registers(0x0012, count=2, device_id=1)
        phases = await client.read_input_registers(0x0000, count=0x12, device_id=1)
        total = await client.read_input_registers(0x0034, count=2, device_id=1)
        lenient = await client.read_holding_registers(20, count=44, device_id=2)
    assert exception_code(spanning) == 2
    assert exception_code(in_gap) == 2
    assert not phases.isError()
    assert float32(total.registers) == pytest.approx(building.main_power_kw * 1000, rel=1e-5)
    assert not lenient.isError()


async def test_scaled_meters_serve_raw_values(sim: SimulatedBuilding) -> None:
    async with connect(sim, "switchboard") as client:
        dtsu = await client.read_holding_registers(0x2006, count=14, device_id=3)
        dtsu_energy = await client.read_holding_registers(0x101E, count=2, device_id=3)
        adw = await client.read_holding_registers(20, count=9, device_id=2)
    assert 2100 < float32(dtsu.registers) < 2300  # raw x 0.1 V
    hvac_watts = float32(dtsu.registers, 12) * 0.1
    assert hvac_watts == pytest.approx(sim.building.hvac_power_kw * 1000, rel=1e-5)
    assert float32(dtsu_energy.registers) == pytest.approx(sim.building.energy().hvac, abs=0.07)
    assert 2100 < adw.registers[0] < 2300  # uint16 x 0.1 V
    assert adw.registers[6] > 1000  # uint16 x 0.01 A: tens of amps of lighting


async def test_pv_total_yield_is_word_swapped(sim: SimulatedBuilding) -> None:
    async with connect(sim, "pv") as client:
        response = await client.read_input_registers(5003, count=2, device_id=1)
        power = await client.read_input_registers(5030, count=2, device_id=1)
    low, high = response.registers
    assert high > 0  # the counter needs both words, so their order matters
    assert low | high << 16 == int(sim.building.energy().pv_total)
    assert high | low << 16 != low | high << 16
    watts = power.registers[0] | power.registers[1] << 16
    assert watts == pytest.approx(sim.building.pv_power_kw * 1000, abs=1)


async def test_writing_hvac_registers_changes_the_building(
    sim: SimulatedBuilding, clock: FakeClock
) -> None:
    zones = sim.building.zones
    async with connect(sim, "hvac") as client:
        assert not (await client.write_register(0, 240, device_id=1)).isError()
        readback = await client.read_holding_registers(0, count=3, device_id=1)
        too_hot = await client.write_register(1, 400, device_id=1)
        bad_mode = await client.write_register(11, 7, device_id=1)
        assert not (await client.write_coil(2, False, device_id=1)).isError()
        clock.advance(3600)
        temps = await client.read_input_registers(0, count=11, device_id=1)
    assert zones["zone1"].setpoint == 24.0
    assert readback.registers == [240, 260, 260]
    assert exception_code(too_hot) == 3
    assert exception_code(bad_mode) == 3
    assert zones["zone2"].setpoint == 26.0
    assert zones["zone2"].mode is HvacMode.COOL
    assert not zones["zone3"].on
    zone1, zone2, zone3 = (
        struct.unpack(">h", struct.pack(">H", r))[0] / 10 for r in temps.registers[:3]
    )
    assert zone1 == pytest.approx(24.0, abs=0.5)  # pulled down to the new setpoint
    assert zone2 == pytest.approx(26.0, abs=0.5)
    assert zone3 > 27.0  # switched off on a July morning
    assert temps.registers[10] / 10 == pytest.approx(sim.building.outdoor_temperature, abs=0.1)


async def test_offline_device_is_silent_and_comes_back(sim: SimulatedBuilding) -> None:
    async with connect(sim, "pv", answer_within=0.3) as client:
        sim.set_offline("pv_inverter")
        assert sim.is_offline("pv_inverter")
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(5002, count=1, device_id=1)
        sim.set_offline("pv_inverter", False)
        assert not (await client.read_input_registers(5002, count=1, device_id=1)).isError()


async def test_a_dead_meter_behind_the_gateway_answers_0x0b_and_costs_only_itself(
    sim: SimulatedBuilding,
) -> None:
    sim.set_offline("lighting_meter", reply="gateway")
    async with connect(sim, "switchboard") as client:
        dead = await client.read_holding_registers(20, count=3, device_id=2)
        alive = await client.read_input_registers(0, count=2, device_id=1)
        unknown_unit = await client.read_input_registers(0, count=2, device_id=9)
    assert exception_code(dead) == 0x0B
    assert not alive.isError()
    assert exception_code(unknown_unit) == 0x0B


async def test_a_whole_bus_can_go_silent(sim: SimulatedBuilding) -> None:
    sim.set_offline("switchboard")
    assert sim.is_offline("hvac_meter")
    async with connect(sim, "switchboard", answer_within=0.3) as client:
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0, count=2, device_id=1)


async def test_dropped_connections_reach_the_client(sim: SimulatedBuilding) -> None:
    lost = asyncio.Event()

    def on_connect(connected: bool) -> None:
        if not connected:
            lost.set()

    async with connect(sim, "hvac", trace_connect=on_connect) as client:
        assert not (await client.read_coils(0, count=3, device_id=1)).isError()
        assert sim.drop_connections("hvac") == 1
        async with asyncio.timeout(2):
            await lost.wait()


async def test_servers_listen_on_loopback_and_close_cleanly(clock: FakeClock) -> None:
    sim = SimulatedBuilding(building=Building(clock=clock))
    assert sim.endpoints == {}  # the constructor does no I/O
    async with sim:
        assert {host for host, _ in sim.endpoints.values()} == {LOOPBACK}
        assert len({port for _, port in sim.endpoints.values()}) == 3
    await sim.aclose()  # twice is harmless
    for host, port in sim.endpoints.values():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)


async def test_a_port_in_use_is_an_oserror(clock: FakeClock) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        sim = SimulatedBuilding(building=Building(clock=clock), ports={"pv": port})
        with pytest.raises(OSError, match="for pv"):
            await sim.__aenter__()
    assert sim.endpoints.keys() == {"switchboard", "hvac"}


async def test_python_m_hil_prints_its_endpoints_and_stops_on_sigint() -> None:
    args = ["--switchboard-port", "0", "--hvac-port", "0", "--pv-port", "0", "--speed", "60"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil", *args, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(10):
            lines = [(await process.stdout.readline()).decode() for _ in range(4)]
            process.send_signal(signal.SIGINT)
            rest, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert [line.split(":")[0] for line in lines] == ["switchboard", "hvac", "pv", "plant-room"]
    assert all(f" {LOOPBACK}:" in line for line in lines[:3])
    assert "unit 3 hvac_meter" in lines[0]
    assert "serial /dev/pts/" in lines[3]
    assert "DL/T 645 meter 000000000161" in lines[3]
    assert rest.decode().strip() == "stopped"
    assert process.returncode == 0
