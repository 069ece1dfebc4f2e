"""CRI and Docker json-file lines: examples as the runtimes write them, partial lines, times, and
property tests that no input raises and that split lines join back exactly."""

from __future__ import annotations

import calendar
import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.container import ContainerLogParser, cri_time_to_utc, detect_format
from parsers.timeutil import rfc3339_to_epoch

RECEIVED = calendar.timegm((2026, 11, 29, 21, 0, 5)) + 0.25
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\Z")


def parse(parser: ContainerLogParser, lines: list[bytes]) -> list[dict]:
    records, times = parser.parse_batch_with_times(lines, RECEIVED)
    assert len(records) == len(times)
    for record, epoch in zip(records, times, strict=True):
        assert epoch == rfc3339_to_epoch(record["time"])
    return records


def test_cri_line_kept_exactly_and_nanoseconds_kept() -> None:
    records = parse(
        ContainerLogParser("cri"),
        [b"2026-11-29T21:00:00.123456789Z stdout F   indented and trailing  \t"],
    )
    assert records == [
        {
            "time": "2026-11-29T21:00:00.123456789Z",
            "stream": "stdout",
            "message": "  indented and trailing  \t",
        }
    ]


def test_cri_trailing_zeros_dropped_by_the_runtime_are_not_added() -> None:
    records = parse(ContainerLogParser("cri"), [b"2026-11-29T21:00:00.5Z stderr F x"])
    assert records[0]["time"] == "2026-11-29T21:00:00.5Z"
    records = parse(ContainerLogParser("cri"), [b"2026-11-29T21:00:00Z stderr F x"])
    assert records[0]["time"] == "2026-11-29T21:00:00Z"


@pytest.mark.parametrize(
    ("stamp", "utc"),
    [
        ("2026-11-29T22:00:00.000000001+01:00", "2026-11-29T21:00:00.000000001Z"),
        ("2026-01-01T00:30:00.987654321+01:00", "2025-12-31T23:30:00.987654321Z"),
        ("2024-02-28T20:15:00.10-05:30", "2024-02-29T01:45:00.10Z"),
        ("2026-11-29T21:00:00.100000000Z", "2026-11-29T21:00:00.100000000Z"),
    ],
)
def test_local_offsets_come_out_as_utc_with_the_fraction_untouched(stamp: str, utc: str) -> None:
    converted = cri_time_to_utc(stamp)
    assert converted is not None
    assert converted[0] == utc
    assert converted[1] == rfc3339_to_epoch(utc) == rfc3339_to_epoch(stamp)


@pytest.mark.parametrize(
    "stamp",
    ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-29T21:00:00", "2026-11-29T24:00:00Z",
     "2026-11-29T21:00:00.Z", "2026-11-29T21:00:00+1:00", "x" * 30, "\uff12026-11-29T21:00:00Z"],
)  # fmt: skip
def test_invalid_stamps(stamp: str) -> None:
    assert cri_time_to_utc(stamp) is None
    records = parse(ContainerLogParser("cri"), [f"{stamp} stdout F hi".encode()])
    assert records[0]["parse_error"]
    assert records[0]["message"] == f"{stamp} stdout F hi"


def test_cri_partials_join_per_stream_with_the_other_stream_between() -> None:
    parser = ContainerLogParser("cri")
    records = parse(
        parser,
        [
            b"2026-11-29T21:00:00.1Z stdout P first ",
            b"2026-11-29T21:00:00.2Z stderr F an error",
            b"2026-11-29T21:00:00.3Z stdout P second ",
        ],
    )
    assert records == [
        {"time": "2026-11-29T21:00:00.2Z", "stream": "stderr", "message": "an error"}
    ]
    assert parser.pending_first_line() == 0
    records = parse(parser, [b"2026-11-29T21:00:00.4Z stdout F third"])
    assert records == [
        {"time": "2026-11-29T21:00:00.1Z", "stream": "stdout", "message": "first second third"}
    ]
    assert parser.pending_first_line() is None


def test_cri_empty_line_and_tags() -> None:
    records = parse(
        ContainerLogParser("cri"),
        [b"2026-11-29T21:00:00Z stdout F ", b"2026-11-29T21:00:00Z stdout F",
         b"2026-11-29T21:00:00Z stdout F:x tagged"],
    )  # fmt: skip
    assert [r["message"] for r in records] == ["", "", "tagged"]


def test_max_line_bytes_cuts_flags_and_counts() -> None:
    parser = ContainerLogParser("cri", max_line_bytes=10)
    records = parse(
        parser,
        [
            b"2026-11-29T21:00:00Z stdout P 123456",
            b"2026-11-29T21:00:00Z stdout P 789abc",
            b"2026-11-29T21:00:00Z stdout P defg",
            b"2026-11-29T21:00:00Z stdout F hij",
            b"2026-11-29T21:00:01Z stdout F next",
            b"2026-11-29T21:00:01Z stdout F " + b"y" * 25,
        ],
    )
    assert records[0]["message"] == "123456789a" and records[0]["truncated"] is True
    assert records[1] == {"time": "2026-11-29T21:00:01Z", "stream": "stdout", "message": "next"}
    assert records[2]["message"] == "y" * 10 and records[2]["truncated"] is True
    assert parser.truncated == 2
    assert parser.discarded_bytes == 2 + 4 + 3 + 15
    assert parser.pending_first_line() is None


def test_docker_json_file_and_its_partials() -> None:
    def line(
        log: str, stream: str = "stdout", when: str = "2026-11-29T21:00:00.123456789Z"
    ) -> bytes:
        return json.dumps({"log": log, "stream": stream, "time": when}).encode()

    parser = ContainerLogParser("docker")
    records = parse(
        parser,
        [
            line('hello \u00e9 "quoted"\n'),
            line("part one,", when="2026-11-29T21:00:01Z"),
            line("oops\n", "stderr"),
            line(" part two\n"),
        ],
    )
    assert [r["message"] for r in records] == [
        'hello \u00e9 "quoted"',
        "oops",
        "part one, part two",
    ]
    assert records[2]["time"] == "2026-11-29T21:00:01Z"
    assert records[1]["stream"] == "stderr"


def test_auto_decides_per_file_and_keeps_what_matches_nothing() -> None:
    parser = ContainerLogParser("auto")
    records = parse(
        parser,
        [b"not a log line", b'{"log":"x\\n","stream":"stdout","time":"2026-11-29T21:00:00Z"}'],
    )
    assert records[0]["parse_error"] and records[0]["message"] == "not a log line"
    assert records[1]["message"] == "x"
    assert parser.detected == "docker"
    assert detect_format(b"2026-11-29T21:00:00Z stdout F x") == "cri"
    assert detect_format(b"plain text") is None


def test_raw_lines() -> None:
    records = parse(ContainerLogParser("raw"), [b"type=EXECVE msg=audit(1.2:3): argc=1", b"\xff"])
    assert records[0] == {
        "message": "type=EXECVE msg=audit(1.2:3): argc=1",
        "time": "2026-11-29T21:00:05.250000Z",
    }
    assert records[1]["message"] == "\ufffd"


def test_raw_lines_longer_than_max_line_bytes_are_cut() -> None:
    parser = ContainerLogParser("raw", max_line_bytes=4)
    records = parse(parser, [b"abcdefgh", b"ok"])
    assert records[0]["message"] == "abcd" and records[0]["truncated"] is True
    assert records[1] == {"message": "ok", "time": "2026-11-29T21:00:05.250000Z"}
    assert parser.truncated == 1 and parser.discarded_bytes == 4


def test_flush_emits_what_is_held() -> None:
    parser = ContainerLogParser("cri")
    parse(parser, [b"2026-11-29T21:00:00Z stdout P held"])
    records, _times = parser.flush()
    assert records == [{"time": "2026-11-29T21:00:00Z", "stream": "stdout", "message": "held"}]
    assert parser.pending_first_line() is None


CRI_ISH = st.lists(
    st.sampled_from(
        [b"2026-11-29T21:00:00", b".123", b"Z", b"+01:00", b" ", b"stdout", b"stderr", b"P", b"F",
         b":", b"x", b"\xff", b"\xe9", b"{", b"}", b'"log"', b'"stream"', b'"time"', b'"\\n"',
         b",", b"\x00", b"9999-12-31T23:59:59"]
    ),
    max_size=30,
).map(b"".join)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["auto", "cri", "docker", "raw"]),
    st.integers(1, 64),
    st.lists(st.lists(st.one_of(CRI_ISH, st.binary(max_size=40)), max_size=8), max_size=4),
)
def test_no_input_raises(fmt: str, limit: int, batches: list[list[bytes]]) -> None:
    parser = ContainerLogParser(fmt, max_line_bytes=limit)
    for lines in batches:
        records, times = parser.parse_batch_with_times(lines, RECEIVED)
        for record, epoch in zip(records, times, strict=True):
            assert UTC_TIME.match(record["time"]), record
            assert epoch == rfc3339_to_epoch(record["time"])
            assert isinstance(record["message"], str)
            if record.get("truncated"):
                assert len(record["message"].encode()) <= limit
    parser.flush()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.text(max_size=60)), max_size=10),
    st.integers(1, 7),
    st.randoms(use_true_random=False),
)
def test_split_lines_join_back_exactly(
    messages: list[tuple[str, str]], piece: int, rnd: object
) -> None:
    """Each message cut into pieces as a runtime cuts them, the two streams interleaved at
    random: every message comes back whole, in order per stream."""
    messages = [(s, m.replace("\n", " ").replace("\r", " ")) for s, m in messages]
    queues: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    for stream, message in messages:
        data = message.encode()
        pieces = [data[i : i + piece] for i in range(0, len(data), piece)] or [b""]
        for i, chunk in enumerate(pieces):
            flag = b"F" if i == len(pieces) - 1 else b"P"
            queues[stream].append(
                b"2026-11-29T21:00:00.5Z " + stream.encode() + b" " + flag + b" " + chunk
            )
    lines: list[bytes] = []
    while queues["stdout"] or queues["stderr"]:
        stream = rnd.choice([s for s in queues if queues[s]])  # type: ignore[attr-defined]
        lines.append(queues[stream].pop(0))
    parser = ContainerLogParser("cri", max_line_bytes=1 << 20)
    # pieces may be cut inside a UTF-8 character, as containerd cuts them: joined as bytes
    records = parse(parser, lines)
    got = {s: [r["message"] for r in records if r["stream"] == s] for s in ("stdout", "stderr")}
    want = {s: [m for st_, m in messages if st_ == s] for s in ("stdout", "stderr")}
    assert got == want
    assert parser.pending_first_line() is None


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 253402300799),  # up to 9999-12-31T23:59:59Z
    st.lists(st.text("0123456789", min_size=0, max_size=30), min_size=1, max_size=6),
)
def test_utc_fractions_of_any_length_give_the_epoch_of_their_text(
    second: int, fractions: list[str]
) -> None:
    """containerd's UTC stamps: the same second over and over (its first line fills the
    per-second cache, the others take the cached path) with fractions of any length; the text
    is kept as written and the epoch is exactly the one ``rfc3339_to_epoch`` reads from it."""
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    stamps = [base + ("." + digits if digits else "") + "Z" for digits in fractions]
    lines = [stamp.encode() + b" stdout F x" for stamp in stamps * 2]
    records, times = ContainerLogParser("cri").parse_batch_with_times(lines, RECEIVED)
    for stamp, record, epoch in zip(stamps * 2, records, times, strict=True):
        if stamp.endswith(".Z"):  # a dot without digits is not RFC 3339
            assert record["parse_error"] == "invalid timestamp"
            continue
        assert record["time"] == stamp
        assert epoch == rfc3339_to_epoch(stamp)
        assert epoch == second + (float("0." + stamp[20:-1]) if len(stamp) > 20 else 0.0)
