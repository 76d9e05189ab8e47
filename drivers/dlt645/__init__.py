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
