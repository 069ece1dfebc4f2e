"""The chunk file format: a header followed by frames, one frame per ``append`` call::

    header  = b"CAB1" | u32 payload length | u32 CRC32(payload) | payload (JSON: id, tag, created)
    frame   = u32 payload length | u32 CRC32(payload) | payload
    payload = u32 records | u32 ndjson length | records x f64 event times | ndjson

All integers and floats are little-endian. ``ndjson`` is the batch's lines, each followed by
b"\\n", so a chunk's ``data()`` is the concatenation of its frames' ndjson sections: nothing is
split or re-joined per record on the way out.

Encoding frames, and reading them back: ``scan_frames`` validates a chunk file's frames and,
past damage, ``resync`` finds the next intact frame so one bad frame does not cost the rest
(the spans cut are ``Cut``s). Nothing here touches files: callers hand in bytes.
"""

from __future__ import annotations

import functools
import re
import struct
import sys
from array import array

import msgspec

from common.checksum import crc32

MAGIC = b"CAB1"
HEADER_PREFIX = struct.Struct("<4sII")
FRAME_PREFIX = struct.Struct("<II")
PAYLOAD_PREFIX = struct.Struct("<II")
MAX_HEADER_PAYLOAD = 64 * 1024
_NEEDS_SWAP = sys.byteorder != "little"


class ChunkHeader(msgspec.Struct):
    id: str
    tag: str
    created: float


class CorruptChunk(Exception):
    """A chunk file whose header cannot be read, or whose frames changed since validation."""



def encode_header(chunk_id: str, tag: str, created: float) -> bytes:
    payload = msgspec.json.encode(ChunkHeader(id=chunk_id, tag=tag, created=created))
    return HEADER_PREFIX.pack(MAGIC, len(payload), crc32(payload)) + payload


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
    if crc32(payload) != crc:
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
    crc = crc32(ndjson, crc32(times_bytes, crc32(payload_prefix)))
    return [FRAME_PREFIX.pack(length, crc) + payload_prefix, times_bytes, ndjson]


_FRAME_HEAD = struct.Struct("<IIII")
"""A frame's first 16 bytes: length, CRC32, records, NDJSON length."""
_RESYNC_FRAMES = ("torn", "checksum", "malformed")
CUT_REASONS = _RESYNC_FRAMES
"""``reason`` label values of the cut bytes and frames: ``torn`` (the data ends inside a frame:
what a crash in the middle of a write leaves), ``checksum`` (a frame whose length fits but whose
CRC32 does not match: the disk changed its bytes), ``malformed`` (bytes that are no frame at
all: a damaged length, inserted garbage)."""


class Cut(msgspec.Struct, frozen=True):
    """A damaged span of a chunk file, between two intact frames (or the header, or the end)."""

    offset: int
    end: int
    reason: str
    """One of ``CUT_REASONS``."""
    frames: int
    """Frames in the span, as far as their length fields still tell (at least 1)."""
    detail: str
    """For the log: what was wrong at ``offset``."""

    @property
    def size(self) -> int:
        return self.end - self.offset


def describe_cuts(cuts: list[Cut]) -> str:
    """The damaged spans of a chunk file, for a log line."""
    spans = "; ".join(
        f"{cut.detail}: {cut.size} bytes, {cut.frames} frame{'s' if cut.frames > 1 else ''} "
        f"({cut.reason})"
        for cut in cuts
    )
    return f"cut {sum(cut.size for cut in cuts)} bytes in {len(cuts)} span(s): {spans}"


class FrameScan:
    """What ``scan_frames`` found: the intact frames' contents and the damaged spans between."""

    __slots__ = ("cuts", "end", "parts", "records", "size", "times")

    def __init__(self, end: int, records: int, size: int, cuts: list[Cut]) -> None:
        self.end = end
        """Length of the scanned data."""
        self.records = records
        """Records in the intact frames."""
        self.size = size
        """Bytes of NDJSON in the intact frames."""
        self.cuts = cuts
        """Damaged spans, in file order; empty for an intact chunk."""
        self.parts: list[memoryview] | None = None
        """Slices of the scanned data: join them (``b"".join``) to get bytes."""
        self.times: array | None = None

    @property
    def error(self) -> str | None:
        """What was wrong at the first damaged span, if any."""
        return self.cuts[0].detail if self.cuts else None

    @property
    def cut_bytes(self) -> int:
        return sum(cut.size for cut in self.cuts)

    def kept(self, start: int) -> list[tuple[int, int]]:
        """(offset, end) spans of the data from ``start`` that are intact frames."""
        spans = []
        offset = start
        for cut in self.cuts:
            if cut.offset > offset:
                spans.append((offset, cut.offset))
            offset = cut.end
        if self.end > offset:
            spans.append((offset, self.end))
        return spans


def scan_frames(data: bytes, start: int, keep: bool) -> FrameScan:
    """Validate frames from ``start``. A torn or corrupt frame does not end the scan: it goes
    on at the next offset where an intact frame starts (``resync``), and the span between is
    a ``Cut``. With ``keep``, collects the intact frames' NDJSON sections and times.

    The happy path is one CRC32 and one newline count per frame; resynchronising costs more
    but only runs past damage."""
    view = memoryview(data)
    offset = start
    records = 0
    size = 0
    parts: list[memoryview] = []
    times = array("d")
    cuts: list[Cut] = []
    end = len(data)
    while offset < end:
        reason = "malformed"
        if end - offset < FRAME_PREFIX.size + PAYLOAD_PREFIX.size:
            reason, detail = "torn", f"torn frame at offset {offset}"
        else:
            length, crc = FRAME_PREFIX.unpack_from(data, offset)
            body = offset + FRAME_PREFIX.size
            ndjson_end = body + length
            if length < PAYLOAD_PREFIX.size or ndjson_end > end:
                reason, detail = "torn", f"torn frame at offset {offset}"
            elif crc32(view[body:ndjson_end]) != crc:
                reason, detail = "checksum", f"checksum mismatch in frame at offset {offset}"
            else:
                count, ndjson_len = PAYLOAD_PREFIX.unpack_from(data, body)
                times_end = body + PAYLOAD_PREFIX.size + 8 * count
                ndjson_start = times_end
                # Writers never write a frame without records; its lines end in b"\n" and hold
                # none inside (JSON text), so the count of newlines is the count of records.
                if (
                    not count
                    or ndjson_start + ndjson_len != ndjson_end
                    or data[ndjson_end - 1] != 0x0A
                    or data.count(b"\n", ndjson_start, ndjson_end) != count
                ):
                    detail = f"inconsistent frame at offset {offset}"
                else:
                    if keep:
                        parts.append(view[ndjson_start:ndjson_end])
                        if _NEEDS_SWAP:  # pragma: no cover - big-endian hosts
                            frame_times = array("d")
                            frame_times.frombytes(view[body + PAYLOAD_PREFIX.size : times_end])
                            frame_times.byteswap()
                            times.extend(frame_times)
                        else:
                            times.frombytes(view[body + PAYLOAD_PREFIX.size : times_end])
                    records += count
                    size += ndjson_len
                    offset = ndjson_end
                    continue
        resume = resync(data, offset + 1)
        if reason == "torn" and resume < end:
            reason = "malformed"  # a damaged length field, not the end of the data
        cuts.append(Cut(offset, resume, reason, _count_frames(data, offset, resume), detail))
        offset = resume
    result = FrameScan(end, records, size, cuts)
    if keep:
        result.parts = parts
        result.times = times
    return result


@functools.cache
def _candidates(high: int) -> re.Pattern[bytes]:
    """Offsets where a frame may start: the top byte of its length, of its record count and
    of its NDJSON length is at most ``high`` (all three are below the data's length), its
    length is at least 16 and its record count not 0 (so a run of zeros, what a lost write
    often leaves, offers no candidate at all)."""
    top = b"[\\x00-\\x%02x]" % high
    return re.compile(
        b"(?=(?![\\x00-\\x0f]\\x00\\x00\\x00).{3}" + top
        + b".{4}(?!\\x00\\x00\\x00\\x00).{3}" + top + b".{3}" + top + b")",
        re.DOTALL,
    )


def resync(data: bytes, start: int) -> int:
    """The first offset from ``start`` where an intact frame starts, or ``len(data)``.

    A candidate must pass every check a frame passes in ``scan_frames`` (lengths consistent,
    at least one record, NDJSON ending in a newline with one newline per record, CRC32 of the
    payload), and, as it follows damage, every line must be a JSON document. JSON text holds
    no byte below 0x20 while a frame's length fields have a zero top byte (for frames under
    16 MiB): the search, a C regex over those bytes, skips the NDJSON that is most of a chunk,
    and only the few candidates left are checked in Python."""
    end = len(data)
    if end - start < _FRAME_HEAD.size:
        return end
    view = memoryview(data)
    for match in _candidates(min(255, (end - start) >> 24)).finditer(data, start):
        offset = match.start()
        length, crc, count, ndjson_len = _FRAME_HEAD.unpack_from(data, offset)
        frame_end = offset + FRAME_PREFIX.size + length
        if (
            not count
            or length != PAYLOAD_PREFIX.size + 8 * count + ndjson_len
            or frame_end > end
            or data[frame_end - 1] != 0x0A
            or crc32(view[offset + FRAME_PREFIX.size : frame_end]) != crc
            or data.count(b"\n", frame_end - ndjson_len, frame_end) != count
            or not _json_lines(view[frame_end - ndjson_len : frame_end])
        ):
            continue
        return offset
    return end


def _json_lines(ndjson: memoryview) -> bool:
    decode = msgspec.json.decode
    try:
        for line in bytes(ndjson).split(b"\n")[:-1]:
            decode(line)
    except msgspec.DecodeError:
        return False
    return True


def _count_frames(data: bytes, offset: int, end: int) -> int:
    """Frames in a damaged span, following length fields while they stay inside it."""
    frames = 0
    while offset < end:
        frames += 1
        if end - offset < FRAME_PREFIX.size:
            break
        length = FRAME_PREFIX.unpack_from(data, offset)[0]
        if length < PAYLOAD_PREFIX.size or offset + FRAME_PREFIX.size + length > end:
            break
        offset += FRAME_PREFIX.size + length
    return frames
