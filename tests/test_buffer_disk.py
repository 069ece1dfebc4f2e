"""The buffer's contract against real files: cycle, recovery, limits, dead letters, sync."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
from array import array
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.buffer.base import Buffer, BufferConfig
from agent.buffer.chunk import (
    MIN_PAUSE,
    PAUSE_GAPS,
    BufferChunk,
    OpenChunk,
    chunk_file_name,
    parse_chunk_file_name,
)
from agent.buffer.core import ChunkBuffer
from agent.buffer.disk import DataDirInUse, DiskBuffer
from agent.buffer.factory import build_buffer
from agent.buffer.frames import decode_header
from agent.buffer.memory import MemoryBuffer
from agent.config import ConfigError
from common.units import Size
from outputs.base import Chunk
from tests.doubles import RecordingMetrics

LOG = logging.getLogger("test.buffer")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def records(start: int, count: int, tag: str = "t") -> tuple[list[bytes], list[float]]:
    lines = [msgspec.json.encode({"n": n, "tag": tag, "pad": "x" * 50}) for n in
             range(start, start + count)]
    return lines, [1_700_000_000.0 + n / 1000 for n in range(start, start + count)]


def numbers(chunk: Chunk) -> list[int]:
    return [json.loads(line)["n"] for line in chunk.lines()]


def routes_to(*outputs: str) -> Callable[[str], Sequence[str]]:
    return lambda tag: outputs


def make(
    tmp_path: Path,
    metrics: RecordingMetrics | None = None,
    kind: str = "disk",
    **config: Any,
) -> Buffer:
    config.setdefault("flush_interval", 1000.0)
    cfg = BufferConfig(type=kind, **config)  # type: ignore[arg-type]
    return build_buffer(cfg, str(tmp_path), metrics or RecordingMetrics(), LOG)


async def take_now(buffer: Buffer, output: str) -> Chunk:
    return await asyncio.wait_for(buffer.take(output), 10)


async def drain(buffer: Buffer, output: str) -> list[Chunk]:
    """Take every chunk pending for ``output`` (not acknowledged)."""
    taken: list[Chunk] = []
    while buffer.pending(output) - len(taken) > 0:
        chunk = await take_now(buffer, output)
        taken.append(chunk)
    return taken


async def drain_numbers(buffer: Buffer, output: str) -> list[int]:
    """Take, read and acknowledge every chunk pending for ``output``."""
    got = []
    for chunk in await drain(buffer, output):
        got += numbers(chunk)
        buffer.ack(chunk, output)
    return got


def chunk_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "chunks").glob("*.chunk"))


# ----------------------------------------------------------------------------- the cycle


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_append_seal_take_ack_delete(tmp_path: Path, kind: str) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = make(tmp_path, metrics, kind=kind)
        await buffer.open(routes_to("a", "b"))
        lines, times = records(0, 100)
        buffer.append("t", lines, times)
        buffer.append("t", *records(100, 50))
        assert buffer.pending("a") == 0  # still open
        buffer.seal_due(1e12)
        assert buffer.pending("a") == 1 and buffer.pending("b") == 1
        chunk = await take_now(buffer, "a")
        assert chunk.tag == "t" and chunk.records == 150
        assert numbers(chunk) == list(range(150))
        assert list(chunk.times()) == times + records(100, 50)[1]
        assert chunk.data() == b"".join(line + b"\n" for line in lines + records(100, 50)[0])
        assert chunk.size == len(chunk.data())
        assert buffer.stats().chunks == 1 and buffer.stats().bytes == chunk.size
        if kind == "disk":
            assert len(chunk_files(tmp_path)) == 1
            assert buffer.stats().disk_bytes > chunk.size
        buffer.ack(chunk, "a")
        assert buffer.pending("a") == 0 and buffer.pending("b") == 1
        assert buffer.stats().chunks == 1  # b has not acknowledged
        same = await take_now(buffer, "b")
        assert same.id == chunk.id
        buffer.ack(same, "b")
        assert buffer.stats().chunks == 0 and buffer.stats().bytes == 0
        assert chunk_files(tmp_path) == []
        assert list((tmp_path / "chunks").glob("*.acks")) == [] if kind == "disk" else True
        await buffer.close()

    run(scenario())
    assert metrics.counter("buffer_deleted_chunks_total") == 1


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_a_sealed_chunk_gives_its_batches_unjoined_until_data_is_asked(
    tmp_path: Path, kind: str
) -> None:
    """Sealing does not join a chunk's batches: ``parts()`` gives them as appended (the file
    output writes them so); the first ``data()`` joins them once."""

    async def scenario() -> None:
        buffer = make(tmp_path, kind=kind)
        await buffer.open(routes_to("a"))
        first, second = records(0, 100), records(100, 50)
        buffer.append("t", *first)
        buffer.append("t", *second)
        buffer.seal_due(1e12)
        chunk = await take_now(buffer, "a")
        batches = [b"".join(line + b"\n" for line in lines) for lines, _ in (first, second)]
        assert list(chunk.parts()) == batches
        assert buffer.stats().memory_bytes == chunk.size + 8 * 150
        assert chunk.data() == b"".join(batches) and chunk.size == len(chunk.data())
        assert list(chunk.parts()) == [chunk.data()]
        buffer.ack(chunk, "a")
        assert buffer.stats().chunks == 0
        await buffer.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_per_tag_chunks_in_creation_order_and_size_sealing(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path, kind=kind, chunk_bytes=Size(2000))
        await buffer.open(routes_to("out"))
        for start in range(0, 200, 10):
            buffer.append("x", *records(start, 10, "x"))
            buffer.append("y", *records(1000 + start, 10, "y"))
        buffer.seal_due(1e12)
        chunks = await drain(buffer, "out")
        assert len(chunks) > 4
        assert [c.id for c in chunks] == sorted(c.id for c in chunks)
        for chunk in chunks:
            assert chunk.size <= 2000
            assert {json.loads(line)["tag"] for line in chunk.lines()} == {chunk.tag}
        xs = [n for c in chunks if c.tag == "x" for n in numbers(c)]
        ys = [n for c in chunks if c.tag == "y" for n in numbers(c)]
        assert xs == list(range(200)) and ys == list(range(1000, 1200))
        await buffer.close()

    run(scenario())


def test_flush_interval_seals_by_age(tmp_path: Path) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path, flush_interval=5.0)
        await buffer.open(routes_to("out"))
        buffer.append("t", *records(0, 3))
        chunk_created = buffer.stats().chunks
        assert chunk_created == 1
        import time

        now = time.time()
        buffer.seal_due(now + 1)
        assert buffer.pending("out") == 0
        buffer.seal_due(now + 6)
        assert buffer.pending("out") == 1
        await buffer.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_a_paused_burst_is_sealed_before_flush_interval(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path, kind=kind, flush_interval=3600.0)
        await buffer.open(routes_to("out"))
        buffer.append("burst", *records(0, 3))
        buffer.append("burst", *records(3, 3))
        buffer.append("single", *records(0, 1))
        assert isinstance(buffer, ChunkBuffer)
        burst = buffer._open["burst"]
        quiet = max(MIN_PAUSE, PAUSE_GAPS * (burst.updated - burst.created))
        buffer.seal_due(burst.updated + quiet / 2)
        assert buffer.pending("out") == 0
        buffer.seal_due(burst.updated + quiet * 1.01)  # a hair past: float rounding
        assert buffer.pending("out") == 1
        assert numbers(await take_now(buffer, "out")) == list(range(6))
        # One batch shows no usual gap: that chunk waits for flush_interval.
        assert "single" in buffer._open and "burst" not in buffer._open
        await buffer.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_next_seal_is_when_seal_due_will_seal(tmp_path: Path, kind: str) -> None:
    """The agent sleeps until ``next_seal``: sealing there, and not a moment before, is what
    delivers the end of a burst without waiting for a tick."""

    async def scenario() -> None:
        buffer = make(tmp_path, kind=kind, flush_interval=30.0)
        await buffer.open(routes_to("out"))
        assert buffer.next_seal() is None
        buffer.append("single", *records(0, 1))
        assert isinstance(buffer, ChunkBuffer)
        single = buffer._open["single"]
        assert buffer.next_seal() == single.created + 30.0  # one batch: flush_interval
        buffer.append("burst", *records(0, 3))
        buffer.append("burst", *records(3, 3))
        burst = buffer._open["burst"]
        due = buffer.next_seal()
        assert due == burst.pause_at() < single.created + 30.0
        buffer.seal_due(due - 0.001)
        assert buffer.pending("out") == 0
        buffer.seal_due(due)
        assert buffer.pending("out") == 1 and "burst" not in buffer._open
        assert buffer.next_seal() == single.created + 30.0
        buffer.seal_due(single.created + 30.0)
        assert buffer.pending("out") == 2 and buffer.next_seal() is None
        await buffer.close()

    run(scenario())


def test_a_steady_slow_stream_is_not_sealed_between_its_batches() -> None:
    chunk = OpenChunk("0000000000000-000000000000", "t", 100.0)
    batch = b'{"n":1}\n'
    chunk.add(batch, array("d", [0.0]), 100.0)
    assert not chunk.paused(1e12)  # one batch: no usual gap yet
    chunk.add(batch, array("d", [0.0]), 101.0)
    chunk.add(batch, array("d", [0.0]), 102.0)
    assert not chunk.paused(102.0 + (PAUSE_GAPS - 0.5) * 1.0)
    assert chunk.paused(102.0 + PAUSE_GAPS * 1.01)
    fast = OpenChunk("0000000000000-000000000001", "t", 100.0)
    fast.add(batch, array("d", [0.0]), 100.0)
    fast.add(batch, array("d", [0.0]), 100.001)
    assert not fast.paused(100.001 + MIN_PAUSE / 2)  # a stall of a busy input
    assert fast.paused(100.001 + MIN_PAUSE * 1.01)


def test_tags_with_any_characters_survive_file_names(tmp_path: Path) -> None:
    tag = "docker/ns 1/é%..\n*" + "long" * 100

    async def scenario() -> None:
        buffer = make(tmp_path)
        await buffer.open(routes_to("out"))
        buffer.append(tag, *records(0, 2))
        await buffer.close()
        (path,) = chunk_files(tmp_path)
        assert "/" not in path.name and "\n" not in path.name and len(path.name) < 255
        buffer = make(tmp_path)
        await buffer.open(routes_to("out"))
        chunk = await take_now(buffer, "out")
        assert chunk.tag == tag and numbers(chunk) == [0, 1]
        await buffer.close()

    run(scenario())
    short = chunk_file_name("0000000000001-000000000007", "a/b c")
    assert parse_chunk_file_name(short) == ("0000000000001-000000000007", "a/b c")


def test_lines_with_newlines_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path)
        await buffer.open(routes_to("out"))
        with pytest.raises(ValueError, match="newline"):
            buffer.append("t", [b'{"a":1}', b'{"a":\n2}'], [1.0, 2.0])
        with pytest.raises(ValueError, match="times"):
            buffer.append("t", [b'{"a":1}'], [])
        assert buffer.stats().chunks == 0
        await buffer.close()

    run(scenario())


def test_ids_unique_and_sortable_across_restarts(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        ids = []
        for _ in range(3):
            buffer = make(tmp_path)
            await buffer.open(routes_to("out"))
            buffer.append("t", *records(0, 1))
            buffer.seal_due(1e12)
            buffer.append("t", *records(1, 1))
            await buffer.close()
        buffer = make(tmp_path)
        await buffer.open(routes_to("out"))
        for chunk in await drain(buffer, "out"):
            ids.append(chunk.id)
            buffer.ack(chunk, "out")
        await buffer.close()
        return ids

    ids = run(scenario())
    assert len(ids) == 6 and len(set(ids)) == 6 and ids == sorted(ids)


def test_second_agent_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = make(tmp_path)
        await first.open(routes_to("out"))
        with pytest.raises(ConfigError, match="in use") as refused:
            await make(tmp_path).open(routes_to("out"))
        assert isinstance(refused.value, DataDirInUse)
        assert str(tmp_path) in str(refused.value) and f"pid {os.getpid()}" in str(refused.value)
        await first.close()
        second = make(tmp_path)
        await second.open(routes_to("out"))
        await second.close()

    run(scenario())


def test_unrouted_tag_is_counted_not_silent(tmp_path: Path) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = make(tmp_path, metrics)
        await buffer.open(lambda tag: ["out"] if tag == "routed" else [])
        buffer.append("lost", *records(0, 7))
        buffer.append("routed", *records(0, 1))
        buffer.seal_due(1e12)
        assert buffer.pending("out") == 1
        assert len(chunk_files(tmp_path)) == 1
        await buffer.close()

    run(scenario())
    assert metrics.counter("buffer_dropped_records_total", reason="no_route") == 7


# --------------------------------------------------------------------------- persistence


def test_ack_persists_across_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path)
        await buffer.open(routes_to("a", "b"))
        buffer.append("t", *records(0, 10))
        buffer.seal_due(1e12)
        chunk = await take_now(buffer, "a")
        buffer.ack(chunk, "a")
        await buffer.close()

        metrics = RecordingMetrics()
        buffer = make(tmp_path, metrics)
        await buffer.open(routes_to("a", "b"))
        assert buffer.pending("a") == 0 and buffer.pending("b") == 1
        again = await take_now(buffer, "b")
        assert again.id == chunk.id and numbers(again) == list(range(10))
        buffer.ack(again, "b")
        assert chunk_files(tmp_path) == []
        assert list((tmp_path / "chunks").glob("*.acks")) == []
        await buffer.close()
        assert metrics.counter("buffer_recovered_chunks_total") == 1

    run(scenario())


def test_open_chunk_found_at_start_is_recovered_in_order(tmp_path: Path) -> None:
    """close() is not called: the chunk is still open (file not sealed) when we reopen."""

    async def scenario() -> None:
        buffer = make(tmp_path, chunk_bytes=Size(3000))
        await buffer.open(routes_to("out"))
        for start in range(0, 100, 10):
            buffer.append("t", *records(start, 10))
        assert isinstance(buffer, DiskBuffer)
        # Simulate the process dying: drop the lock without sealing.
        assert buffer._lock_fd is not None
        os.close(buffer._lock_fd)
        buffer._lock_fd = None

        reopened = make(tmp_path)
        await reopened.open(routes_to("out"))
        assert await drain_numbers(reopened, "out") == list(range(100))
        await reopened.close()

    run(scenario())


def write_then_crash(tmp_path: Path, batches: int, per_batch: int = 10) -> Path:
    """Append batches to one chunk and close cleanly; return the chunk file."""

    async def scenario() -> None:
        buffer = make(tmp_path)
        await buffer.open(routes_to("out"))
        for b in range(batches):
            buffer.append("t", *records(b * per_batch, per_batch))
        await buffer.close()

    run(scenario())
    (path,) = chunk_files(tmp_path)
    return path


def recover(tmp_path: Path, metrics: RecordingMetrics) -> list[int]:
    async def scenario() -> list[int]:
        buffer = make(tmp_path, metrics)
        await buffer.open(routes_to("out"))
        got = []
        for chunk in await drain(buffer, "out"):
            got += numbers(chunk)
            assert len(chunk.times()) == chunk.records == len(chunk.lines())
            assert list(chunk.times()) == [1_700_000_000.0 + n / 1000 for n in numbers(chunk)]
            buffer.ack(chunk, "out")
        await buffer.close()
        return got

    result: list[int] = run(scenario())
    return result


def test_torn_tail_is_truncated_and_the_rest_delivered(tmp_path: Path) -> None:
    path = write_then_crash(tmp_path, batches=5)
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size - 37)  # mid-way through the last frame
    metrics = RecordingMetrics()
    assert recover(tmp_path, metrics) == list(range(40))
    assert 0 < metrics.counter("buffer_cut_bytes_total", reason="torn") < size
    assert metrics.counter("buffer_cut_frames_total", reason="torn") == 1
    assert list((tmp_path / "corrupt").glob("*.cut-at-*"))


def frame_spans(content: bytes) -> list[tuple[int, int]]:
    """(offset, end) of each frame of an intact chunk file, read per docs/buffer.md."""
    _, offset = decode_header(content)
    spans = []
    while offset < len(content):
        (length,) = struct.unpack_from("<I", content, offset)
        spans.append((offset, offset + 8 + length))
        offset += 8 + length
    return spans


def test_flipped_byte_cuts_only_that_frame(tmp_path: Path) -> None:
    path = write_then_crash(tmp_path, batches=5)
    content = bytearray(path.read_bytes())
    third = frame_spans(bytes(content))[2]
    flipped = (third[0] + third[1]) // 2  # inside the third frame
    content[flipped] ^= 0xFF
    path.write_bytes(bytes(content))
    metrics = RecordingMetrics()
    assert recover(tmp_path, metrics) == list(range(20)) + list(range(30, 50))
    (cut,) = (tmp_path / "corrupt").glob(path.name + ".cut-at-*")
    assert cut.name.endswith(f".cut-at-{third[0]}")
    assert cut.read_bytes() == bytes(content[third[0] : third[1]])
    assert metrics.counter("buffer_cut_bytes_total", reason="checksum") == third[1] - third[0]
    assert metrics.counter("buffer_cut_frames_total", reason="checksum") == 1


def test_corrupt_header_moves_chunk_aside(tmp_path: Path) -> None:
    path = write_then_crash(tmp_path, batches=2)
    content = bytearray(path.read_bytes())
    original = bytes(content)
    content[20] ^= 0xFF  # inside the header's JSON
    path.write_bytes(bytes(content))
    metrics = RecordingMetrics()
    assert recover(tmp_path, metrics) == []
    assert metrics.counter("buffer_corrupt_chunks_total") == 1
    moved = tmp_path / "corrupt" / path.name
    assert moved.exists() and len(moved.read_bytes()) == len(original)
    assert chunk_files(tmp_path) == []


def test_corrupt_chunk_does_not_hide_healthy_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path)
        await buffer.open(routes_to("out"))
        for tag in ("a", "b", "c"):
            buffer.append(tag, *records(0, 3, tag))
        await buffer.close()

    run(scenario())
    files = chunk_files(tmp_path)
    files[1].write_bytes(b"garbage")
    metrics = RecordingMetrics()
    assert recover(tmp_path, metrics) == [0, 1, 2, 0, 1, 2]
    assert metrics.counter("buffer_corrupt_chunks_total") == 1


def test_chunk_damaged_after_start_is_quarantined_when_taken(tmp_path: Path) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        cfg = BufferConfig(flush_interval=1000.0)  # type: ignore[arg-type]
        buffer = DiskBuffer(cfg, str(tmp_path), metrics, LOG, resident_bytes=0)
        await buffer.open(routes_to("out"))
        buffer.append("bad", *records(0, 5))
        buffer.append("good", *records(5, 5))
        buffer.seal_due(1e12)
        bad = next(p for p in chunk_files(tmp_path) if ".bad." in p.name)
        content = bytearray(bad.read_bytes())
        content[-3] ^= 0xFF
        bad.write_bytes(bytes(content))
        chunk = await take_now(buffer, "out")
        assert chunk.tag == "good" and numbers(chunk) == list(range(5, 10))
        assert buffer.pending("out") == 1
        buffer.ack(chunk, "out")
        assert (tmp_path / "corrupt" / bad.name).exists()
        await buffer.close()

    run(scenario())
    assert metrics.counter("buffer_corrupt_chunks_total") == 1
    assert metrics.counter("buffer_dropped_records_total", reason="corrupt") == 5


def test_sealed_chunks_are_read_back_lazily(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = BufferConfig(chunk_bytes=Size(4096), flush_interval=1000.0)  # type: ignore[arg-type]
        buffer = DiskBuffer(cfg, str(tmp_path), RecordingMetrics(), LOG, resident_bytes=8192)
        await buffer.open(routes_to("out"))
        for start in range(0, 1000, 20):
            buffer.append("t", *records(start, 20))
        buffer.seal_due(1e12)
        stats = buffer.stats()
        assert stats.memory_bytes <= 8192 + 4096 < stats.bytes
        got: list[int] = []
        while buffer.pending("out"):
            chunk = await take_now(buffer, "out")
            got += numbers(chunk)
            assert list(chunk.times()) == [1_700_000_000.0 + n / 1000 for n in numbers(chunk)]
            buffer.ack(chunk, "out")
            assert isinstance(chunk, BufferChunk) and not chunk.loaded
        assert got == list(range(1000))
        await buffer.close()

    run(scenario())


# -------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_max_bytes_blocks_until_acks_free_room(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path, kind=kind, chunk_bytes=Size(1000), max_bytes=Size(3000))
        await buffer.open(routes_to("out"))
        while buffer.has_room():
            buffer.append("t", *records(0, 5))
        assert buffer.stats().bytes >= 3000
        waiter = asyncio.ensure_future(buffer.wait_room())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        chunk = await take_now(buffer, "out")
        buffer.ack(chunk, "out")
        await asyncio.wait_for(waiter, 10)
        assert buffer.has_room()
        await buffer.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_drop_oldest_deletes_oldest_sealed_and_counts(tmp_path: Path, kind: str) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = make(
            tmp_path, metrics, kind=kind, chunk_bytes=Size(1000), max_bytes=Size(3000),
            when_full="drop_oldest",
        )
        await buffer.open(routes_to("out"))
        for start in range(0, 400, 5):
            buffer.append("t", *records(start, 5))
            assert buffer.has_room()
            assert buffer.stats().bytes <= 3000 + 1000
        buffer.seal_due(1e12)
        kept = await drain_numbers(buffer, "out")
        dropped = int(metrics.counter("buffer_dropped_records_total", reason="drop_oldest"))
        assert dropped > 0 and kept == list(range(dropped, 400))
        assert metrics.counter("buffer_dropped_bytes_total", reason="drop_oldest") > 0
        await buffer.close()

    run(scenario())


# --------------------------------------------------------------------------- dead letter


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_dead_letter_writes_data_and_reason_and_counts_as_ack(tmp_path: Path, kind: str) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path, kind=kind)
        await buffer.open(routes_to("es", "s3"))
        buffer.append("app.1", *records(0, 4))
        buffer.seal_due(1e12)
        chunk = await take_now(buffer, "es")
        path = buffer.dead_letter(chunk, "es", "mapper_parsing_exception")
        assert Path(path).read_bytes() == chunk.data()
        reason = json.loads(Path(path).with_suffix(".json").read_text())
        assert reason["chunk"] == chunk.id and reason["tag"] == "app.1"
        assert reason["output"] == "es" and reason["records"] == 4
        assert reason["reason"] == "mapper_parsing_exception" and reason["time"]
        assert Path(path).parent == tmp_path / "dead-letter"
        assert buffer.pending("es") == 0 and buffer.pending("s3") == 1
        buffer.ack(await take_now(buffer, "s3"), "s3")
        assert buffer.stats().chunks == 0
        await buffer.close()

    run(scenario())


# ---------------------------------------------------------------------------------- sync


def fsyncs(metrics: RecordingMetrics) -> int:
    return metrics.observations("buffer_fsync_seconds")


@pytest.mark.parametrize(("sync", "expected"), [("none", 0), ("always", 5)])
def test_sync_none_never_fsyncs_and_always_fsyncs_every_append(
    tmp_path: Path, sync: str, expected: int
) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = make(tmp_path, metrics, sync=sync)
        await buffer.open(routes_to("out"))
        for start in range(0, 50, 10):
            buffer.append("t", *records(start, 10))
            await buffer.commit()
        await buffer.close()

    run(scenario())
    assert fsyncs(metrics) == expected


def test_sync_batch_fsyncs_on_commit_coalesced_and_skips_when_clean(tmp_path: Path) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = make(tmp_path, metrics, sync="batch")
        await buffer.open(routes_to("out"))
        await buffer.commit()
        assert fsyncs(metrics) == 0  # nothing appended: nothing to do
        buffer.append("t", *records(0, 10))
        await buffer.commit()
        assert fsyncs(metrics) == 1
        await buffer.commit()
        assert fsyncs(metrics) == 1  # nothing new
        for start in range(10, 60, 10):
            buffer.append("t", *records(start, 10))
        await asyncio.gather(*(buffer.commit() for _ in range(20)))
        assert fsyncs(metrics) == 2  # twenty concurrent commits, one fsync round
        # A commit that arrives while a round runs waits for a second round covering it.
        buffer.append("t", *records(60, 10))
        first = asyncio.ensure_future(buffer.commit())
        await asyncio.sleep(0)
        buffer.append("t", *records(70, 10))
        await asyncio.gather(first, buffer.commit())
        assert fsyncs(metrics) in (3, 4)
        assert isinstance(buffer, DiskBuffer) and buffer.sync.synced == buffer.sync.appended
        await buffer.close()

    run(scenario())


def test_sync_batch_seals_and_closes_files_without_commits(tmp_path: Path) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path, sync="batch", chunk_bytes=Size(500))
        await buffer.open(routes_to("out"))
        before = len(os.listdir("/proc/self/fd"))
        for start in range(0, 200, 5):
            buffer.append("t", *records(start, 5))
        for _ in range(100):
            await asyncio.sleep(0.01)
            assert isinstance(buffer, DiskBuffer)
            if buffer.sync.task is None and not buffer.sync.to_close:
                break
        assert len(os.listdir("/proc/self/fd")) <= before + 2
        buffer.seal_due(1e12)
        assert await drain_numbers(buffer, "out") == list(range(200))
        await buffer.close()

    run(scenario())


# ------------------------------------------------------------------------ odd situations


def test_empty_chunk_file_is_removed_quietly(tmp_path: Path) -> None:
    (tmp_path / "chunks").mkdir()
    empty = tmp_path / "chunks" / chunk_file_name("0000000000001-000000000000", "t")
    empty.write_bytes(b"")
    metrics = RecordingMetrics()
    assert recover(tmp_path, metrics) == []
    assert not empty.exists()
    assert metrics.counter("buffer_corrupt_chunks_total") == 0


def test_take_cancelled_while_reading_puts_the_chunk_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = BufferConfig(flush_interval=1000.0)  # type: ignore[arg-type]
        buffer = DiskBuffer(cfg, str(tmp_path), RecordingMetrics(), LOG, resident_bytes=0)
        await buffer.open(routes_to("out"))
        buffer.append("t", *records(0, 5))
        buffer.seal_due(1e12)
        task = asyncio.ensure_future(buffer.take("out"))
        await asyncio.sleep(0)  # the take is now reading the chunk in a thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        chunk = await take_now(buffer, "out")
        assert numbers(chunk) == list(range(5))
        await buffer.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_gauges_and_stats(tmp_path: Path, kind: str) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = make(tmp_path, metrics, kind=kind)
        await buffer.open(routes_to("out"))
        buffer.append("a", *records(0, 10))
        buffer.append("b", *records(0, 10))
        await buffer.close()
        stats = buffer.stats()
        assert stats.chunks == 2 and stats.bytes > 0
        location = "disk" if kind == "disk" else "memory"
        assert metrics.gauge("buffer_chunks", location=location) == 2
        # One series: a sum() over buffer_chunks counts each chunk once.
        assert metrics.series("buffer_chunks") == [{"location": location}]
        if kind == "disk":
            assert stats.disk_bytes == sum(p.stat().st_size for p in chunk_files(tmp_path))
            assert metrics.gauge("buffer_bytes", location="disk") == stats.disk_bytes
        else:
            assert stats.disk_bytes == 0 and stats.memory_bytes >= stats.bytes

    run(scenario())


def test_memory_buffer_keeps_nothing_across_restarts(tmp_path: Path) -> None:
    async def scenario() -> None:
        buffer = make(tmp_path, kind="memory")
        await buffer.open(routes_to("out"))
        buffer.append("t", *records(0, 10))
        await buffer.close()
        assert not (tmp_path / "chunks").exists()
        again = make(tmp_path, kind="memory")
        await again.open(routes_to("out"))
        assert again.pending("out") == 0 and again.stats().chunks == 0

    run(scenario())


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        make(tmp_path, chunk_bytes=Size(4096), max_bytes=Size(1024))


WRITE_FAILURE_CHILD = """
import asyncio, json, logging, resource, signal, sys
import msgspec
from agent.buffer.base import BufferConfig
from agent.buffer.factory import build_buffer
from agent.buffer.frames import decode_header
from agent.buffer.memory import MemoryBuffer
from agent.config import ConfigError
from common.units import Duration, Size
from tests.doubles import NullMetrics

async def main():
    config = BufferConfig(chunk_bytes=Size(10 * 1024 * 1024), flush_interval=Duration(1000))
    buffer = build_buffer(config, sys.argv[1], NullMetrics(), logging.getLogger("child"))
    await buffer.open(lambda tag: ["out"])
    # Real write failures: no file may grow past 50 kB (EFBIG instead of SIGXFSZ).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
    ok, failed, n = [], [], 0
    for _ in range(60):
        lines = [msgspec.json.encode({"n": i, "pad": "z" * 150}) for i in range(n, n + 13)]
        try:
            buffer.append("t", lines, [1_700_000_000.0 + i / 1000 for i in range(n, n + 13)])
            ok.extend(range(n, n + 13))
        except OSError as exc:
            failed.append((n, exc.errno))
        n += 13
    print(json.dumps({"ok": ok, "failed": failed}))

asyncio.run(main())
"""


def test_failed_write_is_cut_back_and_raised_and_later_appends_still_land(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import agent_env

    done = subprocess.run(
        [sys.executable, "-c", WRITE_FAILURE_CHILD, str(tmp_path)],
        capture_output=True, text=True, env=agent_env(), timeout=60, check=True,
    )
    report = json.loads(done.stdout)
    assert report["failed"], "the size limit never made a write fail"
    metrics = RecordingMetrics()
    got = recover(tmp_path, metrics)
    assert sorted(got) == report["ok"]  # every acknowledged append, nothing from failed ones
    assert metrics.counter("buffer_cut_bytes_total", reason="torn") == 0  # torn frames were cut
    assert len(report["ok"]) > 13 * len(report["failed"])  # new chunks took over


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_stuck_output_with_drop_oldest_keeps_memory_bounded(tmp_path: Path, kind: str) -> None:
    """One output never takes: drop_oldest keeps dropping; its queue must not keep the dropped
    chunks (or their data) alive."""

    async def scenario() -> None:
        buffer = make(
            tmp_path, kind=kind, chunk_bytes=Size(600), max_bytes=Size(3000),
            when_full="drop_oldest",
        )
        assert isinstance(buffer, DiskBuffer | MemoryBuffer)
        await buffer.open(routes_to("stuck"))
        for start in range(0, 20_000, 5):
            buffer.append("t", *records(start, 5))
        assert len(buffer._queues["stuck"]) < 600
        assert buffer.stats().memory_bytes <= 3000 + 2 * 600 + 8 * 100
        assert buffer.pending("stuck") == len(buffer._chunks) <= 6
        got = await drain_numbers(buffer, "stuck")
        assert got == sorted(got) and got[-1] >= 19_990 - 100
        await buffer.close()

    run(scenario())


def test_waiting_output_gets_a_chunk_over_the_resident_budget_from_memory(tmp_path: Path) -> None:
    """The resident budget is full (held for a slower output), yet an output already waiting in
    ``take`` gets a just-sealed chunk's bytes from memory, not read back from disk; its ack
    drops them while the slow output has not taken the chunk yet."""

    async def scenario() -> None:
        cfg = BufferConfig(flush_interval=1000.0)  # type: ignore[arg-type]
        buffer = DiskBuffer(cfg, str(tmp_path), RecordingMetrics(), LOG, resident_bytes=0)
        await buffer.open(routes_to("fast", "slow"))
        waiting = asyncio.ensure_future(buffer.take("fast"))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        buffer.append("t", *records(0, 5))
        buffer.seal_due(1e12)
        # Reading the chunk back from disk now fails: only the in-memory bytes can serve it.
        (path,) = chunk_files(tmp_path)
        saved = path.read_bytes()
        path.unlink()
        chunk = await asyncio.wait_for(waiting, 10)
        assert numbers(chunk) == list(range(5))
        buffer.ack(chunk, "fast")
        assert isinstance(chunk, BufferChunk) and not chunk.loaded
        # The slow output, not waiting at sealing time, reads the chunk back from its file.
        path.write_bytes(saved)
        slow = await take_now(buffer, "slow")
        assert numbers(slow) == list(range(5))
        buffer.ack(slow, "slow")
        await buffer.close()

    run(scenario())


def test_chunk_over_the_resident_budget_is_unloaded_when_no_output_waits(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        cfg = BufferConfig(flush_interval=1000.0)  # type: ignore[arg-type]
        buffer = DiskBuffer(cfg, str(tmp_path), RecordingMetrics(), LOG, resident_bytes=0)
        await buffer.open(routes_to("out"))
        buffer.append("t", *records(0, 5))
        buffer.seal_due(1e12)
        assert buffer.stats().memory_bytes == 0
        chunk = await take_now(buffer, "out")
        assert numbers(chunk) == list(range(5))
        buffer.ack(chunk, "out")
        await buffer.close()

    run(scenario())
