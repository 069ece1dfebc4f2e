"""Syslog frames (RFC 5424, RFC 3164 as found in the wild) to records: the parser and its hot
loop, which tells the formats apart per message (``<PRI>1 `` is RFC 5424, anything else RFC 3164).

One frame (one syslog message, framing already removed by the input) becomes one plain dict.
Nothing here raises for any input bytes: a frame that cannot be parsed becomes a record whose
``message`` is the raw text and whose ``parse_error`` says why, and it is counted in
``SyslogParser.parse_errors``. See docs/parsers.md for the fields and the heuristics.

Speed matters (this runs for every record the agent sees), so each message shape is matched by
one compiled regex (``rfc5424``, ``rfc3164``), timestamp conversions are cached per distinct
second (``syslog_time``), tag -> container field lookups are cached per tag, and the batch loop
binds everything it uses to locals or module globals.
"""

from __future__ import annotations

import re
from typing import Any

from parsers.rfc3164 import RFC3164, RFC3164_COMMON, reason_3164
from parsers.rfc5424 import (
    RFC5424_FAST,
    RFC5424_PREFIX,
    SdCache,
    parse_structured_data,
    reference_sd,
)
from parsers.syslog_pri import FACILITIES, PRI_DEFAULT, PRI_PREFIX, PRI_TABLE, SEVERITIES, pri_info
from parsers.syslog_time import CACHE_LIMIT, SyslogClock, zone_of
from parsers.timeutil import rfc3339_to_epoch

__all__ = ["FACILITIES", "SEVERITIES", "SyslogParser", "parse_structured_data"]

_NEVER = re.compile(r"(?!)")
# Docker's default tag is {{.ID}}: the first 12 hex digits of the container ID ({{.FullID}}: 64).
_CONTAINER_ID = re.compile(r"[0-9a-f]{12}(?:[0-9a-f]{52})?")


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
        self._clock = SyslogClock(zone_of(timezone))
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
        # Tag / APP-NAME -> container fields it yields (often none).
        self._tag_cache: dict[str, dict[str, str]] = {}
        # How to read structured data without backslashes, by its shape (see rfc5424.SdCache).
        self._sd = SdCache()

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
        clock = self._clock
        if received != clock.last_received:
            clock.set_received(received)
        received_text = clock.last_received_text
        received_epoch = clock.last_received_epoch
        records: list[dict[str, Any]] = []
        append = records.append
        times: list[float] = []
        times_append = times.append
        # forced rfc3164: a pattern that fails at once keeps the 5424 test out of the loop
        match_5424 = RFC5424_FAST.match if self.format != "rfc3164" else _NEVER.match
        try_5424 = self.format != "rfc3164"
        match_common = RFC3164_COMMON.match
        match_3164 = RFC3164.match if self.format != "rfc5424" else None
        pri_table = PRI_TABLE
        iso_cache = clock.iso_cache
        classic_cache = clock.classic_cache
        tag_cache = self._tag_cache
        sd_builders = self._sd.builders
        sd_build = self._sd.build
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
                        # Without a backslash no value holds '"': split there, the values are
                        # at odd positions. The builder cached for the first piece checks the
                        # others (the shape) and builds the dict; sd_build works out new
                        # shapes. None (not well-formed, escapes...): the grammar, as before.
                        if "\\" not in sd:
                            parts = sd.split('"')
                            parsed_sd = sd_builders.get(parts[0], sd_build)(parts)
                        else:
                            parsed_sd = None
                        if parsed_sd is None:
                            found = reference_sd(text)
                            if found is None:
                                append(self._error(text, "invalid RFC 5424 header", received_text))
                                times_append(received_epoch)
                                continue
                            sd, parsed_sd, message = found
                    info = pri_table.get(pri) or pri_info(pri)
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
                            converted = clock.iso_to_utc(stamp, offset, key)
                        utc, epoch = converted
                        if not utc:
                            append(self._error(text, "invalid timestamp", received_text))
                            times_append(received_epoch)
                            continue
                        when = utc + fraction + "Z"
                        if fraction:
                            epoch += float(fraction)
                    record: dict[str, Any]
                    if app == "-":
                        extra = None
                    else:
                        extra = tag_cache.get(app)
                        if extra is None:
                            extra = self._tag_fields(app)
                    if sd == "-" or (extra and (len(extra) != 1 or "container_id" not in extra)):
                        # Step by step (tag fields may share a name with a record field).
                        record = {
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
                        elif extra:
                            record.update(extra)
                        if procid == "-":
                            del record["pid"]
                        if msgid == "-":
                            del record["msgid"]
                        if sd != "-":
                            record["extradata"] = sd
                            record["sd"] = parsed_sd
                    else:
                        # No tag fields or only Docker's container_id: one display with
                        # the keys in the same order. A 9-key display holds 10 keys before
                        # the dict grows, and growing it costs more than this (see
                        # docs/performance.md).
                        if extra:
                            record = {
                                "pri": info[0],
                                "facility": info[1],
                                "severity": info[2],
                                "time": when,
                                "host": host,
                                "ident": app,
                                "pid": procid,
                                "msgid": msgid,
                                "message": message,
                                "container_id": extra["container_id"],
                                "extradata": sd,
                                "sd": parsed_sd,
                            }
                        else:
                            record = {
                                "pri": info[0],
                                "facility": info[1],
                                "severity": info[2],
                                "time": when,
                                "host": host,
                                "ident": app,
                                "pid": procid,
                                "msgid": msgid,
                                "message": message,
                                "extradata": sd,
                                "sd": parsed_sd,
                            }
                        if host == "-":
                            del record["host"]
                        if app == "-":
                            del record["ident"]
                        if procid == "-":
                            del record["pid"]
                        if msgid == "-":
                            del record["msgid"]
                    append(record)
                    times_append(epoch)
                    continue
                if match_3164 is None:
                    reason = (
                        "invalid RFC 5424 header"
                        if RFC5424_PREFIX.match(text)
                        else "not an RFC 5424 message"
                    )
                    append(self._error(text, reason, received_text))
                    times_append(received_epoch)
                    continue
                match = match_common(text)
                if match is not None:
                    pri, classic, host, ident, pid, message = match.groups()
                    info = pri_table.get(pri) or pri_info(pri)
                    if info is None:
                        append(self._error(text, "invalid PRI", received_text))
                        times_append(received_epoch)
                        continue
                    converted = classic_cache.get(classic)
                    if converted is None:
                        converted = clock.classic_to_utc(classic)
                    fraction = ""
                else:
                    if try_5424 and RFC5424_PREFIX.match(text):
                        append(self._error(text, "invalid RFC 5424 header", received_text))
                        times_append(received_epoch)
                        continue
                    match = match_3164(text)
                    if match is None:
                        append(self._error(text, reason_3164(text), received_text))
                        times_append(received_epoch)
                        continue
                    (pri, classic, classic_fraction, stamp, fraction, offset, host, ident, pid,
                     message) = match.groups()  # fmt: skip
                    if pri is None:
                        info = PRI_DEFAULT
                    else:
                        info = pri_table.get(pri) or pri_info(pri)
                        if info is None:
                            append(self._error(text, "invalid PRI", received_text))
                            times_append(received_epoch)
                            continue
                    if classic is not None:
                        converted = classic_cache.get(classic)
                        if converted is None:
                            converted = clock.classic_to_utc(classic)
                        fraction = classic_fraction
                    else:
                        # no offset: the configured zone, cached apart from "Z" under "stamp "
                        key = stamp + offset if offset else stamp + " "
                        converted = iso_cache.get(key)
                        if converted is None:
                            converted = clock.iso_to_utc(stamp, offset, key)
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
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[tag] = fields
        return fields

    def _error(self, text: str, reason: str, received_text: str) -> dict[str, Any]:
        """The record of a message that could not be parsed: the raw text, why, and the PRI
        fields when at least those could be read."""
        self.parse_errors += 1
        record: dict[str, Any] = {}
        pri = PRI_PREFIX.match(text)
        if pri is not None:
            info = pri_info(pri.group(1))
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
