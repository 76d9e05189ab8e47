"""CJ/T 188: household water, heat and gas meters on RS-485 (usually M-Bus behind a converter).

- `drivers.cjt188.frame`: the link layer, a pure codec: frames, the incremental `FrameDecoder`,
  request builders (read data 901F, read address), DI byte order, meter-type classes;
- `drivers.cjt188.data`: the 901F reply layouts (water/gas and heat), BCD, unit codes converted
  to m3, kWh, W and m3/h, status flags;
- `drivers.cjt188.profiles`: the shipped meter profiles (profiles/*.yaml);
- `drivers.cjt188.errors`: `Cjt188Error` and its leaves.

The standard itself (CJ/T 188-2004, -2018) was not readable; every layout cites the public
implementations and captures it follows, and what only one source says is a default to override.
"""

from __future__ import annotations

from drivers.cjt188.data import (
    HEAT_LAYOUT,
    POINT_UNITS,
    STATUS_BITS,
    UNIT_CODES,
    WATER_LAYOUT,
    Layout,
    StatusBits,
    UnitCode,
    decode_901f,
    decode_901f_response,
    decode_meter_clock,
    encode_901f_response,
    heat_layout,
    layout_for,
)
from drivers.cjt188.errors import (
    AbnormalReplyError,
    BcdError,
    Cjt188Error,
    FrameError,
    UnitCodeError,
)
from drivers.cjt188.frame import (
    DI_ORDERS,
    DataReply,
    DiOrder,
    Frame,
    FrameDecoder,
    MeterKind,
    classify_meter_type,
    detect_di_order,
    encode_frame,
    is_reply_to,
    parse_data_reply,
    read_address_request,
    read_data_request,
)
from drivers.cjt188.profiles import Cjt188Profile, load_profile

__all__ = [
    "DI_ORDERS",
    "HEAT_LAYOUT",
    "POINT_UNITS",
    "STATUS_BITS",
    "UNIT_CODES",
    "WATER_LAYOUT",
    "AbnormalReplyError",
    "BcdError",
    "Cjt188Error",
    "Cjt188Profile",
    "DataReply",
    "DiOrder",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Layout",
    "MeterKind",
    "StatusBits",
    "UnitCode",
    "UnitCodeError",
    "classify_meter_type",
    "decode_901f",
    "decode_901f_response",
    "decode_meter_clock",
    "detect_di_order",
    "encode_901f_response",
    "encode_frame",
    "heat_layout",
    "is_reply_to",
    "layout_for",
    "load_profile",
    "parse_data_reply",
    "read_address_request",
    "read_data_request",
]
