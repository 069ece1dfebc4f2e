"""The disk buffer: per-tag append-only chunk files of framed batches under ``data_dir/chunks``.

Layout::

    data_dir/buffer.lock                 flock: one agent per data_dir
    data_dir/chunks/<id>.<tag>.chunk     header + frames (see agent/buffer/chunk.py)
    data_dir/chunks/<id>.acks            outputs that acknowledged the chunk, one JSON string a line
    data_dir/corrupt/                    chunks with an unreadable header, cut-off tails
    data_dir/dead-letter/                <id>.<output>.ndjson + <id>.<output>.json (reason)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import time
from array import array

import msgspec

from agent.buffer.base import BufferConfig, Routes
from agent.buffer.chunk import (
    ACKS_SUFFIX,
    BufferChunk,
    ChunkIds,
    CorruptChunk,
    OpenChunk,
    chunk_file_name,
    decode_header,
    encode_header,
    frame_parts,
    parse_chunk_file_name,
    scan_frames,
    writev_all,
)
from agent.buffer.core import DEFAULT_RESIDENT_BYTES, ChunkBuffer
from outputs.base import Metrics

_fdatasync = getattr(os, "fdatasync", os.fsync)


class Recovered(msgspec.Struct):
    """What the start-up scan found (built in a worker thread, applied on the loop)."""

    chunks: list[tuple[BufferChunk, set[str]]]
    ids: list[str]
    truncated_bytes: int = 0
    truncated_chunks: int = 0
    corrupt_chunks: int = 0


class DiskBuffer(ChunkBuffer):
    location = "disk"

    def __init__(
        self,
        config: BufferConfig,
        data_dir: str,
        metrics: Metrics,
        logger: logging.Logger,
        resident_bytes: int = DEFAULT_RESIDENT_BYTES,
    ) -> None:
        super().__init__(config, data_dir, metrics, logger, resident_bytes)
        self.chunks_dir = os.path.join(data_dir, "chunks")
        self.corrupt_dir = os.path.join(data_dir, "corrupt")
        self._sync = config.sync
        self._lock_fd: int | None = None
        # sync = "batch": fds written since their last fsync, sealed fds waiting for their final
        # fsync before close (only the sync round closes them, so no fd is closed under a
        # concurrent fsync), and generations: appends counted vs. appends known durable.
        self._dirty: set[int] = set()
        self._to_close: list[int] = []
        self._dir_dirty = False
        self._appended = 0
        self._synced = 0
        self._sync_task: asyncio.Future[None] | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # ---------------------------------------------------------------------- recovery

    async def open(self, routes: Routes) -> None:
        self._routes = routes
        for directory in (self.chunks_dir, self.corrupt_dir, self.dead_letter_dir):
            os.makedirs(directory, exist_ok=True)
        self._lock()
        recovered = await asyncio.to_thread(self._scan)
        self._ids = ChunkIds(recovered.ids)
        if recovered.truncated_bytes:
            self.metrics.inc("buffer_truncated_bytes_total", recovered.truncated_bytes)
        if recovered.corrupt_chunks:
            self.metrics.inc("buffer_corrupt_chunks_total", recovered.corrupt_chunks)
        queued = records = size = 0
        for chunk, acked in recovered.chunks:
            self._bytes += chunk.size
            if self._enqueue(chunk, acked):
                queued += 1
                records += chunk.records
                size += chunk.size
        if queued:
            self.metrics.inc("buffer_recovered_chunks_total", queued)
            self.metrics.inc("buffer_recovered_records_total", records)
        self.logger.info(
            "buffer recovered %d chunks (%d records, %d bytes) from %s; %d truncated "
            "(%d bytes cut), %d corrupt moved to %s",
            queued, records, size, self.chunks_dir, recovered.truncated_chunks,
            recovered.truncated_bytes, recovered.corrupt_chunks, self.corrupt_dir,
        )
        self._update_gauges(force=True)

    def _lock(self) -> None:
        fd = os.open(os.path.join(self.data_dir, "buffer.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"data_dir {self.data_dir} is in use by another running agent"
            ) from None
        self._lock_fd = fd

    def _scan(self) -> Recovered:
        """Validate every chunk file, oldest first (blocking; runs in a thread)."""
        names = sorted(os.listdir(self.chunks_dir))
        result = Recovered(chunks=[], ids=[])
        with contextlib.suppress(OSError):
            for name in os.listdir(self.corrupt_dir):
                parsed = parse_chunk_file_name(name)
                if parsed:
                    result.ids.append(parsed[0])
        live: set[str] = set()
        for name in names:
            parsed = parse_chunk_file_name(name)
            if parsed is None:
                continue
            chunk_id = parsed[0]
            result.ids.append(chunk_id)
            path = os.path.join(self.chunks_dir, name)
            try:
                with open(path, "rb") as file:
                    content = file.read()
                if not content:
                    # Created, then the process died before its first write: holds nothing.
                    self.logger.info("removing empty chunk file %s", path)
                    self._unlink(path)
                    self._unlink(self._acks_path(chunk_id))
                    continue
                header, header_end = decode_header(content)
                if header.id != chunk_id:
                    raise CorruptChunk(f"header names chunk {header.id!r}")
            except (OSError, CorruptChunk) as exc:
                self.logger.error("chunk file %s is unreadable (%s): moved to %s",
                                  path, exc, self.corrupt_dir)
                self._move_aside(path, chunk_id)
                result.corrupt_chunks += 1
                continue
            scan = scan_frames(content, header_end, keep=False)
            if scan.error is not None:
                cut = len(content) - scan.valid_end
                self._save_tail(name, content, scan.valid_end)
                os.truncate(path, scan.valid_end)
                self.logger.warning(
                    "chunk file %s: %s; truncated %d bytes (kept %d records; the cut bytes "
                    "are in %s)", path, scan.error, cut, scan.records, self.corrupt_dir,
                )
                result.truncated_bytes += cut
                result.truncated_chunks += 1
            del content
            if not scan.records:
                self._unlink(path)
                self._unlink(self._acks_path(chunk_id))
                continue
            live.add(chunk_id)
            chunk = BufferChunk(
                header.id,
                header.tag,
                header.created,
                scan.records,
                scan.size,
                path=path,
                file_bytes=scan.valid_end,
            )
            result.chunks.append((chunk, self._read_acks(chunk_id)))
        for name in names:
            if name.endswith(ACKS_SUFFIX) and name[: -len(ACKS_SUFFIX)] not in live:
                self._unlink(os.path.join(self.chunks_dir, name))
        return result

    def _save_tail(self, name: str, content: bytes, offset: int) -> None:
        tail = os.path.join(self.corrupt_dir, f"{name}.tail-at-{offset}")
        try:
            with open(tail, "wb") as file:
                file.write(content[offset:])
        except OSError as exc:
            self.logger.warning("cannot save the cut tail of %s: %s", name, exc)

    def _move_aside(self, path: str, chunk_id: str) -> None:
        for source in (path, self._acks_path(chunk_id)):
            try:
                os.replace(source, os.path.join(self.corrupt_dir, os.path.basename(source)))
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.logger.error("cannot move %s to %s: %s", source, self.corrupt_dir, exc)

    def _acks_path(self, chunk_id: str) -> str:
        return os.path.join(self.chunks_dir, chunk_id + ACKS_SUFFIX)

    def _read_acks(self, chunk_id: str) -> set[str]:
        try:
            with open(self._acks_path(chunk_id), "rb") as file:
                content = file.read()
        except FileNotFoundError:
            return set()
        acked = set()
        for line in content.split(b"\n"):
            try:
                acked.add(msgspec.json.decode(line, type=str))
            except msgspec.DecodeError:
                continue  # an empty or torn last line
        return acked

    def _unlink(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.logger.error("cannot delete %s: %s", path, exc)

    # ------------------------------------------------------------------ storage hooks

    def _write_frame(self, chunk: OpenChunk, ndjson: bytes, times: array) -> None:
        # writev: the frame's prefix, times and NDJSON go out without being joined (a copy of
        # the whole batch) first.
        parts = frame_parts(ndjson, times)
        if chunk.fd is None:
            path = os.path.join(self.chunks_dir, chunk_file_name(chunk.id, chunk.tag))
            parts.insert(0, encode_header(chunk.id, chunk.tag, chunk.created))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            try:
                written = writev_all(fd, parts)
            except OSError:
                os.close(fd)
                self._unlink(path)
                raise
            chunk.fd, chunk.path, chunk.file_bytes = fd, path, written
            self._dir_dirty = self._sync != "none"
        else:
            fd = chunk.fd
            try:
                written = writev_all(fd, parts)
            except OSError:
                # Cut what part of the frame got written, and stop using this file.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, chunk.file_bytes)
                self._seal(chunk)
                raise
            chunk.file_bytes += written

    def _after_append(self, chunk: OpenChunk) -> None:
        fd = chunk.fd
        if fd is None:
            return
        if self._sync == "always":
            self._fsync_now(fd)
        elif self._sync == "batch":
            self._dirty.add(fd)
            self._appended += 1

    def _fsync_now(self, fd: int) -> None:
        start = time.perf_counter()
        _fdatasync(fd)
        if self._dir_dirty:
            self._fsync_dir()
            self._dir_dirty = False
        self.metrics.observe("buffer_fsync_seconds", time.perf_counter() - start)

    def _fsync_dir(self) -> None:
        fd = os.open(self.chunks_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _release_open(self, chunk: OpenChunk) -> None:
        fd, chunk.fd = chunk.fd, None
        if fd is None:
            return
        if self._sync == "batch" and (fd in self._dirty or self._sync_task is not None):
            self._to_close.append(fd)
            self._start_background_sync()
        else:
            os.close(fd)

    def _delete_files(self, chunk: BufferChunk) -> None:
        if chunk.path is not None:
            self._unlink(chunk.path)
        self._unlink(self._acks_path(chunk.id))

    def _persist_ack(self, chunk: BufferChunk, output: str) -> None:
        with open(self._acks_path(chunk.id), "ab") as file:
            file.write(msgspec.json.encode(output) + b"\n")

    def _quarantine_files(self, chunk: BufferChunk) -> None:
        if chunk.path is not None:
            self._move_aside(chunk.path, chunk.id)

    # --------------------------------------------------------------------------- sync

    async def commit(self) -> None:
        if self._sync != "batch":
            return
        target = self._appended
        while self._synced < target:
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync_round())
            # Every commit waiting meanwhile shares this round; shielded so a cancelled
            # committer does not cancel the fsync others wait for.
            await asyncio.shield(self._sync_task)

    def _start_background_sync(self) -> None:
        """A sealed chunk's fd waits for its fsync; make sure a round runs even if nobody
        commits (inputs that never call ``commit``)."""
        if self._sync_task is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._sync_inline()
            return
        self._sync_task = asyncio.ensure_future(self._sync_round())
        self._sync_task.add_done_callback(self._log_sync_failure)

    def _log_sync_failure(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.logger.error("buffer fsync failed: %s", task.exception())

    async def _sync_round(self) -> None:
        try:
            generation = self._appended
            fds = list(self._dirty)
            self._dirty.clear()
            closing, self._to_close = self._to_close, []
            sync_dir, self._dir_dirty = self._dir_dirty, False
            start = time.perf_counter()
            # One thread per file: concurrent fsyncs share one journal commit (ext4, xfs),
            # where fsyncing N files one after the other costs N commits.
            loop = asyncio.get_running_loop()
            pool = self._fsync_pool()
            jobs = [loop.run_in_executor(pool, _fdatasync, fd) for fd in fds]
            if sync_dir:
                jobs.append(loop.run_in_executor(pool, self._fsync_dir))
            results = await asyncio.gather(*jobs, return_exceptions=True)
            # Only now, with no fsync running on them, may the sealed files be closed.
            for fd in closing:
                os.close(fd)
            errors = [result for result in results if isinstance(result, BaseException)]
            if errors:
                self._dirty.update(fd for fd in fds if fd not in closing)
                self._dir_dirty = self._dir_dirty or sync_dir
                raise errors[0]
            self.metrics.observe("buffer_fsync_seconds", time.perf_counter() - start)
            self._synced = max(self._synced, generation)
        finally:
            self._sync_task = None
        if self._to_close:
            # Chunks sealed while this round ran still wait for their fsync and close.
            self._start_background_sync()

    def _fsync_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="buffer-fsync"
            )
        return self._pool

    def _sync_inline(self) -> None:
        fds = list(self._dirty)
        self._dirty.clear()
        closing, self._to_close = self._to_close, []
        sync_dir, self._dir_dirty = self._dir_dirty, False
        self._sync_files(fds, closing, sync_dir)
        self._synced = self._appended

    def _sync_files(self, fds: list[int], closing: list[int], sync_dir: bool) -> None:
        try:
            for fd in fds:
                _fdatasync(fd)
            if sync_dir:
                self._fsync_dir()
        finally:
            for fd in closing:
                os.close(fd)

    # -------------------------------------------------------------------------- close

    async def close(self) -> None:
        for chunk in list(self._open.values()):
            self._seal(chunk)
        while self._sync_task is not None:
            with contextlib.suppress(OSError):
                await asyncio.shield(self._sync_task)
        if self._sync == "batch" and (self._dirty or self._to_close or self._dir_dirty):
            self._sync_task = asyncio.ensure_future(self._sync_round())
            await self._sync_task
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self._update_gauges(force=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
