"""What a site config says about Modbus buses, devices and points (validated pydantic models).

Facts used here: FC3/FC4 read at most 125 registers per request, FC1/FC2 at most 2000 bits
(Modbus Application Protocol Specification v1.1b3, 6.1-6.4); unit ids 1-247 address devices on
a line, 0 is broadcast (Modbus over Serial Line Specification and Implementation Guide v1.02,
2.2), and Modbus TCP gateways often use 255 for "this device" (Modbus Messaging on TCP/IP
Implementation Guide v1.0b, unit identifier).
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from agent.core.configbase import ConfigModel, DeviceConfigBase
from agent.core.durations import Duration
from agent.core.suggest import did_you_mean
from drivers.modbus.profiles import DEVICE_DEFAULT_KEYS, load_profile, profile_names

__all__ = [
    "MAX_SCALE_FACTOR",
    "ByteOrder",
    "DataType",
    "ModbusDevice",
    "ModbusPoint",
    "Table",
    "UnreadableRange",
    "WordOrder",
]

# SunSpec scale factors (type sunssf) range from -10 to 10 (SunSpec Information Model
# Specification); a register outside that range is a fault, not a scale.
MAX_SCALE_FACTOR = 10


class Table(enum.StrEnum):
    """The four Modbus data tables, each with its read function code."""

    COIL = "coil"  # FC1 read, FC5/FC15 write
    DISCRETE = "discrete"  # FC2
    HOLDING = "holding"  # FC3 read, FC6/FC16 write
    INPUT = "input"  # FC4

    @property
    def read_function(self) -> int:
        return {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[self.value]

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


class DataType(enum.StrEnum):
    BIT = "bit"  # one bit of a register (with `bit`), or a coil / discrete input
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"

    @property
    def is_integer(self) -> bool:
        return self in _INTEGER_TYPES

    @property
    def registers(self) -> int:
        """Registers one value takes (strings: per `length`, see ModbusPoint.register_count)."""
        return _REGISTERS[self]  # a StrEnum: hashes and compares as its value


# Per value: asked for every point of every reply, so built once.
_REGISTERS = {
    "bit": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
    "string": 1,
}


_INTEGER_TYPES = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
    }
)


class WordOrder(enum.StrEnum):
    """Order of the 16-bit registers of a multi-register value."""

    BIG = "big"  # high word first (Modbus convention; Eastron, Chint)
    LITTLE = "little"  # low word first ("word-swapped"; e.g. Sungrow)


class ByteOrder(enum.StrEnum):
    """Order of the two bytes inside each register."""

    BIG = "big"  # the Modbus standard
    LITTLE = "little"  # rare; some string registers and odd firmware


class ModbusPoint(ConfigModel):
    """One value read from a device."""

    # Written `register` in YAML; held as `address` because pydantic's BaseModel (an ABC)
    # already has a `register` attribute.
    address: int = Field(alias="register", ge=0, le=65535)
    """Protocol address, 0-based: datasheet register 40001 is holding register 0."""
    table: Table = Table.HOLDING
    """Which data table: holding (FC3), input (FC4), coil (FC1) or discrete (FC2)."""
    type: DataType = DataType.UINT16
    """How the registers are decoded."""
    bit: int | None = Field(default=None, ge=0, le=15)
    """For type bit on a register table: which bit of the register (0 = least significant)."""
    length: int | None = Field(default=None, ge=1, le=125)
    """For type string: how many registers the text takes."""
    word_order: WordOrder | None = None
    """Overrides the device's word order for this point."""
    byte_order: ByteOrder | None = None
    """Overrides the device's byte order for this point."""
    scale: float = 1.0
    """Engineering value = raw x scale + offset (x 10^SF first, with `scale_factor`)."""
    offset: float = 0.0
    """Added after scaling."""
    scale_factor: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_]*$")
    """Name of another point of this device that holds a power-of-ten exponent SF, as SunSpec
    does (e.g. w_sf): engineering value = raw x 10^SF x scale + offset, with SF from the same
    poll. A missing, unavailable or out-of-range SF (beyond -10..10) makes the reading bad."""
    not_available: int | None = Field(default=None, ge=0)
    """Register content meaning "not implemented / no value", written as the unsigned raw
    bits (SunSpec: 0x8000 for int16, 0xFFFF for uint16, 0x80000000 for int32, 0xFFFFFFFF for
    uint32, 0 for an acc32 counter). A reading holding it is bad, with no value."""
    unit: str = ""
    """Unit of the engineering value, e.g. W, kWh, V, A, degC."""
    interval: Duration | None = None
    """Poll interval of this point; defaults to the device's."""
    writable: bool = False
    """Only points declared writable may ever be written (used by schedules)."""

    @model_validator(mode="after")
    def _check_shape(self) -> ModbusPoint:
        if self.table.is_bits and self.type is not DataType.BIT:
            raise ValueError(f"a {self.table.value} holds single bits, so its type must be bit")
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string point needs `length`, the number of registers it takes")
        if self.type is not DataType.STRING and self.length is not None:
            raise ValueError("`length` applies only to string points")
        if self.bit is not None and (self.type is not DataType.BIT or self.table.is_bits):
            raise ValueError("`bit` applies only to type bit on a holding or input register")
        if self.type is DataType.BIT and not self.table.is_bits and self.bit is None:
            raise ValueError("a bit inside a register needs `bit`, its index 0-15")
        if self.scale_factor is not None and self.type in (DataType.BIT, DataType.STRING):
            raise ValueError(f"`scale_factor` applies to numbers, not to a {self.type.value}")
        if self.not_available is not None:
            if not self.type.is_integer:
                raise ValueError("`not_available` applies to integer types only")
            if self.not_available >= 1 << (16 * self.type.registers):
                raise ValueError(
                    f"`not_available` {self.not_available:#x} does not fit in a {self.type.value}"
                    " (write the register content as an unsigned number, e.g. 0x8000 for int16)"
                )
        return self

    @property
    def register_count(self) -> int:
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return self.type.registers


class UnreadableRange(ConfigModel):
    """Registers a merged read must never carry as filler (e.g. undefined ones that make the
    device answer exception 02); a point declared inside the range is still read on its own."""

    table: Table
    """The data table the range is in."""
    start: int = Field(ge=0, le=65535)
    """First register of the range (0-based protocol address)."""
    end: int = Field(ge=0, le=65535)
    """Last register of the range, inclusive."""

    @model_validator(mode="after")
    def _check_order(self) -> UnreadableRange:
        if self.end < self.start:
            raise ValueError(f"`end` ({self.end}) comes before `start` ({self.start})")
        return self


class ModbusDevice(DeviceConfigBase):
    """A device on a Modbus bus."""

    link_kinds: ClassVar[tuple[str, ...]] = ("modbus_tcp", "tcp", "modbus_rtu", "serial")

    protocol: Literal["modbus"] = "modbus"
    """modbus (the default): Modbus RTU on a serial line, Modbus TCP on a TCP endpoint."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    """Stable name of the device, used in records and topics (lowercase, digits, _ and -)."""
    bus: str
    """Name of the bus (under `buses`) the device is on."""
    unit_id: int = Field(default=1, ge=0, le=255)
    """Modbus unit id (slave address): 1-247 on a serial line."""
    profile: str | None = None
    """A shipped device profile whose points the device takes (points listed here override)."""
    interval: Duration = 10.0
    """Default poll interval of the device's points."""
    word_order: WordOrder = WordOrder.BIG
    """Register order of 32/64-bit values: big (high word first) or little (word-swapped)."""
    byte_order: ByteOrder = ByteOrder.BIG
    """Byte order inside each register: big (the standard) or little."""
    retries: int = Field(default=1, ge=0, le=5)
    """Retries of a request that got no answer while the device is up (a device already
    marked down is not retried: each retry costs the bus one more timeout)."""
    max_registers: int = Field(default=125, ge=1, le=125)
    """Most registers the device accepts in one read (125 by the spec, less for many devices)."""
    points: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]*$")], ModbusPoint] = Field(
        default_factory=dict
    )
    """Points by stable name, e.g. active_power, import_energy, voltage_l1."""
    unreadable: tuple[UnreadableRange, ...] = ()
    """Register ranges a merged read must not carry as filler: the profile's, then these."""

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        # Merge before validation, so profile points are validated like the site's own.
        # An unknown profile is left for the `profile` field validator to report in place.
        if not isinstance(data, dict) or not isinstance(data.get("profile"), str):
            return data
        try:
            profile = load_profile(data["profile"])
        except KeyError:
            return data
        merged = dict(data)
        for key, value in (profile.get("defaults") or {}).items():
            if key in DEVICE_DEFAULT_KEYS:
                merged.setdefault(key, value)
        own_points = data.get("points")
        if own_points is None or isinstance(own_points, dict):
            merged["points"] = {**profile["points"], **(own_points or {})}
        own_ranges = data.get("unreadable")
        if profile.get("unreadable") and (own_ranges is None or isinstance(own_ranges, list)):
            merged["unreadable"] = [*profile["unreadable"], *(own_ranges or [])]
        return merged

    @field_validator("points")
    @classmethod
    def _scale_factors_resolve(cls, points: dict[str, ModbusPoint]) -> dict[str, ModbusPoint]:
        # Per device, so the error names the point; cross-device checks live in
        # agent/config/model.py `cross_check`.
        for name, point in points.items():
            ref = point.scale_factor
            if ref is None:
                continue
            source = points.get(ref)
            if source is None:
                hint = did_you_mean(ref, [n for n in points if n != name])
                raise ValueError(
                    f"point {name!r} takes its scale factor from {ref!r}, but the device has no "
                    f"point {ref!r}{hint}: declare it (an int16, e.g. "
                    f"{{register: N, type: int16}}) or remove `scale_factor`"
                )
            if ref == name or source.scale_factor is not None:
                raise ValueError(
                    f"point {name!r} takes its scale factor from {ref!r}, which has a "
                    "`scale_factor` of its own: a scale factor must be a plain register"
                )
            if source.table.is_bits or not source.type.is_integer:
                raise ValueError(
                    f"point {name!r} takes its scale factor from {ref!r}, a "
                    f"{source.type.value}: a scale factor must be an integer (int16)"
                )
            if source.scale != 1.0 or source.offset != 0.0:
                raise ValueError(
                    f"point {name!r} takes its scale factor from {ref!r}, which is scaled: a "
                    "scale factor point must have no `scale` or `offset`"
                )
        return points

    def point_units(self) -> dict[str, str]:
        return {name: point.unit for name, point in self.points.items()}

    def write_problem(self, point: str) -> str | None:
        spec = self.points.get(point)
        if spec is None:
            return f"device {self.name!r} has no point {point!r}"
        if not spec.writable:
            return f"point {point!r} of {self.name!r} is not declared `writable: true`"
        if spec.table not in (Table.HOLDING, Table.COIL):
            return f"point {point!r} is in the {spec.table.value} table, which is read-only"
        if spec.bit is not None:
            return f"point {point!r} is one bit of a register, which cannot be written alone"
        if spec.type is DataType.STRING:
            return f"point {point!r} is text, not a number"
        return None

    def unreadable_spans(self) -> dict[Table, list[tuple[int, int]]]:
        """The `unreadable` ranges as [start, end) spans per table (what the planner takes)."""
        spans: dict[Table, list[tuple[int, int]]] = {}
        for r in self.unreadable:
            spans.setdefault(r.table, []).append((r.start, r.end + 1))
        return {table: sorted(set(found)) for table, found in spans.items()}

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in profile_names():
            hint = did_you_mean(value, profile_names())
            raise ValueError(
                f"there is no shipped profile {value!r}{hint}; "
                f"the profiles are: {', '.join(profile_names())}"
            )
        return value
