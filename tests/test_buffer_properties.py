"""Property tests of the disk buffer: random damage never breaks recovery, and random sequences
of appends, takes, acks, restarts and crashes deliver every record to every routed output
exactly once (acks are persisted, so nothing acknowledged comes back)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.buffer.base import BufferConfig
from agent.buffer.disk import DiskBuffer
from agent.buffer.frames import decode_header, scan_frames
from common.units import Duration, Size
from outputs.base import Chunk
from tests.doubles import RecordingMetrics

LOG = logging.getLogger("test.buffer.properties")
ROUTES = {"a": ("o1",), "b": ("o1", "o2"), "c": ("o2",)}


def routes(tag: str) -> tuple[str, ...]:
    return ROUTES[tag]


def lines_for(tag: str, start: int, count: int) -> tuple[list[bytes], list[float]]:
    lines = [msgspec.json.encode({"n": n, "tag": tag, "pad": "p" * (n % 40)})
             for n in range(start, start + count)]
    return lines, [float(n) for n in range(start, start + count)]


def numbers(chunk: Chunk) -> list[int]:
    got = [json.loads(line)["n"] for line in chunk.lines()]
    assert list(chunk.times()) == [float(n) for n in got]
    return got


def new_buffer(directory: str, metrics: RecordingMetrics, resident: int = 4096) -> DiskBuffer:
    config = BufferConfig(chunk_bytes=Size(900), flush_interval=Duration(1000.0))
    return DiskBuffer(config, directory, metrics, LOG, resident_bytes=resident)


async def take_pending(buffer: DiskBuffer, output: str, already: int) -> list[Chunk]:
    taken: list[Chunk] = []
    while buffer.pending(output) > already + len(taken):
        taken.append(await asyncio.wait_for(buffer.take(output), 10))
    return taken


# ------------------------------------------------------------------------- random damage


def pristine_dir() -> tuple[str, dict[str, list[int]]]:
    """A data dir with a few chunks per tag; returns it and each chunk's record numbers."""
    directory = tempfile.mkdtemp(prefix="buffer-pristine-")

    async def build() -> None:
        buffer = new_buffer(directory, RecordingMetrics())
        await buffer.open(routes)
        n = 0
        for batch in range(30):
            tag = "abc"[batch % 3]
            buffer.append(tag, *lines_for(tag, n, 1 + batch % 4))
            n += 1 + batch % 4
        await buffer.close()

    asyncio.run(build())
    chunks: dict[str, list[int]] = {}
    for path in sorted(Path(directory, "chunks").glob("*.chunk")):
        content = path.read_bytes()
        _, header_end = decode_header(content)
        scan = scan_frames(content, header_end, keep=True)
        assert scan.error is None and scan.parts is not None
        chunks[path.name] = [
            json.loads(line)["n"] for line in b"".join(scan.parts).split(b"\n")[:-1]
        ]
    return directory, chunks


@pytest.fixture(scope="module")
def pristine() -> Iterator[tuple[str, dict[str, list[int]]]]:
    directory, chunks = pristine_dir()
    try:
        yield directory, chunks
    finally:
        shutil.rmtree(directory)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    damage=st.lists(
        st.tuples(st.integers(0, 1000), st.floats(0, 1), st.integers(1, 255), st.booleans()),
        min_size=1,
        max_size=3,
    )
)
def test_random_damage_never_breaks_recovery(
    pristine: tuple[str, dict[str, list[int]]], damage: list[tuple[int, float, int, bool]]
) -> None:
    source, expected = pristine
    names = sorted(expected)
    work = tempfile.mkdtemp(prefix="buffer-damaged-")
    try:
        shutil.copytree(source, work, dirs_exist_ok=True)
        damaged: set[str] = set()
        for which, where, xor, truncate in damage:
            name = names[which % len(names)]
            path = Path(work, "chunks", name)
            content = bytearray(path.read_bytes())
            if not content:
                continue
            offset = min(int(where * len(content)), len(content) - 1)
            if truncate:
                content = content[:offset]
            else:
                content[offset] ^= xor
            path.write_bytes(bytes(content))
            damaged.add(name)
        metrics = RecordingMetrics()

        async def recover() -> dict[str, list[int]]:
            buffer = new_buffer(work, metrics)
            await buffer.open(routes)
            got: dict[str, list[int]] = {}
            for output in ("o1", "o2"):
                for chunk in await take_pending(buffer, output, 0):
                    got.setdefault(chunk.id, numbers(chunk))
                    buffer.ack(chunk, output)
            await buffer.close()
            return got

        got = asyncio.run(recover())
        for name, records in expected.items():
            chunk_id = name.split(".", 1)[0]
            delivered = got.get(chunk_id, [])
            if name not in damaged:
                assert delivered == records, name
            else:  # the intact frames, in order (the damaged ones cut)
                assert [n for n in records if n in set(delivered)] == delivered, name
        lost = sum(len(records) for records in expected.values()) - sum(map(len, got.values()))
        if lost:
            assert (
                metrics.total("buffer_cut_bytes_total")
                or metrics.total("buffer_corrupt_chunks_total")
                or os.listdir(Path(work, "corrupt"))
                or any(not Path(work, "chunks", n).exists() for n in damaged)
            )
    finally:
        shutil.rmtree(work)


# ---------------------------------------------------------------- random histories


KINDS = ["append"] * 3 + ["seal"] * 2 + ["take"] * 3 + ["ack"] * 3 + ["dead", "restart", "crash"]
OPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 5), st.integers(1, 12)),
    min_size=5,
    max_size=80,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, resident=st.sampled_from([0, 2000, 1 << 20]))
@example(
    ops=[("append", 1, 3), ("seal", 0, 1), ("take", 0, 1), ("ack", 0, 1), ("restart", 0, 1)],
    resident=0,
)
def test_random_histories_deliver_everything_exactly_once(
    ops: list[tuple[str, int, int]], resident: int
) -> None:
    directory = tempfile.mkdtemp(prefix="buffer-history-")
    try:
        asyncio.run(play(directory, ops, resident))
    finally:
        shutil.rmtree(directory)


async def play(directory: str, ops: list[tuple[str, int, int]], resident: int) -> None:
    metrics = RecordingMetrics()
    buffer = new_buffer(directory, metrics, resident)
    await buffer.open(routes)
    appended: dict[str, list[int]] = {"o1": [], "o2": []}
    delivered: dict[str, list[int]] = {"o1": [], "o2": []}
    in_flight: dict[str, list[Chunk]] = {"o1": [], "o2": []}
    n = 0
    for op, pick, count in ops:
        arg = "abc"[pick % 3] if op == "append" else ("o1", "o2")[pick % 2]
        if op == "append":
            buffer.append(arg, *lines_for(arg, n, count))
            for output in ROUTES[arg]:
                appended[output] += range(n, n + count)
            n += count
        elif op == "seal":
            buffer.seal_due(1e12)
        elif op == "take":
            if buffer.pending(arg) > len(in_flight[arg]):
                in_flight[arg].append(await asyncio.wait_for(buffer.take(arg), 10))
        elif op in ("ack", "dead") and in_flight[arg]:
            chunk = in_flight[arg].pop(0)
            delivered[arg] += numbers(chunk)
            if op == "ack":
                buffer.ack(chunk, arg)
            else:
                buffer.dead_letter(chunk, arg, "test")
        elif op in ("restart", "crash"):
            if op == "restart":
                await buffer.close()
            else:  # the process dies: no sealing, files and lock just closed
                for open_chunk in buffer._open.values():
                    if open_chunk.fd is not None:
                        os.close(open_chunk.fd)
                assert buffer._lock_fd is not None
                os.close(buffer._lock_fd)
            in_flight = {"o1": [], "o2": []}
            buffer = new_buffer(directory, metrics, resident)
            await buffer.open(routes)
    buffer.seal_due(1e12)
    for output in ("o1", "o2"):
        for chunk in in_flight[output]:
            delivered[output] += numbers(chunk)
            buffer.ack(chunk, output)
        for chunk in await take_pending(buffer, output, 0):
            delivered[output] += numbers(chunk)
            buffer.ack(chunk, output)
    stats: Any = buffer.stats()
    await buffer.close()
    for output in ("o1", "o2"):
        assert sorted(delivered[output]) == sorted(appended[output]), output
        assert len(delivered[output]) == len(set(delivered[output])), f"{output}: duplicates"
    assert stats.chunks == 0 and stats.bytes == 0
    assert list(Path(directory, "chunks").glob("*.chunk")) == []
    assert list(Path(directory, "chunks").glob("*.acks")) == []
