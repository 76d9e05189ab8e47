"""The data-identifier catalogue of DL/T 645-2007 and -1997, and value decoding.

A meter answers a read with the DI and the value: BCD, low byte first, a fixed number of digits
with an implied decimal point (the format, e.g. XXXXXX.XX), or ASCII sent reversed. This module
holds, per edition, what each DI means (`DataEntry`: format, length, unit, sign, point name) and
how a block DI (…FF00 in 2007, …F in 1997) splits into its members (`BlockEntry`), and turns
value bytes into numbers and back (`decode_value`, `encode_value`; the simulator needs encode).

Units: each entry has the unit the standard states (``standard_unit``, e.g. kW) and a ``scale``
to the unit the agent publishes (``unit``), so DL/T 645 points read like the Modbus profiles'
(W, var, VA, V, A, Hz, kWh): power in kW x 1000 -> W.

Sign (DL/T 645-2007 appendix A notes, as implemented by the PyPI package ``dlt645`` 3.2.0,
``common/transform.py``: "最高位为 0x80 时表示负数"): for current, active and reactive power and
power factor the top bit of the most significant byte is the sign (1 = reverse), the rest is the
BCD magnitude. Energy registers and voltages are unsigned: a top nibble of 8 or 9 there is a
digit. Not every meter signs per-phase current, and for apparent power, temperature and all of
1997 the sign was not seen in a primary source: ``signed`` is a per-entry default that a profile
can override.

A nibble above 9 is invalid data and raises `BcdError`; it is never converted (the PyPI
``dlt645`` package turns ``0E`` into a wrong number instead).

Sources (each entry's ``source`` names its own; the constants below spell them out):
- DL/T 645-2007 appendix A (the data-identifier tables), as carried by the PyPI ``dlt645``
  3.2.0 tables (``600888/dlt645``, ``python/src/config/variable_types.py``), checked where
  possible against real captures in public code: meter 000000000161 (a Java ``Test.java``,
  also on the web page "DLT645-2007报文解析") and meter 000006605518 (a Qt ``reader.cpp``
  debug buffer); and the DIs ``chinawrj/esphome-component-dlt645`` reads (README);
- DL/T 645-1997: the DI table of a real meter firmware, ``hoanghon00/meter-dlt645-1997``
  ``APP/HUCK/Protocol/C/Data_Trans.c`` (its comments also give the block sizes), and a vendor
  manual's request/response (manualshive.com, Heyuan Intelligence ASDU-LS, page 18): B611
  answered ``0100`` = 100 V;
- blocks: the 1997<->2007 DI mapping table (901F <-> 0001FF00) in ``coyool/XXOO_000``
  ``platform/plc/dd645_2007.c``, and meter-reading tables of collector firmware in public code
  (0201FF00 3x2 bytes, 0202FF00 3x3, 0206FF00 4x2, 0203FF00 total + 3 phases of 3 bytes).
  Which blocks a meter answers varies: a meter that has none answers D1H "no requested data".
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType

from drivers.dlt645.errors import BcdError, FrameError, UnknownDataIdError
from drivers.dlt645.frame import DI_LENGTH, Version

__all__ = [
    "BlockEntry",
    "DataEntry",
    "Kind",
    "Value",
    "block_catalogue",
    "catalogue",
    "decode_bcd",
    "decode_block",
    "decode_value",
    "encode_bcd",
    "encode_value",
    "format_di",
    "lookup",
    "lookup_block",
    "lookup_point",
    "parse_di",
    "split_block",
]

Value = float | int | str


class Kind(enum.StrEnum):
    NUMBER = "number"  # BCD with an implied decimal point, scaled to ``unit``: a float
    INTEGER = "integer"  # a BCD whole number such as a pulse constant: an int
    DIGITS = "digits"  # BCD digits kept as text (address, meter number, YYMMDDWW): a str
    ASCII = "ascii"  # characters, sent last character first: a str


@dataclass(frozen=True, slots=True)
class DataEntry:
    """What one data identifier holds."""

    di: int
    version: Version
    point: str  # the agent's point name (the Modbus profiles' names where they exist)
    format: str  # as the standard writes it: XXXXXX.XX, XX.XXXX, YYMMDDWW, ...
    length: int  # value bytes
    kind: Kind = Kind.NUMBER
    unit: str = ""  # published unit, after ``scale``
    standard_unit: str = ""  # the unit the standard states
    scale: float = 1  # standard unit -> published unit (kW -> W: 1000)
    signed: bool = False  # top bit of the most significant byte is the sign
    source: str = ""

    @property
    def decimals(self) -> int:
        """Digits after the implied decimal point."""
        return len(self.format.partition(".")[2])

    @property
    def di_text(self) -> str:
        return format_di(self.di, self.version)

    @property
    def max_magnitude(self) -> int:
        """The largest BCD magnitude the bytes can hold (the sign bit takes the top bit)."""
        return _bcd_limit(self.length, signed=self.signed)


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """A block DI: one read returns its members' values back to back, in this order.

    ``open_ended`` blocks (energy: total, then one value per tariff) are as long as the meter's
    tariff count, which is its own setting; the members named here are the ones the agent uses,
    and any further tariffs are left out. A fixed block may come back shorter (a single-phase
    meter answering phase A only); it is read as the first members.
    """

    di: int
    version: Version
    members: tuple[int, ...]  # member DIs, in reply order
    member_length: int
    open_ended: bool = False
    source: str = ""

    @property
    def di_text(self) -> str:
        return format_di(self.di, self.version)


def format_di(di: int, version: Version) -> str:
    """A DI as the standard writes it (DI3 first): ``00010000``, ``B611``."""
    return f"{di:0{2 * DI_LENGTH[version]}X}"


def parse_di(text: str, version: Version) -> int:
    """``"0201FF00"`` (2007, 8 hex digits) or ``"B611"`` (1997, 4) to an int; ValueError if not."""
    cleaned = text.replace(" ", "").replace("-", "")
    width = 2 * DI_LENGTH[version]
    if len(cleaned) != width or not all(c in "0123456789abcdefABCDEF" for c in cleaned):
        raise ValueError(f"a DL/T 645-{version} DI is {width} hex digits, not {text!r}")
    return int(cleaned, 16)


# --- BCD -------------------------------------------------------------------------------------


def _bcd_limit(length: int, *, signed: bool) -> int:
    # With a sign, the most significant digit keeps only 3 bits: 0-7.
    return int((8 if signed else 10) * 10 ** (2 * length - 1) - 1)


def decode_bcd(raw: bytes, *, signed: bool = False) -> int:
    """BCD bytes, low byte first, to an int; with ``signed`` the top bit is the sign."""
    if not raw:
        raise FrameError("no value bytes")
    magnitude = bytearray(raw)
    negative = signed and bool(magnitude[-1] & 0x80)
    if signed:
        magnitude[-1] &= 0x7F
    value = 0
    for offset in range(len(magnitude) - 1, -1, -1):
        byte = magnitude[offset]
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise BcdError(raw, offset)
        value = value * 100 + high * 10 + low
    return -value if negative else value


def encode_bcd(value: int, length: int, *, signed: bool = False) -> bytes:
    """An int to ``length`` BCD bytes, low byte first; ValueError if it does not fit."""
    if value < 0 and not signed:
        raise ValueError(f"{value} is negative but the field is unsigned")
    magnitude = abs(value)
    limit = _bcd_limit(length, signed=signed)
    if magnitude > limit:
        raise ValueError(f"{value} does not fit {length} BCD bytes (at most {limit})")
    digits = f"{magnitude:0{2 * length}d}"
    out = bytearray(bytes.fromhex(digits)[::-1])
    if value < 0:
        out[-1] |= 0x80
    return bytes(out)


# --- values ----------------------------------------------------------------------------------


def _check_length(entry: DataEntry, raw: bytes) -> None:
    if len(raw) != entry.length:
        raise FrameError(
            f"{entry.di_text} ({entry.point}) is {entry.length} bytes, got {len(raw)}", raw
        )


def decode_value(entry: DataEntry, raw: bytes) -> Value:
    """The value bytes of a reply (unscrambled, after the DI) to the value in ``entry.unit``."""
    _check_length(entry, raw)
    if entry.kind is Kind.ASCII:
        try:
            text = raw[::-1].decode("ascii")
        except UnicodeDecodeError:
            raise FrameError(f"{entry.di_text} ({entry.point}) is not ASCII", raw) from None
        return text.strip("\x00 ")
    number = decode_bcd(raw, signed=entry.signed)
    if entry.kind is Kind.DIGITS:
        return f"{number:0{2 * entry.length}d}"
    if entry.kind is Kind.INTEGER:
        return int(Decimal(number) * Decimal(str(entry.scale)))
    return float(Decimal(number).scaleb(-entry.decimals) * Decimal(str(entry.scale)))


def encode_value(entry: DataEntry, value: Value) -> bytes:
    """A value in ``entry.unit`` to the value bytes a meter sends (before +33H scrambling).

    Numbers are rounded half-to-even to the format's decimals; ValueError if out of range.
    """
    if entry.kind is Kind.ASCII:
        if not isinstance(value, str):
            raise TypeError(f"{entry.point} takes text, not {value!r}")
        if not value.isascii():
            raise ValueError(f"{entry.point} takes ASCII text, not {value!r}")
        data = value.encode("ascii")
        if len(data) > entry.length:
            raise ValueError(f"{entry.point} holds {entry.length} characters, not {value!r}")
        return data.ljust(entry.length, b"\x00")[::-1]
    if entry.kind is Kind.DIGITS:
        if not isinstance(value, str):
            raise TypeError(f"{entry.point} takes a string of digits, not {value!r}")
        if len(value) != 2 * entry.length or not (value.isascii() and value.isdigit()):
            raise ValueError(f"{entry.point} takes {2 * entry.length} digits, not {value!r}")
        return bytes.fromhex(value)[::-1]
    if isinstance(value, (str, bool)):
        raise TypeError(f"{entry.point} takes a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{entry.point} takes a finite number, not {value!r}")
    exact = Decimal(str(value)) / Decimal(str(entry.scale))
    steps = (exact.scaleb(entry.decimals)).to_integral_value(rounding=ROUND_HALF_EVEN)
    return encode_bcd(int(steps), entry.length, signed=entry.signed)


# --- the catalogues --------------------------------------------------------------------------

_A = "DL/T 645-2007 appendix A, as tabulated by PyPI dlt645 3.2.0 (600888/dlt645)"
_S2 = _A + "; decoded from a real capture of meter 000000000161 (public code)"
_S3 = _A + "; decoded from a real capture of meter 000006605518 (public code)"
_ESP = _A + "; also read by chinawrj/esphome-component-dlt645 (README)"
_S7 = "DL/T 645-1997 meter firmware hoanghon00/meter-dlt645-1997 Data_Trans.c"
_S8 = _S7 + "; B611 = 0100 -> 100 V in a vendor manual (manualshive.com, Heyuan ASDU-LS p. 18)"
_MAP = "1997<->2007 DI mapping (901F <-> 0001FF00), coyool/XXOO_000 dd645_2007.c"
_FW = "meter-reading tables of collector firmware in public code; support varies by meter"

# Standard unit -> (published unit, multiplier): the Modbus profiles publish W, var and VA.
_TO_PUBLISHED: dict[str, tuple[str, float]] = {
    "kW": ("W", 1000),
    "kvar": ("var", 1000),
    "kVA": ("VA", 1000),
}

# Numeric entries: DI, point, format, bytes, unit as the standard gives it, signed, source.
# Tariffs 1-4 are 尖/峰/平/谷 on most meters, but the order is the meter's own setting.
# Voltage is unsigned although the PyPI tables allow -799.9 V (they sign every variable).
# Apparent power is a magnitude: no source says meters sign it. Neutral current and the
# temperature follow the variables' sign rule by default.
_Row = tuple[int, str, str, int, str, bool, str]
_NUMBERS_2007: tuple[_Row, ...] = (
    (0x00000000, "total_active_energy", "XXXXXX.XX", 4, "kWh", False, _A + " (组合有功总)"),
    (0x00010000, "import_energy", "XXXXXX.XX", 4, "kWh", False, _S2 + " and 000006605518"),
    (0x00010100, "import_energy_t1", "XXXXXX.XX", 4, "kWh", False, _S3),
    (0x00010200, "import_energy_t2", "XXXXXX.XX", 4, "kWh", False, _S3),
    (0x00010300, "import_energy_t3", "XXXXXX.XX", 4, "kWh", False, _S3),
    (0x00010400, "import_energy_t4", "XXXXXX.XX", 4, "kWh", False, _S3),
    (0x00020000, "export_energy", "XXXXXX.XX", 4, "kWh", False, _ESP),
    (0x00020100, "export_energy_t1", "XXXXXX.XX", 4, "kWh", False, _A),
    (0x00020200, "export_energy_t2", "XXXXXX.XX", 4, "kWh", False, _A),
    (0x00020300, "export_energy_t3", "XXXXXX.XX", 4, "kWh", False, _A),
    (0x00020400, "export_energy_t4", "XXXXXX.XX", 4, "kWh", False, _A),
    (0x02010100, "voltage_l1", "XXX.X", 2, "V", False, _S2 + " (100.1 V)"),
    (0x02010200, "voltage_l2", "XXX.X", 2, "V", False, _A),
    (0x02010300, "voltage_l3", "XXX.X", 2, "V", False, _A),
    (0x02020100, "current_l1", "XXX.XXX", 3, "A", True, _S2 + " (4.999 A)"),
    (0x02020200, "current_l2", "XXX.XXX", 3, "A", True, _A),
    (0x02020300, "current_l3", "XXX.XXX", 3, "A", True, _A),
    (0x02030000, "active_power", "XX.XXXX", 3, "kW", True, _S2 + " (0.2512 kW)"),
    (0x02030100, "active_power_l1", "XX.XXXX", 3, "kW", True, _A),
    (0x02030200, "active_power_l2", "XX.XXXX", 3, "kW", True, _A),
    (0x02030300, "active_power_l3", "XX.XXXX", 3, "kW", True, _A),
    (0x02040000, "reactive_power", "XX.XXXX", 3, "kvar", True, _S2 + " (0.4331 kvar)"),
    (0x02040100, "reactive_power_l1", "XX.XXXX", 3, "kvar", True, _A),
    (0x02040200, "reactive_power_l2", "XX.XXXX", 3, "kvar", True, _A),
    (0x02040300, "reactive_power_l3", "XX.XXXX", 3, "kvar", True, _A),
    (0x02050000, "apparent_power", "XX.XXXX", 3, "kVA", False, _S2 + " (0.5006 kVA)"),
    (0x02050100, "apparent_power_l1", "XX.XXXX", 3, "kVA", False, _A),
    (0x02050200, "apparent_power_l2", "XX.XXXX", 3, "kVA", False, _A),
    (0x02050300, "apparent_power_l3", "XX.XXXX", 3, "kVA", False, _A),
    (0x02060000, "power_factor", "X.XXX", 2, "", True, _S2 + " (0.501)"),
    (0x02060100, "power_factor_l1", "X.XXX", 2, "", True, _A),
    (0x02060200, "power_factor_l2", "X.XXX", 2, "", True, _A),
    (0x02060300, "power_factor_l3", "X.XXX", 2, "", True, _A),
    (0x02800001, "neutral_current", "XXX.XXX", 3, "A", True, _A),
    (0x02800002, "frequency", "XX.XX", 2, "Hz", False, _ESP),
    (0x02800007, "internal_temperature", "XXX.X", 2, "degC", True, _A + " (表内温度)"),
)

# S7 stores every instantaneous quantity unsigned (S_INTU): signed=False below is that
# firmware's convention, not a text of the standard. 1997 voltage is whole volts (XXX in two
# bytes), current XX.XX, reactive power XX.XX kvar. B660 (frequency) may be S7's own extension.
_NUMBERS_1997: tuple[_Row, ...] = (
    (0x9010, "import_energy", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9011, "import_energy_t1", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9012, "import_energy_t2", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9013, "import_energy_t3", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9014, "import_energy_t4", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9020, "export_energy", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9021, "export_energy_t1", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9022, "export_energy_t2", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9023, "export_energy_t3", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0x9024, "export_energy_t4", "XXXXXX.XX", 4, "kWh", False, _S7),
    (0xB611, "voltage_l1", "XXX", 2, "V", False, _S8),
    (0xB612, "voltage_l2", "XXX", 2, "V", False, _S7),
    (0xB613, "voltage_l3", "XXX", 2, "V", False, _S7),
    (0xB621, "current_l1", "XX.XX", 2, "A", False, _S7),
    (0xB622, "current_l2", "XX.XX", 2, "A", False, _S7),
    (0xB623, "current_l3", "XX.XX", 2, "A", False, _S7),
    (0xB630, "active_power", "XX.XXXX", 3, "kW", False, _S7),
    (0xB631, "active_power_l1", "XX.XXXX", 3, "kW", False, _S7),
    (0xB632, "active_power_l2", "XX.XXXX", 3, "kW", False, _S7),
    (0xB633, "active_power_l3", "XX.XXXX", 3, "kW", False, _S7),
    (0xB640, "reactive_power", "XX.XX", 2, "kvar", False, _S7),
    (0xB641, "reactive_power_l1", "XX.XX", 2, "kvar", False, _S7),
    (0xB642, "reactive_power_l2", "XX.XX", 2, "kvar", False, _S7),
    (0xB643, "reactive_power_l3", "XX.XX", 2, "kvar", False, _S7),
    (0xB650, "power_factor", "X.XXX", 2, "", False, _S7),
    (0xB651, "power_factor_l1", "X.XXX", 2, "", False, _S7),
    (0xB652, "power_factor_l2", "X.XXX", 2, "", False, _S7),
    (0xB653, "power_factor_l3", "X.XXX", 2, "", False, _S7),
    (0xB660, "frequency", "XX.XX", 2, "Hz", False, _S7 + " (possibly a vendor extension)"),
    (0xB680, "apparent_power", "XX.XXXX", 3, "kVA", False, _S7),
    (0xB681, "apparent_power_l1", "XX.XXXX", 3, "kVA", False, _S7),
    (0xB682, "apparent_power_l2", "XX.XXXX", 3, "kVA", False, _S7),
    (0xB683, "apparent_power_l3", "XX.XXXX", 3, "kVA", False, _S7),
)

# Text and constants: DI, point, kind, format, bytes, unit, source. ASCII is sent reversed:
# the rated-voltage bytes of meter 000006605518 read "V0.022", i.e. "220.0V".
_OtherRow = tuple[int, str, Kind, str, int, str, str]
_OTHERS_2007: tuple[_OtherRow, ...] = (
    (0x04000101, "meter_date", Kind.DIGITS, "YYMMDDWW", 4, "", _S3 + " (WW 0 = Sunday)"),
    (0x04000102, "meter_time", Kind.DIGITS, "hhmmss", 3, "", _S3),
    (0x04000401, "comm_address", Kind.DIGITS, "NNNNNNNNNNNN", 6, "", _S3),
    (0x04000402, "meter_number", Kind.DIGITS, "NNNNNNNNNNNN", 6, "", _S3),
    (0x04000404, "rated_voltage", Kind.ASCII, "XXXXXX", 6, "", _S3),
    (0x04000405, "rated_current", Kind.ASCII, "XXXXXX", 6, "", _S3),
    (0x04000407, "accuracy_class", Kind.ASCII, "XXXX", 4, "", _S3),
    (0x04000409, "pulse_constant", Kind.INTEGER, "XXXXXX", 3, "imp/kWh", _S3 + " (1200)"),
)
_OTHERS_1997: tuple[_OtherRow, ...] = (
    (0xC010, "meter_date", Kind.DIGITS, "YYMMDDWW", 4, "", _S7),
    (0xC011, "meter_time", Kind.DIGITS, "hhmmss", 3, "", _S7),
    (0xC030, "pulse_constant", Kind.INTEGER, "NNNNNN", 3, "imp/kWh", _S7),
    (0xC032, "meter_number", Kind.DIGITS, "NNNNNNNNNNNN", 6, "", _S7),
)

# Block DI, member DIs in reply order, bytes per member, open-ended (energy: one per tariff).
# 1997 sizes from S7's comments: 901F 20 bytes, B61F 6, B62F 6, B63F 12, B64F 8, B65F 8, B68F 12.
_BlockRow = tuple[int, tuple[int, ...], int, bool, str]
_BLOCKS_2007: tuple[_BlockRow, ...] = (
    (0x0001FF00, (0x00010000, 0x00010100, 0x00010200, 0x00010300, 0x00010400), 4, True, _MAP),
    (0x0002FF00, (0x00020000, 0x00020100, 0x00020200, 0x00020300, 0x00020400), 4, True, _FW),
    (0x0201FF00, (0x02010100, 0x02010200, 0x02010300), 2, False, _A + "; " + _FW),
    (0x0202FF00, (0x02020100, 0x02020200, 0x02020300), 3, False, _FW),
    (0x0203FF00, (0x02030000, 0x02030100, 0x02030200, 0x02030300), 3, False, _FW),
    (0x0204FF00, (0x02040000, 0x02040100, 0x02040200, 0x02040300), 3, False, _FW),
    (0x0205FF00, (0x02050000, 0x02050100, 0x02050200, 0x02050300), 3, False, _FW),
    (0x0206FF00, (0x02060000, 0x02060100, 0x02060200, 0x02060300), 2, False, _FW),
)
_BLOCKS_1997: tuple[_BlockRow, ...] = (
    (0x901F, (0x9010, 0x9011, 0x9012, 0x9013, 0x9014), 4, True, _S7 + "; " + _MAP),
    (0x902F, (0x9020, 0x9021, 0x9022, 0x9023, 0x9024), 4, True, _S7),
    (0xB61F, (0xB611, 0xB612, 0xB613), 2, False, _S7),
    (0xB62F, (0xB621, 0xB622, 0xB623), 2, False, _S7),
    (0xB63F, (0xB630, 0xB631, 0xB632, 0xB633), 3, False, _S7),
    (0xB64F, (0xB640, 0xB641, 0xB642, 0xB643), 2, False, _S7),
    (0xB65F, (0xB650, 0xB651, 0xB652, 0xB653), 2, False, _S7),
    (0xB68F, (0xB680, 0xB681, 0xB682, 0xB683), 3, False, _S7),
)


def _entries(
    version: Version, numbers: Iterable[_Row], others: Iterable[_OtherRow]
) -> list[DataEntry]:
    entries = []
    for di, point, fmt, length, standard_unit, signed, source in numbers:
        unit, scale = _TO_PUBLISHED.get(standard_unit, (standard_unit, 1))
        entries.append(
            DataEntry(
                di,
                version,
                point,
                fmt,
                length,
                unit=unit,
                standard_unit=standard_unit,
                scale=scale,
                signed=signed,
                source=source,
            )
        )
    for di, point, kind, fmt, length, unit, source in others:
        entries.append(
            DataEntry(
                di,
                version,
                point,
                fmt,
                length,
                kind=kind,
                unit=unit,
                standard_unit=unit,
                source=source,
            )
        )
    return entries


def _blocks(version: Version, rows: Iterable[_BlockRow]) -> Mapping[int, BlockEntry]:
    return MappingProxyType(
        {
            di: BlockEntry(di, version, members, size, open_ended=open_ended, source=source)
            for di, members, size, open_ended, source in rows
        }
    )


def _index(entries: Iterable[DataEntry]) -> Mapping[int, DataEntry]:
    table: dict[int, DataEntry] = {}
    for entry in entries:
        if entry.di in table:
            raise RuntimeError(f"catalogue lists {entry.di_text} twice")  # a bug in this file
        table[entry.di] = entry
    return MappingProxyType(table)


_CATALOGUES: dict[Version, Mapping[int, DataEntry]] = {
    "2007": _index(_entries("2007", _NUMBERS_2007, _OTHERS_2007)),
    "1997": _index(_entries("1997", _NUMBERS_1997, _OTHERS_1997)),
}
_BLOCK_CATALOGUES: dict[Version, Mapping[int, BlockEntry]] = {
    "2007": _blocks("2007", _BLOCKS_2007),
    "1997": _blocks("1997", _BLOCKS_1997),
}
_BY_POINT: dict[Version, Mapping[str, DataEntry]] = {
    version: MappingProxyType({e.point: e for e in table.values()})
    for version, table in _CATALOGUES.items()
}


def catalogue(version: Version) -> Mapping[int, DataEntry]:
    """DI -> entry for one edition (read-only)."""
    return _CATALOGUES[version]


def block_catalogue(version: Version) -> Mapping[int, BlockEntry]:
    """Block DI -> block for one edition (read-only)."""
    return _BLOCK_CATALOGUES[version]


def lookup(di: int, version: Version) -> DataEntry:
    try:
        return _CATALOGUES[version][di]
    except KeyError:
        raise UnknownDataIdError(di, version) from None


def lookup_point(point: str, version: Version) -> DataEntry:
    try:
        return _BY_POINT[version][point]
    except KeyError:
        raise UnknownDataIdError(point, version) from None


def lookup_block(di: int, version: Version) -> BlockEntry:
    try:
        return _BLOCK_CATALOGUES[version][di]
    except KeyError:
        raise UnknownDataIdError(di, version) from None


def split_block(
    block: BlockEntry, raw: bytes, *, entries: Mapping[int, DataEntry] | None = None
) -> list[tuple[DataEntry, bytes]]:
    """A block reply's value bytes cut into (member entry, member bytes), in reply order.

    ``entries`` (DI -> entry) overrides the catalogue's entries, e.g. a profile's signedness.
    """
    count, rest = divmod(len(raw), block.member_length)
    if rest or count == 0:
        raise FrameError(
            f"block {block.di_text} has {block.member_length}-byte members, got {len(raw)} bytes",
            raw,
        )
    if count > len(block.members) and not block.open_ended:
        raise FrameError(
            f"block {block.di_text} has {len(block.members)} members, got {count}", raw
        )
    table = catalogue(block.version) if entries is None else entries
    size = block.member_length
    return [
        (table[di], raw[i * size : (i + 1) * size])
        for i, di in enumerate(block.members[: min(count, len(block.members))])
    ]


def decode_block(
    block: BlockEntry, raw: bytes, *, entries: Mapping[int, DataEntry] | None = None
) -> dict[int, Value]:
    """A block reply's value bytes to member DI -> value (members the reply carries)."""
    return {
        entry.di: decode_value(entry, part)
        for entry, part in split_block(block, raw, entries=entries)
    }
