"""An object's body: the chunks of one write compressed into one stream.

Chunks are read and compressed in order; runs of them of at least ``THREAD_COMPRESS_BYTES`` go to
a thread (reading a chunk back from disk and zlib/zstd release the GIL), so a large object never
stalls the event loop. Each chunk's in-memory copy is released once it is compressed, so building
an object costs about its compressed size plus one run of raw chunks. A chunk that cannot be read
is left out (``unreadable``): the others still make the object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from outputs.base import Chunk
from outputs.compression import Compressor, new_compressor

THREAD_COMPRESS_BYTES = 128 * 1024
"""Runs of chunks at least this large are compressed in a thread."""


class Body(msgspec.Struct):
    data: bytes
    chunks: list[Chunk]
    """The chunks in the object, in order."""
    records: int
    size: int
    """Uncompressed bytes."""
    unreadable: dict[str, str]
    """Chunks left out because their data could not be read: id -> reason."""


class _Unreadable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _compress_run(run: Sequence[Chunk], compressor: Compressor) -> list[bytes | _Unreadable]:
    """The compressed piece of each chunk of ``run``; the raw data is not kept."""
    pieces: list[bytes | _Unreadable] = []
    for chunk in run:
        try:
            data = chunk.data()
        except Exception as error:
            pieces.append(_Unreadable(repr(error)))
            continue
        pieces.append(compressor.compress(data))
    return pieces


async def build_body(
    chunks: Sequence[Chunk], compression: str, level: int | None
) -> Body:
    compressor = new_compressor(compression, level)
    body = Body(b"", [], 0, 0, {})
    pieces: list[bytes] = []
    start = 0
    while start < len(chunks):
        end, size = start, 0
        while end < len(chunks) and size < THREAD_COMPRESS_BYTES:
            size += chunks[end].size
            end += 1
        run = chunks[start:end]
        if size >= THREAD_COMPRESS_BYTES:
            results = await asyncio.to_thread(_compress_run, run, compressor)
        else:
            results = _compress_run(run, compressor)
        for chunk, piece in zip(run, results, strict=True):
            if isinstance(piece, _Unreadable):
                body.unreadable[chunk.id] = piece.reason
                continue
            pieces.append(piece)
            body.chunks.append(chunk)
            body.records += chunk.records
            body.size += chunk.size
            # Released on the event loop (the buffer's chunks are not thread-safe): without
            # this an object being built would cost its raw size as well as its compressed size.
            chunk.release_cache()
        start = end
    pieces.append(compressor.finish())
    body.data = b"".join(pieces)
    return body
