"""The tail input: follows files matched by globs and hands their lines to the pipeline.

One task polls: every ``poll_interval`` each open file is ``fstat``-ed and what it grew by is
read in one ``pread`` (at most ``read_bytes``), parsed as one batch (``parsers.container``) and
submitted; every ``refresh_interval`` the globs are scanned again for new, rotated and removed
files. The positions file is replaced after every round that read something, once the buffer
has committed it, so a crash reads at most that round again. While the buffer is full nothing
is read: the files are the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from agent.fields import compile_template, split_path
from agent.inputs.base import Input, InputContext
from agent.inputs.tail.config import TailInputConfig
from agent.inputs.tail.discovery import Discovery, find_compressed, find_moved, path_info
from agent.inputs.tail.positions import FileKey, Position, PositionStore
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
        self._discovery = Discovery(config.paths, config.exclude)
        self._positions = PositionStore(context.data_dir, context.name, context.logger)
        self._files: dict[FileKey, TailedFile] = {}
        self._ignored: dict[FileKey, int] = {}
        """Files skipped by ignore_older -> their size then (read from there if they grow)."""
        self._render_tag = compile_template(config.tag)
        self._tag_uses_stream = "${stream}" in config.tag
        self._path_key = split_path(config.path_key)[0] if config.path_key else None
        self._read_bytes = int(config.read_bytes)
        self._max_line = int(config.max_line_bytes)
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._dirty = False
        self._open = 0
        self._warned: set[str] = set()

    # --------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        stored = self._positions.load()
        self._restore(stored, at_end=not self._positions.existed and not self.config.read_from_head)
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
        for tailed in self._files.values():
            tailed.close()
        self._open = 0

    @property
    def ready(self) -> bool:
        return self._running

    def describe(self) -> str:
        return f"files {', '.join(self.config.paths)}"

    # --------------------------------------------------------------------------- files

    def _new_file(self, key: FileKey, path: str, offset: int) -> TailedFile:
        target = os.path.realpath(path)
        parser = ContainerLogParser(self.config.format, self._max_line)
        tailed = TailedFile(
            key=key,
            path=path,
            info=path_info(path, target if target != path else None),
            parser=parser,
            offset=offset,
            safe=offset,
            idle_since=time.monotonic(),
            target=target,
        )
        self._files[key] = tailed
        return tailed

    def _restore(self, stored: dict[FileKey, Position], at_end: bool) -> None:
        """The first scan: files found resume at their stored positions (or start at their
        ends on the very first start without read_from_head); stored files that the globs no
        longer reach are looked for beside their old path (rotated while we were down) and
        read first; those gone are counted as lost."""
        found = self._discovery.scan()
        groups = _group(found)
        wall = time.time()
        for key, paths in groups.items():
            st = found[paths[0]]
            position = stored.pop(key, None)
            if position is None and self._too_old(key, st.st_mtime, st.st_size, wall):
                continue
            tailed = self._new_file(key, paths[0], 0)
            tailed.paths = paths
            tailed.size = st.st_size
            if position is None:
                if at_end:
                    tailed.offset = tailed.safe = st.st_size
                continue
            if self._open >= self.config.max_open_files:
                # opened when a slot is free; its head is checked then (_resume)
                tailed.offset = tailed.safe = min(position.offset, st.st_size)
                tailed.restored = position
                continue
            if not self._open_file(tailed):
                stored[key] = position
                del self._files[key]
                continue
            self._resume(tailed, position)
        now = time.monotonic()
        for key, position in stored.items():
            moved = find_moved(position.target or position.path, key)
            if moved is None:
                self._lost(position, "removed while the agent was down")
                continue
            tailed = self._new_file(key, moved, position.offset)
            tailed.info = path_info(position.path, os.path.realpath(moved))
            tailed.path = position.path
            tailed.paths = [position.path]
            if not self._open_moved(tailed, moved) or not tailed.same_head(position):
                tailed.close()
                del self._files[key]
                self._lost(position, "removed while the agent was down")
                continue
            tailed.rotated_at = now
            self._log.info(
                "%s: %s was rotated while the agent was down: reading its rest (%s) first",
                self.context.name,
                position.path,
                moved,
            )
            for other in self._files.values():
                if other is not tailed and position.path in other.paths:
                    other.after = tailed
        self._fill_slots()

    def _resume(self, tailed: TailedFile, position: Position) -> None:
        """Continue an opened file at its stored position, unless it is not the file that was
        stored (a recycled inode number: then it is new) or it shrank (read from its start)."""
        tailed.restored = None
        if not tailed.same_head(position):
            self._lost(position, "its inode now holds another file")
            tailed.offset = tailed.safe = 0
        elif tailed.size >= position.offset:
            tailed.offset = tailed.safe = position.offset
        else:
            tailed.offset = tailed.safe = 0

    def _too_old(self, key: FileKey, mtime: float, size: int, wall: float) -> bool:
        older = self.config.ignore_older
        if older is None or mtime >= wall - older:
            return False
        self._ignored[key] = size
        return True

    def _open_file(self, tailed: TailedFile) -> bool:
        for path in (tailed.path, *tailed.paths):
            tailed.path, original = path, tailed.path
            if tailed.open():
                self._open += 1
                return True
            tailed.path = original
        return False

    def _open_moved(self, tailed: TailedFile, moved: str) -> bool:
        """Open a rotated file under its new name, keeping the old one for path_key."""
        original = tailed.path
        tailed.path = moved
        opened = tailed.open()
        tailed.path = original
        if opened:
            self._open += 1
        return opened

    def _lost(self, position: Position, why: str) -> None:
        """Count the bytes of a file that went before it was read to its end: exactly when its
        gzipped copy is there (kubelet and logrotate compress rotated files), else what we saw
        of it (a lower bound)."""
        lost = max(0, position.size - position.offset)
        where = "at least"
        compressed = find_compressed(
            position.target or position.path, position.head, position.head_len
        )
        if compressed is not None:
            lost = max(0, compressed[1] - position.offset)
            where = f"compressed into {compressed[0]}:"
        if lost:
            self._metrics.inc("input_lost_bytes_total", lost)
        self._log.warning(
            "%s: %s %s before it was read to its end: %s %d bytes lost",
            self.context.name,
            position.path,
            why,
            where,
            lost,
        )

    def _scan(self) -> None:
        found = self._discovery.scan()
        for path, why in self._discovery.errors.items():
            if path not in self._warned and len(self._warned) < 1000:
                self._warned.add(path)
                self._log.warning("%s: cannot follow %s: %s", self.context.name, path, why)
        self._discovery.errors.clear()
        groups = _group(found)
        now = time.monotonic()
        wall = time.time()
        for key, tailed in list(self._files.items()):
            if key in groups or tailed.rotated_at is not None:
                continue
            tailed.rotated_at = now
            self._metrics.inc("input_rotations_total")
            if tailed.fd is None:  # waiting for a slot when it went: find it, or count it
                moved = find_moved(tailed.target or tailed.path, key)
                if moved is None or not self._open_moved(tailed, moved):
                    self._lost(tailed.position(), "was removed")
                    tailed.closed = True
                    del self._files[key]
                    self._dirty = True
        for key, paths in groups.items():
            st = found[paths[0]]
            known = self._files.get(key)
            if known is not None:
                tailed = known
            else:
                offset = 0
                if key in self._ignored:
                    if st.st_mtime < wall - (self.config.ignore_older or 0):
                        continue
                    offset = min(self._ignored.pop(key), st.st_size)
                elif self._too_old(key, st.st_mtime, st.st_size, wall):
                    continue
                tailed = self._new_file(key, paths[0], offset)
                # A rotated file that held one of these paths is read to its end first.
                for other in self._files.values():
                    if (
                        other.rotated_at is not None
                        and not other.closed
                        and any(path in other.paths for path in paths)
                    ):
                        tailed.after = other
                self._dirty = True
            tailed.paths = paths
            if tailed.fd is None:
                tailed.size = st.st_size
            if tailed.rotated_at is not None:
                tailed.rotated_at = None  # a glob reaches it again
        for tailed in list(self._files.values()):
            if tailed.fd is None or tailed.closed or tailed.size == tailed.scanned_size:
                continue
            tailed.scanned_size = tailed.size
            try:
                if tailed.head_changed():
                    self._truncated(tailed)
            except OSError as exc:
                self._warn_once(tailed.path, f"cannot read: {exc}")
        if self._ignored:
            for key in [key for key in self._ignored if key not in groups]:
                del self._ignored[key]
        self._fill_slots()

    def _fill_slots(self) -> None:
        """Open waiting files while fewer than max_open_files are open; when files wait and
        every slot is taken, close idle files (caught up, nothing held) to take turns."""
        cap = self.config.max_open_files
        waiting = [f for f in self._files.values() if f.fd is None and not f.closed]
        if not waiting:
            self._metrics.set("input_files_open", self._open)
            return
        waiting.sort(key=lambda f: f.size <= f.offset)  # files with lines to read first
        if self._open + len(waiting) > cap:
            now = time.monotonic()
            idle = [
                f
                for f in self._files.values()
                if f.fd is not None
                and f.rotated_at is None
                and f.offset == f.safe
                and f.offset >= f.size
                and now - f.idle_since >= self.config.refresh_interval
            ]
            idle.sort(key=lambda f: f.idle_since)
            for tailed in idle[: max(0, self._open + len(waiting) - cap)]:
                tailed.close()
                self._open -= 1
        for tailed in waiting:
            if self._open >= cap:
                break
            if self._open_file(tailed):
                tailed.idle_since = time.monotonic()
                if tailed.restored is not None:
                    self._resume(tailed, tailed.restored)
        self._metrics.set("input_files_open", self._open)

    # --------------------------------------------------------------------------- reading

    async def _run(self) -> None:
        config = self.config
        next_scan = time.monotonic() + config.refresh_interval
        while True:
            try:
                progressed = await self._round()
                await self._save()
                if time.monotonic() >= next_scan:
                    self._scan()
                    next_scan = time.monotonic() + config.refresh_interval
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s: error while following files", self.context.name)
                progressed = False
            await asyncio.sleep(0 if progressed else config.poll_interval)

    async def _round(self) -> bool:
        """One pass over the open files; True if any gave lines."""
        progressed = False
        now = time.monotonic()
        wall = time.time()
        sink = self._sink
        read_bytes = self._read_bytes
        max_line = self._max_line
        for tailed in list(self._files.values()):
            if tailed.fd is None or tailed.closed:
                continue
            if tailed.after is not None:
                if not tailed.after.closed:
                    continue
                tailed.after = None
            try:
                size = tailed.stat_size()
            except OSError as exc:
                self._warn_once(tailed.path, f"cannot stat: {exc}")
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
                    self._warn_once(tailed.path, f"cannot read: {exc}")
                    continue
                if skipped:
                    self._metrics.inc("input_discarded_bytes_total", skipped)
                    self._metrics.inc("input_bytes_total", skipped)
                if lines:
                    if self._deliver(tailed, lines, end, wall):
                        progressed = True
                        tailed.idle_since = now
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

    def _warn_once(self, path: str, why: str) -> None:
        if path not in self._warned and len(self._warned) < 1000:
            self._warned.add(path)
            self._log.warning("%s: %s: %s", self.context.name, path, why)

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
        tailed.close()
        self._open -= 1
        tailed.closed = True
        del self._files[tailed.key]
        self._dirty = True
        self._fill_slots()

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
                copy = kubernetes.copy
                for record in records:
                    record["kubernetes"] = copy()
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
        if not self._dirty:
            return
        await self._sink.commit()
        self._dirty = False
        positions = [f.position() for f in self._files.values() if not f.closed]
        try:
            self._positions.save(positions)
        except OSError as exc:
            self._dirty = True
            self._warn_once(self._positions.path, f"cannot store positions: {exc}")


def _group(found: dict[str, os.stat_result]) -> dict[FileKey, list[str]]:
    """Paths by the file they lead to: one file reached through two globs is read once."""
    groups: dict[FileKey, list[str]] = {}
    for path, st in found.items():
        groups.setdefault((st.st_dev, st.st_ino), []).append(path)
    return groups
