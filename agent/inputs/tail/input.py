"""The tail input: follows files matched by globs and hands their lines to the pipeline.

One task polls: every ``poll_interval`` each open file is ``fstat``-ed and what it grew by is
read in one ``pread`` (at most ``read_bytes``), parsed as one batch (``parsers.container``) and
submitted, with a turn of the event loop after each batch; every ``refresh_interval`` the globs
are scanned again for new, rotated and removed files, and what a scan finds is read at once. The
positions file is replaced after every round that read something, once the buffer has committed
it, so a crash reads at most that round again. While the buffer is full nothing is read: the
files are the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from agent.fields import compile_template, split_path
from agent.inputs.base import Input, InputContext
from agent.inputs.tail.config import TailInputConfig
from agent.inputs.tail.files import FileSet
from agent.inputs.tail.positions import PositionStore
from agent.inputs.tail.reader import TailedFile
from parsers.container import ContainerLogParser

Record = dict[str, Any]


class TailInput(Input):
    def __init__(self, config: TailInputConfig, context: InputContext) -> None:
        super().__init__(config, context)
        self.config: TailInputConfig = config
        self._log = context.logger
        self._metrics = context.metrics
        self._sink = context.sink
        self._positions = PositionStore(context.data_dir, context.name, context.logger)
        self._set = FileSet(config, context.name, context.logger, context.metrics)
        self._render_tag = compile_template(config.tag)
        self._tag_uses_stream = "${stream}" in config.tag
        self._path_key = split_path(config.path_key)[0] if config.path_key else None
        self._read_bytes = int(config.read_bytes)
        self._max_line = int(config.max_line_bytes)
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._dirty = False

    # --------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        stored = self._positions.load()
        self._set.restore(
            stored, at_end=not self._positions.existed and not self.config.read_from_head
        )
        self._dirty = True
        self._running = True
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"tail {self.context.name}"
        )

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._save()
        self._set.close_all()

    @property
    def ready(self) -> bool:
        return self._running

    def describe(self) -> str:
        return f"files {', '.join(self.config.paths)}"

    # --------------------------------------------------------------------------- reading

    async def _run(self) -> None:
        config = self.config
        next_scan = time.monotonic() + config.refresh_interval
        next_round = 0.0
        while True:
            try:
                if time.monotonic() >= next_round:
                    progressed = await self._round()
                    await self._save()
                    next_round = time.monotonic() + (0.0 if progressed else config.poll_interval)
                if time.monotonic() >= next_scan:
                    rewritten = self._set.scan()
                    for tailed in rewritten:
                        self._truncated(tailed)
                    next_scan = time.monotonic() + config.refresh_interval
                    # What the scan found (new files, files rewritten from their start) is
                    # read now, not a poll_interval later. ``changed`` was cleared by the last
                    # ``_save``: set now, it says the scan added or lost files.
                    if rewritten or self._set.changed:
                        next_round = 0.0
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s: error while following files", self.context.name)
                next_round = time.monotonic() + config.poll_interval
                next_scan = max(next_scan, next_round)
            # Wake for the next round or the next scan, whichever is due first: a
            # refresh_interval shorter than poll_interval is kept.
            await asyncio.sleep(max(0.0, min(next_round, next_scan) - time.monotonic()))

    async def _round(self) -> bool:
        """One pass over the open files; True if any gave lines."""
        progressed = False
        now = time.monotonic()
        wall = time.time()
        sink = self._sink
        read_bytes = self._read_bytes
        max_line = self._max_line
        for tailed in list(self._set.files.values()):
            if tailed.fd is None or tailed.closed:
                continue
            if tailed.after is not None:
                if not tailed.after.closed:
                    continue
                tailed.after = None
            try:
                size = tailed.stat_size()
            except OSError as exc:
                self._set.warn_once(tailed.path, f"cannot stat: {exc}")
                continue
            if size < tailed.offset:
                self._truncated(tailed)
            if size > tailed.offset and size != tailed.retry_size:
                if not sink.has_room():
                    await self._save()
                    self._metrics.inc("input_backpressure_pauses_total")
                    await sink.wait_room()
                    wall = time.time()
                try:
                    lines, end, skipped = tailed.read_lines(read_bytes, max_line)
                except OSError as exc:
                    self._set.warn_once(tailed.path, f"cannot read: {exc}")
                    continue
                if skipped:
                    self._metrics.inc("input_discarded_bytes_total", skipped)
                    self._metrics.inc("input_bytes_total", skipped)
                if lines:
                    if self._deliver(tailed, lines, end, wall):
                        progressed = True
                        tailed.idle_since = now
                        # A turn of the loop after every batch, as stream inputs take one after
                        # every read: the outputs' tasks need a few iterations per chunk, and a
                        # round over busy files (a batch each) would otherwise outrun them until
                        # sealed chunks spill past the buffer's resident budget and are read
                        # back from disk (docs/performance.md, "the tail input").
                        await asyncio.sleep(0)
                elif end > tailed.offset:
                    tailed.offset = end
                    if tailed.parser.pending_first_line() is None:
                        tailed.safe = end
                    self._dirty = True
            elif tailed.rotated_at is not None:
                waited = now - max(tailed.rotated_at, tailed.idle_since)
                if waited >= self.config.rotate_wait:
                    self._let_go(tailed, wall)
        return progressed

    def _truncated(self, tailed: TailedFile) -> None:
        """The file shrank under us (logrotate's copytruncate): read it again from its start;
        pieces of a partial line held from before are kept as a record of their own."""
        self._log.info(
            "%s: %s was truncated (at %d, now %d bytes): reading from its start",
            self.context.name,
            tailed.path,
            tailed.offset,
            tailed.size,
        )
        self._metrics.inc("input_truncations_total")
        if tailed.parser.pending_first_line() is not None:
            self._deliver(tailed, [], tailed.offset, time.time(), final=True)
        tailed.offset = tailed.safe = 0
        tailed.skipping = False
        tailed.retry_size = -1
        tailed.forget_head()
        self._dirty = True

    def _let_go(self, tailed: TailedFile, wall: float) -> None:
        """A rotated or deleted file read to its end: its last unterminated line and any
        partial line held become records, then it is closed and forgotten."""
        lines: list[bytes] = []
        end = tailed.offset
        if tailed.offset < tailed.size:
            rest = tailed.read_rest()
            if tailed.skipping:
                self._metrics.inc("input_discarded_bytes_total", len(rest))
            elif rest:
                lines.append(rest)
            end = tailed.offset + len(rest)
        if not self._deliver(tailed, lines, end, wall, final=True):
            return
        self._set.forget(tailed)

    def _deliver(
        self,
        tailed: TailedFile,
        lines: list[bytes],
        end: int,
        wall: float,
        final: bool = False,
    ) -> bool:
        """Parse ``lines`` (read from ``tailed.offset`` up to ``end``) and submit their
        records; on success move the offsets. If the buffer refused them, the file is read
        again from its safe offset with a fresh parser (duplicates rather than losses)."""
        parser = tailed.parser
        base_line = parser.lines_seen
        base_offset = tailed.offset
        errors, truncated, discarded = parser.parse_errors, parser.truncated, parser.discarded_bytes
        records, times = parser.parse_batch_with_times(lines, wall)
        if final:
            held, held_times = parser.flush()
            records += held
            times += held_times
        metrics = self._metrics
        if parser.parse_errors != errors:
            metrics.inc("parse_errors_total", parser.parse_errors - errors)
        if parser.truncated != truncated:
            metrics.inc("input_truncated_total", parser.truncated - truncated)
        if parser.discarded_bytes != discarded:
            metrics.inc("input_discarded_bytes_total", parser.discarded_bytes - discarded)
        if records and not self._submit(tailed, records, times):
            fresh = ContainerLogParser(self.config.format, self._max_line)
            fresh.detected = parser.detected
            tailed.parser = fresh
            tailed.offset = tailed.safe
            tailed.skipping = False
            tailed.retry_size = -1
            return False
        metrics.inc("input_bytes_total", end - base_offset)
        tailed.offset = end
        first = parser.pending_first_line()
        if first is None:
            tailed.safe = end
        elif first >= base_line:
            before = lines[: first - base_line]
            tailed.safe = base_offset + sum(map(len, before)) + len(before)
        self._dirty = True
        return True

    def _submit(self, tailed: TailedFile, records: list[Record], times: list[float]) -> bool:
        info = tailed.info
        if tailed.parser.detected != "raw":
            kubernetes = info.kubernetes
            if kubernetes is not None:
                # One object for all of a file's records: filters never change a nested value
                # in place (agent.filters.base), and records are encoded right after them.
                for record in records:
                    record["kubernetes"] = kubernetes
            if info.container_id is not None:  # as syslog records carry it (audit rules)
                container_id = info.container_id
                for record in records:
                    record["container_id"] = container_id
        if self._path_key is not None:
            key, path = self._path_key, tailed.path
            for record in records:
                record[key] = path
        sink = self._sink
        if not self._tag_uses_stream:
            return sink.submit_records(self._tag_of(tailed, None), records, times)
        grouped: dict[str | None, tuple[list[Record], list[float]]] = {}
        for record, epoch in zip(records, times, strict=True):
            group = grouped.get(stream := record.get("stream"))
            if group is None:
                group = grouped[stream] = ([], [])
            group[0].append(record)
            group[1].append(epoch)
        return all(
            sink.submit_records(self._tag_of(tailed, stream), recs, recs_times)
            for stream, (recs, recs_times) in grouped.items()
        )

    def _tag_of(self, tailed: TailedFile, stream: str | None) -> str:
        tag = tailed.tags.get(stream)
        if tag is None:
            kubernetes = tailed.info.kubernetes or {}
            fields: Record = {**kubernetes, "kubernetes": kubernetes, "path": tailed.path}
            if tailed.info.container_id is not None:
                fields["container_id"] = tailed.info.container_id
            if stream is not None:
                fields["stream"] = stream
            tag = tailed.tags[stream] = self._render_tag(fields)
        return tag

    async def _save(self) -> None:
        """Store the positions once everything submitted is committed to the buffer."""
        if not (self._dirty or self._set.changed):
            return
        await self._sink.commit()
        self._dirty = self._set.changed = False
        positions = [f.position() for f in self._set.files.values() if not f.closed]
        try:
            self._positions.save(positions)
        except OSError as exc:
            self._dirty = True
            self._set.warn_once(self._positions.path, f"cannot store positions: {exc}")
