"""``ChunkBuffer.append_ndjson`` (the ingestion fast path: one encoder call per batch) stores
exactly what ``append`` stores, survives a restart, and refuses batches that do not add up."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest

from agent.buffer.base import BufferConfig
from agent.buffer.disk import DiskBuffer
from agent.buffer.memory import MemoryBuffer
from agent.metrics import Registry

LOG = logging.getLogger("test.buffer.ndjson")
RECORDS = [{"n": n, "message": f"line {n}\nwith a newline", "time": "x"} for n in range(50)]
TIMES = [1_700_000_000.0 + n / 8 for n in range(50)]


def _buffer(kind: str, data_dir: Path) -> DiskBuffer | MemoryBuffer:
    metrics = Registry().component("buffer", kind)
    cls = DiskBuffer if kind == "disk" else MemoryBuffer
    return cls(BufferConfig(type=kind), str(data_dir), metrics, LOG)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_append_ndjson_equals_append(kind: str, tmp_path: Path) -> None:
    encoder = msgspec.json.Encoder()

    async def scenario() -> tuple[bytes, list[float], bytes, list[float]]:
        buffer = _buffer(kind, tmp_path / "a")
        await buffer.open(lambda tag: ("out",))
        buffer.append_ndjson("t", encoder.encode_lines(RECORDS), len(RECORDS), TIMES)
        buffer.seal_due(float("inf"))
        fast = await buffer.take("out")
        other = _buffer(kind, tmp_path / "b")
        await other.open(lambda tag: ("out",))
        other.append("t", [encoder.encode(record) for record in RECORDS], TIMES)
        other.seal_due(float("inf"))
        plain = await other.take("out")
        result = (fast.data(), list(fast.times()), plain.data(), list(plain.times()))
        await buffer.close()
        await other.close()
        return result

    fast_data, fast_times, plain_data, plain_times = asyncio.run(scenario())
    assert fast_data == plain_data
    assert fast_times == plain_times == TIMES
    assert [msgspec.json.decode(line) for line in fast_data.splitlines()] == RECORDS


def test_append_ndjson_survives_a_restart(tmp_path: Path) -> None:
    ndjson = msgspec.json.Encoder().encode_lines(RECORDS)

    async def write() -> None:
        buffer = _buffer("disk", tmp_path)
        await buffer.open(lambda tag: ("out",))
        buffer.append_ndjson("t", ndjson, len(RECORDS), TIMES)
        buffer.append_ndjson("t", ndjson, len(RECORDS), TIMES)
        await buffer.close()

    async def read() -> tuple[int, bytes, list[float]]:
        buffer = _buffer("disk", tmp_path)
        await buffer.open(lambda tag: ("out",))
        chunk = await buffer.take("out")
        result = (chunk.records, chunk.data(), list(chunk.times()))
        buffer.ack(chunk, "out")
        await buffer.close()
        return result

    asyncio.run(write())
    records, data, times = asyncio.run(read())
    assert records == 2 * len(RECORDS)
    assert data == ndjson + ndjson
    assert times == TIMES + TIMES


def test_append_ndjson_refuses_mismatched_batches(tmp_path: Path) -> None:
    buffer = _buffer("memory", tmp_path)
    ndjson = msgspec.json.Encoder().encode_lines(RECORDS[:2])
    with pytest.raises(ValueError, match="times"):
        buffer.append_ndjson("t", ndjson, 2, TIMES[:1])
    with pytest.raises(ValueError, match="ends with"):
        buffer.append_ndjson("t", ndjson[:-1], 2, TIMES[:2])
