"""``multiline``: join continuation lines (stack traces) into the record they continue.

Lines are grouped per stream (the tag plus ``stream_keys``, by default host, ident and pid). A
line matching ``start_pattern`` begins a new record; any other line continues the stream's
pending record. The pending record is released when the next start line arrives, when it would
pass ``max_lines``/``max_bytes`` (the line then starts a new record), or ``flush_timeout`` after
its first line, whichever comes first: ``flush(now)`` releases what timed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from agent.fields import set_field
from agent.filters.base import Batch, Filter, FilterConfig, FilterContext, Record
from agent.filters.common import as_text, compile_regex, make_getter, parse_path
from common.units import Duration, Size


class MultilineConfig(FilterConfig, tag_field="type", tag="multiline"):
    start_pattern: str
    """A line matching this regex starts a record; others continue the previous one."""
    key: str = "message"
    """Field path of the line."""
    stream_keys: list[str] = msgspec.field(default_factory=lambda: ["host", "ident", "pid"])
    """Fields that tell streams apart (the tag always does)."""
    flush_timeout: Duration = Duration(1.0)
    """A record is never held longer than this after its first line."""
    max_lines: int = 1000
    """Lines joined into one record at most; the next line begins a new record."""
    max_bytes: Size = Size(1024 * 1024)
    """Joined message size at most; a line that would pass it begins a new record."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_lines < 1:
            raise ValueError("max_lines must be at least 1")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")


class _Pending:
    __slots__ = ("lines", "record", "since", "size", "tag")

    def __init__(self, tag: str, record: Record, line: str, since: float) -> None:
        self.tag = tag
        self.record = record
        self.lines = [line]
        self.size = len(line)
        self.since = since


class MultilineFilter(Filter):
    counts_drops = False
    """Joined lines are not drops: the chain must not count in - out as dropped."""

    def __init__(self, config: MultilineConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self.clock: Callable[[], float] = time.monotonic
        self._start = compile_regex(config.start_pattern, "start_pattern").search
        self._key = parse_path(config.key, "key")
        self._line = make_getter(self._key)
        self._stream = [
            make_getter(parse_path(key, f"stream_keys[{i}]"))
            for i, key in enumerate(config.stream_keys)
        ]
        self._pending: dict[tuple[Any, ...], _Pending] = {}

    def _stream_of(self, tag: str, record: Record) -> tuple[Any, ...]:
        return (tag, *(as_text(getter(record)) for getter in self._stream))

    def _release(self, pending: _Pending) -> Record:
        record = pending.record
        if len(pending.lines) > 1:
            set_field(record, self._key, "\n".join(pending.lines))
            self.context.metrics.inc("filter_multiline_joined_lines_total", len(pending.lines) - 1)
        return record

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        now = self.clock()
        out: list[Record] = []
        starts = self._start
        config = self.config
        for record in records:
            line = self._line(record)
            if line.__class__ is not str:
                out.append(record)  # nothing to join: passes through as it is
                continue
            stream = self._stream_of(tag, record)
            pending = self._pending.get(stream)
            if (
                pending is not None
                and not starts(line)
                and len(pending.lines) < config.max_lines
                and pending.size + 1 + len(line) <= config.max_bytes
            ):
                pending.lines.append(line)
                pending.size += 1 + len(line)
                continue
            if pending is not None:
                # Popped, not overwritten: the dict stays ordered oldest first.
                del self._pending[stream]
                out.append(self._release(pending))
            self._pending[stream] = _Pending(tag, record, line, now)
        return [(tag, out)] if out else []

    def flush(self, now: float) -> list[Batch]:
        timeout = self.config.flush_timeout
        due = [s for s, p in self._pending.items() if now - p.since >= timeout]
        return self._emit(due)

    def close(self) -> list[Batch]:
        return self._emit(list(self._pending))

    def _emit(self, streams: list[tuple[Any, ...]]) -> list[Batch]:
        batches: dict[str, list[Record]] = {}
        for stream in streams:
            pending = self._pending.pop(stream)
            batches.setdefault(pending.tag, []).append(self._release(pending))
        return list(batches.items())
