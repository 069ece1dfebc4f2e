"""Syslog timestamps to UTC: the received time of the batch, RFC 3339 stamps (RFC 5424, and
RFC 3164 senders that write them) and classic ``Nov 29 21:00:00`` stamps with their year
inferred from the received month. Every conversion is cached per distinct second, so the hot loop
converts each second once; the caches are plain dicts it binds to locals once per batch."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parsers.timeutil import fixed_offset, format_epoch, rfc3339_to_epoch, to_utc_seconds

MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
CACHE_LIMIT = 65536
"""Entries of each of a parser's caches; a full cache is cleared, whatever senders send."""
_NAN = float("nan")
_INVALID_TIME = ("", _NAN)


def _converted(utc: str) -> tuple[str, float]:
    """A timestamp cache entry: the UTC seconds text and its epoch (("", NaN) if invalid)."""
    if not utc:
        return _INVALID_TIME
    return utc, rfc3339_to_epoch(utc + "Z")


def zone_of(timezone: object) -> tzinfo:
    """The zone of an IANA name ("UTC", "Europe/Berlin"); ValueError saying what is wrong."""
    if not isinstance(timezone, str):
        raise ValueError(f"timezone: expected an IANA time zone name, got {timezone!r}")
    if timezone.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(
            f"timezone: unknown IANA time zone {timezone!r} (e.g. 'UTC', 'Europe/Berlin')"
        ) from exc


def _remember(
    cache: dict[str, tuple[str, float]], key: str, converted: tuple[str, float]
) -> tuple[str, float]:
    """Store a conversion (a cache of distinct stamps, emptied when it reaches its bound)."""
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = converted
    return converted


class SyslogClock:
    """One parser's time state: the received time of the current batch (its text and epoch),
    the received month that RFC 3164 years are inferred from, and the conversion caches."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        """The zone of stamps that carry none (RFC 3164)."""
        self.iso_cache: dict[str, tuple[str, float]] = {}
        """RFC 3339 "seconds part + offset" -> (UTC "YYYY-MM-DDTHH:MM:SS", its epoch), or
        ("", NaN) when invalid."""
        self.classic_cache: dict[str, tuple[str, float]] = {}
        """RFC 3164 stamp ("Nov 29 21:00:00") -> the same pair; valid for one received month."""
        self._month_start = 0.0
        self._month_end = -1.0
        self._received_year = 1970
        self._received_month = 1
        self.last_received = _NAN
        self.last_received_text = ""
        self.last_received_epoch = _NAN

    def set_received(self, received: float) -> None:
        self.last_received = received
        self.last_received_text = format_epoch(received)
        self.last_received_epoch = rfc3339_to_epoch(self.last_received_text)
        if not self._month_start <= received < self._month_end:
            self._set_received_month(received)

    def _set_received_month(self, received: float) -> None:
        """Year inference for RFC 3164 stamps works on the received month in the configured
        zone; the cache of converted stamps is valid for exactly that month."""
        try:
            now = datetime.fromtimestamp(received, self.zone)
        except (OverflowError, ValueError, OSError):
            now = datetime.fromtimestamp(0, self.zone)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        self._month_start = start.timestamp()
        self._month_end = end.timestamp()
        self._received_year = now.year
        self._received_month = now.month
        self.classic_cache.clear()

    def classic_to_utc(self, stamp: str) -> tuple[str, float]:
        """``Nov 29 21:00:00`` or ``Nov 29 2026 21:00:00`` in the configured zone -> UTC text.
        Without a year, the year is the received one, moved back (forward) by one when the
        stamp's month is more than six months after (before) the received month: December
        lines read in January belong to last year."""
        utc = ""
        try:
            parts = stamp.split()
            month = MONTHS[parts[0].capitalize()]  # "AUG" as "Aug"
            day = int(parts[1])
            if len(parts) == 4:
                year = int(parts[2])
            else:
                year = self._received_year
                if month - self._received_month > 6:
                    year -= 1
                elif self._received_month - month > 6:
                    year += 1
            hour, minute, second = (int(part) for part in parts[-1].split(":"))
            utc = to_utc_seconds(datetime(year, month, day, hour, minute, second, tzinfo=self.zone))
        except (KeyError, ValueError, OverflowError):
            utc = ""
        return _remember(self.classic_cache, stamp, _converted(utc))

    def iso_to_utc(self, stamp: str, offset: str | None, key: str) -> tuple[str, float]:
        """``2026-11-29T22:00:00`` + ``+01:00`` -> ``2026-11-29T21:00:00``; no offset means the
        configured zone (RFC 3164 senders with ISO stamps but no zone)."""
        zone: tzinfo
        try:
            if offset is None or offset == "":
                zone = self.zone
            elif offset in ("Z", "+00:00", "-00:00", "+0000", "-0000"):
                zone = UTC
            else:
                digits = offset[1:].replace(":", "")
                minutes = int(digits[2:])
                if minutes > 59:
                    raise ValueError(offset)
                zone = fixed_offset(offset[0], int(digits[:2]), minutes)
            local = datetime(
                int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]),
                int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19]), tzinfo=zone,
            )  # fmt: skip
            utc = stamp if zone is UTC else to_utc_seconds(local)
        except (ValueError, OverflowError):
            utc = ""
        return _remember(self.iso_cache, key, _converted(utc))
