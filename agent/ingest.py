"""From an input's frames to buffered lines: parse, flag, tag, filter, route check, encode, append.

All of it runs synchronously on the batch an input read, with no per-record coroutine, log line
or exception: this is the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from agent.buffer.base import Buffer
from agent.fields import compile_template, has_placeholders
from agent.filters.chain import FilterChain
from agent.inputs.base import InputConfig
from agent.metrics import ComponentMetrics
from agent.router import Router
from parsers.syslog import SyslogParser
from parsers.timeutil import rfc3339_to_epoch

Record = dict[str, Any]
Batch = tuple[str, list[Record]]
log = logging.getLogger("agent.ingest")
_NAN = float("nan")


class Store:
    """Encodes records once and appends them to the buffer, per tag. Records whose tag no output
    takes are counted and dropped here, with one warning per tag."""

    def __init__(self, buffer: Buffer, router: Router, metrics: ComponentMetrics) -> None:
        self._buffer = buffer
        self._router = router
        self._metrics = metrics
        self._encode = msgspec.json.Encoder().encode
        self._warned: set[str] = set()

    def put(self, batches: list[Batch]) -> None:
        encode = self._encode
        for tag, records in batches:
            if not records:
                continue
            if not self._router.routes(tag):
                self._metrics.inc("router_dropped_records_total", len(records), reason="no_route")
                if tag not in self._warned and len(self._warned) < 1000:
                    self._warned.add(tag)
                    log.warning("no output matches tag %r: its records are dropped (counted)", tag)
                continue
            lines = [encode(record) for record in records]
            times = [
                rfc3339_to_epoch(t) if isinstance(t := record.get("time"), str) else _NAN
                for record in records
            ]
            if _NAN in times or any(t != t for t in times):  # a filter removed or broke `time`
                now = time.time()
                times = [now if t != t else t for t in times]
            self._buffer.append(tag, lines, times)


class IngestSink:
    """The ``FrameSink`` an input submits to."""

    def __init__(
        self,
        config: InputConfig,
        buffer: Buffer,
        chain: FilterChain | None,
        store: Store,
        metrics: ComponentMetrics,
    ) -> None:
        self._parser = SyslogParser(config.format, config.timezone, config.tag_pattern)
        self._buffer = buffer
        self._chain = chain
        self._store = store
        self._metrics = metrics
        self._source_key = config.source_key
        self._tag = config.tag
        self._tag_template = compile_template(config.tag) if has_placeholders(config.tag) else None

    def submit(
        self, frames: list[bytes], source: str | None = None, truncated: Sequence[int] = ()
    ) -> bool:
        if not frames:
            return True
        if not self._buffer.has_room():
            self._metrics.inc("input_dropped_records_total", len(frames), reason="buffer_full")
            return False
        parser = self._parser
        errors_before = parser.parse_errors
        records = parser.parse_batch(frames, time.time())
        if parser.parse_errors != errors_before:
            self._metrics.inc("parse_errors_total", parser.parse_errors - errors_before)
        for index in truncated:
            records[index]["truncated"] = True
        if self._source_key is not None and source is not None:
            key = self._source_key
            for record in records:
                record[key] = source
        self._metrics.inc("input_records_total", len(records))

        batches: list[Batch]
        if self._tag_template is None:
            batches = [(self._tag, records)]
        else:
            render = self._tag_template
            grouped: dict[str, list[Record]] = {}
            for record in records:
                grouped.setdefault(render(record), []).append(record)
            batches = list(grouped.items())
        if self._chain is not None:
            batches = [out for tag, recs in batches for out in self._chain.process(tag, recs)]
        self._store.put(batches)
        return True

    def has_room(self) -> bool:
        return self._buffer.has_room()

    async def wait_room(self) -> None:
        await self._buffer.wait_room()

    async def commit(self) -> None:
        await self._buffer.commit()
