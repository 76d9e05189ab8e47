"""Register maps of the simulated building's devices, and how values become registers.

Every map follows a real device's public convention so the agent's drivers meet the same data
types, scales, word orders and tables they meet on site. Addresses are 0-based protocol
addresses (datasheet register 30001/40001 is address 0: Modbus Application Protocol
Specification v1.1b3, 4.4, numbers data items from 1 but addresses them from 0). The maps are
plain data (`SimPoint`), so tests and the demo config can be cross-checked against them; the
names of tables, data types and word orders are the strings the site config uses
(drivers/modbus/spec.py), so `point.table.value` can be compared with a config point directly.

Buses:
- "switchboard": one Modbus TCP gateway fronting the RS-485 meters of the low-voltage board
  (units 1-3);
- "hvac": the zone controller's own Modbus TCP endpoint (unit 1);
- "pv": the inverter's own Modbus TCP endpoint (unit 1).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from hil.building import ZONE_NAMES, Building, HvacMode, ThreePhase

__all__ = [
    "BUSES",
    "Bus",
    "DataType",
    "DeviceModel",
    "SimPoint",
    "Table",
    "WordOrder",
    "building_devices",
    "point_maps",
]


class Table(enum.StrEnum):
    """The four Modbus data tables."""

    COIL = "coil"  # FC1 read, FC5/FC15 write
    DISCRETE = "discrete"  # FC2
    HOLDING = "holding"  # FC3 read, FC6/FC16 write
    INPUT = "input"  # FC4

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


class DataType(enum.StrEnum):
    BIT = "bit"  # a coil or discrete input
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def registers(self) -> int:
        return 2 if self in (DataType.INT32, DataType.UINT32, DataType.FLOAT32) else 1


class WordOrder(enum.StrEnum):
    """Order of the 16-bit registers of a 32-bit value (bytes inside a register are big-endian)."""

    BIG = "big"  # high word first: the Modbus convention (Eastron, Chint, Acrel)
    LITTLE = "little"  # low word first, "word-swapped" (Sungrow)


_STRUCT_CODE = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
}
_INT_RANGE = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


@dataclass(frozen=True, kw_only=True)
class SimPoint:
    """One value of a device: where it sits and how it is encoded.

    Engineering value = raw x scale (raw is the register content decoded per datatype).
    """

    name: str
    table: Table
    address: int
    datatype: DataType
    scale: float = 1.0
    unit: str = ""
    word_order: WordOrder = WordOrder.BIG
    writable: bool = False
    minimum: float | None = None  # writes outside [minimum, maximum] answer exception 03
    maximum: float | None = None
    choices: tuple[int, ...] | None = None  # writes of other values answer exception 03

    def __post_init__(self) -> None:
        if self.table.is_bits != (self.datatype is DataType.BIT):
            raise ValueError(f"{self.name}: bit tables hold bits, register tables hold words")

    @property
    def count(self) -> int:
        """Registers (or bits) the point takes."""
        return self.datatype.registers

    @property
    def addresses(self) -> range:
        return range(self.address, self.address + self.count)

    def encode(self, value: float) -> list[int]:
        """Engineering value to register words (a bit point gives [0] or [1])."""
        if self.datatype is DataType.BIT:
            return [1 if value else 0]
        raw: float = value / self.scale
        if self.datatype is not DataType.FLOAT32:
            low, high = _INT_RANGE[self.datatype]
            # Rounding, not truncation: 456789.1 / 0.01 is 45678909.999... in binary floats.
            # Clamping keeps a physics outlier from crashing the server; real values stay in range.
            raw = min(max(round(raw), low), high)
        data = struct.pack(">" + _STRUCT_CODE[self.datatype], raw)
        words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        return words[::-1] if self.word_order is WordOrder.LITTLE else words

    def decode(self, registers: Sequence[int]) -> float:
        """Register words to engineering value (the inverse of encode)."""
        if len(registers) != self.count:
            raise ValueError(f"{self.name} takes {self.count} registers, got {len(registers)}")
        if self.datatype is DataType.BIT:
            return float(bool(registers[0]))
        words = list(registers)
        if self.word_order is WordOrder.LITTLE:
            words.reverse()
        data = b"".join(word.to_bytes(2, "big") for word in words)
        (raw,) = struct.unpack(">" + _STRUCT_CODE[self.datatype], data)
        return float(raw) * self.scale

    def accepts(self, value: float) -> bool:
        """Whether a write of this engineering value is legal for the device."""
        if self.minimum is not None and value < self.minimum:
            return False
        if self.maximum is not None and value > self.maximum:
            return False
        return self.choices is None or int(value) in self.choices


ValueReader = Callable[[Building], Mapping[str, float]]
ValueWriter = Callable[[Building, str, float], None]


@dataclass(frozen=True, kw_only=True)
class DeviceModel:
    """A device on a bus: its map, where its values come from and where writes go.

    strict=False serves every register from the lowest to the highest mapped one, zeros where
    the map defines nothing (as a real SDM630 answers its whole 0x0000-0x0157 span); strict=True
    serves only mapped registers, so a read spanning a gap answers exception 02 - the behaviour of
    devices that force a read planner to split its requests (exception codes: Modbus Application
    Protocol Specification v1.1b3, section 7).
    """

    name: str
    bus: str
    unit_id: int
    description: str
    points: tuple[SimPoint, ...]
    read: ValueReader
    write: ValueWriter | None = None
    strict: bool = False

    def point_map(self) -> dict[str, SimPoint]:
        return {point.name: point for point in self.points}

    def points_in(self, table: Table) -> tuple[SimPoint, ...]:
        return tuple(point for point in self.points if point.table is table)

    def served_ranges(self, table: Table) -> list[range]:
        """Address ranges that answer reads, sorted; empty when the table has no points."""
        points = sorted(self.points_in(table), key=lambda point: point.address)
        if not points:
            return []
        if self.strict:
            return [point.addresses for point in points]
        return [range(points[0].address, max(point.addresses.stop for point in points))]

    def serves(self, table: Table, address: int, count: int) -> bool:
        wanted = range(address, address + count)
        return any(
            wanted.start >= served.start and wanted.stop <= served.stop
            for served in self.served_ranges(table)
        )


@dataclass(frozen=True)
class Bus:
    name: str
    gateway: bool  # a gateway answers exception 0x0B for a unit that does not respond
    description: str


BUSES: tuple[Bus, ...] = (
    Bus("switchboard", True, "Modbus TCP gateway fronting the RS-485 meters of the LV board"),
    Bus("hvac", False, "zone controller, own Modbus TCP endpoint"),
    Bus("pv", False, "PV inverter, own Modbus TCP endpoint"),
)


# --- point helpers -------------------------------------------------------------------------------


def _f32(name: str, address: int, unit: str, *, table: Table, scale: float = 1.0) -> SimPoint:
    return SimPoint(
        name=name, table=table, address=address, datatype=DataType.FLOAT32, scale=scale, unit=unit
    )


def _phase_values(feed: ThreePhase) -> dict[str, float]:
    values: dict[str, float] = {}
    for n in range(3):
        values[f"voltage_l{n + 1}"] = feed.voltage[n]
        values[f"current_l{n + 1}"] = feed.current[n]
        values[f"active_power_l{n + 1}"] = feed.active_power[n]
    values["active_power"] = feed.total_active_power
    return values


# --- unit 1 on the switchboard: main incoming meter ----------------------------------------------

# Eastron SDM630 (Modbus protocol v2): input registers (FC4), IEEE 754 float32, high word first.
# Addresses per Eastron's public "SDM630 Modbus protocol" register map.
_SDM630 = (
    ("voltage_l1", 0x0000, "V"),
    ("voltage_l2", 0x0002, "V"),
    ("voltage_l3", 0x0004, "V"),
    ("current_l1", 0x0006, "A"),
    ("current_l2", 0x0008, "A"),
    ("current_l3", 0x000A, "A"),
    ("active_power_l1", 0x000C, "W"),
    ("active_power_l2", 0x000E, "W"),
    ("active_power_l3", 0x0010, "W"),
    ("active_power", 0x0034, "W"),  # total system power
    ("apparent_power", 0x0038, "VA"),
    ("reactive_power", 0x003C, "var"),
    ("power_factor", 0x003E, ""),
    ("frequency", 0x0046, "Hz"),
    ("import_energy", 0x0048, "kWh"),
    ("export_energy", 0x004A, "kWh"),
    ("voltage_l1_l2", 0x00C8, "V"),
    ("voltage_l2_l3", 0x00CA, "V"),
    ("voltage_l3_l1", 0x00CC, "V"),
    ("total_active_energy", 0x0156, "kWh"),  # import + export, as the SDM630 counts "total kWh"
)


def _main_meter_values(building: Building) -> dict[str, float]:
    feed = building.main_feed()
    energy = building.energy()
    line = feed.line_voltage
    return {
        **_phase_values(feed),
        "apparent_power": feed.apparent_power,
        "reactive_power": feed.reactive_power,
        "power_factor": feed.power_factor,
        "frequency": building.frequency,
        "import_energy": energy.main_import,
        "export_energy": energy.main_export,
        "voltage_l1_l2": line[0],
        "voltage_l2_l3": line[1],
        "voltage_l3_l1": line[2],
        "total_active_energy": energy.main_import + energy.main_export,
    }


def _main_meter(strict: bool) -> DeviceModel:
    points = tuple(_f32(name, addr, unit, table=Table.INPUT) for name, addr, unit in _SDM630)
    return DeviceModel(
        name="main_meter",
        bus="switchboard",
        unit_id=1,
        description="Eastron SDM630, main incoming supply (electricity 01000)",
        points=points,
        read=_main_meter_values,
        strict=strict,
    )


# --- unit 2 on the switchboard: lighting and sockets sub-meter (01A00) ---------------------------


# Acrel ADW300-like map, as documented in public integrations of Acrel's ADW300 manual: holding
# registers (FC3), scaled integers, 32-bit values high word first. Acrel maps differ between
# versions: check the maker's manual for the firmware on site.
def _lighting_points() -> tuple[SimPoint, ...]:
    points: list[SimPoint] = []
    for n in range(3):
        points.append(
            SimPoint(
                name=f"voltage_l{n + 1}",
                table=Table.HOLDING,
                address=20 + n,
                datatype=DataType.UINT16,
                scale=0.1,
                unit="V",
            )
        )
    for n in range(3):
        points.append(
            SimPoint(
                name=f"current_l{n + 1}",
                table=Table.HOLDING,
                address=26 + n,
                datatype=DataType.UINT16,
                scale=0.01,
                unit="A",
            )
        )
    points.append(
        SimPoint(
            name="active_power", table=Table.HOLDING, address=36, datatype=DataType.INT32, unit="W"
        )
    )
    points.append(
        SimPoint(
            name="import_energy",
            table=Table.HOLDING,
            address=62,
            datatype=DataType.INT32,
            scale=0.01,
            unit="kWh",
        )
    )
    return tuple(points)


def _lighting_meter_values(building: Building) -> dict[str, float]:
    return {**_phase_values(building.lighting_feed()), "import_energy": building.energy().lighting}


def _lighting_meter(strict: bool) -> DeviceModel:
    return DeviceModel(
        name="lighting_meter",
        bus="switchboard",
        unit_id=2,
        description="Acrel ADW300-like, lighting and sockets (sub-item 01A00)",
        points=_lighting_points(),
        read=_lighting_meter_values,
        strict=strict,
    )


# --- unit 3 on the switchboard: HVAC sub-meter (01B00) -------------------------------------------

# Chint DTSU666 map as documented in public integrations of Chint's DTSU666 manual: holding
# registers (FC3; some documents say FC4), float32 high word first, raw values scaled (voltage
# raw x 0.1 V, so 220 V is served as 2200.0). Import energy sits at 0x101E (0x401E on some
# versions); 0x2000-0x2004 are line voltages, not served here.
_DTSU666 = (
    ("voltage_l1", 0x2006, 0.1, "V"),
    ("voltage_l2", 0x2008, 0.1, "V"),
    ("voltage_l3", 0x200A, 0.1, "V"),
    ("current_l1", 0x200C, 0.001, "A"),
    ("current_l2", 0x200E, 0.001, "A"),
    ("current_l3", 0x2010, 0.001, "A"),
    ("active_power", 0x2012, 0.1, "W"),
    ("import_energy", 0x101E, 1.0, "kWh"),
)


def _hvac_meter_values(building: Building) -> dict[str, float]:
    return {**_phase_values(building.hvac_feed()), "import_energy": building.energy().hvac}


def _hvac_meter(strict: bool) -> DeviceModel:
    points = tuple(
        _f32(name, addr, unit, table=Table.HOLDING, scale=scale)
        for name, addr, scale, unit in _DTSU666
    )
    return DeviceModel(
        name="hvac_meter",
        bus="switchboard",
        unit_id=3,
        description="Chint DTSU666, HVAC (sub-item 01B00)",
        points=points,
        read=_hvac_meter_values,
        strict=strict,
    )


# --- bus "hvac", unit 1: zone controller ---------------------------------------------------------

# A generic fan-coil / zone controller (no public map to follow): temperatures as int16 x 0.1 °C
# input registers, setpoints and modes as holding registers, on/off as coils - the layout common
# to Chinese fan-coil thermostats. Setpoints are accepted in 5.0-35.0 °C like a thermostat's dial.
SETPOINT_RANGE_C = (5.0, 35.0)


def _hvac_controller_points() -> tuple[SimPoint, ...]:
    points: list[SimPoint] = []
    for n, zone in enumerate(ZONE_NAMES):
        points.append(
            SimPoint(
                name=f"{zone}_temperature",
                table=Table.INPUT,
                address=n,
                datatype=DataType.INT16,
                scale=0.1,
                unit="degC",
            )
        )
        points.append(
            SimPoint(
                name=f"{zone}_setpoint",
                table=Table.HOLDING,
                address=n,
                datatype=DataType.UINT16,
                scale=0.1,
                unit="degC",
                writable=True,
                minimum=SETPOINT_RANGE_C[0],
                maximum=SETPOINT_RANGE_C[1],
            )
        )
        points.append(
            SimPoint(
                name=f"{zone}_mode",
                table=Table.HOLDING,
                address=10 + n,
                datatype=DataType.UINT16,
                writable=True,
                choices=tuple(int(mode) for mode in HvacMode),
            )
        )
        points.append(
            SimPoint(
                name=f"{zone}_on", table=Table.COIL, address=n, datatype=DataType.BIT, writable=True
            )
        )
    points.append(
        SimPoint(
            name="outdoor_temperature",
            table=Table.INPUT,
            address=10,
            datatype=DataType.INT16,
            scale=0.1,
            unit="degC",
        )
    )
    return tuple(points)


def _hvac_controller_values(building: Building) -> dict[str, float]:
    values: dict[str, float] = {"outdoor_temperature": building.outdoor_temperature}
    for name, zone in building.zones.items():
        values[f"{name}_temperature"] = building.zone_sensor_temperature(name)
        values[f"{name}_setpoint"] = zone.setpoint
        values[f"{name}_mode"] = float(zone.mode)
        values[f"{name}_on"] = float(zone.on)
    return values


def _hvac_controller_write(building: Building, point: str, value: float) -> None:
    zone, _, field = point.rpartition("_")
    if field == "setpoint":
        building.set_setpoint(zone, value)
    elif field == "mode":
        building.set_mode(zone, HvacMode(int(value)))
    elif field == "on":
        building.set_on(zone, bool(value))
    else:
        raise KeyError(f"point {point!r} of the HVAC controller is not writable")


def _hvac_controller(strict: bool) -> DeviceModel:
    return DeviceModel(
        name="hvac_controller",
        bus="hvac",
        unit_id=1,
        description="zone controller for three fan-coil zones",
        points=_hvac_controller_points(),
        read=_hvac_controller_values,
        write=_hvac_controller_write,
        strict=strict,
    )


# --- bus "pv", unit 1: inverter ------------------------------------------------------------------


# Sungrow SG-like map (Sungrow's "Communication Protocol of PV Grid-Connected String Inverters",
# as used by public integrations): input registers (FC4); Sungrow's manual numbers registers
# from 1 (its 5003 is address 5002 here) - check the maker's manual for the model on site.
# 32-bit values are word-swapped (low word first).
def _pv_points() -> tuple[SimPoint, ...]:
    def point(name: str, address: int, datatype: DataType, scale: float, unit: str) -> SimPoint:
        return SimPoint(
            name=name,
            table=Table.INPUT,
            address=address,
            datatype=datatype,
            scale=scale,
            unit=unit,
            word_order=WordOrder.LITTLE,
        )

    return (
        point("daily_yield", 5002, DataType.UINT16, 0.1, "kWh"),
        point("total_yield", 5003, DataType.UINT32, 1.0, "kWh"),
        point("internal_temperature", 5007, DataType.INT16, 0.1, "degC"),
        point("dc_voltage", 5010, DataType.UINT16, 0.1, "V"),
        point("dc_current", 5011, DataType.UINT16, 0.1, "A"),
        point("active_power", 5030, DataType.UINT32, 1.0, "W"),
    )


def _pv_inverter_values(building: Building) -> dict[str, float]:
    energy = building.energy()
    return {
        "daily_yield": energy.pv_daily,
        # The inverter counts whole kWh: show completed ones, so the register never runs ahead.
        "total_yield": float(int(energy.pv_total)),
        "internal_temperature": building.pv_internal_temperature,
        "dc_voltage": building.pv_dc_voltage,
        "dc_current": building.pv_dc_current,
        "active_power": building.pv_power_kw * 1000,
    }


def _pv_inverter(strict: bool) -> DeviceModel:
    return DeviceModel(
        name="pv_inverter",
        bus="pv",
        unit_id=1,
        description="Sungrow SG-like string inverter, 30 kWp rooftop",
        points=_pv_points(),
        read=_pv_inverter_values,
        strict=strict,
    )


# --- the building's devices ----------------------------------------------------------------------

_FACTORIES: tuple[Callable[[bool], DeviceModel], ...] = (
    _main_meter,
    _lighting_meter,
    _hvac_meter,
    _hvac_controller,
    _pv_inverter,
)


def building_devices(*, strict: bool | Collection[str] = False) -> tuple[DeviceModel, ...]:
    """Every device of the simulated building.

    strict: True makes every device strict, a collection of device names only those.
    """
    devices = tuple(factory(False) for factory in _FACTORIES)
    names = {device.name for device in devices}
    if isinstance(strict, bool):
        chosen = names if strict else set()
    else:
        chosen = set(strict)
        if unknown := chosen - names:
            raise KeyError(f"no device {', '.join(sorted(unknown))}; devices are {sorted(names)}")
    return tuple(replace(device, strict=device.name in chosen) for device in devices)


def point_maps() -> dict[str, dict[str, SimPoint]]:
    """The register map of every device, keyed by device name then point name."""
    return {device.name: device.point_map() for device in building_devices()}
