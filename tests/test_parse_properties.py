"""Property tests: no input ever raises, and generated valid messages parse back to their fields."""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parsers import rfc3164, rfc5424
from parsers.syslog import FACILITIES, SEVERITIES, SyslogParser
from parsers.timeutil import rfc3339_to_epoch

RECEIVED = calendar.timegm((2026, 11, 29, 21, 0, 5)) + 0.25
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z\Z")
PARSERS = [
    SyslogParser(),
    SyslogParser(format="rfc5424"),
    SyslogParser(format="rfc3164", timezone="Europe/Berlin"),
    SyslogParser(tag_pattern=r"(?P<image>[^/]+)/(?P<container_name>[^/]+)/(?P<container_id>.*)"),
]
# Bytes biased towards syslog's syntax, so the generator reaches deep into the grammar.
SYSLOGISH = st.lists(
    st.sampled_from(
        [b"<", b">", b"1", b"13", b"191", b"192", b" ", b"  ", b"-", b"[", b"]", b":", b'"',
         b"\\", b"=", b"T", b"Z", b".", b"+", b"Nov", b"29", b"2026-11-29T21:00:00",
         b"21:00:00", b"host", b"app", b"\n", b"\xef\xbb\xbf", b"\xff", b"\x00", b"\xe9"]
    ),
    max_size=40,
).map(b"".join)  # fmt: skip


def _check_record(record: dict, frame: bytes) -> None:
    assert isinstance(record, dict)
    assert isinstance(record["message"], str)
    assert UTC_TIME.match(record["time"]), record["time"]
    for key in ("host", "ident", "pid", "msgid"):
        if key in record:
            assert isinstance(record[key], str) and record[key] != "-" and record[key] != ""
    if "pri" in record:
        assert record["facility"] == FACILITIES[record["pri"] >> 3]
        assert record["severity"] == SEVERITIES[record["pri"] & 7]
    if "parse_error" in record:
        assert record["message"] == frame.decode("utf-8", "replace").rstrip("\r\n\x00")
    assert None not in record.values()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.binary(max_size=300) | SYSLOGISH, max_size=8))
@example(frames=[b"", b"\n", b"<", b"<1>", b"<13>1 ", b"<13>1 - - - - - -", b"\xff" * 10])
def test_any_bytes_give_records_and_never_raise(frames: list[bytes]) -> None:
    for parser in PARSERS:
        errors_before = parser.parse_errors
        records = parser.parse_batch(frames, RECEIVED)
        assert len(records) == len(frames)
        for record, frame in zip(records, frames, strict=True):
            _check_record(record, frame)
        errors = sum("parse_error" in record for record in records)
        assert parser.parse_errors - errors_before == errors


@given(text=st.text(max_size=200))
def test_any_text_gives_a_record(text: str) -> None:
    frame = text.encode("utf-8", "surrogatepass")
    for parser in PARSERS:
        _check_record(parser.parse(frame, RECEIVED), frame)


# --- round trips ---------------------------------------------------------------------------------

PRINTUSASCII = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=48)
FIELD = PRINTUSASCII.filter(lambda value: value != "-")
SD_NAME = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='= ]"'),
    min_size=1,
    max_size=32,
)
SD_VALUE = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
STAMPS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@settings(max_examples=300)
@given(
    pri=st.integers(0, 191),
    stamp=STAMPS,
    digits=st.integers(0, 6),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
    host=FIELD,
    app=FIELD,
    procid=st.none() | FIELD,
    msgid=st.none() | FIELD.map(lambda value: value[:32]),
    sd=st.dictionaries(SD_NAME, st.dictionaries(SD_NAME, SD_VALUE, max_size=3), max_size=3),
    message=st.text(st.characters(exclude_categories=["Cs"]), max_size=100),
)
def test_generated_rfc5424_parses_back(
    pri: int,
    stamp: datetime,
    digits: int,
    offset_minutes: int,
    host: str,
    app: str,
    procid: str | None,
    msgid: str | None,
    sd: dict[str, dict[str, str]],
    message: str,
) -> None:
    local = stamp.astimezone(timezone(timedelta(minutes=offset_minutes)))
    fraction = f".{local.microsecond:06d}"[: digits + 1] if digits else ""
    offset = (
        "Z"
        if offset_minutes == 0
        else f"{'+' if offset_minutes > 0 else '-'}{abs(offset_minutes) // 60:02d}:"
        f"{abs(offset_minutes) % 60:02d}"
    )
    sd_text = "".join(
        f"[{sd_id}" + "".join(f' {k}="{_escape(v)}"' for k, v in params.items()) + "]"
        for sd_id, params in sd.items()
    )
    line = (
        f"<{pri}>1 {local.strftime('%Y-%m-%dT%H:%M:%S')}{fraction}{offset} {host} {app} "
        f"{procid or '-'} {msgid or '-'} {sd_text or '-'} {message}"
    )
    record = SyslogParser().parse(line.encode(), RECEIVED)
    assert "parse_error" not in record, record
    assert record["pri"] == pri
    expected_time = stamp.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
    assert record["time"] == expected_time
    assert record["host"] == host and record["ident"] == app
    assert record.get("pid") == procid and record.get("msgid") == msgid
    if sd:
        assert record["extradata"] == sd_text and record["sd"] == sd
    else:
        assert "sd" not in record and "extradata" not in record
    assert record["message"] == message.rstrip("\r\n\x00").removeprefix("\ufeff")
    assert rfc3339_to_epoch(record["time"]) == (
        calendar.timegm(stamp.timetuple()) + (float(fraction) if fraction else 0.0)
    )


TAG = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="[]:"),
    min_size=1,
    max_size=40,
)
HOST = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="[]:"),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300)
@given(
    pri=st.none() | st.integers(0, 191),
    stamp=st.datetimes(min_value=datetime(2026, 6, 1), max_value=datetime(2027, 4, 30)),
    host=st.none() | HOST,
    tag=TAG,
    tag_colons=st.lists(TAG, max_size=2),
    pid=st.none() | st.integers(0, 2**22).map(str),
    message=st.text(st.characters(exclude_categories=["Cs"]), max_size=100),
)
def test_generated_rfc3164_parses_back(
    pri: int | None,
    stamp: datetime,
    host: str | None,
    tag: str,
    tag_colons: list[str],
    pid: str | None,
    message: str,
) -> None:
    # tags may hold ":" (Docker's {{.ImageName}}), as long as it is not the last character
    ident = ":".join([tag, *tag_colons])
    received = calendar.timegm(stamp.timetuple()) + 3
    classic = f"{stamp.strftime('%b')} {stamp.day:2d} {stamp.strftime('%H:%M:%S')}"
    line = (
        ("" if pri is None else f"<{pri}>")
        + classic
        + ("" if host is None else f" {host}")
        + f" {ident}"
        + ("" if pid is None else f"[{pid}]")
        + f": {message}"
    )
    record = SyslogParser().parse(line.encode(), received)
    assert "parse_error" not in record, record
    assert record["pri"] == (13 if pri is None else pri)
    assert record["time"] == stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert record.get("host") == host
    assert record["ident"] == ident and record.get("pid") == pid
    assert record["message"] == message.rstrip("\r\n\x00")


@given(
    frame=st.from_regex(
        r"<\d{1,3}>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d( [!-~]{1,20}){0,3}( .{0,30})?\Z",
        fullmatch=True,
    )
)
def test_common_3164_shortcut_agrees_with_the_general_pattern(frame: str) -> None:
    """The parser tries a short regex for the common 3164 shape before the general one; for
    every line the short one accepts, both must read the same fields."""
    common = rfc3164.RFC3164_COMMON.match(frame)
    if common is None:
        return
    general = rfc3164.RFC3164.match(frame)
    assert general is not None
    pri, classic, host, ident, pid, message = common.groups()
    assert general.groups() == (pri, classic, "", None, None, None, host, ident, pid, message)


@given(text=st.text(max_size=40))
def test_rfc3339_to_epoch_never_raises(text: str) -> None:
    value = rfc3339_to_epoch(text)
    assert isinstance(value, float)
    assert math.isnan(value) or math.isfinite(value)


@given(
    stamp=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    digits=st.integers(0, 9),
    offset_minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_rfc3339_to_epoch_agrees_with_datetime(
    stamp: datetime, digits: int, offset_minutes: int
) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = stamp.replace(tzinfo=zone)
    fraction = f"{local.microsecond:06d}000"[:digits]
    sign = "+" if offset_minutes >= 0 else "-"
    offset = f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    for suffix in (offset, "Z") if offset_minutes == 0 else (offset,):
        text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + suffix
        expected = local.replace(microsecond=0).timestamp() + (
            float("0." + fraction) if digits else 0.0
        )
        assert abs(rfc3339_to_epoch(text) - expected) < 1e-6, text


# --- the structured-data fast path against the grammar -------------------------------------------

# One parser for every example, so its cache of SD shapes is reused across different values.
SHARED = SyslogParser()
SD_PIECES = st.lists(
    st.sampled_from(
        ["[", "]", '"', " ", "  ", "=", "= ", "\\", '\\"', "\\]", "a", "id@1", "k", "v w", "] ",
         "][", '"]', '" ', "\ufeff", "\n", "\t", "\xe9", "-"]
    ),
    max_size=30,
).map("".join)  # fmt: skip
PLAIN_NAME = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='= ]"'),
    min_size=1,
    max_size=12,
)
PLAIN_VALUE = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters='"\\'), max_size=20
) | st.sampled_from(["", "] x", "][", "a] b", "=", " "])
WELL_FORMED_SD = st.lists(
    st.tuples(
        PLAIN_NAME,
        st.lists(st.tuples(PLAIN_NAME, st.sampled_from(["=", "= ", "=  "]), PLAIN_VALUE)),
    ),
    min_size=1,
    max_size=4,
).map(
    lambda elements: "".join(
        f"[{sd_id}" + "".join(f' {name}{eq}"{value}"' for name, eq, value in params) + "]"
        for sd_id, params in elements
    )
)


def _by_the_grammar(line: str) -> tuple[str, dict | None, str] | None:
    """STRUCTURED-DATA, its dict and MSG as the RFC 5424 grammar reads ``line``."""
    match = rfc5424.RFC5424.match(line)
    if match is None:
        return None
    sd, message = match.group(9, 10)
    return sd, (None if sd == "-" else rfc5424.parse_structured_data(sd)), message


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    sd=WELL_FORMED_SD | SD_PIECES | st.builds(str.__add__, WELL_FORMED_SD, SD_PIECES),
    tail=st.sampled_from(["", " ", " msg", " \ufeffmsg", ' [x y="z"] m', "\n", "] x"]),
)
@example(sd='[a b="c] d"]', tail=" msg")
@example(sd='[a b="x"]"y]', tail=" m")  # an odd number of quotes
@example(sd='[a b="c"][a d="e"]', tail=" msg")
@example(sd='[a b="c"]', tail="")
@example(sd='[a b="c"  ]', tail=" m")
def test_structured_data_fast_path_agrees_with_the_grammar(sd: str, tail: str) -> None:
    """The parser reads structured data without backslashes by splitting it at quotes, with
    a cache of shapes; everything else goes through the grammar. For any text in the SD's
    place, the record must be what the grammar (the old single regex) gives."""
    line = "<13>1 2026-11-29T21:00:00Z h a - - " + sd + tail
    record = SHARED.parse(line.encode(), RECEIVED)
    expected = _by_the_grammar(line.rstrip("\r\n\x00"))
    if expected is None:
        assert record.get("parse_error") == "invalid RFC 5424 header", (line, record)
        return
    raw, parsed, message = expected
    assert "parse_error" not in record, (line, record)
    assert record["message"] == message
    if parsed is None:
        assert "sd" not in record and "extradata" not in record
    else:
        assert record["extradata"] == raw
        assert record["sd"] == parsed
        assert list(record["sd"]) == list(parsed)  # SD-IDs in the same order
