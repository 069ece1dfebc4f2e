"""Chunks, their on-disk frame format and their ids.

A chunk file is a header followed by frames, one frame per ``append`` call::

    header  = b"CAB1" | u32 payload length | u32 CRC32(payload) | payload (JSON: id, tag, created)
    frame   = u32 payload length | u32 CRC32(payload) | payload
    payload = u32 records | u32 ndjson length | records x f64 event times | ndjson

All integers and floats are little-endian. ``ndjson`` is the batch's lines, each followed by
b"\\n", so a chunk's ``data()`` is the concatenation of its frames' ndjson sections: nothing is
split or re-joined per record on the way out.
"""

from __future__ import annotations

import itertools
import os
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Sequence
from urllib.parse import quote, unquote

import msgspec

MAGIC = b"CAB1"
HEADER_PREFIX = struct.Struct("<4sII")
FRAME_PREFIX = struct.Struct("<II")
PAYLOAD_PREFIX = struct.Struct("<II")
MAX_HEADER_PAYLOAD = 64 * 1024
CHUNK_SUFFIX = ".chunk"
ACKS_SUFFIX = ".acks"
_NEEDS_SWAP = sys.byteorder != "little"
_MAX_TAG_IN_NAME = 120


class ChunkHeader(msgspec.Struct):
    id: str
    tag: str
    created: float


class CorruptChunk(Exception):
    """A chunk file whose header cannot be read, or whose frames changed since validation."""


# ------------------------------------------------------------------------------------ ids


class ChunkIds:
    """Chunk ids ``<start ms, 13 digits>-<sequence, 12 digits>``: unique across restarts (each
    start takes a stamp above every id already on disk), sortable by creation as strings."""

    def __init__(self, existing: Sequence[str] = ()) -> None:
        stamp = int(time.time() * 1000)
        for chunk_id in existing:
            try:
                stamp = max(stamp, int(chunk_id.split("-", 1)[0]) + 1)
            except ValueError:
                continue
        self.stamp = stamp
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
    """(id, tag as far as the name tells) of a chunk file name, or None for other files."""
    if not name.endswith(CHUNK_SUFFIX):
        return None
    chunk_id, _, escaped = name[: -len(CHUNK_SUFFIX)].partition(".")
    if not chunk_id or "-" not in chunk_id:
        return None
    return chunk_id, unquote(escaped)


# --------------------------------------------------------------------------------- frames


def encode_header(chunk_id: str, tag: str, created: float) -> bytes:
    payload = msgspec.json.encode(ChunkHeader(id=chunk_id, tag=tag, created=created))
    return HEADER_PREFIX.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_header(data: bytes) -> tuple[ChunkHeader, int]:
    """The header at the start of ``data`` and its length; raises CorruptChunk."""
    if len(data) < HEADER_PREFIX.size:
        raise CorruptChunk(f"file too short for a header ({len(data)} bytes)")
    magic, length, crc = HEADER_PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptChunk(f"bad magic {magic!r}")
    end = HEADER_PREFIX.size + length
    if length > MAX_HEADER_PAYLOAD or end > len(data):
        raise CorruptChunk(f"header length {length} out of bounds")
    payload = data[HEADER_PREFIX.size : end]
    if zlib.crc32(payload) != crc:
        raise CorruptChunk("header checksum mismatch")
    try:
        header = msgspec.json.decode(payload, type=ChunkHeader)
    except msgspec.DecodeError as exc:
        raise CorruptChunk(f"header unreadable: {exc}") from None
    return header, end


def join_lines(lines: list[bytes]) -> bytes:
    """The batch as NDJSON; raises ValueError if a line holds a newline (lines must be
    encoded JSON, which never does)."""
    if b"\n" in b"".join(lines):  # one memchr: cheaper than counting newlines
        raise ValueError("a buffered line must not contain a newline")
    return b"\n".join(lines) + b"\n"


def encode_frame(ndjson: bytes, times: array) -> bytes:
    """One frame holding a batch: ``ndjson`` from ``join_lines`` and its times (array 'd')."""
    return b"".join(frame_parts(ndjson, times))


def frame_parts(ndjson: bytes, times: array) -> list[bytes]:
    """``encode_frame`` as pieces for ``os.writev``: the batch's NDJSON is not copied."""
    if _NEEDS_SWAP:  # pragma: no cover - big-endian hosts
        times = array("d", times)
        times.byteswap()
    times_bytes = times.tobytes()
    length = PAYLOAD_PREFIX.size + len(times_bytes) + len(ndjson)
    payload_prefix = PAYLOAD_PREFIX.pack(len(times), len(ndjson))
    crc = zlib.crc32(ndjson, zlib.crc32(times_bytes, zlib.crc32(payload_prefix)))
    return [FRAME_PREFIX.pack(length, crc) + payload_prefix, times_bytes, ndjson]


class FrameScan(msgspec.Struct):
    """What ``scan_frames`` found: the valid prefix of the frame area and its contents."""

    valid_end: int
    """Offset just past the last valid frame."""
    records: int
    size: int
    """Bytes of NDJSON."""
    error: str | None
    """Why scanning stopped before the end of the data, if it did."""
    parts: list[memoryview] | None = None
    """Slices of the scanned data: join them (``b"".join``) to get bytes."""
    times: array | None = None


def scan_frames(data: bytes, start: int, keep: bool) -> FrameScan:
    """Validate frames from ``start``; stops at the first torn or corrupt one. With ``keep``,
    collects the ndjson sections and times."""
    view = memoryview(data)
    offset = start
    records = 0
    size = 0
    parts: list[memoryview] = []
    times = array("d")
    error: str | None = None
    end = len(data)
    while offset < end:
        if end - offset < FRAME_PREFIX.size + PAYLOAD_PREFIX.size:
            error = f"torn frame at offset {offset}"
            break
        length, crc = FRAME_PREFIX.unpack_from(data, offset)
        body = offset + FRAME_PREFIX.size
        if length < PAYLOAD_PREFIX.size or body + length > end:
            error = f"torn frame at offset {offset}"
            break
        payload = view[body : body + length]
        if zlib.crc32(payload) != crc:
            error = f"checksum mismatch in frame at offset {offset}"
            break
        count, ndjson_len = PAYLOAD_PREFIX.unpack_from(payload, 0)
        times_end = PAYLOAD_PREFIX.size + 8 * count
        if times_end + ndjson_len != length:
            error = f"inconsistent frame at offset {offset}"
            break
        ndjson_start = body + times_end
        ndjson_end = body + length
        if count and (
            data[ndjson_end - 1] != 0x0A or data.count(b"\n", ndjson_start, ndjson_end) != count
        ):
            error = f"inconsistent frame at offset {offset}"
            break
        if keep:
            parts.append(view[ndjson_start:ndjson_end])
            if _NEEDS_SWAP:  # pragma: no cover - big-endian hosts
                frame_times = array("d")
                frame_times.frombytes(payload[PAYLOAD_PREFIX.size : times_end])
                frame_times.byteswap()
                times.extend(frame_times)
            else:
                times.frombytes(payload[PAYLOAD_PREFIX.size : times_end])
        records += count
        size += ndjson_len
        offset = body + length
    result = FrameScan(valid_end=offset, records=records, size=size, error=error)
    if keep:
        result.parts = parts
        result.times = times
    return result


# --------------------------------------------------------------------------------- chunks


class BufferChunk:
    """A sealed chunk as outputs see it (``outputs.base.Chunk``). Its data lives in memory while
    the chunk is recent or in flight; otherwise it is read back from ``path`` when taken."""

    __slots__ = (
        "_data",
        "_lines",
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
    ) -> None:
        self.id = chunk_id
        self.tag = tag
        self.created = created
        self.records = records
        self.size = size
        self._data = data
        self._times = times
        self._lines: list[bytes] | None = None
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
        return self._data is not None

    def load(self) -> None:
        """Read the chunk's records back from its file (blocking; run it in a thread)."""
        if self._data is not None:
            return
        if self.released or self.path is None:
            raise CorruptChunk(
                f"chunk {self.id} left the buffer (acknowledged or dropped): its data is gone"
            )
        with open(self.path, "rb") as file:
            content = file.read(self.file_bytes)
        _, header_end = decode_header(content)
        scan = scan_frames(content, header_end, keep=True)
        if scan.error is not None or scan.records != self.records or scan.size != self.size:
            raise CorruptChunk(
                f"{self.path} changed on disk since it was validated: "
                f"{scan.error or 'record count differs'}"
            )
        assert scan.parts is not None and scan.times is not None
        if len(scan.times) != self.records:
            raise CorruptChunk(f"{self.path}: {len(scan.times)} times for {self.records} records")
        self._data = b"".join(scan.parts)
        self._times = scan.times

    def unload(self) -> None:
        """Drop the in-memory copy (only for chunks that have a file)."""
        if self.path is not None:
            self._data = None
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
        return self.loaded_bytes if self._data is not None else 0

    def data(self) -> bytes:
        if self._data is None:
            self.load()
        assert self._data is not None
        return self._data

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
                 "times")

    def __init__(self, chunk_id: str, tag: str, created: float) -> None:
        self.id = chunk_id
        self.tag = tag
        self.created = created
        self.records = 0
        self.size = 0
        self.parts: list[bytes] = []
        self.times = array("d")
        self.fd: int | None = None
        self.path: str | None = None
        self.file_bytes = 0

    def add(self, ndjson: bytes, times: array) -> None:
        self.parts.append(ndjson)
        self.times.extend(times)
        self.records += len(times)
        self.size += len(ndjson)

    def seal(self) -> BufferChunk:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        return BufferChunk(
            self.id,
            self.tag,
            self.created,
            self.records,
            self.size,
            data=data,
            times=self.times,
            path=self.path,
            file_bytes=self.file_bytes,
        )


def writev_all(fd: int, parts: list[bytes]) -> int:
    """``os.writev`` until everything is written; returns the bytes written."""
    total = sum(len(part) for part in parts)
    written = os.writev(fd, parts)
    if written < total:  # a short write (full disk, signal): finish the rest plainly
        write_all(fd, b"".join(parts)[written:])
    return total


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (a regular file may take less on a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:  # pragma: no cover - defensive
            raise OSError("write returned 0")
        view = view[written:]
