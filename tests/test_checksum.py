"""The buffer frames' CRC-32 (common/checksum.py): zlib-ng's when the fast extra is installed,
and the same values as the standard library's, so a chunk either one wrote validates with the
other (a backlog written before an upgrade, or by an install without the extra)."""

from __future__ import annotations

import random
import zlib
from array import array
from types import ModuleType

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.buffer import frames
from common import checksum

zlib_ng: ModuleType = pytest.importorskip("zlib_ng.zlib_ng")


def test_the_frames_use_zlib_ng_when_it_is_installed() -> None:
    assert checksum.IMPLEMENTATION == "zlib-ng"
    assert frames.crc32 is zlib_ng.crc32


@given(st.binary(max_size=4096), st.integers(0, 2**32 - 1), st.integers(0, 64))
def test_zlib_ng_gives_zlibs_crc32(data: bytes, start: int, skip: int) -> None:
    assert zlib_ng.crc32(data) == zlib.crc32(data)
    assert zlib_ng.crc32(data, start) == zlib.crc32(data, start)
    view = memoryview(data)[skip:]  # frames are checked as slices of the file's bytes
    assert zlib_ng.crc32(view) == zlib.crc32(view)


def test_batch_sized_input_agrees_at_every_alignment() -> None:
    """zlib-ng folds long input with SIMD, in blocks: sizes and offsets around them."""
    rng = random.Random(7)
    data = rng.randbytes(300_000)
    view = memoryview(data)
    for size in (15, 16, 63, 64, 65, 255, 256, 4095, 4096, 65_537, 262_144):
        for offset in (0, 1, 3, 8, 17):
            piece = view[offset : offset + size]
            assert zlib_ng.crc32(piece) == zlib.crc32(piece), (size, offset)
    assert zlib_ng.crc32(data, 0xDEADBEEF) == zlib.crc32(data, 0xDEADBEEF)


def _chunk(records: int) -> tuple[bytes, int]:
    header = frames.encode_header("chunk-1", "syslog.node", 1_795_986_000.0)
    lines = [msgspec.json.encode({"n": n, "message": "é" * (n % 300)}) for n in range(records)]
    body = frames.encode_frame(frames.join_lines(lines), array("d", range(records)))
    return header + body, len(header)


@pytest.mark.parametrize(("writer", "reader"), [("zlib-ng", "zlib"), ("zlib", "zlib-ng")])
def test_a_chunk_written_with_one_validates_with_the_other(
    monkeypatch: pytest.MonkeyPatch, writer: str, reader: str
) -> None:
    implementations = {"zlib-ng": zlib_ng.crc32, "zlib": zlib.crc32}
    monkeypatch.setattr(frames, "crc32", implementations[writer])
    data, header_end = _chunk(2_000)
    monkeypatch.setattr(frames, "crc32", implementations[reader])
    header, end = frames.decode_header(data)
    assert (header.id, end) == ("chunk-1", header_end)
    scan = frames.scan_frames(data, header_end, keep=True)
    assert (scan.records, scan.cuts) == (2_000, [])
    # and a flipped byte is still caught by the other implementation
    damaged = bytearray(data)
    damaged[-100] ^= 0x01
    scan = frames.scan_frames(bytes(damaged), header_end, keep=True)
    assert scan.records == 0
    assert [cut.reason for cut in scan.cuts] == ["checksum"]
