"""When the disk buffer's chunk files reach the disk (``[buffer] sync``), as fluent-bit's
``storage.sync`` decides it: ``none`` leaves it to the OS, ``always`` fsyncs after every append,
``batch`` fsyncs everything appended so far once per ``commit``, shared by every commit that
waits meanwhile.

With ``batch`` a sealed chunk's file is closed only after its last fsync, and only by a sync
round, so no file descriptor is closed (and its number reused) under a concurrent fsync.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from typing import Literal

from agent.buffer.files import fdatasync
from common.metrics import Metrics


class FileSync:
    """The fsyncs of one chunk directory's files."""

    def __init__(
        self,
        mode: Literal["none", "batch", "always"],
        directory: str,
        metrics: Metrics,
        logger: logging.Logger,
    ) -> None:
        self.mode = mode
        self.directory = directory
        self.metrics = metrics
        self.logger = logger
        self.dirty: set[int] = set()
        """Files written since their last fsync (``batch``)."""
        self.to_close: list[int] = []
        """Sealed files waiting for their final fsync before they are closed (``batch``)."""
        self.dir_dirty = False
        """A file was created in ``directory`` since it was last fsynced."""
        self.appended = 0
        """Appends counted (``batch``): a generation that ``synced`` catches up with."""
        self.synced = 0
        """Appends known to be durable (``batch``)."""
        self.task: asyncio.Future[None] | None = None
        """The sync round running, if any (``batch``)."""
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------------- writers' side

    def created(self) -> None:
        """A chunk file was created: its directory entry must reach the disk too."""
        self.dir_dirty = self.mode != "none"

    def appended_to(self, fd: int) -> None:
        """A frame was written to ``fd`` (``always``: fsynced now, may raise OSError)."""
        if self.mode == "always":
            self._fsync_now(fd)
        elif self.mode == "batch":
            self.dirty.add(fd)
            self.appended += 1

    def release(self, fd: int) -> None:
        """The chunk of ``fd`` is sealed: close the file now, or after its last fsync."""
        if self.mode == "batch" and (fd in self.dirty or self.task is not None):
            self.to_close.append(fd)
            self._start_background()
        else:
            os.close(fd)

    async def commit(self) -> None:
        """Return when everything appended so far is durable (``batch``; others are already)."""
        if self.mode != "batch":
            return
        target = self.appended
        while self.synced < target:
            if self.task is None:
                self.task = asyncio.ensure_future(self._round())
            # Every commit waiting meanwhile shares this round; shielded so a cancelled
            # committer does not cancel the fsync others wait for.
            await asyncio.shield(self.task)

    async def close(self) -> None:
        """Finish the rounds running, fsync and close what is left, stop the threads."""
        while self.task is not None:
            with contextlib.suppress(OSError):
                await asyncio.shield(self.task)
        if self.mode == "batch" and (self.dirty or self.to_close or self.dir_dirty):
            self.task = asyncio.ensure_future(self._round())
            await self.task
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # ------------------------------------------------------------------------------ rounds

    def _fsync_now(self, fd: int) -> None:
        start = time.perf_counter()
        fdatasync(fd)
        if self.dir_dirty:
            self._fsync_dir()
            self.dir_dirty = False
        self.metrics.observe("buffer_fsync_seconds", time.perf_counter() - start)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _start_background(self) -> None:
        """A sealed chunk's fd waits for its fsync; make sure a round runs even if nobody
        commits (inputs that never call ``commit``)."""
        if self.task is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._sync_inline()
            return
        self.task = asyncio.ensure_future(self._round())
        self.task.add_done_callback(self._log_failure)

    def _log_failure(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.logger.error("buffer fsync failed: %s", task.exception())

    async def _round(self) -> None:
        try:
            generation = self.appended
            fds = list(self.dirty)
            self.dirty.clear()
            closing, self.to_close = self.to_close, []
            sync_dir, self.dir_dirty = self.dir_dirty, False
            start = time.perf_counter()
            # One thread per file: concurrent fsyncs share one journal commit (ext4, xfs),
            # where fsyncing N files one after the other costs N commits.
            loop = asyncio.get_running_loop()
            pool = self._threads()
            jobs = [loop.run_in_executor(pool, fdatasync, fd) for fd in fds]
            if sync_dir:
                jobs.append(loop.run_in_executor(pool, self._fsync_dir))
            results = await asyncio.gather(*jobs, return_exceptions=True)
            # Only now, with no fsync running on them, may the sealed files be closed.
            for fd in closing:
                os.close(fd)
            errors = [result for result in results if isinstance(result, BaseException)]
            if errors:
                self.dirty.update(fd for fd in fds if fd not in closing)
                self.dir_dirty = self.dir_dirty or sync_dir
                raise errors[0]
            self.metrics.observe("buffer_fsync_seconds", time.perf_counter() - start)
            self.synced = max(self.synced, generation)
        finally:
            self.task = None
        if self.to_close:
            # Chunks sealed while this round ran still wait for their fsync and close.
            self._start_background()

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="buffer-fsync"
            )
        return self._pool

    def _sync_inline(self) -> None:
        fds = list(self.dirty)
        self.dirty.clear()
        closing, self.to_close = self.to_close, []
        sync_dir, self.dir_dirty = self.dir_dirty, False
        try:
            for fd in fds:
                fdatasync(fd)
            if sync_dir:
                self._fsync_dir()
        finally:
            for fd in closing:
                os.close(fd)
        self.synced = self.appended
