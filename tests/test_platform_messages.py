"""The XML messages: built as the platforms' samples are, parsed defensively."""

from __future__ import annotations

import pytest

from agent.platform.errors import ProtocolError
from agent.platform.messages import (
    ReportFunction,
    ReportMeter,
    build_message,
    build_report,
    parse_message,
    parse_time,
)


def test_a_report_in_gb2312_with_chinese_names_round_trips() -> None:
    meter = ReportMeter(
        1, "1#楼照明插座 😀", "000000000001", (ReportFunction(2, "01A00", 1.5, "0"),)
    )
    payload = build_report(
        "421000A001",
        "01",
        operation="continuous",
        sequence=7,
        time="20260310091500",
        items=[("01A00", 1.5, "0")],
        meters=[meter],
        encoding="gb2312",
    )
    assert payload.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    assert "照明".encode("gb2312") in payload
    assert b"&#128512;" in payload  # the emoji, which GB2312 lacks, as a character reference
    message = parse_message(payload, encoding="utf-8")  # the declaration wins
    assert (message.element, message.operation, message.type) == (
        "data",
        "continuous",
        "continuous",
    )
    assert message.fields["time"] == "20260310091500"


def test_the_common_part_and_the_operation() -> None:
    payload = build_message("421000A001", "01", "id_validate", "md5", [("md5", "ab" * 16)])
    message = parse_message(payload)
    assert message.building_id == "421000A001"
    assert message.gateway_id == "01"
    assert message.fields == {"md5": "ab" * 16}


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b"<root><common></common>", "not well-formed"),
        (b"<root><common/></root>", "one operation element"),
        (b"<other><common/><a/></other>", "one operation element"),
        (
            b'<!DOCTYPE r [<!ENTITY a "aaaa">]><root><common/><a>&a;</a></root>',
            "DTD or entity",
        ),
        (b'<?xml version="1.0" encoding="utf-8"?><root>\xff</root>', "not valid utf-8"),
    ],
)
def test_unusable_messages_are_named(payload: bytes, said: str) -> None:
    with pytest.raises(ProtocolError, match=said):
        parse_message(payload)


@pytest.mark.parametrize("stamp", ["2026031009150", "20261310091500", "abcdefghijklmn", ""])
def test_a_platform_time_must_be_14_digits_of_a_date(stamp: str) -> None:
    with pytest.raises(ProtocolError):
        parse_time(stamp)
