"""Every shipped profile decodes right against a device serving its registers over loopback TCP;
profiles cite their source and use only the shared point names; SunSpec scale factors and
"not implemented" sentinels never give a wrong value as good."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import ValidationError

from agent.config.loader import load_config_text
from agent.core.errors import ConfigError
from agent.core.links import TcpLinkConfig
from agent.core.record import Quality, Reading
from drivers.modbus.bus import ModbusBusClient
from drivers.modbus.errors import ModbusExceptionError
from drivers.modbus.planner import DeviceQuirks
from drivers.modbus.profiles import POINT_NAMES, load_profile, profile_names, profile_text
from drivers.modbus.spec import DataType, ModbusDevice, Table
from hil.profile_device import ProfileDevice
from tests.helpers import ModbusPoller, modbus_bus

TIMEOUT = 1.0

# Plausible engineering values per stable point name (the same unit in every profile).
VALUES: dict[str, float | int | bool] = {
    "voltage_l1": 230.1,
    "voltage_l2": 229.8,
    "voltage_l3": 231.4,
    "voltage_l1_l2": 398.6,
    "voltage_l2_l3": 399.1,
    "voltage_l3_l1": 400.2,
    "current_l1": 5.25,
    "current_l2": 4.75,
    "current_l3": 6.5,
    "ac_current": 16.5,
    "active_power": 3450.0,
    "active_power_l1": 1200.0,
    "active_power_l2": 1050.0,
    "active_power_l3": 1200.0,
    "apparent_power": 3600.0,
    "reactive_power": -820.0,
    "power_factor": 0.958,
    "frequency": 50.01,
    "import_energy": 12345.6,
    "export_energy": 234.5,
    "total_active_energy": 12580.1,
    "total_yield": 123456.78,
    "daily_yield": 42.37,
    "dc_voltage": 612.3,
    "dc_current": 8.75,
    "dc_power": 5357.0,
    "efficiency": 98.12,
    "internal_temperature": 41.5,
    "heatsink_temperature": 47.2,
    "operating_state": 4,  # SunSpec St 4: MPPT (producing)
    "zone_temperature": 27.4,
    "setpoint": 26.0,
    "mode": 1,
    "fan_speed": 3,
    "power_on": True,
}
# Scale factors as a SunSpec device might choose them, negative and positive.
SCALE_FACTORS: dict[str, int] = {
    "current_sf": -2,
    "voltage_sf": -1,
    "power_sf": 1,
    "frequency_sf": -2,
    "apparent_power_sf": 1,
    "reactive_power_sf": 0,
    "power_factor_sf": -1,
    "energy_sf": 1,
    "dc_current_sf": -2,
    "dc_voltage_sf": -1,
    "dc_power_sf": 0,
    "temperature_sf": -1,
}
DEVICE_MODES: dict[str, dict[str, Any]] = {
    "lenient": {},
    "strict": {"strict": True},  # undefined registers answer exception 02
    "short-reads": {"max_registers": 6},  # reads past 6 registers answer exception 03
}


def _device(profile: str, **extra: Any) -> ModbusDevice:
    return ModbusDevice(name="dut", bus="dut", profile=profile, **extra)


def _resolution(device: ModbusDevice, name: str) -> float | None:
    """The step between two values an integer point can hold; None for other types."""
    point = device.points[name]
    if not point.type.is_integer:
        return None
    exponent = SCALE_FACTORS[point.scale_factor] if point.scale_factor else 0
    return abs(point.scale) * 10.0**exponent


def _known_values(device: ModbusDevice) -> dict[str, float | int | bool]:
    """What to serve: each value quantized to what its point can hold."""
    out: dict[str, float | int | bool] = {}
    for name in device.points:
        if name in SCALE_FACTORS:
            out[name] = SCALE_FACTORS[name]
            continue
        assert name in VALUES, f"add a plausible value for {name!r} to VALUES"
        value = VALUES[name]
        step = _resolution(device, name)
        if step is not None and not isinstance(value, bool):
            value = round(value / step) * step
            if device.points[name].scale == 1.0 and step == 1.0:
                value = int(value)
        out[name] = value
    return out


async def _discard(readings: Sequence[Reading]) -> None:
    pass


@asynccontextmanager
async def _serving(
    device: ModbusDevice | str,
    values: Mapping[str, float | int | bool],
    **options: Any,
) -> AsyncIterator[tuple[ProfileDevice, ModbusBusClient]]:
    async with ProfileDevice(device, values, **options) as served:
        assert served.endpoint is not None
        host, port = served.endpoint
        spec = TcpLinkConfig(kind="modbus_tcp", host=host, port=port, timeout=TIMEOUT)
        async with modbus_bus("dut", spec) as bus:
            yield served, bus


async def _poll(
    device: ModbusDevice, bus: ModbusBusClient, names: Sequence[str] | None = None
) -> dict[str, Reading]:
    poller = ModbusPoller(device, bus, sink=_discard)
    readings = await poller.poll_once(names)
    by_name = {r.point: r for r in readings}
    assert len(by_name) == len(readings), "one reading per point"
    return by_name


# --- every profile, served and decoded ------------------------------------------------------------


@pytest.mark.parametrize("mode", list(DEVICE_MODES))
@pytest.mark.parametrize("profile", profile_names())
async def test_every_profile_point_decodes_to_the_served_value(profile: str, mode: str) -> None:
    device = _device(profile)
    values = _known_values(device)
    async with _serving(device, values, **DEVICE_MODES[mode]) as (_, bus):
        readings = await _poll(device, bus)
    assert set(readings) == set(device.points)
    for name, reading in readings.items():
        point = device.points[name]
        assert reading.quality is Quality.GOOD, (name, reading)
        assert reading.unit == point.unit
        expected = values[name]
        if isinstance(expected, bool) or point.type is DataType.BIT:
            assert reading.value is expected, name
            continue
        step = _resolution(device, name)
        tolerance = step / 2 if step is not None else 0.0
        assert reading.value == pytest.approx(expected, rel=1e-6, abs=tolerance), name


@pytest.mark.parametrize("profile", profile_names())
def test_profile_cites_its_source_and_uses_the_shared_point_names(profile: str) -> None:
    text = profile_text(profile)
    assert re.search(r"^# Source: \S", text, re.MULTILINE), f"{profile}: cite the register map"
    raw = load_profile(profile)
    assert isinstance(raw.get("description"), str), f"{profile}: add a description"
    unknown = set(raw["points"]) - POINT_NAMES
    assert not unknown, f"{profile}: {sorted(unknown)} are not in POINT_NAMES"
    # Same name, same unit, whatever the brand (dashboards rely on it).
    device = _device(profile)
    for name, point in device.points.items():
        if name.endswith("_sf"):
            assert point.type is DataType.INT16, name
            assert point.unit == "", name
    assert all(p.scale_factor in device.points for p in device.points.values() if p.scale_factor)


def test_a_point_name_has_one_unit_across_profiles() -> None:
    units: dict[str, set[str]] = {}
    for profile in profile_names():
        for name, point in _device(profile).points.items():
            units.setdefault(name, set()).add(point.unit)
    assert {n: u for n, u in units.items() if len(u) > 1} == {}


def test_the_required_profiles_ship() -> None:
    required = {
        "eastron-sdm630",
        "eastron-sdm120",
        "chint-dtsu666",
        "acrel-adl400",
        "sunspec-inverter",
        "huawei-sun2000",
        "generic-hvac-thermostat",
    }
    assert required <= set(profile_names())


# --- SunSpec: scale factors and "not implemented" -------------------------------------------------

SUNSPEC = "sunspec-inverter"


async def test_the_same_raw_register_scales_by_this_cycles_scale_factor() -> None:
    device = _device(SUNSPEC)
    values = _known_values(device) | {"active_power": 345.6, "power_sf": -1}  # raw 3456
    async with _serving(device, values) as (served, bus):
        first = await _poll(device, bus)
        served.set({"active_power": 34560.0, "power_sf": 1})  # raw 3456 again
        second = await _poll(device, bus)
    assert first["active_power"].value == pytest.approx(345.6)
    assert second["active_power"].value == pytest.approx(34560.0)
    assert first["power_sf"].value == -1  # an SF point asked for is returned as read


async def test_a_dependent_point_polled_alone_brings_its_scale_factor_along() -> None:
    device = _device(SUNSPEC)
    async with _serving(device, _known_values(device)) as (_, bus):
        poller = ModbusPoller(device, bus, sink=_discard)
        planned = {name for r in poller.plan(["total_yield"]).requests for name, _ in r.points}
        readings = await poller.poll_once(["total_yield"])
    assert planned == {"total_yield", "energy_sf"}
    assert [r.point for r in readings] == ["total_yield"]  # only what was asked for
    assert readings[0].quality is Quality.GOOD
    assert readings[0].value == pytest.approx(123456.78)


async def test_not_implemented_sentinels_give_bad_readings_without_a_value() -> None:
    device = _device(SUNSPEC)
    raw = {
        "active_power": 0x8000,
        "current_l3": 0xFFFF,
        "total_yield": 0,
        "operating_state": 0xFFFF,
    }
    async with _serving(device, _known_values(device), raw=raw) as (_, bus):
        readings = await _poll(device, bus)
    for name, reading in readings.items():
        if name in raw:
            assert (reading.quality, reading.value) == (Quality.BAD, None), name
        else:
            assert reading.quality is Quality.GOOD, name


@pytest.mark.parametrize(
    ("sf_raw", "why"), [(0x8000, "not implemented"), (20, "beyond -10..10"), (0xFFF5, "-11")]
)
async def test_an_unusable_scale_factor_makes_its_dependents_bad(sf_raw: int, why: str) -> None:
    device = _device(SUNSPEC)
    dependents = {n for n, p in device.points.items() if p.scale_factor == "current_sf"}
    assert dependents == {"ac_current", "current_l1", "current_l2", "current_l3"}
    async with _serving(device, _known_values(device), raw={"current_sf": sf_raw}) as (_, bus):
        readings = await _poll(device, bus)
    for name in dependents:
        assert (readings[name].quality, readings[name].value) == (Quality.BAD, None), (name, why)
    assert readings["voltage_l1"].quality is Quality.GOOD  # other scale factors are fine


async def test_a_scale_factor_the_device_refuses_makes_its_dependent_bad() -> None:
    def inverter(sf_register: int) -> ModbusDevice:
        return ModbusDevice.model_validate(
            _points(
                active_power={"register": 100, "type": "int16", "scale_factor": "power_sf"},
                power_sf={"register": sf_register, "type": "int16"},
            )
        )

    served_device = inverter(101)
    # The agent's config puts the scale factor where the device has no register (exception 02).
    polled = inverter(120)
    values = {"active_power": 1234.0, "power_sf": 0}
    async with _serving(served_device, values, strict=True) as (_, bus):
        readings = await _poll(polled, bus)
        good = await _poll(served_device, bus)
    assert (readings["active_power"].quality, readings["active_power"].value) == (Quality.BAD, None)
    assert readings["power_sf"].quality is Quality.BAD
    assert good["active_power"].value == 1234


def _points(**points: dict[str, Any]) -> dict[str, Any]:
    return {"name": "inv", "bus": "b", "points": points}


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (
            {"active_power": {"register": 40084, "scale_factor": "w_sf"}},
            "point 'active_power' takes its scale factor from 'w_sf', but the device has no "
            "point 'w_sf'",
        ),
        (
            {
                "active_power": {"register": 40084, "scale_factor": "power_sf"},
                "power_sf": {"register": 40085, "type": "float32"},
            },
            "a scale factor must be an integer (int16)",
        ),
        (
            {
                "active_power": {"register": 40084, "scale_factor": "power_sf"},
                "power_sf": {"register": 40085, "type": "int16", "scale": 0.1},
            },
            "a scale factor point must have no `scale` or `offset`",
        ),
        (
            {"active_power": {"register": 40084, "scale_factor": "active_power"}},
            "a scale factor must be a plain register",
        ),
        (
            {"running": {"register": 1, "table": "coil", "type": "bit", "scale_factor": "x"}},
            "`scale_factor` applies to numbers, not to a bit",
        ),
        (
            {"active_power": {"register": 1, "type": "int16", "not_available": 0x18000}},
            "does not fit in a int16",
        ),
        (
            {"active_power": {"register": 1, "type": "float32", "not_available": 0}},
            "`not_available` applies to integer types only",
        ),
    ],
)
def test_scale_factor_and_sentinel_mistakes_are_config_errors(
    points: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ModbusDevice.model_validate(_points(**points))


def test_a_missing_scale_factor_point_is_reported_where_the_points_are() -> None:
    text = """\
site:
  id: jz-office
  name: office
buses:
  pv:
    kind: modbus_tcp
    host: 192.168.1.30
devices:
  - name: inverter
    bus: pv
    points:
      active_power: {register: 40084, type: int16, scale_factor: w_sf}
      power_sf: {register: 40085, type: int16}
"""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, filename="site.yaml")
    [issue] = [str(i) for i in caught.value.issues]
    assert issue.startswith("site.yaml:12:"), issue  # the device's points
    assert "'w_sf'" in issue
    assert "did you mean 'power_sf'?" in issue


def test_a_site_may_override_a_profile_point_and_keep_its_scale_factor() -> None:
    device = _device(
        SUNSPEC,
        points={"active_power": {"register": 40083, "type": "int16", "scale_factor": "power_sf"}},
    )
    assert device.points["active_power"].address == 40083
    with pytest.raises(ValidationError, match="'watts_sf'"):
        _device(SUNSPEC, points={"active_power": {"register": 1, "scale_factor": "watts_sf"}})


# --- unreadable ranges ---------------------------------------------------------------------------


def test_profile_unreadable_ranges_reach_the_planner_and_merge_with_saved_quirks() -> None:
    device = _device(
        "huawei-sun2000", unreadable=[{"table": "holding", "start": 32000, "end": 32009}]
    )
    expected = [(32000, 32010), (32095, 32106)]
    assert device.unreadable_spans() == {Table.HOLDING: expected}
    bus = modbus_bus("x", TcpLinkConfig(kind="modbus_tcp", host="127.0.0.1", port=1))
    fresh = ModbusPoller(device, bus, sink=_discard)
    assert fresh.quirks.unreadable == {Table.HOLDING: expected}
    for request in fresh.plan().requests:
        assert request.address + request.count <= 32095 or request.address >= 32106, request
    saved = DeviceQuirks(accepted={Table.HOLDING: 40}).to_json()
    restored = ModbusPoller(device, bus, sink=_discard, quirks=DeviceQuirks.from_json(saved))
    assert restored.quirks.unreadable == {Table.HOLDING: expected}
    assert restored.quirks.accepted == {Table.HOLDING: 40}
    with pytest.raises(ValidationError, match="comes before"):
        _device("huawei-sun2000", unreadable=[{"table": "holding", "start": 9, "end": 8}])


# --- the profile device itself ------------------------------------------------------------------


async def test_profile_device_accepts_writes_only_to_writable_points() -> None:
    device = _device("generic-hvac-thermostat")
    async with _serving(device, _known_values(device)) as (_, bus):
        await bus.write(device="dut", unit_id=1, table=Table.HOLDING, address=0, values=[255])
        await bus.write(device="dut", unit_id=1, table=Table.COIL, address=0, values=[False])
        after = await _poll(device, bus)
        with pytest.raises(ModbusExceptionError) as refused:
            # Input registers cannot be written at all; a holding register no point defines:
            await bus.write(device="dut", unit_id=1, table=Table.HOLDING, address=3, values=[1])
    assert after["setpoint"].value == pytest.approx(25.5)
    assert after["power_on"].value is False
    assert refused.value.code == 2


def test_profile_device_refuses_a_value_its_type_cannot_hold() -> None:
    with pytest.raises(ValueError, match="outside a uint16"):
        ProfileDevice("generic-hvac-thermostat", {"setpoint": -5.0})
    with pytest.raises(ValueError, match="needs an integer value for 'power_sf'"):
        ProfileDevice(SUNSPEC, {"active_power": 100.0})


# --- every profile through the technician's command --------------------------------------------


@pytest.mark.parametrize("profile", profile_names())
async def test_edge_agent_read_decodes_every_profile_on_a_strict_device(profile: str) -> None:
    """`edge-agent read --profile P --tcp ... --json`, as a technician runs it, against a device
    that refuses reads spanning undefined registers."""
    device = _device(profile)
    values = _known_values(device)
    async with ProfileDevice(device, values, strict=True) as served:
        assert served.endpoint is not None
        host, port = served.endpoint
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "read", "--profile", profile,
            "--tcp", f"{host}:{port}", "--unit", "1", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    decoded = json.loads(out)
    assert set(decoded) == set(device.points)
    for name, expected in values.items():
        step = _resolution(device, name)
        tolerance = step / 2 if step is not None else 0.0
        if isinstance(expected, bool):
            assert bool(decoded[name]) is expected, name
        else:
            assert decoded[name] == pytest.approx(expected, rel=1e-6, abs=tolerance), name
