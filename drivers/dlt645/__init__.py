"""DL/T 645-2007 and -1997: the Chinese multi-function electricity meter protocol over RS-485.

- `drivers.dlt645.frame`: frames, addresses, control codes, request builders, and an
  incremental decoder that resynchronises after noise (pure codec, no I/O);
- `drivers.dlt645.data`: the data-identifier catalogue of both editions, BCD values with sign
  and validation, and how block replies split into points;
- `drivers.dlt645.profiles`: the shipped meter profiles (which points, which DIs, which blocks);
- `drivers.dlt645.errors`: the error tree (`Dlt645Error` and its leaves).

The serial line itself (asyncio, locks, timeouts) belongs to the driver that uses this codec.
A simulated meter that speaks the protocol independently lives in `hil.dlt645_meter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.core.lazy import lazy_exports

if TYPE_CHECKING:
    from drivers.dlt645.data import (
        BlockEntry,
        DataEntry,
        Kind,
        Value,
        block_catalogue,
        catalogue,
        decode_bcd,
        decode_block,
        decode_value,
        encode_bcd,
        encode_value,
        format_di,
        lookup,
        lookup_block,
        lookup_point,
        parse_di,
        split_block,
    )
    from drivers.dlt645.errors import (
        AbnormalReplyError,
        BcdError,
        Dlt645Error,
        FrameError,
        ProfileError,
        UnknownDataIdError,
        error_reasons,
    )
    from drivers.dlt645.frame import (
        BROADCAST_ADDRESS,
        DI_LENGTH,
        WILDCARD_ADDRESS,
        Frame,
        FrameDecoder,
        Function,
        Reject,
        Version,
        decode_address,
        encode_address,
        encode_frame,
        function_code,
        has_follow_up,
        is_abnormal,
        is_from_meter,
        parse_address_reply,
        parse_read_reply,
        read_address_request,
        read_follow_up_request,
        read_request,
        reply_control,
    )
    from drivers.dlt645.profiles import Dlt645Profile, load_profile, parse_profile, profile_names

# Imported on first use: the registry imports `drivers.dlt645.spec` for every site config,
# which must not load the codec and its catalogues for a site without such meters.
_WHERE = {
    "BlockEntry": "drivers.dlt645.data",
    "DataEntry": "drivers.dlt645.data",
    "Kind": "drivers.dlt645.data",
    "Value": "drivers.dlt645.data",
    "block_catalogue": "drivers.dlt645.data",
    "catalogue": "drivers.dlt645.data",
    "decode_bcd": "drivers.dlt645.data",
    "decode_block": "drivers.dlt645.data",
    "decode_value": "drivers.dlt645.data",
    "encode_bcd": "drivers.dlt645.data",
    "encode_value": "drivers.dlt645.data",
    "format_di": "drivers.dlt645.data",
    "lookup": "drivers.dlt645.data",
    "lookup_block": "drivers.dlt645.data",
    "lookup_point": "drivers.dlt645.data",
    "parse_di": "drivers.dlt645.data",
    "split_block": "drivers.dlt645.data",
    "AbnormalReplyError": "drivers.dlt645.errors",
    "BcdError": "drivers.dlt645.errors",
    "Dlt645Error": "drivers.dlt645.errors",
    "FrameError": "drivers.dlt645.errors",
    "ProfileError": "drivers.dlt645.errors",
    "UnknownDataIdError": "drivers.dlt645.errors",
    "error_reasons": "drivers.dlt645.errors",
    "BROADCAST_ADDRESS": "drivers.dlt645.frame",
    "DI_LENGTH": "drivers.dlt645.frame",
    "Frame": "drivers.dlt645.frame",
    "FrameDecoder": "drivers.dlt645.frame",
    "Function": "drivers.dlt645.frame",
    "Reject": "drivers.dlt645.frame",
    "Version": "drivers.dlt645.frame",
    "WILDCARD_ADDRESS": "drivers.dlt645.frame",
    "decode_address": "drivers.dlt645.frame",
    "encode_address": "drivers.dlt645.frame",
    "encode_frame": "drivers.dlt645.frame",
    "function_code": "drivers.dlt645.frame",
    "has_follow_up": "drivers.dlt645.frame",
    "is_abnormal": "drivers.dlt645.frame",
    "is_from_meter": "drivers.dlt645.frame",
    "parse_address_reply": "drivers.dlt645.frame",
    "parse_read_reply": "drivers.dlt645.frame",
    "read_address_request": "drivers.dlt645.frame",
    "read_follow_up_request": "drivers.dlt645.frame",
    "read_request": "drivers.dlt645.frame",
    "reply_control": "drivers.dlt645.frame",
    "Dlt645Profile": "drivers.dlt645.profiles",
    "load_profile": "drivers.dlt645.profiles",
    "parse_profile": "drivers.dlt645.profiles",
    "profile_names": "drivers.dlt645.profiles",
}
__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "BROADCAST_ADDRESS",
    "DI_LENGTH",
    "WILDCARD_ADDRESS",
    "AbnormalReplyError",
    "BcdError",
    "BlockEntry",
    "DataEntry",
    "Dlt645Error",
    "Dlt645Profile",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Function",
    "Kind",
    "ProfileError",
    "Reject",
    "UnknownDataIdError",
    "Value",
    "Version",
    "block_catalogue",
    "catalogue",
    "decode_address",
    "decode_bcd",
    "decode_block",
    "decode_value",
    "encode_address",
    "encode_bcd",
    "encode_frame",
    "encode_value",
    "error_reasons",
    "format_di",
    "function_code",
    "has_follow_up",
    "is_abnormal",
    "is_from_meter",
    "load_profile",
    "lookup",
    "lookup_block",
    "lookup_point",
    "parse_address_reply",
    "parse_di",
    "parse_profile",
    "parse_read_reply",
    "profile_names",
    "read_address_request",
    "read_follow_up_request",
    "read_request",
    "reply_control",
    "split_block",
]
