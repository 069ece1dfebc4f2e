"""Event times after the filter chain: the buffer gets each record's epoch from its ``time``
text, whether the parser's epoch is reused (a filter left ``time`` alone) or the text is parsed
again (a filter set, changed, removed or broke it)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.buffer.base import BufferConfig
from agent.buffer.memory import MemoryBuffer
from agent.components import filter_types
from agent.filters.base import FilterConfig, FilterContext
from agent.filters.chain import FilterChain, TimedBatch
from agent.filters.times import event_times, stamps
from agent.ingest import IngestSink, Store
from agent.inputs.syslog import SyslogInputConfig
from agent.metrics import Registry
from agent.router import Router, TagMatcher
from common.units import config_dec_hook
from parsers.syslog import SyslogParser
from parsers.timeutil import rfc3339_to_epoch

LOG = logging.getLogger("test.ingest.times")
FRAMES = [
    b"<30>1 2026-11-29T21:00:01.25Z node-a web 10 - - plain line",
    b"<30>Nov 29 21:00:02 node-a kubelet[7]: set my time",
    b"<30>1 2026-11-29T21:00:03.5Z node-a web 10 - - drop my time",
    b"<30>1 2026-11-29T21:00:04Z node-a web 10 - - break my time",
    b"<30>1 2026-11-29T21:00:05Z node-a web 10 - - listify my time",
    b"not syslog at all",
]


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )


def known_times(records: list[dict[str, Any]], times: list[float]) -> dict[Any, float]:
    """The parser's epochs by time text (the table the chain looks records up in)."""
    return dict(zip(stamps(records), times, strict=True))


def _edited(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What filters may do to ``time``: set it, remove it, make it invalid or unhashable."""
    for record in records:
        message = record["message"]
        if message == "set my time":
            record["time"] = "2030-01-01T00:00:00.5Z"
        elif message == "drop my time":
            del record["time"]
        elif message == "break my time":
            record["time"] = "yesterday"
        elif message == "listify my time":
            record["time"] = ["2026-11-29T21:00:05Z"]
    return records


def test_event_times_equal_parsing_every_text() -> None:
    records, times = SyslogParser().parse_batch_with_times(FRAMES, 1_795_000_000.0)
    assert times == [rfc3339_to_epoch(record["time"]) for record in records]
    known = known_times(records, times)
    edited = _edited(records)
    expected = [
        rfc3339_to_epoch(t) if isinstance(t := record.get("time"), str) else math.nan
        for record in edited
    ]
    got = event_times(edited, known)
    assert _same(got, expected)
    assert got[0] == rfc3339_to_epoch("2026-11-29T21:00:01.25Z")
    assert got[1] == rfc3339_to_epoch("2030-01-01T00:00:00.5Z")
    assert [math.isnan(t) for t in got[2:5]] == [True, True, True]
    assert _same(event_times(edited), expected)  # without the parser's epochs: the same


def test_event_times_of_unedited_records_are_the_parsers() -> None:
    records, times = SyslogParser().parse_batch_with_times(FRAMES, 1_795_000_000.0)
    known = known_times(records, times)
    kept = records[::-1]  # a filter may reorder and drop
    assert event_times(kept, known) == times[::-1]


def test_a_wrong_known_epoch_would_show() -> None:
    """The lookup is by text, so a stale table would be visible: this guards the test above
    from passing whatever ``event_times`` returned."""
    records = [{"time": "2026-11-29T21:00:01Z"}]
    assert event_times(records, {"2026-11-29T21:00:01Z": 1.0}) == [1.0]


def _chain(*raws: dict[str, Any]) -> FilterChain:
    """The python filter editing times, or the filters given."""
    pairs: list[tuple[FilterConfig, FilterContext]] = []
    for index, raw in enumerate(raws or [{"type": "python", "function": f"{__name__}:edit_times"}]):
        config: FilterConfig = msgspec.convert(
            raw, filter_types()[raw["type"]][0], dec_hook=config_dec_hook
        )
        metrics = Registry().component(f"f{index}", raw["type"])
        pairs.append((config, FilterContext(name=f"f{index}", logger=LOG, metrics=metrics)))
    return FilterChain(pairs)


TYPICAL = (
    {"type": "grep", "exclude": [["message", "^drop"]]},
    {"type": "modify", "rules": [["set", "cluster", "prod"], ["rename", "pid", "process"]]},
    {"type": "audit"},
)
"""Filters that may not change `time`: the sink reuses the parser's epochs."""


def edit_times(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The python filter the sink test runs."""
    return _edited(records)


@pytest.mark.parametrize(
    ("tag", "filters", "frames"),
    [
        ("syslog", (), FRAMES),
        ("app.${ident}", (), FRAMES),
        # Drops (grep), re-tagged records (audit), and the input list itself: each its time.
        ("syslog", TYPICAL, None),
        ("app.${ident}", TYPICAL, None),
        ("syslog", TYPICAL[1:], None),  # nothing dropped: the input list comes out
    ],
)
def test_sink_buffers_each_records_time_after_the_chain(
    tag: str, filters: tuple[dict[str, Any], ...], frames: list[bytes] | None, tmp_path: Path
) -> None:
    if frames is None:
        frames = [
            f"<{pri}>1 2026-11-29T21:00:{i:02d}.{i}Z node-a {app} {i} - - {text}".encode()
            for i, (pri, app, text) in enumerate(
                [(30, "web", "drop this"), (30, "web", "keep this")] * 5
                + [(38, "sshd", "Accepted password for bob from 10.0.0.9 port 22 ssh2")] * 3
                + [(30, "web", "drop that"), (30, "sudo", "x"), (30, "web", "keep")]
            )
        ]
        frames.insert(4, b"not syslog at all")  # stamped when it arrived
    registry = Registry()
    buffer = MemoryBuffer(
        BufferConfig(type="memory"), str(tmp_path), registry.component("buffer", "memory"), LOG
    )
    router = Router([("out", TagMatcher("*"))])
    store = Store(buffer, router, registry.component("router", "router"))
    sink = IngestSink(
        SyslogInputConfig(tag=tag, mode="tcp", listen="127.0.0.1:5514"),
        buffer,
        _chain(*filters),
        store,
        registry.component("in", "syslog"),
    )

    async def scenario() -> list[tuple[dict[str, Any], float]]:
        await buffer.open(router.routes)
        before = time.time()
        assert sink.submit(list(frames))
        after = time.time()
        buffer.seal_due(math.inf)
        pairs: list[tuple[dict[str, Any], float]] = []
        while buffer.pending("out"):
            chunk = await buffer.take("out")
            lines = [msgspec.json.decode(line) for line in chunk.data().splitlines()]
            pairs.extend(zip(lines, chunk.times(), strict=True))
            buffer.ack(chunk, "out")
        await buffer.close()
        for record, epoch in pairs:
            stamp = record.get("time")
            parsed = rfc3339_to_epoch(stamp) if isinstance(stamp, str) else math.nan
            # A record without a usable time is stored at the time it arrived.
            assert epoch == parsed if parsed == parsed else before <= epoch <= after, record
        return pairs

    pairs = asyncio.run(scenario())
    if filters:
        # 6 dropped by grep, 3 audit copies; the check that matters ran per record above.
        assert len(pairs) == len(frames) - (6 if filters[0]["type"] == "grep" else 0) + 3
        assert sum("audit" in record for record, _ in pairs) == 6
        return
    by_message = {record["message"]: epoch for record, epoch in pairs}
    assert len(pairs) == len(FRAMES)
    assert by_message["plain line"] == rfc3339_to_epoch("2026-11-29T21:00:01.25Z")
    assert by_message["set my time"] == rfc3339_to_epoch("2030-01-01T00:00:00.5Z")


def _times(
    chain: FilterChain, records: list[dict[str, Any]], times: list[float]
) -> list[TimedBatch]:
    return chain.process_with_times("syslog", records, times)


def test_the_parsers_times_come_out_as_they_are_when_filters_keep_the_list() -> None:
    records, times = SyslogParser().parse_batch_with_times(FRAMES, 1_795_000_000.0)
    ((_, out, out_times),) = _times(_chain(*TYPICAL[1:]), records, times)  # nothing marked
    assert out is records and out_times is times
    ((_, out, out_times),) = _times(_chain(), records, times)  # python: edits `time` in place
    assert out is records and out_times is not times
    assert out_times[0] == times[0]
    assert out_times[1] == rfc3339_to_epoch("2030-01-01T00:00:00.5Z")
    assert [math.isnan(t) for t in out_times[2:5]] == [True, True, True]


def test_times_follow_keep_masks() -> None:
    records, times = SyslogParser().parse_batch_with_times(FRAMES * 3, 1_795_000_000.0)
    drop_plain = {"type": "grep", "exclude": [["message", "^plain"]]}
    drop_set = {"type": "grep", "exclude": [["message", "^set"]]}
    ((_, out, out_times),) = _times(_chain(drop_plain, drop_set), records, times)
    kept = [i for i, r in enumerate(records) if r["message"] not in ("plain line", "set my time")]
    assert out == [records[i] for i in kept]
    assert out_times == [times[i] for i in kept]


def test_grep_says_which_records_to_keep() -> None:
    records = [{"message": "drop me"}, {"message": "keep me"}, {"message": "drop too"}]
    grep = _chain(TYPICAL[0]).filters[0]
    assert grep.keep(records) == [False, True, False]  # type: ignore[attr-defined]
    assert _chain(TYPICAL[0]).process("syslog", records) == [("syslog", [records[1]])]


PYTHON_EDITS_TIMES = {"type": "python", "function": f"{__name__}:edit_times"}


SSH_LOGIN = (
    b"<38>1 2026-11-29T21:00:06Z node-a sshd 10 - - Accepted password for bob from 10.0.0.9 "
    b"port 22 ssh2"
)


@pytest.mark.parametrize(
    "filters",
    [
        TYPICAL,
        ({"type": "modify", "rules": [["set", "time", "2030-01-01T00:00:00Z"]]},),
        ({"type": "modify", "rules": [["remove_regex", "^ti"]]},),
        ({"type": "audit", "field": "time"},),
        ({"type": "grep", "exclude": [["message", "^plain"]]}, PYTHON_EDITS_TIMES),
        (
            {"type": "throttle", "rate": 4},
            {"type": "rewrite_tag", "rules": [["ident", "web", "y", True]]},
            PYTHON_EDITS_TIMES,
        ),
    ],
)
def test_times_after_any_chain_are_those_of_the_texts(filters: tuple[dict[str, Any]]) -> None:
    """Whatever the filters did to ``time`` (set, removed, replaced it, or left it alone while
    dropping, re-tagging and copying records), each batch's times are its records' own."""
    frames = [*FRAMES, SSH_LOGIN] * 3
    records, times = SyslogParser().parse_batch_with_times(frames, 1_795_000_000.0)
    out = _times(_chain(*filters), records, times)
    assert out and sum(len(batch) for _, batch, _ in out) >= 4
    for _, batch, batch_times in out:
        assert _same(batch_times, event_times(batch))


def test_times_after_a_filter_that_edits_and_then_raises() -> None:
    """A filter that breaks its contract after editing ``time`` in place: its batch passes on
    as it is, and its times are still its records' own."""
    chain = _chain({"type": "modify", "rules": [["set", "cluster", "prod"]]})

    def edit_then_raise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _edited(records)
        raise RuntimeError("after the edits")

    chain.filters[0].apply = edit_then_raise  # type: ignore[attr-defined]
    records, times = SyslogParser().parse_batch_with_times(FRAMES, 1_795_000_000.0)
    ((_, out, out_times),) = _times(chain, records, times)
    assert out is records and _same(out_times, event_times(out))
    assert out_times[1] == rfc3339_to_epoch("2030-01-01T00:00:00.5Z")
