"""The disk buffer: per-tag append-only chunk files of framed batches under ``data_dir/chunks``.

Layout::

    data_dir/buffer.lock                 flock: one agent per data_dir
    data_dir/chunks/<id>.<tag>.chunk     header + frames (see agent/buffer/chunk.py)
    data_dir/chunks/<id>.acks            outputs that acknowledged the chunk, one JSON string a line
    data_dir/corrupt/                    chunks with an unreadable header, damaged spans cut
                                         from chunk files (<chunk file>.cut-at-<offset>)
    data_dir/dead-letter/                <id>.<output>.ndjson + <id>.<output>.json (reason)

Everything here is owner-only (0600 files, 0700 directories).
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
    CHUNK_SUFFIX,
    BufferChunk,
    ChunkIds,
    CorruptChunk,
    Cut,
    FrameScan,
    OpenChunk,
    chunk_file_name,
    decode_header,
    encode_header,
    frame_parts,
    is_chunk_id,
    parse_chunk_file_name,
    scan_frames,
    write_all,
    writev_all,
)
from agent.buffer.core import DEFAULT_RESIDENT_BYTES, ChunkBuffer, Salvage, describe_cuts
from agent.buffer.files import open_private, private_dir, tighten_files
from agent.config import ConfigError
from common.metrics import Metrics

_fdatasync = getattr(os, "fdatasync", os.fsync)
LOCK_FILE = "buffer.lock"
SALVAGE_SUFFIX = ".salvage"
"""A chunk file being rewritten without its damaged spans (replaces the chunk when complete)."""


class DataDirInUse(ConfigError):
    """Another agent holds ``data_dir``: two agents must never share one buffer. A config error
    (exit 2 at start, the running pipeline kept on reload): the fix is a config change."""


class Recovered(msgspec.Struct):
    """What the start-up scan found (built in a worker thread, applied on the loop)."""

    chunks: list[tuple[BufferChunk, set[str]]]
    ids: list[str]
    cuts: list[Cut] = msgspec.field(default_factory=list)
    damaged_chunks: int = 0
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
        private_dir(self.data_dir, self.logger)
        self._lock()
        for directory in (self.chunks_dir, self.corrupt_dir, self.dead_letter_dir):
            private_dir(directory, self.logger)
        recovered = await asyncio.to_thread(self._scan)
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

    def _scan(self) -> Recovered:
        """Validate every chunk file, oldest first (blocking; runs in a thread)."""
        names = sorted(os.listdir(self.chunks_dir))
        result = Recovered(chunks=[], ids=[])
        try:
            corrupt = os.listdir(self.corrupt_dir)
        except OSError:
            corrupt = []
        foreign = []
        for name in corrupt:
            chunk_id = name.split(".", 1)[0]
            if is_chunk_id(chunk_id):
                result.ids.append(chunk_id)
            else:
                foreign.append(name)
        if foreign:
            self.logger.info(
                "%s holds %d files whose names are not the buffer's (e.g. %s): left alone, not "
                "taken into account for chunk ids", self.corrupt_dir, len(foreign), min(foreign),
            )
        tightened = tighten_files(self.chunks_dir, names) + tighten_files(self.corrupt_dir, corrupt)
        if tightened:
            self.logger.warning("made %d files under %s and %s owner-only (0600)",
                                tightened, self.chunks_dir, self.corrupt_dir)
        live: set[str] = set()
        for name in names:
            parsed = parse_chunk_file_name(name)
            if parsed is None:
                self._not_a_chunk(name)
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
            file_bytes = len(content)
            if scan.cuts:
                file_bytes = self._salvage_file(path, content, header_end, scan)
                self.logger.warning(
                    "chunk file %s: %s; kept the %d records of its intact frames (the cut "
                    "bytes are in %s)", path, describe_cuts(scan.cuts), scan.records,
                    self.corrupt_dir,
                )
                result.cuts += scan.cuts
                result.damaged_chunks += 1
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
                file_bytes=file_bytes,
            )
            result.chunks.append((chunk, self._read_acks(chunk_id)))
        for name in names:
            if name.endswith(ACKS_SUFFIX) and name[: -len(ACKS_SUFFIX)] not in live:
                self._unlink(os.path.join(self.chunks_dir, name))
        return result

    def _not_a_chunk(self, name: str) -> None:
        path = os.path.join(self.chunks_dir, name)
        if name.endswith(ACKS_SUFFIX) and is_chunk_id(name[: -len(ACKS_SUFFIX)]):
            return  # an acknowledgement file: handled with its chunk
        if name.endswith(CHUNK_SUFFIX + SALVAGE_SUFFIX) and parse_chunk_file_name(
            name[: -len(SALVAGE_SUFFIX)]
        ):
            # A rewrite the process did not finish: the chunk itself is still whole.
            self.logger.info("removing %s: an unfinished rewrite of a damaged chunk", path)
            self._unlink(path)
            return
        self.logger.warning(
            "ignoring %s: not a file of the buffer's (chunk files are named "
            "<13 digits>-<12 digits>.<tag>.chunk); left as it is", path,
        )

    def _salvage_file(self, path: str, content: bytes, header_end: int, scan: FrameScan) -> int:
        """Save the damaged spans of a chunk file to corrupt/ and rewrite it with its intact
        frames only (a damaged tail is simply truncated); returns the file's new length. If the
        rewrite fails the file stays as it is (its intact frames are found again when read)."""
        if not scan.cuts:
            return len(content)
        name = os.path.basename(path)
        for cut in scan.cuts:
            self._save_cut(name, content, cut)
        if len(scan.cuts) == 1 and scan.cuts[0].end == len(content):
            os.truncate(path, scan.cuts[0].offset)
            return scan.cuts[0].offset
        view = memoryview(content)
        kept = [view[:header_end]] + [view[a:b] for a, b in scan.kept(header_end)]
        temporary = path + SALVAGE_SUFFIX
        try:
            fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                written = writev_all(fd, kept)  # type: ignore[arg-type]
                _fdatasync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
        except OSError as exc:
            self.logger.error("cannot rewrite %s without its damaged spans: %s", path, exc)
            self._unlink(temporary)
            return len(content)
        return written

    def _save_cut(self, name: str, content: bytes, cut: Cut) -> None:
        saved = os.path.join(self.corrupt_dir, f"{name}.cut-at-{cut.offset}")
        try:
            fd = open_private(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                write_all(fd, content[cut.offset : cut.end])
            finally:
                os.close(fd)
        except OSError as exc:
            self.logger.warning("cannot save the damaged bytes of %s to %s: %s", name, saved, exc)

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
            file_bytes = self._salvage_file(chunk.path, content, header_end, scan)
        else:
            file_bytes = len(content)
        return Salvage(scan=scan, cuts=cuts, file_bytes=file_bytes, saved_in=self.corrupt_dir)

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
            fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
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
        fd = open_private(self._acks_path(chunk.id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            write_all(fd, msgspec.json.encode(output) + b"\n")
        finally:
            os.close(fd)

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
        try:
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
        finally:
            # Whatever failed above, the data_dir is free again (a reload opens it anew).
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
