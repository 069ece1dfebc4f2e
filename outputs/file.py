"""Appends records to a file as NDJSON, one record per line.

Each write (one chunk: the output does not group chunks) is one ``writev`` of the chunk's batches
as they entered the buffer (no joined copy of the chunk) to a file opened with O_APPEND, so lines
of different writes never interleave, and a chunk reaches the file as soon as it is sealed (at
most ``flush_interval``, 1 s by default, after its first record). The file is reopened when it
was moved or deleted (log rotation). A path that cannot be written (missing permission, a parent
that is a file, a full disk) raises a retryable error: the data waits in the buffer until the
path works again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Sequence

from outputs.base import Chunk, Output, OutputConfig, RetryableError

_IOV_MAX = os.sysconf("SC_IOV_MAX")
"""The most buffers one ``writev`` takes (1024 on Linux)."""


class FileConfig(
    OutputConfig, tag_field="type", tag="file", kw_only=True, forbid_unknown_fields=True
):
    path: str
    """The NDJSON file, one record per line; parent directories are created; reopened when it
    was moved or deleted (log rotation)."""
    fsync: bool = False
    """fsync after every write, so an acknowledged chunk survives a power loss."""
    file_mode: str = "0640"
    """Permissions of a file the output creates, octal."""
    workers: int = 1
    """One writer: each chunk is one append, in order."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ValueError("path must not be empty")
        try:
            int(self.file_mode, 8)
        except ValueError:
            raise ValueError(
                f'file_mode must be octal such as "0640", got {self.file_mode!r}'
            ) from None


class FileOutput(Output):
    type_name = "file"
    config: FileConfig

    def __init__(self, config: FileConfig, context: object) -> None:
        super().__init__(config, context)  # type: ignore[arg-type]
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._writing: concurrent.futures.Future[None] | None = None

    def _open(self) -> int:
        if self._fd is not None:
            try:
                st = os.stat(self.config.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    return self._fd
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
        parent = os.path.dirname(os.path.abspath(self.config.path))
        os.makedirs(parent, exist_ok=True)
        fd = os.open(
            self.config.path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
            int(self.config.file_mode, 8),
        )
        st = os.fstat(fd)
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)
        return fd

    def _write(self, parts: list[bytes]) -> None:
        fd = self._open()
        if len(parts) > _IOV_MAX:  # many small batches: one buffer, still one write
            parts = [b"".join(parts)]
        total = sum(map(len, parts))
        written = os.writev(fd, parts)
        if written < total:  # a short write (a full disk, a signal): the rest plainly
            view = memoryview(b"".join(parts))[written:]
            while view:
                view = view[os.write(fd, view) :]
        if self.config.fsync:
            os.fsync(fd)

    async def send(self, chunks: Sequence[Chunk]) -> None:
        parts = [part for chunk in chunks for part in chunk.parts()]
        async with self._lock:
            try:
                # Small chunks are written inline; big ones off the loop so inputs keep reading.
                if sum(map(len, parts)) < 256 * 1024:
                    self._write(parts)
                else:
                    # The thread's future is awaited directly (no to_thread task, no shield):
                    # each wrapper costs an event-loop iteration per chunk, and a busy loop
                    # spends a whole input read on each. A cancelled send (shutdown, reload)
                    # leaves the thread writing; stop() waits for it before closing the fd.
                    if self._writer is None:
                        self._writer = concurrent.futures.ThreadPoolExecutor(
                            1, thread_name_prefix=f"file-output-{self.config.name}"
                        )
                    self._writing = self._writer.submit(self._write, parts)
                    await asyncio.wrap_future(self._writing)
            except OSError as exc:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                raise RetryableError(f"cannot write {self.config.path}: {exc.strerror}") from exc

    async def stop(self) -> None:
        if self._writing is not None and not self._writing.done():
            await asyncio.wait([asyncio.wrap_future(self._writing)])
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
