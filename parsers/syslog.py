"""Syslog frames (RFC 5424, RFC 3164 as found in the wild) to records.

One frame (one syslog message, framing already removed by the input) becomes one plain dict.
Nothing here raises for any input bytes: a frame that cannot be parsed becomes a record whose
``message`` is the raw text and whose ``parse_error`` says why, and it is counted in
``SyslogParser.parse_errors``. See docs/parsers.md for the fields and the heuristics.

Speed matters (this runs for every record the agent sees), so each message shape is matched by
one compiled regex, timestamp conversions are cached per distinct second, tag -> container field
lookups are cached per tag, and the batch loop binds everything it uses to locals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parsers.timeutil import fixed_offset, format_epoch, rfc3339_to_epoch, to_utc_seconds

__all__ = ["FACILITIES", "SEVERITIES", "SyslogParser", "parse_structured_data"]

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

# PRI text -> (pri, facility name, severity name), for every valid PRI written without
# leading zeros; other spellings ("013") go through _pri_info.
_PRI_TABLE: dict[str, tuple[int, str, str]] = {
    str(pri): (pri, FACILITIES[pri >> 3], SEVERITIES[pri & 7]) for pri in range(192)
}
_PRI_DEFAULT = _PRI_TABLE["13"]  # RFC 3164 4.3.3: a message without PRI is user.notice

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

# --- RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG] ----------
# Optional parts are written as groups that always take part (``((?:\.\d{1,6})?)``) so that they
# give "" rather than None and the hot loop needs no test before concatenating them. Fraction
# digits past the sixth are matched and dropped. A BOM at the start of MSG is matched and dropped.
_SD_NAME = r'[^\s="\]]+'
# A quoted value: any character but '"' and '\', or a backslash and the character after it,
# written unrolled (a class per run of plain characters: re runs that many times faster than
# an alternation per character). Spaces after "=" are accepted (rsyslog and Vector do too).
_SD_VALUE = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_SD_ELEMENT = rf"\[{_SD_NAME}(?: {_SD_NAME}= *{_SD_VALUE})*\]"
_RFC5424_HEADER = (
    r"<(\d{1,3})>1 "
    r"(?:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)((?:\.\d{1,6})?)\d*(Z|[+-]\d\d:\d\d)|-) "
    r"(\S+) (\S+) (\S+) (\S+) "
)
# The grammar: STRUCTURED-DATA is "-" or well-formed elements. This is the reference; the hot
# loop runs it only for structured data that the fast path does not take (escapes, odd cases).
_RFC5424 = re.compile(
    _RFC5424_HEADER + rf"(-|(?:{_SD_ELEMENT})+)" + "(?: \ufeff| |\\Z)(.*)\\Z",
    re.DOTALL | re.ASCII,
)
# What the hot loop matches: the same header and MSG, and as STRUCTURED-DATA "-" or the text
# from "[" to the first "]" followed by SP or the end (what the grammar takes whenever that text
# is well-formed; the loop checks that, see _sd_shape, and otherwise asks _RFC5424). Scanning
# to a "]" is one character class; the grammar's per-parameter repeats cost far more
# (docs/performance.md, section "Structured data is no longer 7x dearer").
_RFC5424_FAST = re.compile(
    _RFC5424_HEADER + r"(-|\[[^\]]*(?:\](?! |\Z)[^\]]*)*\])" + "(?: \ufeff| |\\Z)(.*)\\Z",
    re.DOTALL | re.ASCII,
)
_RFC5424_PREFIX = re.compile(r"<\d{1,3}>1 ", re.ASCII)
_SD_BLOCK = re.compile(rf"(?:{_SD_ELEMENT})+", re.ASCII)
_SD_ELEMENTS = re.compile(rf"\[({_SD_NAME})((?: {_SD_NAME}= *{_SD_VALUE})*)\]", re.ASCII)
_SD_PARAMS = re.compile(rf' ({_SD_NAME})= *"([^"\\]*(?:\\.[^"\\]*)*)"', re.ASCII)
_SD_ESCAPE = re.compile(r'\\(["\\\]])')
# How to build the parsed structured data of one shape (see _sd_shape): (function, a, b),
# called as function(a, b, parts); () for a shape that the fast path does not take.
_SdShape = tuple[Any, ...]

# --- RFC 3164 and its relatives ------------------------------------------------------------------
_MONTH_ANY_CASE = "(?i:" + "|".join(name.lower() for name in _MONTHS) + ")"
# After the timestamp: [HOSTNAME SP] [TAG SP] MSG. The first token is the hostname unless it
# ends with ":" or "]" (then it is the tag: local senders and Docker's default format send no
# hostname). A tag token is "name:", "name[pid]:", "name[pid]" (rsyslog writes that for messages
# it received as RFC 5424) or "name[pid" (rsyslog's %syslogtag:1:32% cut it); the name may hold
# ":" "/" "{}" (Docker tag templates) but not "[" or spaces. The possessive \S++ keeps the
# hostname test from backtracking into the token.
_HOST_TAG_MESSAGE = (
    r"(?: (\S++)(?<![:\]])(?![^ ]))?"  # HOSTNAME, followed by SP or the end (rsyslog)
    r"(?: ([^ \n\[]*[^ \n\[:])(?:\[([^\] \n]*)\]?:?|:)(?= |\Z))?"  # TAG[PID]:
    r"(?: |\Z)(.*)\Z"  # MSG
)
_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?"  # PRI, optional (rsyslog's file format and some senders omit it)
    r"(?:\d{1,10}: )?[*.]?"  # vendor prefixes: Cisco's sequence number, clock-sync markers
    # Nov 29 ..., month names in any case (rsyslog reads "AUG" too); one space between the PRI
    # and such a stamp is skipped (rsyslog does; not before an RFC 3339 stamp, nor two spaces)
    r"(?:(?:(?<=>) )?((?:[A-Z][a-z]{2}|" + _MONTH_ANY_CASE + r") {1,2}\d{1,2} (?:\d{4} )?"
    r"\d\d:\d\d:\d\d)((?:\.\d{1,6})?)\d*"
    r"|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)((?:\.\d{1,6})?)\d*(Z|[+-]\d\d:?\d\d)?)"  # or RFC 3339
    # Cisco: " UTC: %FAC-SEV-MNEMONIC" after the stamp. The "%" keeps a 3164 tag such as
    # "CRON:" or "AAA:" from being taken for a zone name.
    r"(?: [A-Z]{3,4}(?=: %))?:?" + _HOST_TAG_MESSAGE,
    re.DOTALL | re.ASCII,
)
# The shape Docker and rsyslog send most (<PRI>Mmm dd hh:mm:ss ...), tried first because its
# short prefix is cheaper to match and it has fewer groups to extract.
_RFC3164_COMMON = re.compile(
    r"<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)" + _HOST_TAG_MESSAGE,
    re.DOTALL | re.ASCII,
)
_PRI_PREFIX = re.compile(r"<(\d{1,3})>", re.ASCII)
_NEVER = re.compile(r"(?!)")

# Docker's default tag is {{.ID}}: the first 12 hex digits of the container ID ({{.FullID}}: 64).
_CONTAINER_ID = re.compile(r"[0-9a-f]{12}(?:[0-9a-f]{52})?")
_CACHE_LIMIT = 65536
# Structured-data shapes are few per application; longer or more are worked out each time.
_SD_SHAPE_LIMIT = 4096
_SD_SHAPE_KEY_LIMIT = 512
_NAN = float("nan")
_INVALID_TIME = ("", _NAN)


def parse_structured_data(text: str) -> dict[str, dict[str, str]]:
    """RFC 5424 STRUCTURED-DATA (``[id k="v"][id2 ...]``) to ``{id: {k: v}}``.

    Escapes ``\\"``, ``\\\\`` and ``\\]`` are resolved; a backslash before any other character
    stays, as RFC 5424 6.3.3 says. Repeated SD-IDs merge (later params win). Text that is not
    well-formed yields whatever elements could be read.
    """
    result: dict[str, dict[str, str]] = {}
    for element in _SD_ELEMENTS.finditer(text):
        params = result.setdefault(element.group(1), {})
        for name, value in _SD_PARAMS.findall(element.group(2)):
            params[name] = _SD_ESCAPE.sub(r"\1", value) if "\\" in value else value
    return result


# Dicts of one SD element with 0 to 6 parameters, from the SD split at '"' (values at odd
# positions): a dict display is cheaper than dict(zip(...)) (docs/performance.md, section
# "Structured data is no longer 7x dearer").
_SD_ONE: tuple[Callable[[str, tuple[str, ...], list[str]], dict[str, dict[str, str]]], ...] = (
    lambda i, n, p: {i: {}},
    lambda i, n, p: {i: {n[0]: p[1]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5], n[3]: p[7]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5], n[3]: p[7], n[4]: p[9]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5], n[3]: p[7], n[4]: p[9], n[5]: p[11]}},
)


def _sd_elements(
    elements: tuple[tuple[str, tuple[str, ...]], ...], _: object, parts: list[str]
) -> dict[str, dict[str, str]]:
    """Any other shape: each element's names with its run of values."""
    parsed: dict[str, dict[str, str]] = {}
    start = 1
    for sd_id, names in elements:
        parsed[sd_id] = dict(zip(names, parts[start::2], strict=False))  # stops at the names
        start += 2 * len(names)
    return parsed


def _sd_shape(key: str, shapes: dict[str, _SdShape]) -> _SdShape:
    """How to read structured data without backslashes whose text around the values is ``key``
    (the SD split at '"', values left out, joined with '"'), or () when it is not well-formed
    or repeats an SD-ID (repeated SD-IDs merge: left to parse_structured_data). A value without
    a backslash holds no '"' and never decides whether SD is well-formed, so the shape is checked
    with every value empty, once per distinct shape; SD-IDs and names come from that check."""
    blank = key.replace('"', '""')
    shape: _SdShape = ()
    if _SD_BLOCK.fullmatch(blank):
        elements = tuple(
            (element[1], tuple(name for name, _ in _SD_PARAMS.findall(element[2])))
            for element in _SD_ELEMENTS.finditer(blank)
        )
        if len({sd_id for sd_id, _ in elements}) == len(elements):
            if len(elements) == 1 and len(elements[0][1]) < len(_SD_ONE):
                sd_id, names = elements[0]
                shape = (_SD_ONE[len(names)], sd_id, names)
            else:
                shape = (_sd_elements, elements, None)
    if len(key) <= _SD_SHAPE_KEY_LIMIT:  # bounded memory whatever senders send: ~2 MiB
        if len(shapes) >= _SD_SHAPE_LIMIT:
            shapes.clear()
        shapes[key] = shape
    return shape


def _converted(utc: str) -> tuple[str, float]:
    """A timestamp cache entry: the UTC seconds text and its epoch (("", NaN) if invalid)."""
    if not utc:
        return _INVALID_TIME
    return utc, rfc3339_to_epoch(utc + "Z")


def _pri_info(text: str) -> tuple[int, str, str] | None:
    info = _PRI_TABLE.get(text)
    if info is None and text.isdigit() and int(text) < 192:
        info = _PRI_TABLE[str(int(text))]
    return info


class SyslogParser:
    """Frames to records. ``format`` is "auto" (per message: ``<PRI>1 `` means RFC 5424,
    anything else RFC 3164), "rfc5424" or "rfc3164". ``timezone`` (IANA name) is the zone of
    RFC 3164 timestamps, which carry none. ``tag_pattern`` is a regex with named groups searched
    in the tag (RFC 3164) or APP-NAME (RFC 5424); its groups become record fields."""

    def __init__(
        self, format: str = "auto", timezone: str = "UTC", tag_pattern: str | None = None
    ) -> None:
        if format not in ("auto", "rfc5424", "rfc3164"):
            raise ValueError(
                f"format: unknown syslog format {format!r}; expected 'auto', 'rfc5424' or 'rfc3164'"
            )
        self.format = format
        self.timezone = timezone
        self._tz: tzinfo
        if not isinstance(timezone, str):
            raise ValueError(f"timezone: expected an IANA time zone name, got {timezone!r}")
        if timezone.upper() in ("UTC", "Z", "ETC/UTC"):
            self._tz = UTC
        else:
            try:
                self._tz = ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"timezone: unknown IANA time zone {timezone!r} (e.g. 'UTC', 'Europe/Berlin')"
                ) from exc
        self.tag_pattern = tag_pattern
        self._tag_regex: re.Pattern[str] | None = None
        if tag_pattern is not None:
            try:
                self._tag_regex = re.compile(tag_pattern)
            except (re.error, TypeError) as exc:
                raise ValueError(f"tag_pattern: invalid regular expression: {exc}") from exc
            if not self._tag_regex.groupindex:
                raise ValueError(
                    "tag_pattern: the regular expression has no named groups, so it would "
                    "extract nothing; name them, e.g. (?P<container_name>[^/]+)"
                )
        self.parse_errors = 0
        # RFC 3339 "seconds part + offset" -> (UTC "YYYY-MM-DDTHH:MM:SS", its epoch), or
        # ("", NaN) when invalid.
        self._iso_cache: dict[str, tuple[str, float]] = {}
        # RFC 3164 stamp ("Nov 29 21:00:00") -> the same pair; valid for one received month.
        self._classic_cache: dict[str, tuple[str, float]] = {}
        self._month_start = 0.0
        self._month_end = -1.0
        self._received_year = 1970
        self._received_month = 1
        # Tag / APP-NAME -> container fields it yields (often none).
        self._tag_cache: dict[str, dict[str, str]] = {}
        # Structured data's text around its values -> how to read it (see _sd_shape).
        self._sd_shapes: dict[str, _SdShape] = {}
        self._last_received = float("nan")
        self._last_received_text = ""
        self._last_received_epoch = _NAN

    # --- public API ------------------------------------------------------------------------------
    def parse(self, frame: bytes, received: float) -> dict[str, Any]:
        return self.parse_batch([frame], received)[0]

    def parse_batch(self, frames: list[bytes], received: float) -> list[dict[str, Any]]:
        """One record per frame, in order. ``received`` is the wall-clock time the batch was
        read: the year of RFC 3164 stamps is inferred from it, and it is the ``time`` of records
        whose message carries none."""
        return self.parse_batch_with_times(frames, received)[0]

    def parse_batch_with_times(
        self, frames: list[bytes], received: float
    ) -> tuple[list[dict[str, Any]], list[float]]:
        """``parse_batch`` plus each record's ``time`` as seconds since the epoch, exactly what
        ``timeutil.rfc3339_to_epoch(record["time"])`` gives, but from the per-second caches the
        parser keeps anyway instead of parsing the text again."""
        if received != self._last_received:
            self._set_received(received)
        received_text = self._last_received_text
        received_epoch = self._last_received_epoch
        records: list[dict[str, Any]] = []
        append = records.append
        times: list[float] = []
        times_append = times.append
        # forced rfc3164: a pattern that fails at once keeps the 5424 test out of the loop
        match_5424 = _RFC5424_FAST.match if self.format != "rfc3164" else _NEVER.match
        try_5424 = self.format != "rfc3164"
        match_common = _RFC3164_COMMON.match
        match_3164 = _RFC3164.match if self.format != "rfc5424" else None
        pri_table = _PRI_TABLE
        iso_cache = self._iso_cache
        classic_cache = self._classic_cache
        tag_cache = self._tag_cache
        sd_shapes = self._sd_shapes
        for frame in frames:
            try:
                try:
                    text = frame.decode()  # much faster than passing errors="replace"
                except UnicodeDecodeError:
                    text = frame.decode("utf-8", "replace")
                if text[-1:] < " ":  # trailing newline (or NUL); also true for ""
                    text = text.rstrip("\r\n\x00")
                match = match_5424(text)
                if match is not None:
                    pri, stamp, fraction, offset, host, app, procid, msgid, sd, message = (
                        match.groups()
                    )
                    if sd != "-":
                        # Without a backslash no value holds '"': split there, the shape (the
                        # text around the values) says whether the SD is well-formed and how
                        # to build its dict. Anything else: the grammar, as before.
                        shape = None
                        if "\\" not in sd:
                            parts = sd.split('"')
                            if len(parts) & 1:
                                key = '"'.join(parts[0::2])
                                shape = sd_shapes.get(key)
                                if shape is None:
                                    shape = _sd_shape(key, sd_shapes)
                        if shape:
                            build, first, second = shape
                            parsed_sd = build(first, second, parts)
                        else:
                            found = self._reference_sd(text)
                            if found is None:
                                append(self._error(text, "invalid RFC 5424 header", received_text))
                                times_append(received_epoch)
                                continue
                            sd, parsed_sd, message = found
                    info = pri_table.get(pri) or _pri_info(pri)
                    if info is None:
                        append(self._error(text, "invalid PRI", received_text))
                        times_append(received_epoch)
                        continue
                    if stamp is None:  # NILVALUE
                        when = received_text
                        epoch = received_epoch
                    else:
                        key = stamp if offset == "Z" else stamp + offset
                        converted = iso_cache.get(key)
                        if converted is None:
                            converted = self._iso_to_utc(stamp, offset, key)
                        utc, epoch = converted
                        if not utc:
                            append(self._error(text, "invalid timestamp", received_text))
                            times_append(received_epoch)
                            continue
                        when = utc + fraction + "Z"
                        if fraction:
                            epoch += float(fraction)
                    record: dict[str, Any] = {
                        "pri": info[0],
                        "facility": info[1],
                        "severity": info[2],
                        "time": when,
                        "host": host,
                        "ident": app,
                        "pid": procid,
                        "msgid": msgid,
                        "message": message,
                    }
                    if host == "-":
                        del record["host"]
                    if app == "-":
                        del record["ident"]
                    else:
                        extra = tag_cache.get(app)
                        if extra is None:
                            extra = self._tag_fields(app)
                        if extra:
                            record.update(extra)
                    if procid == "-":
                        del record["pid"]
                    if msgid == "-":
                        del record["msgid"]
                    if sd != "-":
                        record["extradata"] = sd
                        record["sd"] = parsed_sd
                    append(record)
                    times_append(epoch)
                    continue
                if match_3164 is None:
                    reason = (
                        "invalid RFC 5424 header"
                        if _RFC5424_PREFIX.match(text)
                        else "not an RFC 5424 message"
                    )
                    append(self._error(text, reason, received_text))
                    times_append(received_epoch)
                    continue
                match = match_common(text)
                if match is not None:
                    pri, classic, host, ident, pid, message = match.groups()
                    info = pri_table.get(pri) or _pri_info(pri)
                    if info is None:
                        append(self._error(text, "invalid PRI", received_text))
                        times_append(received_epoch)
                        continue
                    converted = classic_cache.get(classic)
                    if converted is None:
                        converted = self._classic_to_utc(classic)
                    fraction = ""
                else:
                    if try_5424 and _RFC5424_PREFIX.match(text):
                        append(self._error(text, "invalid RFC 5424 header", received_text))
                        times_append(received_epoch)
                        continue
                    match = match_3164(text)
                    if match is None:
                        append(self._error(text, self._reason_3164(text), received_text))
                        times_append(received_epoch)
                        continue
                    (pri, classic, classic_fraction, stamp, fraction, offset, host, ident, pid,
                     message) = match.groups()  # fmt: skip
                    if pri is None:
                        info = _PRI_DEFAULT
                    else:
                        info = pri_table.get(pri) or _pri_info(pri)
                        if info is None:
                            append(self._error(text, "invalid PRI", received_text))
                            times_append(received_epoch)
                            continue
                    if classic is not None:
                        converted = classic_cache.get(classic)
                        if converted is None:
                            converted = self._classic_to_utc(classic)
                        fraction = classic_fraction
                    else:
                        # no offset: the configured zone, cached apart from "Z" under "stamp "
                        key = stamp + offset if offset else stamp + " "
                        converted = iso_cache.get(key)
                        if converted is None:
                            converted = self._iso_to_utc(stamp, offset, key)
                utc, epoch = converted
                if not utc:
                    append(self._error(text, "invalid timestamp", received_text))
                    times_append(received_epoch)
                    continue
                record = {
                    "pri": info[0],
                    "facility": info[1],
                    "severity": info[2],
                    "time": utc + fraction + "Z",
                    "host": host,
                    "ident": ident,
                    "pid": pid,
                    "message": message,
                }
                if host is None:
                    del record["host"]
                if ident is None:
                    del record["ident"]
                else:
                    extra = tag_cache.get(ident)
                    if extra is None:
                        extra = self._tag_fields(ident)
                    if extra:
                        record.update(extra)
                if not pid:
                    del record["pid"]
                append(record)
                times_append(epoch + float(fraction) if fraction else epoch)
            except Exception as exc:
                append(self._internal_error(frame, exc, received_text))
                times_append(received_epoch)
        if len(times) != len(records):  # pragma: no cover - defensive: every path appends both
            times = [rfc3339_to_epoch(record.get("time", "")) for record in records]
        return records, times

    # --- slow paths (cache misses, errors) -------------------------------------------------------
    @staticmethod
    def _reference_sd(text: str) -> tuple[str, Any, str] | None:
        """(raw SD, parsed SD, MSG) by the reference grammar, for SD the fast path does not take;
        None when the RFC 5424 header is not well-formed."""
        match = _RFC5424.match(text)
        if match is None:
            return None
        sd, message = match.group(9, 10)
        return sd, parse_structured_data(sd), message

    def _set_received(self, received: float) -> None:
        self._last_received = received
        self._last_received_text = format_epoch(received)
        self._last_received_epoch = rfc3339_to_epoch(self._last_received_text)
        if not self._month_start <= received < self._month_end:
            self._set_received_month(received)

    def _set_received_month(self, received: float) -> None:
        """Year inference for RFC 3164 stamps works on the received month in the configured
        zone; the cache of converted stamps is valid for exactly that month."""
        try:
            now = datetime.fromtimestamp(received, self._tz)
        except (OverflowError, ValueError, OSError):
            now = datetime.fromtimestamp(0, self._tz)
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
        self._classic_cache.clear()

    def _classic_to_utc(self, stamp: str) -> tuple[str, float]:
        """``Nov 29 21:00:00`` or ``Nov 29 2026 21:00:00`` in the configured zone -> UTC text.
        Without a year, the year is the received one, moved back (forward) by one when the
        stamp's month is more than six months after (before) the received month: December
        lines read in January belong to last year."""
        utc = ""
        try:
            parts = stamp.split()
            month = _MONTHS[parts[0].capitalize()]  # "AUG" as "Aug"
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
            utc = to_utc_seconds(datetime(year, month, day, hour, minute, second, tzinfo=self._tz))
        except (KeyError, ValueError, OverflowError):
            utc = ""
        converted = _converted(utc)
        cache = self._classic_cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[stamp] = converted
        return converted

    def _iso_to_utc(self, stamp: str, offset: str | None, key: str) -> tuple[str, float]:
        """``2026-11-29T22:00:00`` + ``+01:00`` -> ``2026-11-29T21:00:00``; no offset means the
        configured zone (RFC 3164 senders with ISO stamps but no zone)."""
        zone: tzinfo
        try:
            if offset is None or offset == "":
                zone = self._tz
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
        converted = _converted(utc)
        cache = self._iso_cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = converted
        return converted

    def _tag_fields(self, tag: str) -> dict[str, str]:
        """Container fields carried by a tag: ``tag_pattern``'s named groups when it matches,
        else ``container_id`` when the tag is a bare Docker container ID."""
        fields: dict[str, str] = {}
        if self._tag_regex is not None:
            found = self._tag_regex.search(tag)
            if found is not None:
                fields = {k: v for k, v in found.groupdict().items() if v is not None and v != ""}
        if not fields and _CONTAINER_ID.fullmatch(tag):
            fields = {"container_id": tag}
        cache = self._tag_cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[tag] = fields
        return fields

    @staticmethod
    def _reason_3164(text: str) -> str:
        if not text:
            return "empty message"
        if text.startswith("<"):
            pri = _PRI_PREFIX.match(text)
            if pri is None or _pri_info(pri.group(1)) is None:
                return "invalid PRI"
        return "no RFC 3164 timestamp"

    def _error(self, text: str, reason: str, received_text: str) -> dict[str, Any]:
        """The record of a message that could not be parsed: the raw text, why, and the PRI
        fields when at least those could be read."""
        self.parse_errors += 1
        record: dict[str, Any] = {}
        pri = _PRI_PREFIX.match(text)
        if pri is not None:
            info = _pri_info(pri.group(1))
            if info is not None:
                record["pri"], record["facility"], record["severity"] = info
        record["time"] = received_text
        record["message"] = text
        record["parse_error"] = reason
        return record

    def _internal_error(self, frame: object, exc: Exception, received_text: str) -> dict[str, Any]:
        self.parse_errors += 1
        try:
            text = bytes(frame).decode("utf-8", "replace")  # type: ignore[call-overload]
        except Exception:
            text = repr(frame)
        return {
            "time": received_text,
            "message": text,
            "parse_error": f"internal error: {type(exc).__name__}",
        }
