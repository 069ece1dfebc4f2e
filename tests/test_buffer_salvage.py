"""The buffer salvages what it can: past a damaged frame it resynchronises on the next intact one,
at start (recovery) and at run time (a sealed chunk read back for delivery) alike. What is cut is
kept in ``corrupt/`` byte for byte and counted by reason; nothing that is not a frame of ours is
ever replayed as records.

Frames are located here from the layout in docs/buffer.md, not with the buffer's scanner."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.buffer.base import BufferConfig
from agent.buffer.chunk import BufferChunk
from agent.buffer.disk import DiskBuffer
from agent.buffer.frames import _candidates, resync, scan_frames
from common.units import Duration, Size
from outputs.base import Chunk
from tests.doubles import RecordingMetrics

LOG = logging.getLogger("test.buffer.salvage")


def lines_for(start: int, count: int) -> tuple[list[bytes], list[float]]:
    lines = [msgspec.json.encode({"n": n, "pad": "p" * (n % 23)}) for n in
             range(start, start + count)]
    return lines, [float(n) for n in range(start, start + count)]


def numbers(chunk: Chunk) -> list[int]:
    got = [json.loads(line)["n"] for line in chunk.lines()]
    assert list(chunk.times()) == [float(n) for n in got]
    assert len(got) == chunk.records
    return got


def new_buffer(
    directory: str | Path, metrics: RecordingMetrics, resident: int = 1 << 20
) -> DiskBuffer:
    config = BufferConfig(chunk_bytes=Size(1 << 20), flush_interval=Duration(1000.0))
    return DiskBuffer(config, str(directory), metrics, LOG, resident_bytes=resident)


def routes(tag: str) -> tuple[str, ...]:
    return ("out",)


def frames_of(content: bytes) -> list[tuple[int, int, list[int]]]:
    """(offset, end, record numbers) of every frame of an intact chunk file."""
    header_length = struct.unpack_from("<I", content, 4)[0]
    offset = 12 + header_length
    frames = []
    while offset < len(content):
        length, crc = struct.unpack_from("<II", content, offset)
        payload = content[offset + 8 : offset + 8 + length]
        assert zlib.crc32(payload) == crc
        records, _ = struct.unpack_from("<II", payload, 0)
        ndjson = payload[8 + 8 * records :]
        frames.append((offset, offset + 8 + length,
                       [json.loads(line)["n"] for line in ndjson.splitlines()]))
        offset += 8 + length
    return frames


def write_chunk(directory: Path, batches: int = 8, per_batch: int = 5) -> Path:
    """One chunk file of ``batches`` frames; returns its path."""

    async def build() -> None:
        buffer = new_buffer(directory, RecordingMetrics())
        await buffer.open(routes)
        for batch in range(batches):
            buffer.append("t", *lines_for(batch * per_batch, per_batch))
        await buffer.close()

    asyncio.run(build())
    (path,) = (directory / "chunks").glob("*.chunk")
    return path


async def take_or_none(buffer: DiskBuffer) -> Chunk | None:
    """The next chunk for "out", or None once nothing is pending (the last one may turn out
    to be unreadable while it is being taken)."""
    task = asyncio.ensure_future(buffer.take("out"))
    for _ in range(1000):
        if task.done():
            return task.result()
        if not buffer.pending("out"):
            task.cancel()
            return None
        await asyncio.sleep(0.01)
    raise AssertionError("take() hangs")


async def drain(buffer: DiskBuffer) -> list[int]:
    got: list[int] = []
    while buffer.pending("out"):
        chunk = await asyncio.wait_for(buffer.take("out"), 10)
        got += numbers(chunk)
        buffer.ack(chunk, "out")
    return got


def recover(directory: Path, metrics: RecordingMetrics) -> list[int]:
    async def scenario() -> list[int]:
        buffer = new_buffer(directory, metrics)
        await buffer.open(routes)
        got = await drain(buffer)
        await buffer.close()
        return got

    result: list[int] = asyncio.run(scenario())
    return result


def fake_frame(lines: Sequence[bytes]) -> bytes:
    """A frame that passes every structural check and its CRC (lines need not be JSON)."""
    ndjson = b"".join(line + b"\n" for line in lines)
    payload = struct.pack("<II", len(lines), len(ndjson)) + b"\0" * 8 * len(lines) + ndjson
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


# ----------------------------------------------------------------------------- at start


def test_damaged_length_field_resyncs_on_the_next_frame(tmp_path: Path) -> None:
    path = write_chunk(tmp_path)
    content = bytearray(path.read_bytes())
    frames = frames_of(bytes(content))
    second = frames[1]
    content[second[0] + 1] ^= 0x40  # the length now points past the file's end
    path.write_bytes(bytes(content))
    metrics = RecordingMetrics()
    got = recover(tmp_path, metrics)
    assert got == [n for i, frame in enumerate(frames) if i != 1 for n in frame[2]]
    assert metrics.counter("buffer_cut_bytes_total", reason="malformed") == second[1] - second[0]
    assert metrics.counter("buffer_cut_frames_total", reason="malformed") == 1
    cut = tmp_path / "corrupt" / f"{path.name}.cut-at-{second[0]}"
    assert cut.read_bytes() == bytes(content[second[0] : second[1]])
    assert (cut.stat().st_mode & 0o777) == 0o600


def test_garbage_inserted_between_frames_is_cut_and_every_frame_kept(tmp_path: Path) -> None:
    path = write_chunk(tmp_path)
    content = path.read_bytes()
    frames = frames_of(content)
    at = frames[3][0]
    garbage = os.urandom(300) + b"\0" * 64 + b'{"n": 1}\n' * 3
    path.write_bytes(content[:at] + garbage + content[at:])
    metrics = RecordingMetrics()
    assert recover(tmp_path, metrics) == [n for frame in frames for n in frame[2]]
    assert metrics.counter("buffer_cut_bytes_total", reason="malformed") == len(garbage)
    assert (tmp_path / "corrupt" / f"{path.name}.cut-at-{at}").read_bytes() == garbage


def test_two_damaged_frames_rewrite_the_file_with_the_intact_ones(tmp_path: Path) -> None:
    """After recovery the file holds the header and the intact frames only: reading it again
    (a restart before delivery) finds nothing more to cut."""
    path = write_chunk(tmp_path)
    content = bytearray(path.read_bytes())
    frames = frames_of(bytes(content))
    for index in (2, 5):
        content[frames[index][1] - 3] ^= 0x01
    path.write_bytes(bytes(content))
    metrics = RecordingMetrics()

    async def open_close() -> None:
        buffer = new_buffer(tmp_path, metrics)
        await buffer.open(routes)
        await buffer.close()

    asyncio.run(open_close())
    assert metrics.counter("buffer_cut_frames_total", reason="checksum") == 2
    kept = [f for i, f in enumerate(frames) if i not in (2, 5)]
    header_end = frames[0][0]
    assert path.read_bytes() == bytes(content[:header_end]) + b"".join(
        bytes(content[a:b]) for a, b, _ in kept
    )
    assert not list((tmp_path / "chunks").glob("*.salvage"))
    again = RecordingMetrics()
    assert recover(tmp_path, again) == [n for f in kept for n in f[2]]
    assert again.total("buffer_cut_bytes_total") == 0


def test_a_false_frame_of_non_json_lines_is_never_replayed(tmp_path: Path) -> None:
    """Damage followed by bytes that form a structurally valid frame with a matching CRC32 but
    whose lines are not JSON: the resync does not take it, the bytes are cut and counted."""
    path = write_chunk(tmp_path)
    content = bytearray(path.read_bytes())
    frames = frames_of(bytes(content))
    impostor = fake_frame([b"\xff\xfe garbage", b"not json"])
    at = frames[4][0]
    content[frames[3][0] + 20] ^= 0x10  # damage the frame before it
    damaged = bytes(content[:at]) + impostor + bytes(content[at:])
    path.write_bytes(damaged)
    metrics = RecordingMetrics()
    got = recover(tmp_path, metrics)
    assert got == [n for i, f in enumerate(frames) if i != 3 for n in f[2]]
    assert metrics.total("buffer_cut_bytes_total") == frames[3][1] - frames[3][0] + len(impostor)
    # The same impostor right after an intact frame is read as a frame would be, but a resync
    # never lands on it:
    assert resync(damaged, frames[3][0] + 1) == at + len(impostor)


def test_resync_skips_text_at_c_speed_and_checks_the_frame(tmp_path: Path) -> None:
    """The candidate search only stops where a frame's length fields can be: JSON text between
    frames costs no Python work per byte (a 4 MiB span of text is searched at once)."""
    text = b'{"message": "' + b"x" * (4 << 20) + b'"}\n'
    frame = fake_frame([b'{"n": 7}'])
    data = b"\0" * 3 + text + frame
    assert resync(data, 1) == 3 + len(text)
    scan = scan_frames(data, 0, keep=True)
    assert scan.records == 1 and [c.reason for c in scan.cuts] == ["malformed"]
    assert scan.parts is not None and b"".join(scan.parts) == b'{"n": 7}\n'
    # A run of zeros (what a lost write often leaves) offers no candidate either.
    zeros = b"\0" * 4096 + frame
    assert resync(zeros, 1) == 4096
    candidates = [m.start() for m in _candidates(0).finditer(zeros)]
    assert 4096 in candidates and min(candidates) > 4096 - 4  # only where the frame begins


# ----------------------------------------------------------------------------- run time


def test_chunk_damaged_after_start_delivers_its_intact_frames_once(tmp_path: Path) -> None:
    """A flipped byte in a sealed chunk (read back from disk for delivery) costs that frame
    only; two outputs taking the chunk at once see one read, one count and one saved copy."""
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = new_buffer(tmp_path, metrics, resident=0)
        await buffer.open(lambda tag: ("a", "b"))
        for batch in range(8):
            buffer.append("t", *lines_for(batch * 5, 5))
        buffer.seal_due(1e12)
        (path,) = (tmp_path / "chunks").glob("*.chunk")
        content = bytearray(path.read_bytes())
        frames = frames_of(bytes(content))
        bad = frames[4]
        content[bad[1] - 2] ^= 0x20
        path.write_bytes(bytes(content))
        size_before = buffer.stats().bytes
        first, second = await asyncio.gather(
            asyncio.wait_for(buffer.take("a"), 10), asyncio.wait_for(buffer.take("b"), 10)
        )
        assert first is second
        expected = [n for i, f in enumerate(frames) if i != 4 for n in f[2]]
        assert numbers(first) == expected and first.records == len(expected)
        lost = sum(len(msgspec.json.encode({"n": n, "pad": "p" * (n % 23)})) + 1
                   for n in bad[2])
        assert buffer.stats().bytes == size_before - lost
        assert metrics.counter("buffer_dropped_records_total", reason="corrupt") == 5
        assert metrics.counter("buffer_dropped_bytes_total", reason="corrupt") == lost
        assert metrics.counter("buffer_cut_bytes_total", reason="checksum") == bad[1] - bad[0]
        assert metrics.counter("buffer_cut_frames_total", reason="checksum") == 1
        assert metrics.counter("buffer_corrupt_chunks_total") == 0
        saved = tmp_path / "corrupt" / f"{path.name}.cut-at-{bad[0]}"
        assert saved.read_bytes() == bytes(content[bad[0] : bad[1]])
        # The file now holds the intact frames: reading it again (an output that released
        # its copy) finds the same records and counts nothing more.
        assert isinstance(first, BufferChunk)  # the disk buffer's own chunk, not just the view
        first.release_cache()
        first.unload()
        assert numbers(first) == expected
        buffer.ack(first, "a")
        buffer.ack(second, "b")
        assert buffer.stats().bytes == 0
        await buffer.close()

    asyncio.run(scenario())
    assert metrics.counter("buffer_dropped_records_total", reason="corrupt") == 5


def test_chunk_with_no_intact_frame_left_is_quarantined_at_run_time(tmp_path: Path) -> None:
    metrics = RecordingMetrics()

    async def scenario() -> None:
        buffer = new_buffer(tmp_path, metrics, resident=0)
        await buffer.open(routes)
        buffer.append("t", *lines_for(0, 5))
        buffer.seal_due(1e12)
        (path,) = (tmp_path / "chunks").glob("*.chunk")
        content = bytearray(path.read_bytes())
        content[-2] ^= 0x20
        path.write_bytes(bytes(content))
        task = asyncio.ensure_future(buffer.take("out"))
        await asyncio.sleep(0.5)
        assert not task.done()  # nothing to deliver
        task.cancel()
        assert (tmp_path / "corrupt" / path.name).exists()
        await buffer.close()

    asyncio.run(scenario())
    assert metrics.counter("buffer_corrupt_chunks_total") == 1
    assert metrics.counter("buffer_dropped_records_total", reason="corrupt") == 5


# ------------------------------------------------------------------------ random damage


def pristine_dir() -> tuple[str, dict[str, list[tuple[int, int, list[int]]]]]:
    """A data dir with one chunk file of many frames per tag; each file's frames."""
    directory = tempfile.mkdtemp(prefix="buffer-salvage-")

    async def build() -> None:
        buffer = new_buffer(directory, RecordingMetrics())
        await buffer.open(routes)
        n = 0
        for batch in range(36):
            tag = "abc"[batch % 3]
            count = 1 + batch % 5
            buffer.append(tag, *lines_for(n, count))
            n += count
        await buffer.close()

    asyncio.run(build())
    layout = {path.name: frames_of(path.read_bytes())
              for path in Path(directory, "chunks").glob("*.chunk")}
    return directory, layout


@pytest.fixture(scope="module")
def pristine() -> Iterator[tuple[str, dict[str, list[tuple[int, int, list[int]]]]]]:
    directory, layout = pristine_dir()
    try:
        yield directory, layout
    finally:
        shutil.rmtree(directory)


Damage = tuple[str, int, float, bytes]
DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "insert", "delete"]),
        st.integers(0, 2),
        st.floats(0, 1),
        st.binary(min_size=1, max_size=40),
    ),
    min_size=1,
    max_size=4,
)


def apply_damage(
    content: bytes, frames: list[tuple[int, int, list[int]]], damage: list[Damage]
) -> tuple[bytes, set[int]]:
    """Damage the frame area (the header is left alone: a damaged header moves the whole file
    to corrupt/, tested elsewhere); returns the new content and the indexes of the frames the
    damage touched: a frame is untouched if all its bytes are still there, unchanged and in one
    piece."""
    header_end = frames[0][0]
    # (original offset or None for a new or changed byte, byte): frames can be followed
    # through insertions and deletions.
    cells: list[tuple[int | None, int]] = list(enumerate(content))
    for kind, _, where, blob in damage:
        area = len(cells) - header_end
        if area <= 0:
            break
        at = header_end + min(int(where * area), area - 1)
        if kind == "flip":
            cells[at] = (None, cells[at][1] ^ (blob[0] or 1))
        elif kind == "truncate":
            del cells[at:]
        elif kind == "insert":
            cells[at:at] = [(None, b) for b in blob]
        else:
            del cells[at : at + len(blob)]
    positions = {orig: i for i, (orig, _) in enumerate(cells) if orig is not None}
    touched = set()
    for index, (start, end, _) in enumerate(frames):
        first = positions.get(start)
        if first is None or any(positions.get(o) != first + o - start for o in range(start, end)):
            touched.add(index)
    return bytes(b for _, b in cells), touched


def check_damage(
    pristine: tuple[str, dict[str, list[tuple[int, int, list[int]]]]],
    damage: list[Damage],
    at_run_time: bool,
) -> None:
    source, layout = pristine
    names = sorted(layout)
    work = tempfile.mkdtemp(prefix="buffer-damaged-")
    try:
        shutil.copytree(source, work, dirs_exist_ok=True)
        touched: dict[str, set[int]] = {name: set() for name in names}
        evidence = False
        per_file: dict[str, list[Damage]] = {}
        for item in damage:
            per_file.setdefault(names[item[1] % len(names)], []).append(item)

        def damage_files() -> None:
            nonlocal evidence
            for name, items in per_file.items():
                path = Path(work, "chunks", name)
                original = path.read_bytes()
                content, hit = apply_damage(original, layout[name], items)
                path.write_bytes(content)
                touched[name] |= hit
                frames = layout[name]
                clean_cuts = [original[:end] for _, end, _ in frames] + [original[: frames[0][0]]]
                evidence = evidence or content not in clean_cuts

        metrics = RecordingMetrics()

        async def scenario() -> dict[str, list[int]]:
            if not at_run_time:
                damage_files()
            buffer = new_buffer(work, metrics, resident=0)
            await buffer.open(routes)
            if at_run_time:
                damage_files()
            got: dict[str, list[int]] = {}
            while (chunk := await take_or_none(buffer)) is not None:
                got[chunk.id] = numbers(chunk)
                buffer.ack(chunk, "out")
            await buffer.close()
            return got

        got = asyncio.run(scenario())
        lost = 0
        for name, frames in layout.items():
            chunk_id = name.split(".", 1)[0]
            delivered = got.get(chunk_id, [])
            intact = [n for i, f in enumerate(frames) if i not in touched[name] for n in f[2]]
            everything = [n for f in frames for n in f[2]]
            # Every untouched frame exactly once, in order; nothing that was not written.
            assert [n for n in delivered if n in set(intact)] == intact, name
            assert len(delivered) == len(set(delivered)), name
            assert set(delivered) <= set(everything), name
            lost += len(everything) - len(delivered)
        if lost and (evidence or at_run_time):
            counted = metrics.total("buffer_cut_bytes_total")
            assert counted > 0 or metrics.counter("buffer_corrupt_chunks_total") > 0
        if at_run_time:
            dropped = metrics.counter("buffer_dropped_records_total", reason="corrupt")
            assert dropped == lost
    finally:
        shutil.rmtree(work)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=DAMAGE)
def test_random_damage_at_start_replays_every_untouched_frame_once(
    pristine: tuple[str, dict[str, list[tuple[int, int, list[int]]]]], damage: list[Damage]
) -> None:
    check_damage(pristine, damage, at_run_time=False)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=DAMAGE)
def test_random_damage_at_run_time_delivers_every_untouched_frame_once(
    pristine: tuple[str, dict[str, list[tuple[int, int, list[int]]]]], damage: list[Damage]
) -> None:
    check_damage(pristine, damage, at_run_time=True)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), start=st.integers(0, 50))
def test_scanning_arbitrary_bytes_never_raises(data: bytes, start: int) -> None:
    scan = scan_frames(data, min(start, len(data)), keep=True)
    assert scan.records == 0 or scan.parts
    assert sum(cut.size for cut in scan.cuts) <= len(data)
