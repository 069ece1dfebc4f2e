"""One followed file: its descriptor, read offsets, line splitting, rotation and truncation.

Reading is batched: one ``pread`` of up to ``read_bytes`` gives every complete line in it, and
the input parses and submits them as one batch. Two offsets are kept:

* ``offset``: where the next read starts (everything before was parsed), and
* ``safe``: everything before is in the buffer; the positions file stores this one. It lags
  ``offset`` while a partial line's first pieces are held by the parser (not in any record yet).

A file that a glob no longer reaches (renamed by a rotation, deleted with its pod) stays open and
is read to its end; it is let go ``rotate_wait`` after its last line was read.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

from agent.inputs.tail.discovery import PathInfo
from agent.inputs.tail.positions import FileKey, Position
from parsers.container import ContainerLogParser

HEAD_BYTES = 64
"""Bytes of a file's head whose CRC tells it from a later file with the same inode number."""
LINE_SLACK = 4096
"""A physical line may exceed max_line_bytes by this much (the CRI prefix, JSON quoting) before
the reader cuts it without waiting for its newline."""


@dataclass(eq=False)
class TailedFile:
    key: FileKey
    path: str
    """The path a glob found it under (the first, if several)."""
    info: PathInfo
    parser: ContainerLogParser
    target: str = ""
    """The file ``path`` resolved to when it was found (the same for a regular file)."""
    offset: int = 0
    safe: int = 0
    fd: int | None = None
    size: int = 0
    """Size at the last stat."""
    paths: list[str] = field(default_factory=list)
    rotated_at: float | None = None
    """monotonic time the globs stopped reaching it (renamed or deleted), else None."""
    idle_since: float = 0.0
    """monotonic time of its last read that gave lines (or of its opening)."""
    after: TailedFile | None = None
    """A rotated file that held this path before: read to its end first."""
    closed: bool = False
    """Let go: read to its end (or lost) and forgotten."""
    skipping: bool = False
    """A physical line longer than max_line_bytes + slack was cut: skip to its newline."""
    retry_size: int = -1
    """Size at which the last read found only an unfinished line: no read until it grows."""
    head: int = 0
    head_len: int = 0
    restored: Position | None = None
    """A stored position not yet checked against the file (it waits for a slot)."""
    scanned_size: int = -1
    """Size at the last scan: the head is checked again when it changed."""
    tags: dict[str | None, str] = field(default_factory=dict)
    """Rendered tag per stream (the tag depends only on the file and the stream)."""

    # ------------------------------------------------------------------------ opening

    def open(self) -> bool:
        """Open ``path`` and check that it still is this file; False if it is not (gone or
        replaced since the scan)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.key:
            os.close(fd)
            return False
        self.fd = fd
        self.size = st.st_size
        self._take_head()
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _take_head(self) -> None:
        if self.fd is not None and self.head_len < HEAD_BYTES and self.size > self.head_len:
            data = os.pread(self.fd, HEAD_BYTES, 0)
            self.head, self.head_len = zlib.crc32(data), len(data)

    def same_head(self, position: Position) -> bool:
        """True if this (open) file starts as the file of ``position`` did."""
        if position.head_len == 0 or self.fd is None:
            return True
        data = os.pread(self.fd, position.head_len, 0)
        return len(data) == position.head_len and zlib.crc32(data) == position.head

    def head_changed(self) -> bool:
        """True if the file no longer starts as it did: it was truncated and written again
        (copytruncate) between two looks, past the offset where we were."""
        if self.fd is None or self.head_len == 0:
            return False
        data = os.pread(self.fd, self.head_len, 0)
        return len(data) < self.head_len or zlib.crc32(data) != self.head

    def forget_head(self) -> None:
        self.head = self.head_len = 0
        self._take_head()

    def position(self) -> Position:
        if self.head_len < HEAD_BYTES:
            self._take_head()
        return Position(
            dev=self.key[0],
            ino=self.key[1],
            offset=self.safe,
            path=self.path,
            target=self.target,
            size=max(self.size, self.safe),
            head=self.head,
            head_len=self.head_len,
        )

    # ------------------------------------------------------------------------ reading

    def stat_size(self) -> int:
        assert self.fd is not None
        self.size = os.fstat(self.fd).st_size
        return self.size

    def read_lines(self, read_bytes: int, max_line_bytes: int) -> tuple[list[bytes], int, int]:
        """The complete lines after ``offset`` (at most about ``read_bytes``), without their
        newlines: (lines, offset after them, bytes skipped before them). Moves ``offset``
        past skipped bytes only; the caller moves it past the lines once they are taken."""
        assert self.fd is not None
        limit = max_line_bytes + LINE_SLACK
        window = min(self.size - self.offset, max(read_bytes, limit + 1))
        if window <= 0:
            return [], self.offset, 0
        # A batch of read_bytes: its encoded records still sit in the CPU cache when the
        # buffer copies them to its file. Only a read without a newline takes the window a
        # line of max_line_bytes needs.
        data = os.pread(self.fd, min(window, read_bytes), self.offset)
        if len(data) < window and b"\n" not in data:
            data = os.pread(self.fd, window, self.offset)
        if not data:
            return [], self.offset, 0
        short = len(data) < window
        skipped = 0
        if self.skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self.offset += len(data)
                return [], self.offset, len(data)
            skipped = newline + 1
            self.offset += skipped
            self.skipping = False
            data = data[skipped:]
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) > limit:  # a line too long to wait for its end: cut it
                self.skipping = True
                skipped += len(data) - limit
                return [data[:limit]], self.offset + len(data), skipped
            if short:  # after a skipped line's end: the next read starts there
                return [], self.offset, skipped
            self.retry_size = self.size  # an unfinished line: wait until the file grows
            return [], self.offset, skipped
        # Split the read as it is (no copy of it up to its last newline first); the piece
        # after that newline is an unfinished line, read again next time.
        lines = data.split(b"\n")
        lines.pop()
        return lines, self.offset + end + 1, skipped

    def read_rest(self) -> bytes:
        """What follows ``offset`` to the end of the file (an unterminated last line)."""
        assert self.fd is not None
        return os.pread(self.fd, max(0, self.size - self.offset), self.offset)
