"""The disk buffer: per-tag append-only chunk files of framed batches under ``data_dir/chunks``.

Layout::

    data_dir/buffer.lock                 flock: one agent per data_dir
    data_dir/chunks/, data_dir/corrupt/  chunk files, acknowledgements, damaged bytes
                                         (agent/buffer/chunkdir.py)
    data_dir/dead-letter/                <id>.<output>.ndjson + <id>.<output>.json (reason)

Everything here is owner-only (0600 files, 0700 directories). This module appends and seals;
``chunkdir`` reads what is on disk back at start, ``sync`` decides when it reaches the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from array import array

from agent.buffer.base import BufferConfig, Routes
from agent.buffer.chunk import BufferChunk, ChunkIds, OpenChunk, chunk_file_name
from agent.buffer.chunkdir import ChunkDir
from agent.buffer.core import DEFAULT_RESIDENT_BYTES, ChunkBuffer, Salvage
from agent.buffer.deadletter import DEFAULT_MAX_BYTES
from agent.buffer.files import open_private, private_dir, writev_all
from agent.buffer.frames import Cut, decode_header, encode_header, frame_parts
from agent.buffer.sync import FileSync
from agent.config import ConfigError
from common.metrics import Metrics

LOCK_FILE = "buffer.lock"


class DataDirInUse(ConfigError):
    """Another agent holds ``data_dir``: two agents must never share one buffer. A config error
    (exit 2 at start, the running pipeline kept on reload): the fix is a config change."""


class DiskBuffer(ChunkBuffer):
    location = "disk"

    def __init__(
        self,
        config: BufferConfig,
        data_dir: str,
        metrics: Metrics,
        logger: logging.Logger,
        resident_bytes: int = DEFAULT_RESIDENT_BYTES,
        dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(config, data_dir, metrics, logger, resident_bytes, dead_letter_max_bytes)
        self.chunks_dir = os.path.join(data_dir, "chunks")
        self.corrupt_dir = os.path.join(data_dir, "corrupt")
        self.files = ChunkDir(self.chunks_dir, self.corrupt_dir, logger)
        self.sync = FileSync(config.sync, self.chunks_dir, metrics, logger)
        self._lock_fd: int | None = None

    # ---------------------------------------------------------------------- recovery

    async def open(self, routes: Routes) -> None:
        self._routes = routes
        private_dir(self.data_dir, self.logger)
        self._lock()
        for directory in (self.chunks_dir, self.corrupt_dir, self.dead_letters.path):
            private_dir(directory, self.logger)
        recovered = await asyncio.to_thread(self.files.scan)
        self._ids = ChunkIds(recovered.ids)
        for chunk_id in self._ids.ignored:
            self.logger.warning(
                "chunk id %s is not one this buffer makes (<13 digits>-<12 digits>, before year "
                "2286): not taken into account for new chunk ids", chunk_id,
            )
        for cut in recovered.cuts:
            self.metrics.inc("buffer_cut_bytes_total", cut.size, reason=cut.reason)
            self.metrics.inc("buffer_cut_frames_total", cut.frames, reason=cut.reason)
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
            "buffer recovered %d chunks (%d records, %d bytes) from %s; %d damaged "
            "(%d bytes cut), %d corrupt moved to %s",
            queued, records, size, self.chunks_dir, recovered.damaged_chunks,
            sum(cut.size for cut in recovered.cuts), recovered.corrupt_chunks, self.corrupt_dir,
        )
        self._update_gauges(force=True)

    def _lock(self) -> None:
        """One agent per data_dir: an exclusive flock on ``data_dir/buffer.lock``, held until
        ``close`` or the process ends (the kernel drops it even after ``kill -9``, so a stale
        file never blocks a start). The holder's pid is written in the file for the message."""
        path = os.path.join(self.data_dir, LOCK_FILE)
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "a process"
            raise DataDirInUse(
                f"agent.data_dir: {self.data_dir} is in use by another running agent ({who} "
                f"holds the lock {path}); stop that agent or give this one another data_dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            self.logger.warning("cannot write the pid to %s: %s", path, exc)
        self._lock_fd = fd

    def _read_back(self, chunk: BufferChunk) -> Salvage | None:
        content, scan = chunk.read()
        if (scan.records, scan.size, len(content)) == (chunk.records, chunk.size, chunk.file_bytes):
            # Intact, or damage found at start whose rewrite failed: nothing changed since.
            chunk.fill(scan)
            return None
        cuts = list(scan.cuts)
        if len(content) < chunk.file_bytes:  # the file got shorter
            missing = Cut(len(content), chunk.file_bytes, "torn", 1,
                          f"file cut short at {len(content)} bytes")
            if cuts and cuts[-1].end == len(content):
                last = cuts.pop()
                missing = Cut(last.offset, chunk.file_bytes, last.reason, last.frames,
                              f"{last.detail}, {missing.detail}")
            cuts.append(missing)
        assert chunk.path is not None
        header_end = decode_header(content)[1]
        if self._chunks.get(chunk.id) is chunk:  # not deleted meanwhile: never bring it back
            file_bytes = self.files.salvage(chunk.path, content, header_end, scan)
        else:
            file_bytes = len(content)
        return Salvage(scan=scan, cuts=cuts, file_bytes=file_bytes, saved_in=self.files.corrupt_dir)

    # ------------------------------------------------------------------ storage hooks

    def _write_frame(self, chunk: OpenChunk, ndjson: bytes, times: array) -> None:
        # writev: the frame's prefix, times and NDJSON go out without being joined (a copy of
        # the whole batch) first.
        parts = frame_parts(ndjson, times)
        if chunk.fd is None:
            path = os.path.join(self.chunks_dir, chunk_file_name(chunk.id, chunk.tag))
            parts.insert(0, encode_header(chunk.id, chunk.tag, chunk.created))
            fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                written = writev_all(fd, parts)
            except OSError:
                os.close(fd)
                self.files.unlink(path)
                raise
            chunk.fd, chunk.path, chunk.file_bytes = fd, path, written
            self.sync.created()
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
        if chunk.fd is not None:
            self.sync.appended_to(chunk.fd)

    def _release_open(self, chunk: OpenChunk) -> None:
        fd, chunk.fd = chunk.fd, None
        if fd is not None:
            self.sync.release(fd)

    def _delete_files(self, chunk: BufferChunk) -> None:
        self.files.delete(chunk)

    def _persist_ack(self, chunk: BufferChunk, output: str) -> None:
        self.files.persist_ack(chunk.id, output)

    def _quarantine_files(self, chunk: BufferChunk) -> None:
        if chunk.path is not None:
            self.files.move_aside(chunk.path, chunk.id)

    async def commit(self) -> None:
        await self.sync.commit()

    # -------------------------------------------------------------------------- close

    async def close(self) -> None:
        try:
            for chunk in list(self._open.values()):
                self._seal(chunk)
            await self.sync.close()
            self._update_gauges(force=True)
        finally:
            # Whatever failed above, the data_dir is free again (a reload opens it anew).
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
