"""The XML messages of the collector protocol: built for the platform, parsed from it.

Every message is ``<root><common><building_id/><gateway_id/><type/></common><OP operation=…/>
</root>`` (the common part is the same in every public implementation). The collector sends
``id_validate`` request and md5, ``heart_beat`` notify and ``data`` report or continuous; the
platform answers ``id_validate`` sequence and result, ``heart_beat`` time, and a data ack in the
profile's style. Parsing refuses DTDs (no entity can expand) and reads GB2312 or UTF-8.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agent.platform.errors import ProtocolError

__all__ = [
    "Message",
    "ReportFunction",
    "ReportMeter",
    "build_message",
    "build_report",
    "parse_message",
    "parse_time",
]

_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding=[\"']([A-Za-z0-9_-]+)[\"'][^>]*\?>")
_ANY_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_STAMP = re.compile(r"^\d{14}$")


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its ids, its type, its operation element and that element's children."""

    building_id: str
    gateway_id: str
    type: str
    element: str
    operation: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportFunction:
    id: int
    coding: str
    value: float
    error: str


@dataclass(frozen=True, slots=True)
class ReportMeter:
    id: int
    name: str
    addr: str
    functions: tuple[ReportFunction, ...]


def _root(building_id: str, gateway_id: str, kind: str) -> ET.Element:
    root = ET.Element("root")
    common = ET.SubElement(root, "common")
    ET.SubElement(common, "building_id").text = building_id
    ET.SubElement(common, "gateway_id").text = gateway_id
    ET.SubElement(common, "type").text = kind
    return root


def _serialise(root: ET.Element, encoding: str) -> bytes:
    # The declaration is written by hand: ElementTree would write encoding='gb2312' in single
    # quotes and lowercase; the platforms' samples use double quotes.
    declared = "GB2312" if encoding == "gb2312" else "UTF-8"
    text = f'<?xml version="1.0" encoding="{declared}"?>' + ET.tostring(root, encoding="unicode")
    # A name GB2312 cannot spell (a rare character, an emoji) goes as a character reference,
    # which is still well-formed XML, rather than failing the report.
    return text.encode(encoding, errors="xmlcharrefreplace")


def build_message(
    building_id: str,
    gateway_id: str,
    element: str,
    operation: str,
    fields: Sequence[tuple[str, str]] = (),
    *,
    encoding: str = "utf-8",
) -> bytes:
    """A message with one operation element holding ``fields`` as child elements, in order."""
    root = _root(building_id, gateway_id, operation)
    op = ET.SubElement(root, element, operation=operation)
    for name, text in fields:
        ET.SubElement(op, name).text = text
    return _serialise(root, encoding)


def _number(value: float) -> str:
    return f"{value:.6f}"


def build_report(
    building_id: str,
    gateway_id: str,
    *,
    operation: str,
    sequence: int,
    time: str,
    items: Sequence[tuple[str, float, str]],
    meters: Sequence[ReportMeter],
    encoding: str = "utf-8",
) -> bytes:
    """A ``data`` report (or ``continuous``, a resent period): sub-item totals ``items`` as
    (code, value, error) and each meter's functions. One period per message (total = current = 1).
    """
    root = _root(building_id, gateway_id, operation)
    data = ET.SubElement(root, "data", operation=operation)
    for name, text in (
        ("sequence", str(sequence)),
        ("parser", "yes"),  # parsed values, not raw meter frames
        ("time", time),
        ("total", "1"),
        ("current", "1"),
    ):
        ET.SubElement(data, name).text = text
    energy = ET.SubElement(data, "energy_items")
    for code, value, error in items:
        ET.SubElement(energy, "energy_item", code=code, error=error).text = _number(value)
    for meter in meters:
        node = ET.SubElement(
            data, "meter", id=str(meter.id), addr=meter.addr, tp="06", name=meter.name
        )
        for fn in meter.functions:
            ET.SubElement(
                node, "function", id=str(fn.id), coding=fn.coding, error=fn.error
            ).text = _number(fn.value)
    return _serialise(root, encoding)


def _decode(payload: bytes, default: str) -> str:
    declared = _DECL.match(payload)
    name = declared.group(1).decode("ascii").lower() if declared else default
    codec = "gbk" if name in ("gb2312", "gbk", "gb18030") else "utf-8"  # GBK reads all GB2312
    try:
        return payload.decode(codec)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the platform's message is not valid {name} text: {exc}") from None


def parse_message(payload: bytes, *, encoding: str = "utf-8") -> Message:
    """The message in a decrypted payload, or ProtocolError saying why it is unusable."""
    text = _ANY_DECL.sub("", _decode(payload, encoding), count=1)
    if "<!" in text:
        raise ProtocolError("the platform's message holds a DTD or entity: refused")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ProtocolError(f"the platform's message is not well-formed XML: {exc}") from None
    common = root.find("common")
    ops = [child for child in root if child.tag != "common"]
    if root.tag != "root" or common is None or len(ops) != 1:
        raise ProtocolError(
            "the platform's message is not <root> with <common> and one operation element"
        )
    op = ops[0]
    return Message(
        building_id=(common.findtext("building_id") or "").strip(),
        gateway_id=(common.findtext("gateway_id") or "").strip(),
        type=(common.findtext("type") or "").strip(),
        element=op.tag,
        operation=op.get("operation", ""),
        fields={child.tag: (child.text or "").strip() for child in op},
    )


def parse_time(stamp: str) -> datetime:
    """A YYYYMMDDhhmmss stamp as a naive datetime (the platform's local time), or ProtocolError."""
    if not _STAMP.match(stamp):
        raise ProtocolError(f"the platform's time {stamp!r} is not YYYYMMDDhhmmss")
    try:
        return datetime.strptime(stamp, "%Y%m%d%H%M%S")
    except ValueError:
        raise ProtocolError(f"the platform's time {stamp!r} is not a date") from None
