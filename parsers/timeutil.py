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

_minute_cache: dict[str, float] = {}


def _minute_epoch(prefix: str) -> float:
    """Epoch of ``YYYY-MM-DDTHH:MM`` read as UTC; NaN if it is not a valid date and time."""
    value = _minute_cache.get(prefix)
    if value is not None:
        return value
    try:
        if (
            len(prefix) != 16
            or prefix[4] != "-"
            or prefix[7] != "-"
            or prefix[10] not in "Tt "
            or prefix[13] != ":"
        ):
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


def rfc3339_to_epoch(value: str) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp such as ``2026-11-29T21:00:00.5Z`` or
    ``2026-11-29T22:00:00+01:00``; any number of fraction digits.

    Never raises: anything that is not a valid RFC 3339 date-time (wrong shape, impossible date,
    a string that is not a str at all) gives NaN, which callers test with ``math.isnan``.
    The minute prefix is cached, so a stream of nearby timestamps costs a few slices each.
    """
    try:
        base = _minute_epoch(value[:16])
        if base != base or len(value) < 20 or value[16] != ":":  # NaN check without a call
            return NAN
        seconds_text = value[17:19]
        if not seconds_text.isdigit():
            return NAN
        seconds = float(seconds_text)
        pos = 19
        if value[pos] == ".":
            end = pos + 1
            while end < len(value) and value[end].isdigit():
                end += 1
            if end == pos + 1:
                return NAN
            seconds += float(value[pos:end])
            pos = end
        zone = value[pos:]
        if zone in ("Z", "z"):
            offset = 0
        elif len(zone) == 6 and zone[0] in "+-" and zone[3] == ":":
            hours, minutes = zone[1:3], zone[4:6]
            if not (hours.isdigit() and minutes.isdigit()) or int(minutes) > 59:
                return NAN
            offset = int(hours) * 3600 + int(minutes) * 60
            if zone[0] == "-":
                offset = -offset
        else:
            return NAN
        if seconds >= 61:
            return NAN
        return base + seconds - offset
    except (IndexError, TypeError, ValueError):
        return NAN


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
