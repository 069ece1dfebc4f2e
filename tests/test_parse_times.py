"""``SyslogParser.parse_batch_with_times``: the epochs it returns beside the records are exactly
what ``rfc3339_to_epoch`` gives for each record's ``time`` (the buffer relies on it instead of
parsing the text again), for any input."""

from __future__ import annotations

import calendar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.syslog import SyslogParser
from parsers.timeutil import rfc3339_to_epoch

RECEIVED = calendar.timegm((2026, 11, 29, 21, 0, 5)) + 0.25
PARSERS = [
    SyslogParser(),
    SyslogParser(format="rfc5424"),
    SyslogParser(format="rfc3164", timezone="Europe/Berlin"),
]
STAMPS = [b"2026-11-29T21:00:00", b"2026-02-30T21:00:00", b"1999-12-31T23:59:60",
          b"Nov 29 21:00:00", b"Feb 30 10:00:00", b"Dec  1 00:00:00", b"Nov 29 2025 21:00:00",
          b"-"]  # fmt: skip
FRACTIONS = [b"", b".1", b".123456", b".1234567", b".000000"]
ZONES = [b"Z", b"+01:00", b"-05:30", b"+0200", b"", b"+24:00", b"-00:00"]


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    pri = draw(st.sampled_from([b"<13>", b"<30>", b"<191>", b"<192>", b""]))
    version = draw(st.sampled_from([b"1 ", b""]))
    stamp = draw(st.sampled_from(STAMPS)) + draw(st.sampled_from(FRACTIONS))
    zone = draw(st.sampled_from(ZONES))
    rest = draw(st.sampled_from([b" host app 1 - - hello", b" host app[2]: hi", b" app: x", b""]))
    return pri + version + stamp + zone + rest


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(frames() | st.binary(max_size=80), max_size=10))
def test_times_match_the_records_time_text(batch: list[bytes]) -> None:
    for parser in PARSERS:
        records, times = parser.parse_batch_with_times(batch, RECEIVED)
        assert len(records) == len(times) == len(batch)
        expected = [rfc3339_to_epoch(record["time"]) for record in records]
        assert times == expected
        assert parser.parse_batch(batch, RECEIVED) == records


def test_fraction_and_offset_are_in_the_epoch() -> None:
    records, times = SyslogParser().parse_batch_with_times(
        [b"<13>1 2026-11-29T22:00:00.25+01:00 h a - - - x", b"<13>Nov 29 21:00:01 h a: x"],
        RECEIVED,
    )
    assert records[0]["time"] == "2026-11-29T21:00:00.25Z"
    assert times == [calendar.timegm((2026, 11, 29, 21, 0, 0)) + 0.25,
                     calendar.timegm((2026, 11, 29, 21, 0, 1))]  # fmt: skip
