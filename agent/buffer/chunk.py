"""Chunks: their ids and file names, the chunk a tag is appending to (``OpenChunk``) and the
sealed chunk that outputs see (``BufferChunk``), whose data is read back from its file when it
is not in memory. The bytes inside a chunk file are ``agent/buffer/frames.py``'s.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from array import array
from collections.abc import Sequence
from urllib.parse import quote, unquote

from agent.buffer.frames import CorruptChunk, FrameScan, decode_header, scan_frames

CHUNK_SUFFIX = ".chunk"
ACKS_SUFFIX = ".acks"
_MAX_TAG_IN_NAME = 120
PAUSE_GAPS = 4
"""An open chunk whose input was quiet this many times its usual gap between batches is sealed
before ``flush_interval`` (``OpenChunk.paused``)."""
MIN_PAUSE = 0.05
"""...and quiet at least this long (seconds): a stall of a busy input is not the end of a burst."""


# ------------------------------------------------------------------------------------ ids


ID_PATTERN = re.compile(r"[0-9]{13}-[0-9]{12}")
"""A chunk id: ``<start ms, 13 digits>-<sequence, 12 digits>``. Names that do not match are not
the buffer's files (left alone, never taken into account for new ids)."""
_MAX_STAMP = 10**13 - 1


def is_chunk_id(text: str) -> bool:
    return ID_PATTERN.fullmatch(text) is not None


class ChunkIds:
    """Chunk ids ``<start ms, 13 digits>-<sequence, 12 digits>``: unique across restarts (each
    start takes a stamp above every id already on disk), sortable by creation as strings, and
    always this width: ids of another shape, or so far in the future (year 2286) that the next
    stamp would need a 14th digit, are ignored (``ignored`` lists them, for a log line)."""

    def __init__(self, existing: Sequence[str] = ()) -> None:
        stamp = int(time.time() * 1000)
        self.ignored: list[str] = []
        for chunk_id in existing:
            if not is_chunk_id(chunk_id) or int(chunk_id[:13]) >= _MAX_STAMP:
                self.ignored.append(chunk_id)
                continue
            stamp = max(stamp, int(chunk_id[:13]) + 1)
        self.stamp = min(stamp, _MAX_STAMP)
        self._sequence = itertools.count()

    def next(self) -> str:
        return f"{self.stamp:013d}-{next(self._sequence):012d}"


def chunk_file_name(chunk_id: str, tag: str) -> str:
    """``<id>.<escaped tag>.chunk``: the id orders files by creation; the escaped tag (any
    character outside letters, digits and ``_.-~`` percent-encoded, long tags shortened) is for
    people. The header inside the file holds the full tag."""
    escaped = quote(tag, safe="")
    if len(escaped) > _MAX_TAG_IN_NAME:
        escaped = escaped[:_MAX_TAG_IN_NAME].rsplit("%", 1)[0] + "~"
    return f"{chunk_id}.{escaped}{CHUNK_SUFFIX}"


def parse_chunk_file_name(name: str) -> tuple[str, str] | None:
    """(id, tag as far as the name tells) of a chunk file name, or None for other files (any
    name whose id is not ``<13 digits>-<12 digits>``)."""
    if not name.endswith(CHUNK_SUFFIX):
        return None
    chunk_id, _, escaped = name[: -len(CHUNK_SUFFIX)].partition(".")
    if not is_chunk_id(chunk_id):
        return None
    return chunk_id, unquote(escaped)

# --------------------------------------------------------------------------------- chunks


class BufferChunk:
    """A sealed chunk as outputs see it (``outputs.base.Chunk``). Its data lives in memory while
    the chunk is recent or in flight; otherwise it is read back from ``path`` when taken."""

    __slots__ = (
        "_data",
        "_lines",
        "_parts",
        "_times",
        "created",
        "file_bytes",
        "id",
        "in_flight",
        "path",
        "records",
        "released",
        "resident",
        "size",
        "tag",
        "waiting",
    )

    def __init__(
        self,
        chunk_id: str,
        tag: str,
        created: float,
        records: int,
        size: int,
        data: bytes | None = None,
        times: array | None = None,
        path: str | None = None,
        file_bytes: int = 0,
        parts: list[bytes] | None = None,
    ) -> None:
        self.id = chunk_id
        self.tag = tag
        self.created = created
        self.records = records
        self.size = size
        self._data = data
        self._times = times
        self._lines: list[bytes] | None = None
        self._parts = parts
        """The batches as they were appended, while nobody asked for ``data()``: joined on the
        first call (``parts()`` gives them as they are)."""
        self.path = path
        self.file_bytes = file_bytes
        """Length of the validated file (header and frames); what ``load`` reads."""
        self.waiting: set[str] = set()
        """Outputs that have not acknowledged this chunk yet."""
        self.in_flight: set[str] = set()
        """Outputs that took this chunk and have not acknowledged it yet."""
        self.released = False
        self.resident = False
        """Data kept in memory on purpose (recent chunk), counted in the resident budget."""

    def __repr__(self) -> str:
        return f"<BufferChunk {self.id} tag={self.tag!r} records={self.records} size={self.size}>"

    @property
    def loaded(self) -> bool:
        return self._data is not None or self._parts is not None

    def read(self) -> tuple[bytes, FrameScan]:
        """The chunk file and its frames, resyncing past damage (blocking). Raises OSError, or
        CorruptChunk if the header is unreadable, names another chunk, or no intact frame is
        left."""
        if self.released or self.path is None:
            raise CorruptChunk(
                f"chunk {self.id} left the buffer (acknowledged or dropped): its data is gone"
            )
        with open(self.path, "rb") as file:
            content = file.read()  # all of it: bytes inserted since validation shift frames
        header, header_end = decode_header(content)
        if header.id != self.id:
            raise CorruptChunk(f"{self.path}: header names chunk {header.id!r}")
        scan = scan_frames(content, header_end, keep=True)
        if not scan.records:
            raise CorruptChunk(
                f"{self.path}: no intact frame left ({scan.error or 'nothing after the header'})"
            )
        if scan.records > self.records or scan.size > self.size:
            raise CorruptChunk(
                f"{self.path} holds more than was validated ({scan.records} records, "
                f"{self.records} expected): not this chunk"
            )
        return content, scan

    def fill(self, scan: FrameScan) -> None:
        """Take the records of ``scan`` (from ``read``) as the chunk's data."""
        assert scan.parts is not None and scan.times is not None
        if len(scan.times) != scan.records:
            raise CorruptChunk(f"{self.path}: {len(scan.times)} times for {scan.records} records")
        self.records = scan.records
        self.size = scan.size
        self._data = b"".join(scan.parts)
        self._times = scan.times
        self._lines = None

    def load(self) -> None:
        """Read the chunk's records back from its file (blocking; run it in a thread). Raises
        CorruptChunk if the file lost records since they were counted: the buffer's ``take``
        salvages a damaged chunk (``read``, then ``fill``) and accounts for what was cut; a
        plain load (an output reading a released chunk again) never changes the count."""
        if self._data is not None:
            return
        _, scan = self.read()
        if scan.records != self.records or scan.size != self.size:
            raise CorruptChunk(
                f"{self.path} changed on disk since it was validated: "
                f"{scan.error or 'record count differs'}"
            )
        self.fill(scan)

    def unload(self) -> None:
        """Drop the in-memory copy (only for chunks that have a file)."""
        if self.path is not None:
            self._data = None
            self._parts = None
            self._times = None
            self._lines = None

    def release_cache(self) -> None:
        """``outputs.base.Chunk.release_cache``: resident chunks (the buffer's budgeted recent
        copies) keep their data; the others drop it and read their file again if asked."""
        if not self.resident:
            self.unload()

    def release(self) -> None:
        """The chunk left the buffer: drop its data whether or not a file backs it."""
        self._data = None
        self._parts = None
        self._times = None
        self._lines = None
        self.released = True

    @property
    def loaded_bytes(self) -> int:
        """Memory the chunk's data and times take when loaded."""
        return self.size + 8 * self.records

    @property
    def memory_bytes(self) -> int:
        """Memory the chunk's data and times take now."""
        return self.loaded_bytes if self.loaded else 0

    def data(self) -> bytes:
        data = self._data
        if data is None:
            # Outputs may ask from a thread (S3 compresses in one): each field is read once,
            # and ``_data`` is set before ``_parts`` is cleared, so the chunk stays loaded.
            parts = self._parts
            if parts is not None:
                data = self._data = b"".join(parts)
                self._parts = None
            else:
                self.load()
                data = self._data
        assert data is not None
        return data

    def parts(self) -> Sequence[bytes]:
        """``outputs.base.Chunk.parts``: the batches as appended, not joined (until some output
        asked for ``data()``)."""
        parts = self._parts
        return parts if parts is not None else [self.data()]

    def lines(self) -> Sequence[bytes]:
        if self._lines is None:
            lines = self.data().split(b"\n")
            lines.pop()  # data ends with a newline
            self._lines = lines
        return self._lines

    def times(self) -> Sequence[float]:
        if self._times is None:
            self.load()
        assert self._times is not None
        return self._times


class OpenChunk:
    """The chunk a tag is appending to: NDJSON parts in memory, frames in its file (disk)."""

    __slots__ = ("created", "fd", "file_bytes", "id", "parts", "path", "records", "size", "tag",
                 "times", "updated")

    def __init__(self, chunk_id: str, tag: str, created: float) -> None:
        self.id = chunk_id
        self.tag = tag
        self.created = created
        self.updated = created
        """When the last batch was added (``time.time()``)."""
        self.records = 0
        self.size = 0
        self.parts: list[bytes] = []
        self.times = array("d")
        self.fd: int | None = None
        self.path: str | None = None
        self.file_bytes = 0

    def add(self, ndjson: bytes, times: array, now: float) -> None:
        self.updated = now
        self.parts.append(ndjson)
        self.times.extend(times)
        self.records += len(times)
        self.size += len(ndjson)

    def seal(self) -> BufferChunk:
        # The batches are not joined here: an output that writes them out as they are (the
        # file output's writev) never needs the joined copy, a fresh allocation of the chunk's
        # size each time (docs/performance.md, "the tail input").
        parts, self.parts = self.parts, []
        return BufferChunk(
            self.id,
            self.tag,
            self.created,
            self.records,
            self.size,
            data=parts[0] if len(parts) == 1 else None,
            times=self.times,
            path=self.path,
            file_bytes=self.file_bytes,
            parts=parts if len(parts) > 1 else None,
        )

    def paused(self, now: float) -> bool:
        """Its input has stopped, by the look of it: no batch for ``PAUSE_GAPS`` times the
        usual gap between its batches, and at least ``MIN_PAUSE``. Sealing it then delivers the
        end of a burst without waiting for ``flush_interval``, while a steady stream (however
        slow) keeps its gaps and fills its chunks as before. A chunk of one batch has no usual
        gap yet: it waits for ``flush_interval``."""
        return now >= self.pause_at()

    def pause_at(self) -> float:
        """When ``paused`` becomes true if no batch comes before (``inf`` for one batch)."""
        batches = len(self.parts)
        if batches < 2:
            return math.inf
        usual_gap = (self.updated - self.created) / (batches - 1)
        return self.updated + max(MIN_PAUSE, PAUSE_GAPS * usual_gap)
