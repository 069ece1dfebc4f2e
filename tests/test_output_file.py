"""The file output in process: a chunk's batches go out as they are (``Chunk.parts``), in order,
whatever their number and size."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import msgspec

from common.units import config_dec_hook
from outputs.file import FileConfig, FileOutput
from tests.chunks import TestChunk, make_chunks, make_context


class Batched(TestChunk):
    """A chunk whose data comes in pieces of ``per_part`` lines, as the buffer's sealed chunks
    give their batches."""

    def __init__(self, chunk: TestChunk, per_part: int) -> None:
        super().__init__(chunk.tag, chunk.lines(), chunk_id=chunk.id, created=chunk.created)
        lines = [line + b"\n" for line in chunk.lines()]
        self.pieces = [
            b"".join(lines[start : start + per_part]) for start in range(0, len(lines), per_part)
        ]

    def parts(self) -> Sequence[bytes]:
        return self.pieces


def test_batches_are_written_in_order_however_many(tmp_path: Path) -> None:
    """Small chunks (written on the loop), one past the 256 KiB that moves writes to a thread,
    and one of more batches than one writev takes (IOV_MAX, 1024 on Linux)."""
    small, big, many = make_chunks(1, 10), make_chunks(1, 4000, payload=100), make_chunks(1, 3000)
    chunks = [Batched(small[0], 3), Batched(big[0], 700), Batched(many[0], 1)]
    assert len(chunks[2].parts()) > 1024 and chunks[1].size > 256 * 1024
    out = tmp_path / "out" / "records.ndjson"
    config = msgspec.convert(
        {"type": "file", "name": "file.0", "match": "*", "path": str(out)},
        FileConfig,
        dec_hook=config_dec_hook,
    )
    output = FileOutput(config, make_context(tmp_path, name="file.0"))

    async def go() -> None:
        await output.start()
        try:
            for chunk in chunks:
                await output.send([chunk])
            await output.send(chunks[:2])  # a group: every chunk's batches in one write
        finally:
            await output.stop()

    asyncio.run(go())
    expected = b"".join(chunk.data() for chunk in [*chunks, *chunks[:2]])
    assert out.read_bytes() == expected
