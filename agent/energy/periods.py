"""Aligned time buckets in the site's local time: n-minute slots, hours, days, months, years.

Boundaries are wall-clock boundaries of the site time zone (a day starts at local midnight, a
15-minute slot at :00, :15, :30, :45 local), as the national sub-item guideline's uploads and a
utility bill count them. Times are epoch milliseconds throughout, like the store's ``ts_ms``.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "Size",
    "bucket_start",
    "buckets",
    "day_of",
    "local",
    "next_start",
    "slot_minutes",
]

_MINUTE_MS = 60_000


class Size(enum.StrEnum):
    """A bucket size. Minute sizes divide an hour; the others follow the calendar."""

    MIN1 = "1min"
    MIN5 = "5min"
    MIN10 = "10min"
    MIN15 = "15min"
    MIN30 = "30min"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    YEAR = "year"

    @classmethod
    def of_minutes(cls, minutes: int) -> Size:
        """The minute size for a base interval: 60 minutes is HOUR."""
        return cls.HOUR if minutes == 60 else cls(f"{minutes}min")


def slot_minutes(size: Size) -> int | None:
    """Minutes of a fixed-length size (up to an hour); None for calendar sizes."""
    if size is Size.HOUR:
        return 60
    if size.value.endswith("min"):
        return int(size.value.removesuffix("min"))
    return None


def local(ts_ms: int, tz: ZoneInfo) -> datetime:
    """Epoch milliseconds as an aware datetime in the site zone."""
    return datetime.fromtimestamp(ts_ms / 1000, tz)


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def _midnight(day: date, tz: ZoneInfo) -> int:
    return _ms(datetime(day.year, day.month, day.day, tzinfo=tz))


def day_of(ts_ms: int, tz: ZoneInfo) -> date:
    """The site's local calendar day of an instant."""
    return local(ts_ms, tz).date()


def bucket_start(ts_ms: int, size: Size, tz: ZoneInfo) -> int:
    """Start of the bucket of `size` that holds the instant `ts_ms` (start inclusive)."""
    minutes = slot_minutes(size)
    if minutes is not None:
        # Floor in local wall-clock time: a zone offset of 5:30 or 5:45 must not shift slots.
        dt = local(ts_ms, tz)
        floored = dt.replace(minute=dt.minute - dt.minute % minutes, second=0, microsecond=0)
        start = _ms(floored)
        return start if start <= ts_ms else start - minutes * _MINUTE_MS
    day = day_of(ts_ms, tz)
    if size is Size.DAY:
        return _midnight(day, tz)
    if size is Size.MONTH:
        return _midnight(day.replace(day=1), tz)
    return _midnight(date(day.year, 1, 1), tz)


def next_start(start_ms: int, size: Size, tz: ZoneInfo) -> int:
    """Start of the bucket after the one starting at `start_ms` (its exclusive end)."""
    minutes = slot_minutes(size)
    if minutes is not None:
        return start_ms + minutes * _MINUTE_MS
    day = day_of(start_ms, tz)
    if size is Size.DAY:
        return _midnight(day + timedelta(days=1), tz)
    if size is Size.MONTH:
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        return _midnight(date(year, month, 1), tz)
    return _midnight(date(day.year + 1, 1, 1), tz)


def buckets(start_ms: int, end_ms: int, size: Size, tz: ZoneInfo) -> list[tuple[int, int]]:
    """(start, end) of every bucket that overlaps [start_ms, end_ms)."""
    out: list[tuple[int, int]] = []
    if end_ms <= start_ms:
        return out
    current = bucket_start(start_ms, size, tz)
    while current < end_ms:
        following = next_start(current, size, tz)
        out.append((current, following))
        current = following
    return out
