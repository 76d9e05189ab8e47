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

from typing import TYPE_CHECKING

from agent.core.lazy import lazy_exports

if TYPE_CHECKING:
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

# Imported on first use: the registry imports `drivers.cjt188.spec` for every site config,
# which must not load the codec and its catalogues for a site without such meters.
_WHERE = {
    "HEAT_LAYOUT": "drivers.cjt188.data",
    "Layout": "drivers.cjt188.data",
    "POINT_UNITS": "drivers.cjt188.data",
    "STATUS_BITS": "drivers.cjt188.data",
    "StatusBits": "drivers.cjt188.data",
    "UNIT_CODES": "drivers.cjt188.data",
    "UnitCode": "drivers.cjt188.data",
    "WATER_LAYOUT": "drivers.cjt188.data",
    "decode_901f": "drivers.cjt188.data",
    "decode_901f_response": "drivers.cjt188.data",
    "decode_meter_clock": "drivers.cjt188.data",
    "encode_901f_response": "drivers.cjt188.data",
    "heat_layout": "drivers.cjt188.data",
    "layout_for": "drivers.cjt188.data",
    "AbnormalReplyError": "drivers.cjt188.errors",
    "BcdError": "drivers.cjt188.errors",
    "Cjt188Error": "drivers.cjt188.errors",
    "FrameError": "drivers.cjt188.errors",
    "UnitCodeError": "drivers.cjt188.errors",
    "DI_ORDERS": "drivers.cjt188.frame",
    "DataReply": "drivers.cjt188.frame",
    "DiOrder": "drivers.cjt188.frame",
    "Frame": "drivers.cjt188.frame",
    "FrameDecoder": "drivers.cjt188.frame",
    "MeterKind": "drivers.cjt188.frame",
    "classify_meter_type": "drivers.cjt188.frame",
    "detect_di_order": "drivers.cjt188.frame",
    "encode_frame": "drivers.cjt188.frame",
    "is_reply_to": "drivers.cjt188.frame",
    "parse_data_reply": "drivers.cjt188.frame",
    "read_address_request": "drivers.cjt188.frame",
    "read_data_request": "drivers.cjt188.frame",
    "Cjt188Profile": "drivers.cjt188.profiles",
    "load_profile": "drivers.cjt188.profiles",
}
__getattr__ = lazy_exports(__name__, _WHERE)

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
