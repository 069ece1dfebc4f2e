"""gzip through zlib-ng (outputs/compression.py): the outputs' bodies and objects stay one gzip
member that the standard library (and so every reader) decompresses to the same bytes."""

from __future__ import annotations

import gzip
import zlib

import msgspec
import pytest

from outputs import compression
from outputs.compression import gzip_fast, new_compressor

pytest.importorskip("zlib_ng")


def _ndjson(records: int) -> bytes:
    lines = [
        msgspec.json.encode(
            {
                "time": f"2026-11-29T21:00:{n % 60:02d}.{n:06d}Z",
                "host": f"node-{n % 7}",
                "message": f"GET /api/v1/orders?page={n % 50} HTTP/1.1 {n * 7919 % 4000}",
            }
        )
        for n in range(records)
    ]
    return b"\n".join(lines) + b"\n"


def test_gzip_goes_through_zlib_ng_when_it_is_installed() -> None:
    assert compression.GZIP_IMPLEMENTATION == "zlib-ng"
    assert compression.FAST_GZIP_LEVEL == 2


def test_request_bodies_are_one_member_that_zlib_reads() -> None:
    data = _ndjson(20_000)
    body = gzip_fast(data)
    reader = zlib.decompressobj(31)
    assert reader.decompress(body) == data
    assert reader.eof and reader.unused_data == b""  # one member, nothing after it
    assert gzip.decompress(body) == data
    assert len(body) * 5 < len(data)  # logs still shrink several-fold at the fast level


@pytest.mark.parametrize("level", [1, 6, 9])
def test_streamed_objects_round_trip_at_every_level(level: int) -> None:
    data = _ndjson(5_000)
    compressor = new_compressor("gzip", level)
    pieces = [data[i : i + 65_536] for i in range(0, len(data), 65_536)]
    streamed = b"".join(compressor.compress(piece) for piece in pieces) + compressor.finish()
    assert gzip.decompress(streamed) == data
    # no bigger than zlib's at that level, give or take a few percent (zlib-ng's own level 1
    # gave 29 % more here: level 1 asks it for 2)
    reference = zlib.compressobj(level, zlib.DEFLATED, 31)
    expected = len(reference.compress(data) + reference.flush())
    assert len(streamed) < expected * 1.05
