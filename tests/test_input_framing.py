"""StreamFramer: RFC 6587 newline and octet-counted framing, split reads, limits, bad input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.inputs.framing import StreamFramer

MESSAGES = [b"<13>Nov 29 10:00:00 host app: one", b"<14>1 2026-11-29T10:00:00Z h a - - - two", b"x"]


def octet(message: bytes, trailing_lf: bool = False) -> bytes:
    body = message + (b"\n" if trailing_lf else b"")
    return b"%d %s" % (len(body), body)


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    frames: list[bytes] = []
    cut: list[bytes] = []
    for chunk in [*chunks, None]:
        got, truncated = framer.finish() if chunk is None else framer.feed(chunk)
        cut.extend(got[i] for i in truncated)
        frames.extend(got)
    return frames, cut


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_newline_frames_in_one_read() -> None:
    framer = StreamFramer("auto", 1024)
    frames, cut = feed_all(framer, [b"".join(m + b"\n" for m in MESSAGES)])
    assert frames == MESSAGES and cut == []
    assert framer.octet_counted is False


def test_octet_counted_with_and_without_trailing_lf() -> None:
    # rsyslog counts a trailing LF (stripped); logger --octet-count sends none.
    data = octet(MESSAGES[0], True) + octet(MESSAGES[1]) + octet(MESSAGES[2], True)
    framer = StreamFramer("auto", 1024)
    assert feed_all(framer, [data]) == (MESSAGES, [])
    assert framer.octet_counted is True


def test_octet_counted_keeps_embedded_newlines() -> None:
    message = b"<13>app: line one\nline two"
    assert feed_all(StreamFramer("octet_counted", 1024), [octet(message)])[0] == [message]


@given(st.integers(min_value=1, max_value=40), st.booleans())
def test_any_split_of_reads_gives_the_same_frames(size: int, octets: bool) -> None:
    if octets:
        data = b"".join(octet(m, i % 2 == 0) for i, m in enumerate(MESSAGES))
    else:
        data = b"".join(m + b"\r\n" for m in MESSAGES)
    assert feed_all(StreamFramer("auto", 1024), split_every(data, size)) == (MESSAGES, [])


def test_newline_frame_over_the_limit_is_cut_and_the_rest_discarded() -> None:
    framer = StreamFramer("newline", 10)
    long = b"A" * 25
    frames, cut = feed_all(framer, [b"short\n" + long[:12], long[12:] + b"\nafter\n"])
    assert frames == [b"short", b"A" * 10, b"after"]
    assert cut == [b"A" * 10]
    assert framer.discarded_bytes == 15


def test_octet_frame_over_the_limit_is_cut_across_reads() -> None:
    framer = StreamFramer("auto", 10)
    data = octet(b"B" * 30, True) + octet(b"after")
    frames, cut = feed_all(framer, split_every(data, 7))
    assert frames == [b"B" * 10, b"after"]
    assert cut == [b"B" * 10]
    assert framer.discarded_bytes == 21


def test_malformed_octet_frame_is_kept_as_a_line_and_counted() -> None:
    framer = StreamFramer("octet_counted", 1024)
    data = octet(b"good one") + b"garbage here\n" + octet(b"good two")
    frames, _ = feed_all(framer, [data])
    assert frames == [b"good one", b"garbage here", b"good two"]
    assert framer.framing_errors == 1


def test_garbage_never_raises_and_loses_no_line() -> None:
    framer = StreamFramer("auto", 64)
    junk = bytes(range(256)) * 8 + b"\n" + b"9999999999999999 x\n" + b"12 abc"
    frames, _ = feed_all(framer, split_every(junk, 13))
    assert b"".join(frames)  # something came out and nothing raised


def test_unfinished_octet_frame_at_end_is_flagged() -> None:
    framer = StreamFramer("auto", 1024)
    frames, cut = feed_all(framer, [octet(b"whole") + b"20 partial"])
    assert frames == [b"whole", b"partial"]
    assert cut == [b"partial"]
    assert framer.framing_errors == 1


def test_newline_frame_without_final_lf_is_whole() -> None:
    assert feed_all(StreamFramer("auto", 1024), [b"<13>a\n<13>b"]) == ([b"<13>a", b"<13>b"], [])


@given(
    st.lists(st.binary(max_size=60), max_size=20),
    st.sampled_from(["auto", "newline", "octet_counted"]),
)
def test_arbitrary_bytes_never_raise(chunks: list[bytes], framing: str) -> None:
    framer = StreamFramer(framing, 16)  # type: ignore[arg-type]
    frames, _ = feed_all(framer, chunks)
    assert all(len(frame) <= 16 for frame in frames)
