"""Time helpers shared by the parsers and the outputs.

Everything here is on the hot path, so conversions are cached: log lines arrive in bursts that
share the same second (or minute), and a dict lookup is far cheaper than building a datetime.
"""

from __future__ import annotations

import calendar
import math
import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo

NAN = math.nan
_CACHE_LIMIT = 65536


def date_time_shaped(text: str, length: int, separators: str = "Tt") -> bool:
    """``text`` has the punctuation of ``YYYY-MM-DD?HH:MM`` (``length`` 16) or of
    ``YYYY-MM-DD?HH:MM:SS`` (19), ``?`` one of ``separators``; its digits are the caller's to
    check. Run once per distinct minute or second, on a cache miss."""
    return (
        len(text) == length
        and text[4] == "-"
        and text[7] == "-"
        and text[10] in separators
        and text[13] == ":"
        and (length < 19 or text[16] == ":")
    )


_minute_cache: dict[str, float] = {}


def _minute_epoch(prefix: str) -> float:
    """Epoch of ``YYYY-MM-DDTHH:MM`` read as UTC; NaN if it is not a valid date and time."""
    value = _minute_cache.get(prefix)
    if value is not None:
        return value
    try:
        if not date_time_shaped(prefix, 16, "Tt "):
            raise ValueError(prefix)
        stamp = datetime(
            int(prefix[0:4]),
            int(prefix[5:7]),
            int(prefix[8:10]),
            int(prefix[11:13]),
            int(prefix[14:16]),
        )
        value = float(calendar.timegm(stamp.timetuple()))
    except (ValueError, TypeError):
        value = NAN
    if len(_minute_cache) >= _CACHE_LIMIT:
        _minute_cache.clear()
    _minute_cache[prefix] = value
    return value


_second_cache: dict[str, float] = {}


def _second_epoch(prefix: str) -> float:
    """Epoch of ``YYYY-MM-DDTHH:MM:SS`` read as UTC; NaN if invalid. Cached."""
    value = NAN
    if len(prefix) == 19 and prefix[16] == ":" and prefix[17:19].isdigit():
        seconds = int(prefix[17:19])
        if seconds <= 60:  # 60: a leap second, as RFC 3339 allows
            value = _minute_epoch(prefix[:16]) + seconds
    if len(_second_cache) >= _CACHE_LIMIT:
        _second_cache.clear()
    _second_cache[prefix] = value
    return value


def rfc3339_to_epoch(value: str) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp such as ``2026-11-29T21:00:00.5Z`` or
    ``2026-11-29T22:00:00+01:00``; any number of fraction digits.

    Never raises: anything that is not a valid RFC 3339 date-time (wrong shape, impossible date,
    a value that is not a str at all) gives NaN, which callers test with ``math.isnan`` (or
    ``x != x``). The parsers' own output (UTC, ``Z``) takes a fast path: one cached lookup per
    distinct second plus the fraction.
    """
    try:
        base = _second_cache.get(value[:19])
        if base is None:
            base = _second_epoch(value[:19])
        if value[-1] == "Z":
            if len(value) == 20:
                return base
            if value[19] == "." and value[20:-1].isdigit():
                return base + float(value[19:-1])
        return _rfc3339_general(value, base)
    except (IndexError, TypeError, ValueError):
        return NAN


def _rfc3339_general(value: str, base: float) -> float:
    """The rest after ``YYYY-MM-DDTHH:MM:SS`` (``base``, its epoch read as UTC): an optional
    fraction of any length and ``Z`` or ``+HH:MM``/``-HH:MM``."""
    if base != base:  # NaN: the date or time part was invalid
        return NAN
    pos = 19
    fraction = 0.0
    if value[pos] == ".":
        end = pos + 1
        while end < len(value) and value[end].isdigit():
            end += 1
        if end == pos + 1:
            return NAN
        fraction = float(value[pos:end])
        pos = end
    zone = value[pos:]
    if zone in ("Z", "z"):
        return base + fraction
    if len(zone) != 6 or zone[0] not in "+-" or zone[3] != ":":
        return NAN
    hours, minutes = zone[1:3], zone[4:6]
    if not (hours.isdigit() and minutes.isdigit()) or int(minutes) > 59:
        return NAN
    offset = int(hours) * 3600 + int(minutes) * 60
    return base + fraction - (offset if zone[0] == "+" else -offset)


def format_epoch(epoch: float, digits: int = 6) -> str:
    """RFC 3339 UTC text (``...Z``) for an epoch, with ``digits`` fraction digits (0 to 6).
    Never raises: a value that is not a finite time in years 1..9999 formats as the epoch."""
    try:
        whole = math.floor(epoch)
        micros = round((epoch - whole) * 1_000_000)
        if micros >= 1_000_000:
            whole += 1
            micros -= 1_000_000
        parts = time.gmtime(whole)
        if not 1 <= parts.tm_year <= 9999:
            raise OverflowError(epoch)
    except (OverflowError, ValueError, TypeError, OSError):
        return "1970-01-01T00:00:00Z"
    text = (
        f"{parts.tm_year:04d}-{parts.tm_mon:02d}-{parts.tm_mday:02d}"
        f"T{parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d}"
    )
    if digits > 0:
        text += "." + f"{micros:06d}"[:digits]
    return text + "Z"


def to_utc_seconds(stamp: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of an aware datetime in UTC (no fraction, no zone suffix)."""
    utc = stamp.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )


def fixed_offset(sign: str, hours: int, minutes: int) -> tzinfo:
    """A tzinfo for ``+HH:MM``; raises ValueError for offsets of a day or more."""
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)
