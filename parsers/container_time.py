"""Container runtimes' RFC 3339 stamps (``2026-11-29T22:00:00.123456789+01:00``) to UTC text and
an epoch, with the fraction's digits kept as written (never rounded through ``datetime``) and a
local offset applied by integer arithmetic on the seconds; cached per distinct second."""

from __future__ import annotations

import calendar
import time

from parsers.timeutil import date_time_shaped

__all__ = ["CACHE_LIMIT", "cri_time_to_utc", "utc_second"]

CACHE_LIMIT = 65536

# "YYYY-MM-DDTHH:MM:SS" + zone -> ("YYYY-MM-DDTHH:MM:SS" in UTC, its epoch in whole seconds)
_second_cache: dict[str, tuple[str, int] | None] = {}


def utc_second(second: str, zone: str) -> tuple[str, int] | None:
    """The UTC text and epoch of ``second`` (``YYYY-MM-DDTHH:MM:SS``) in ``zone`` (``Z`` or
    ``+HH:MM``/``-HH:MM``); None if either is invalid. Cached per distinct second and zone."""
    key = second + zone
    found = _second_cache.get(key, False)
    if found is not False:
        return found  # type: ignore[return-value]
    result = _convert_second(second, zone)
    if len(_second_cache) >= CACHE_LIMIT:
        _second_cache.clear()
    _second_cache[key] = result
    return result


def _convert_second(second: str, zone: str) -> tuple[str, int] | None:
    if not date_time_shaped(second, 19):
        return None
    digits = second[0:4] + second[5:7] + second[8:10] + second[11:13] + second[14:16] + second[17:]
    if not (digits.isascii() and digits.isdigit()):
        return None
    year, month, day = int(second[0:4]), int(second[5:7]), int(second[8:10])
    hour, minute, sec = int(second[11:13]), int(second[14:16]), int(second[17:19])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(max(year, 1), month)[1]):
        return None
    if year < 1 or hour > 23 or minute > 59 or sec > 60:  # 60: a leap second, as RFC 3339 allows
        return None
    if zone in ("Z", "z"):
        offset = 0
    elif (
        len(zone) == 6
        and zone[0] in "+-"
        and zone[3] == ":"
        and zone[1:3].isdigit()
        and zone[4:6].isdigit()
        and zone[1:3].isascii()
        and zone[4:6].isascii()
        and int(zone[1:3]) <= 23
        and int(zone[4:6]) <= 59
    ):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        if zone[0] == "-":
            offset = -offset
    else:
        return None
    local = calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)) + sec
    epoch = local - offset
    if offset == 0 and sec < 60:
        return second[:10] + "T" + second[11:], epoch
    parts = time.gmtime(epoch)
    if not 1 <= parts.tm_year <= 9999:
        return None
    text = (
        f"{parts.tm_year:04d}-{parts.tm_mon:02d}-{parts.tm_mday:02d}"
        f"T{parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d}"
    )
    return text, epoch


def cri_time_to_utc(stamp: str) -> tuple[str, float] | None:
    """``2026-11-29T22:00:00.123456789+01:00`` -> (``2026-11-29T21:00:00.123456789Z``, epoch);
    None if ``stamp`` is not RFC 3339. The fraction's digits are kept as written."""
    if len(stamp) < 20:
        return None
    pos = 19
    fraction = ""
    if stamp[19] == ".":
        end = 20
        size = len(stamp)
        while end < size and "0" <= stamp[end] <= "9":
            end += 1
        if end == 20:
            return None
        fraction = stamp[19:end]
        pos = end
    converted = utc_second(stamp[:19], stamp[pos:])
    if converted is None:
        return None
    text, epoch = converted
    if fraction:
        # The same sum rfc3339_to_epoch computes from the text: the epochs match exactly.
        return text + fraction + "Z", float(epoch) + float(fraction)
    return text + "Z", float(epoch)
