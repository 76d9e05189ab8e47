"""The CJ/T 188 "read metering data" (DI 901F) replies: BCD fields, unit codes, status bits.

A 901F reply's data is DI (2), SER (1), then a body whose layout depends on the meter class:

- water and gas (L = 16H): cumulative flow XXXXXX.XX (4 BCD, low byte first) + unit code,
  settlement-day cumulative flow (4) + unit, the meter's clock (7), status ST (2). Sources:
  hftangyu.com/563.html; `aixiwang/python_cjt188` parses the same offsets;
  `xijunzhou/sdqr_energy_node_class-20180705` Src/meter/cj188.h names them.
- heat (L = 2EH): field 1 (4 + unit), current heat (4 + unit), thermal power (4 + unit), flow rate
  (4 + unit), cumulative flow (4 + unit), supply and return temperature XXXX.XX (3 each),
  working hours XXXXXX (3), clock (7), ST (2). The layout is the one `ioBroker.sanext` main.js
  documents for a real heat meter, and cj188.h gives the same offsets. Field 1 is settlement-day
  heat in cj188.h and in the 2004 table transcribed at cnblogs.com/llguanli/p/8683992.html, but
  "current cooling capacity" for the Sanext meter: `heat_layout(first_field=...)` renames it.

Values come out in one unit per quantity whatever unit code the meter sent: m3 for volume, kWh
for heat energy (MWh, GJ, ... converted), W for power (kW converted), m3/h for flow rate, degC,
h. The meter's clock is not a point: meters leave it at zero, and a gateway never trusts a field
device's clock for timestamps. `decode_meter_clock` reads it for logs only.

Everything marked unconfirmed below is a default argument or a table entry, never a constant
buried in the code: the unit table, the decimals of power and flow rate, the status bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from types import MappingProxyType
from typing import Final, Literal

from drivers.cjt188.errors import BcdError, FrameError, UnitCodeError
from drivers.cjt188.frame import (
    C_READ_DATA,
    DI_READ_DATA,
    REPLY_BIT,
    WILDCARD_ADDRESS,
    DiOrder,
    Frame,
    MeterKind,
    encode_di,
    parse_data_reply,
)

__all__ = [
    "CANONICAL_UNITS",
    "HEAT_LAYOUT",
    "POINT_UNITS",
    "STATUS_BITS",
    "STATUS_BITS_LOW_ORDER",
    "STATUS_POINTS",
    "UNIT_CODES",
    "WATER_LAYOUT",
    "Field",
    "Layout",
    "Quantity",
    "StatusBits",
    "UnitCode",
    "bcd_to_int",
    "decode_901f",
    "decode_901f_response",
    "decode_meter_clock",
    "encode_901f_response",
    "heat_layout",
    "int_to_bcd",
    "layout_for",
    "unit_code",
]

Quantity = Literal["energy", "power", "volume", "flow_rate", "temperature", "duration"]

# The unit every point of a quantity is published in, whatever the meter sent.
CANONICAL_UNITS: Final[Mapping[Quantity, str]] = MappingProxyType(
    {
        "energy": "kWh",
        "power": "W",
        "volume": "m3",
        "flow_rate": "m3/h",
        "temperature": "degC",
        "duration": "h",
    }
)

_CLOCK_SIZE = 7
_STATUS_SIZE = 2


@dataclass(frozen=True, slots=True)
class UnitCode:
    """One CJ/T 188 unit code: the unit as published, and one of it in the canonical unit."""

    code: int
    symbol: str  # as the standard names it: "MWh", "GJ", "L/h"
    quantity: Quantity
    scale: Fraction  # one `symbol` expressed in CANONICAL_UNITS[quantity]
    evidence: Literal["corroborated", "unconfirmed"]


def _unit(
    code: int,
    symbol: str,
    quantity: Quantity,
    scale: Fraction | int,
    evidence: Literal["corroborated", "unconfirmed"],
) -> tuple[int, UnitCode]:
    return code, UnitCode(code, symbol, quantity, Fraction(scale), evidence)


# The unit-code table. "corroborated": seen in real frames and in ioBroker.sanext main.js
# (05 kWh at 0.01 kWh resolution, 08 MWh, 17 kW, 35 m3/h, 2C m3). "unconfirmed": the rest of the
# commonly quoted table, which the KingDa water-meter firmware also lists
# (`CaiYongCode/KingDa-NBWaterMeterCode-BC95` USER/inc/CJT-188-2004.h, CJT_188_UnitType); the
# standard's own table was not readable. Pass another mapping to the codec to change it.
# 1 kWh = 3.6 MJ, so 1 GJ = 1e9 / 3.6e6 kWh = 2500/9 kWh.
UNIT_CODES: Final[Mapping[int, UnitCode]] = MappingProxyType(
    dict(
        (
            _unit(0x01, "J", "energy", Fraction(1, 3_600_000), "unconfirmed"),
            _unit(0x02, "Wh", "energy", Fraction(1, 1000), "unconfirmed"),
            _unit(0x05, "kWh", "energy", 1, "corroborated"),
            _unit(0x08, "MWh", "energy", 1000, "corroborated"),
            _unit(0x0A, "MWh x 100", "energy", 100_000, "unconfirmed"),
            _unit(0x0B, "kJ", "energy", Fraction(1, 3600), "unconfirmed"),
            _unit(0x0E, "MJ", "energy", Fraction(5, 18), "unconfirmed"),
            _unit(0x11, "GJ", "energy", Fraction(2500, 9), "unconfirmed"),
            _unit(0x13, "GJ x 100", "energy", Fraction(250_000, 9), "unconfirmed"),
            _unit(0x14, "W", "power", 1, "unconfirmed"),
            _unit(0x17, "kW", "power", 1000, "corroborated"),
            _unit(0x1A, "MW", "power", 1_000_000, "unconfirmed"),
            _unit(0x29, "L", "volume", Fraction(1, 1000), "unconfirmed"),
            _unit(0x2C, "m3", "volume", 1, "corroborated"),
            _unit(0x32, "L/h", "flow_rate", Fraction(1, 1000), "unconfirmed"),
            _unit(0x35, "m3/h", "flow_rate", 1, "corroborated"),
        )
    )
)

# The code an encoder writes for each quantity unless told otherwise.
_DEFAULT_UNIT_FOR: Final[Mapping[Quantity, int]] = MappingProxyType(
    {"energy": 0x05, "power": 0x17, "volume": 0x2C, "flow_rate": 0x35}
)


def unit_code(
    code: int,
    *,
    quantity: Quantity,
    field: str,
    table: Mapping[int, UnitCode] = UNIT_CODES,
) -> UnitCode:
    """The table's entry for ``code``; UnitCodeError if unknown or of another quantity."""
    unit = table.get(code)
    if unit is None:
        raise UnitCodeError(code, field)
    if unit.quantity != quantity:
        raise UnitCodeError(code, field, expected=quantity, got=unit.quantity)
    return unit


@dataclass(frozen=True, slots=True)
class Field:
    """One BCD value of a 901F body, optionally followed by its unit code."""

    point: str
    size: int  # BCD bytes, low byte first
    decimals: int  # XXXXXX.XX has 2
    quantity: Quantity
    unit_byte: bool = True  # False: a fixed unit (temperatures in degC, hours)


@dataclass(frozen=True, slots=True)
class Layout:
    """A 901F body: the fields in wire order, then the meter's clock (7) and ST (2)."""

    name: str
    fields: tuple[Field, ...]

    @property
    def body_length(self) -> int:
        """Bytes after DI and SER (19 for water/gas, 43 for heat)."""
        values = sum(f.size + (1 if f.unit_byte else 0) for f in self.fields)
        return values + _CLOCK_SIZE + _STATUS_SIZE

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(f.point for f in self.fields)


WATER_LAYOUT: Final = Layout(
    "water_gas",
    (
        Field("volume", 4, 2, "volume"),
        Field("volume_settlement", 4, 2, "volume"),
    ),
)


def heat_layout(
    *,
    first_field: str = "heat_energy_settlement",
    power_decimals: int = 2,
    flow_rate_decimals: int = 4,
) -> Layout:
    """The heat-meter 901F layout, with its unconfirmed parts as options.

    ``first_field`` names field 1 (settlement-day heat in cj188.h, a cooling figure on the
    Sanext meter). The decimals of power and flow rate were not seen in a readable source:
    XXXXXX.XX for power like the other 4-byte values and XXXX.XXXX for flow rate are the
    commonly quoted figures, unconfirmed; check one reading against the meter's display.
    """
    return Layout(
        "heat",
        (
            Field(first_field, 4, 2, "energy"),
            Field("heat_energy", 4, 2, "energy"),
            Field("power", 4, power_decimals, "power"),
            Field("flow_rate", 4, flow_rate_decimals, "flow_rate"),
            Field("volume", 4, 2, "volume"),
            Field("flow_temperature", 3, 2, "temperature", unit_byte=False),
            Field("return_temperature", 3, 2, "temperature", unit_byte=False),
            Field("operating_hours", 3, 0, "duration", unit_byte=False),
        ),
    )


HEAT_LAYOUT: Final = heat_layout()


def layout_for(kind: MeterKind) -> Layout:
    """The default 901F layout of a meter class; ValueError for "other" (no known layout)."""
    if kind == "heat":
        return HEAT_LAYOUT
    if kind in ("water_cold", "water_hot", "gas"):
        return WATER_LAYOUT
    raise ValueError(f"no 901F layout is known for meter class {kind!r}")


@dataclass(frozen=True, slots=True)
class StatusBits:
    """Where the valve and battery flags sit in ST byte 1 (the first status byte on the wire).

    ST byte 2 is vendor-defined. The default follows cj188.h (`xijunzhou/
    sdqr_energy_node_class-20180705`): valve mask C0 (00 open, 40 closed, C0 abnormal), battery
    low 20. Corroborated only; `STATUS_BITS_LOW_ORDER` is the bit-reversed reading (valve in
    D0-D1, 01 closed, 11 abnormal; battery D2) that the KingDa firmware's ST bit-field gives
    on its big-endian MCU. Which one a meter uses is a per-device choice.
    """

    valve_mask: int = 0xC0
    valve_closed: int = 0x40
    valve_abnormal: int = 0xC0
    battery_low: int = 0x20


STATUS_BITS: Final = StatusBits()
STATUS_BITS_LOW_ORDER: Final = StatusBits(
    valve_mask=0x03, valve_closed=0x01, valve_abnormal=0x03, battery_low=0x04
)

STATUS_POINTS: Final = ("status_valve_closed", "status_valve_abnormal", "status_battery_low")

# Every point a 901F reply can give, with its unit ("" for 0/1 flags).
POINT_UNITS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "volume": "m3",  # cumulative flow
        "volume_settlement": "m3",  # cumulative flow on the last settlement day
        "heat_energy": "kWh",  # current cumulative heat (or cooling on a 21H meter)
        "heat_energy_settlement": "kWh",  # cumulative heat on the last settlement day
        "power": "W",  # thermal power
        "flow_rate": "m3/h",
        "flow_temperature": "degC",  # supply
        "return_temperature": "degC",
        "operating_hours": "h",
        **dict.fromkeys(STATUS_POINTS, ""),
    }
)


def bcd_to_int(raw: bytes, *, field: str = "") -> int:
    """The number a BCD field holds, low byte first; BcdError on a nibble above 9."""
    value = 0
    for offset in range(len(raw) - 1, -1, -1):
        byte = raw[offset]
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise BcdError(raw, offset, field)
        value = value * 100 + high * 10 + low
    return value


def int_to_bcd(value: int, size: int) -> bytes:
    """``value`` as ``size`` BCD bytes, low byte first; ValueError if it does not fit."""
    if not 0 <= value < 10 ** (2 * size):
        raise ValueError(f"{value} does not fit {size} BCD bytes")
    digits = f"{value:0{2 * size}d}"
    return bytes.fromhex(digits)[::-1]


def decode_meter_clock(raw: bytes) -> str | None:
    """The meter's own clock, ss mm hh DD MM YY(lo) YY(hi) in BCD, as "YYYY-MM-DD hh:mm:ss".

    For logs and commissioning only: timestamps come from the gateway, never from here. None
    when the meter leaves it zero (many do) or it is not a valid date.
    """
    if len(raw) != _CLOCK_SIZE or not any(raw):
        return None
    try:
        second, minute, hour, day, month, year_lo, year_hi = (bcd_to_int(bytes([b])) for b in raw)
        stamp = datetime(year_hi * 100 + year_lo, month, day, hour, minute, second)
    except (BcdError, ValueError):
        return None
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def _encode_meter_clock(text: str | None) -> bytes:
    if text is None:
        return bytes(_CLOCK_SIZE)
    stamp = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    parts = (
        stamp.second,
        stamp.minute,
        stamp.hour,
        stamp.day,
        stamp.month,
        stamp.year % 100,
        stamp.year // 100,
    )
    return b"".join(int_to_bcd(p, 1) for p in parts)


def _decode_status(st: bytes, bits: StatusBits) -> dict[str, int]:
    valve = st[0] & bits.valve_mask
    return {
        "status_valve_closed": int(valve == bits.valve_closed),
        # Any valve code other than open and closed (also one the table does not name).
        "status_valve_abnormal": int(valve not in (0, bits.valve_closed)),
        "status_battery_low": int(bool(st[0] & bits.battery_low)),
    }


def _encode_status(points: Mapping[str, float | int], bits: StatusBits, vendor: int) -> bytes:
    closed = bool(points.get("status_valve_closed", 0))
    abnormal = bool(points.get("status_valve_abnormal", 0))
    if closed and abnormal:
        raise ValueError("a valve is closed or abnormal, not both")
    first = bits.valve_closed if closed else bits.valve_abnormal if abnormal else 0
    if points.get("status_battery_low", 0):
        first |= bits.battery_low
    return bytes([first, vendor & 0xFF])


def decode_901f(
    body: bytes,
    *,
    layout: Layout,
    units: Mapping[int, UnitCode] = UNIT_CODES,
    status_bits: StatusBits = STATUS_BITS,
) -> dict[str, float | int]:
    """Points from a 901F body (the bytes after DI and SER).

    Measured values are floats in `CANONICAL_UNITS`; status flags are 0/1 ints. A body
    shorter than the layout raises FrameError; bytes after it (some meters append) are
    ignored. A non-BCD measured field raises BcdError, an unknown unit code UnitCodeError.
    """
    if len(body) < layout.body_length:
        raise FrameError(
            f"a {layout.name} 901F body has {layout.body_length} bytes, got {len(body)}", body
        )
    points: dict[str, float | int] = {}
    offset = 0
    for f in layout.fields:
        number = bcd_to_int(body[offset : offset + f.size], field=f.point)
        offset += f.size
        scale = Fraction(1)
        if f.unit_byte:
            scale = unit_code(body[offset], quantity=f.quantity, field=f.point, table=units).scale
            offset += 1
        points[f.point] = float(Fraction(number, 10**f.decimals) * scale)
    offset += _CLOCK_SIZE
    points.update(_decode_status(body[offset : offset + _STATUS_SIZE], status_bits))
    return points


def decode_901f_response(
    data: bytes,
    *,
    kind: MeterKind,
    di_order: DiOrder | None = None,
    layout: Layout | None = None,
    units: Mapping[int, UnitCode] = UNIT_CODES,
    status_bits: StatusBits = STATUS_BITS,
) -> dict[str, float | int]:
    """Points from a whole 901F reply data field (DI, SER, body); see `decode_901f`.

    ``di_order`` None accepts either DI byte order.
    """
    # Only the data field is at hand: wrap it as a reply so DI is checked in one place.
    reply = Frame(0, WILDCARD_ADDRESS, C_READ_DATA | REPLY_BIT, data)
    split = parse_data_reply(reply, di=DI_READ_DATA, di_order=di_order)
    return decode_901f(
        split.body,
        layout=layout if layout is not None else layout_for(kind),
        units=units,
        status_bits=status_bits,
    )


def _raw_value(value: float | int, f: Field, scale: Fraction) -> int:
    # repr() gives the shortest decimal that is the float, so 1234.56 stays exactly 1234.56.
    exact = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    scaled = exact / scale * 10**f.decimals
    raw: int = scaled.__round__()  # half-even, exact on a Fraction
    if not 0 <= raw < 10 ** (2 * f.size):
        raise ValueError(f"{f.point} = {value} does not fit XXXX with {f.size * 2} digits")
    return raw


def encode_901f_response(
    points: Mapping[str, float | int],
    *,
    kind: MeterKind,
    ser: int = 0,
    di_order: DiOrder = "standard",
    layout: Layout | None = None,
    unit_codes: Mapping[str, int] | None = None,
    units: Mapping[int, UnitCode] = UNIT_CODES,
    status_bits: StatusBits = STATUS_BITS,
    status_vendor: int = 0,
    meter_clock: str | None = None,
) -> bytes:
    """The data field of a 901F reply (DI, SER, body) carrying ``points``.

    The inverse of `decode_901f_response`. ``points`` holds every measured point of the
    layout in canonical units (status flags default to 0). ``unit_codes`` picks the code per
    point (default kWh, kW, m3, m3/h); values are rounded half-even to the field's resolution.
    ``meter_clock`` is "YYYY-MM-DD hh:mm:ss" or None for zeros.
    """
    chosen = layout if layout is not None else layout_for(kind)
    known = set(chosen.points) | set(STATUS_POINTS)
    if unknown := sorted(set(points) - known):
        raise ValueError(f"the {chosen.name} layout has no point {', '.join(unknown)}")
    if missing := [p for p in chosen.points if p not in points]:
        raise ValueError(f"the {chosen.name} layout needs {', '.join(missing)}")
    body = bytearray()
    for f in chosen.fields:
        scale = Fraction(1)
        code = None
        if f.unit_byte:
            code = (unit_codes or {}).get(f.point, _DEFAULT_UNIT_FOR[f.quantity])
            scale = unit_code(code, quantity=f.quantity, field=f.point, table=units).scale
        body += int_to_bcd(_raw_value(points[f.point], f, scale), f.size)
        if code is not None:
            body.append(code)
    body += _encode_meter_clock(meter_clock)
    body += _encode_status(points, status_bits, status_vendor)
    if not 0 <= ser <= 0xFF:
        raise ValueError(f"SER is one byte, not {ser}")
    return encode_di(DI_READ_DATA, di_order) + bytes([ser]) + bytes(body)
