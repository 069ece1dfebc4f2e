"""From an input's frames to buffered lines: parse, flag, tag, filter, route check, encode, append.

All of it runs synchronously on the batch an input read, with no per-record coroutine, log line
or exception: this is the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from agent.buffer.base import Buffer
from agent.fields import compile_template, has_placeholders
from agent.filters.chain import FilterChain, TimedBatch
from agent.filters.times import event_times
from agent.inputs.base import InputConfig
from agent.metrics import ComponentMetrics
from agent.router import Router
from parsers.syslog import SyslogParser

Record = dict[str, Any]
Batch = tuple[str, list[Record]]
log = logging.getLogger("agent.ingest")
_NAN = float("nan")
WRITE_RETRY_SECONDS = 1.0
HOLD_BYTES = 32 * 1024 * 1024
"""Per input, what a reload keeps in memory while the pipeline behind the input is replaced."""


class Store:
    """Encodes records once and appends them to the buffer, per tag. Records whose tag no output
    takes are counted and dropped here, with one warning per tag."""

    def __init__(self, buffer: Buffer, router: Router, metrics: ComponentMetrics) -> None:
        self._buffer = buffer
        self._router = router
        self._metrics = metrics
        self._encode_lines = msgspec.json.Encoder().encode_lines
        self._warned: set[str] = set()
        self.write_error: str | None = None
        """The last error writing to the buffer (a full or failing disk), while it lasts."""
        self.retry_at = 0.0
        """monotonic time before which inputs should not submit again after a write error."""
        self._error_logged_at = -math.inf

    def put(self, batches: list[Batch]) -> None:
        """Batches whose event times are not known (records a filter held back): each from
        its record's ``time`` text."""
        for tag, records in batches:
            if records:
                self.put_with_times(tag, records, None)

    def put_timed(self, batches: list[TimedBatch]) -> None:
        """What ``FilterChain.process_with_times`` returned."""
        for tag, records, times in batches:
            self.put_with_times(tag, records, times)

    def put_with_times(self, tag: str, records: list[Record], times: list[float] | None) -> None:
        """``times``: each record's event time as the parser computed it, or None to compute
        it from ``record["time"]``."""
        if not records:
            return
        if not self._router.routes(tag):
            self._metrics.inc("router_dropped_records_total", len(records), reason="no_route")
            if tag not in self._warned and len(self._warned) < 1000:
                self._warned.add(tag)
                log.warning("no output matches tag %r: its records are dropped (counted)", tag)
            return
        if times is None:
            times = event_times(records)
        total = sum(times)  # NaN if any is: one C loop instead of a test per record
        if total != total:  # a filter removed or broke `time`
            now = time.time()
            times = [now if t != t else t for t in times]
        # One encoder call for the batch: NDJSON as the buffer stores it.
        data = self._encode_lines(records)
        try:
            self._buffer.append_ndjson(tag, data, len(records), times)
        except OSError as exc:
            self._write_failed(exc)
            raise
        if self.write_error is not None:
            log.warning("buffer writable again (the last error was: %s)", self.write_error)
            self.write_error = None

    def _write_failed(self, exc: OSError) -> None:
        """A full or failing disk: inputs hold back for a second (streams keep their data and
        retry, datagrams count the drop), /readyz says why, and the log says so every 10 s."""
        now = time.monotonic()
        self.write_error = f"{exc.strerror or exc} ({exc.filename or 'buffer'})"
        self.retry_at = now + WRITE_RETRY_SECONDS
        if now - self._error_logged_at >= 10.0:
            self._error_logged_at = now
            log.error("cannot write to the buffer, inputs hold back: %s", self.write_error)


class IngestSink:
    """The ``FrameSink`` an input submits to."""

    def __init__(
        self,
        config: Any,
        buffer: Buffer,
        chain: FilterChain | None,
        store: Store,
        metrics: ComponentMetrics,
    ) -> None:
        # Syslog inputs hand over frames that the sink parses; an input that parses its own
        # records (tail: CRI, Docker, raw lines) has a config of another shape and calls
        # ``submit_records``.
        self._parser: SyslogParser | None = None
        if isinstance(config, InputConfig):
            self._parser = SyslogParser(config.format, config.timezone, config.tag_pattern)
        self._buffer = buffer
        self._chain = chain
        self._store = store
        self._metrics = metrics
        self._source_key = getattr(config, "source_key", None)
        self._tag = config.tag
        self._tag_template = compile_template(config.tag) if has_placeholders(config.tag) else None
        # Datagrams cannot be asked to wait: what the buffer cannot take from them is lost.
        self._datagram = getattr(config, "mode", "") in ("udp", "unix_dgram")
        self._holding: list[tuple[list[bytes], str | None, Sequence[int]]] | None = None
        """While a reload swaps the pipeline behind this sink: what was submitted meanwhile."""
        self._held_bytes = 0
        self._released: asyncio.Event | None = None
        self._rebound: asyncio.Event | None = None

    # reload -------------------------------------------------------------------------------

    def hold(self) -> None:
        """A reload begins: keep what is submitted from now on (up to ``HOLD_BYTES``; over
        that stream inputs wait, datagrams are counted as dropped) until ``release``. The input
        behind this sink keeps its sockets and connections throughout."""
        if self._holding is None:
            self._holding = []
            self._held_bytes = 0
            self._released = asyncio.Event()
            if self._rebound is not None:
                self._rebound.set()  # a wait_room on the old buffer must look again

    def rebind(self, buffer: Buffer, chain: FilterChain | None, store: Store) -> None:
        """The new pipeline's buffer, filters and store (an input kept across a reload)."""
        self._buffer = buffer
        self._chain = chain
        self._store = store

    def release(self) -> None:
        """Submit what was held, in order, to the (new) pipeline and resume."""
        holding, self._holding = self._holding, None
        released, self._released = self._released, None
        for frames, source, truncated in holding or ():
            # Taken even over max_bytes (by at most HOLD_BYTES): the input was told they were.
            try:
                self._submit(frames, source, truncated)
            except OSError:
                reason = "buffer_error"
                self._metrics.inc("input_dropped_records_total", len(frames), reason=reason)
                continue
            self._metrics.inc("input_records_total", len(frames))
        self._held_bytes = 0
        if released is not None:
            released.set()

    # frames ------------------------------------------------------------------------------

    def submit(
        self, frames: list[bytes], source: str | None = None, truncated: Sequence[int] = ()
    ) -> bool:
        if not frames:
            return True
        if self._holding is not None:
            if self._held_bytes >= HOLD_BYTES:
                reason = "reloading"
                self._metrics.inc("input_dropped_records_total", len(frames), reason=reason)
                return False
            self._holding.append((frames, source, truncated))
            self._held_bytes += sum(map(len, frames))
            return True
        if not self._buffer.has_room():
            self._metrics.inc("input_dropped_records_total", len(frames), reason="buffer_full")
            return False
        try:
            self._submit(frames, source, truncated)
        except OSError:
            if self._datagram:
                reason = "buffer_error"
                self._metrics.inc("input_dropped_records_total", len(frames), reason=reason)
            else:
                self._metrics.inc("input_retried_records_total", len(frames), reason="buffer_error")
            return False
        self._metrics.inc("input_records_total", len(frames))
        return True

    def submit_records(self, tag: str, records: list[Record], times: list[float]) -> bool:
        """Filter, encode and buffer ``records`` already parsed by the input (``times``: each
        one's event time, exactly ``rfc3339_to_epoch(record["time"])``), under ``tag``, which
        the input rendered. Returns False, having counted nothing as dropped, when the buffer
        was full or failed: the input keeps its data and tries again after ``wait_room``."""
        if not records:
            return True
        if not self._buffer.has_room():
            return False
        try:
            if self._chain is None:
                self._store.put_with_times(tag, records, times)
            else:
                self._store.put_timed(self._chain.process_with_times(tag, records, times))
        except OSError:
            self._metrics.inc("input_retried_records_total", len(records), reason="buffer_error")
            return False
        self._metrics.inc("input_records_total", len(records))
        return True

    def _submit(self, frames: list[bytes], source: str | None, truncated: Sequence[int]) -> None:
        parser = self._parser
        if parser is None:
            raise TypeError("this input parses its own records: call submit_records")
        errors_before = parser.parse_errors
        records, times = parser.parse_batch_with_times(frames, time.time())
        if parser.parse_errors != errors_before:
            self._metrics.inc("parse_errors_total", parser.parse_errors - errors_before)
        for index in truncated:
            records[index]["truncated"] = True
        if self._source_key is not None and source is not None:
            key = self._source_key
            for record in records:
                record[key] = source
            if key == "time":  # the parser's epochs no longer describe `time`
                times = [_NAN] * len(records)
        if self._tag_template is None:
            if self._chain is None:
                self._store.put_with_times(self._tag, records, times)
            else:
                self._store.put_timed(self._chain.process_with_times(self._tag, records, times))
            return
        render = self._tag_template
        grouped: dict[str, tuple[list[Record], list[float]]] = {}
        for record, epoch in zip(records, times, strict=True):
            group = grouped.get(tag := render(record))
            if group is None:
                group = grouped[tag] = ([], [])
            group[0].append(record)
            group[1].append(epoch)
        if self._chain is None:
            for tag, (recs, recs_times) in grouped.items():
                self._store.put_with_times(tag, recs, recs_times)
        else:
            chain = self._chain
            for tag, (recs, recs_times) in grouped.items():
                self._store.put_timed(chain.process_with_times(tag, recs, recs_times))

    def has_room(self) -> bool:
        if self._holding is not None:
            return self._held_bytes < HOLD_BYTES
        return self._buffer.has_room() and time.monotonic() >= self._store.retry_at

    async def wait_room(self) -> None:
        while True:
            if self._released is not None:
                await self._released.wait()
                continue
            delay = self._store.retry_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._buffer.has_room():
                return
            # The buffer's room, or a reload that replaces the buffer (whose room then counts).
            rebound = self._rebound = self._rebound or asyncio.Event()
            room = asyncio.ensure_future(self._buffer.wait_room())
            swapped = asyncio.ensure_future(rebound.wait())
            try:
                await asyncio.wait((room, swapped), return_when=asyncio.FIRST_COMPLETED)
            finally:
                room.cancel()
                swapped.cancel()
            if rebound.is_set():
                self._rebound = None
            elif self._released is None:
                return

    async def commit(self) -> None:
        while self._released is not None:  # a reload: commit in the buffer the frames went to
            await self._released.wait()
        await self._buffer.commit()
