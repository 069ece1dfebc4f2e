"""Issue "buffer", corruption test, with the agent as a real process: records are buffered on disk
while the file output cannot write; the agent stops (SIGTERM, the chunks stay on disk); bytes are
flipped inside a frame in the middle of one chunk file and inside the header of another; at the
next start the agent logs both files by name, counts the damage in its metrics, moves the damaged
bytes to ``data_dir/corrupt/`` (the damaged frame of the first file, the whole second file) and
delivers every record of every other frame of the first file (before and after the damage: the
buffer resynchronises on the next intact frame), and of every other chunk.

The test reads the chunk files itself, from the layout documented in docs/buffer.md (not with the
agent's code), to know which records each frame holds.
"""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from bench.harness import AgentProcess
from tests.agent_config import PATIENT_OUTPUT, agent_toml, file_output, syslog_input
from tests.conftest import free_port, wait_for
from tests.numbered import SEQ, numbered_lines, numbers_in

BATCHES, PER_BATCH = 60, 25


class Frame(msgspec.Struct):
    offset: int
    end: int
    ndjson_offset: int
    seqs: list[int]


def _read_chunk(path: Path) -> tuple[int, list[Frame]]:
    """Header length and frames of a chunk file, per docs/buffer.md: "CAB1" | u32 len | u32 crc |
    JSON, then frames: u32 len | u32 crc | u32 records | u32 ndjson len | f64 times | ndjson."""
    data = path.read_bytes()
    magic, length, crc = struct.unpack_from("<4sII", data, 0)
    assert magic == b"CAB1"
    header_payload = data[12 : 12 + length]
    assert zlib.crc32(header_payload) == crc
    assert msgspec.json.decode(header_payload)["id"] == path.name.split(".")[0]
    header_end = offset = 12 + length
    frames = []
    while offset < len(data):
        length, crc = struct.unpack_from("<II", data, offset)
        payload = data[offset + 8 : offset + 8 + length]
        assert zlib.crc32(payload) == crc, (path, offset)
        records, ndjson_length = struct.unpack_from("<II", payload, 0)
        ndjson_offset = offset + 8 + 8 + 8 * records
        ndjson = data[ndjson_offset : ndjson_offset + ndjson_length]
        seqs = [int(m) for m in SEQ.findall(ndjson)]
        assert len(seqs) == records == ndjson.count(b"\n")
        frames.append(Frame(offset, offset + 8 + length, ndjson_offset, seqs))
        offset += 8 + length
    assert offset == len(data)
    return header_end, frames


def _flip(path: Path, offset: int, count: int = 4) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _took(agent: AgentProcess, count: int) -> Callable[[], bool]:
    return lambda: agent.metric("input_records_total") >= count


def _config(tmp_path: Path, port: int, out: Path) -> str:
    return agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="app"),
        agent={"grace_period": "1s"},
        buffer={"type": "disk", "chunk_bytes": "64KiB", "flush_interval": "60s"},
        outputs=[file_output(out, **{**PATIENT_OUTPUT, "retry_max": "300ms"})],
    )


def _buffer_records_while_output_fails(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> tuple[str, Path, Path, Path]:
    """Runs the agent with a failing output, sends BATCHES x PER_BATCH numbered records (one send
    per batch, each ingested before the next: several frames per chunk), stops it with SIGTERM.
    Returns (config, workdir, blocker, out)."""
    port = free_port()
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output's directory should be: writes fail (ENOTDIR)")
    out = blocker / "out.ndjson"
    config = _config(tmp_path, port, out)
    workdir = tmp_path / "agent"
    agent = start_agent(config, workdir=workdir)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for batch in range(BATCHES):
            first = batch * PER_BATCH
            conn.sendall(numbered_lines(first, first + PER_BATCH))
            wait_for(_took(agent, first + PER_BATCH))
    wait_for(lambda: agent.metric("output_retries_total") >= 1)
    assert agent.stop() == 0
    assert "stopped with chunks still buffered" in agent.log_path.read_text()
    return config, workdir, blocker, out


@pytest.mark.parametrize("damage", ["middle-frame", "first-frame", "torn-last-frame"])
def test_damaged_frames_and_header_are_reported_moved_aside_and_the_rest_delivered(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], damage: str
) -> None:
    """Chunk A gets its damage: bytes flipped in the middle of a middle frame (a disk that changed
    bytes), or of its first frame, or its last frame cut in half (what a crash in the middle of a
    write leaves). Chunk B gets a byte flipped in its header. Everything else arrives, the frames
    of A after the damaged one included."""
    config, workdir, blocker, out = _buffer_records_while_output_fails(tmp_path, start_agent)
    total = BATCHES * PER_BATCH
    chunks_dir = tmp_path / "data" / "chunks"
    corrupt_dir = tmp_path / "data" / "corrupt"
    files = sorted(chunks_dir.glob("*.chunk"))
    layouts = {path: _read_chunk(path) for path in files}
    on_disk = sorted(seq for _, frames in layouts.values() for f in frames for seq in f.seqs)
    assert on_disk == list(range(total)), "SIGTERM must leave every record on disk"
    assert len(files) >= 3, files

    candidates = [path for path in files[:-1] if len(layouts[path][1]) >= 3]
    assert candidates, {path.name: len(layouts[path][1]) for path in files}
    damaged = candidates[len(candidates) // 2]
    header_damaged = next(path for path in reversed(files) if path != damaged)
    frames = layouts[damaged][1]
    bad = {"middle-frame": len(frames) // 2, "first-frame": 0, "torn-last-frame": len(frames) - 1}
    bad_frame = frames[bad[damage]]
    if damage == "torn-last-frame":
        cut_at = bad_frame.offset + (bad_frame.end - bad_frame.offset) // 2
        original_damaged = damaged.read_bytes()[:cut_at]
        damaged.write_bytes(original_damaged)
        reason, label, cut_end = f"torn frame at offset {bad_frame.offset}", "torn", cut_at
    else:
        _flip(damaged, bad_frame.ndjson_offset + (bad_frame.end - bad_frame.ndjson_offset) // 2)
        original_damaged = damaged.read_bytes()
        reason = f"checksum mismatch in frame at offset {bad_frame.offset}"
        label, cut_end = "checksum", bad_frame.end
    cut_bytes = cut_end - bad_frame.offset
    header_length = layouts[header_damaged][0]
    _flip(header_damaged, header_length // 2, count=1)
    original_header_damaged = header_damaged.read_bytes()

    lost_in_frame = set(bad_frame.seqs)
    lost_with_header = {seq for f in layouts[header_damaged][1] for seq in f.seqs}
    kept_in_damaged = {seq for f in frames if f is not bad_frame for seq in f.seqs}
    assert lost_in_frame and lost_with_header and kept_in_damaged
    expected = set(range(total)) - lost_in_frame - lost_with_header

    blocker.unlink()  # the output recovers
    agent = start_agent(config, workdir=workdir)
    wait_for(lambda: len(numbers_in(out)) >= len(expected), timeout=60)
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=30)
    delivered = numbers_in(out)
    assert set(delivered) == expected
    assert kept_in_damaged <= set(delivered)  # every frame before and after the damage
    assert max(delivered.values()) == 1

    # The log names both files and says what happened.
    log = (workdir / "agent.log").read_text()
    assert f"chunk file {damaged}: cut {cut_bytes} bytes in 1 span(s): {reason}: " in log
    assert f"chunk file {header_damaged} is unreadable (header checksum mismatch)" in log

    # The metrics count it.
    assert agent.metric("buffer_cut_bytes_total", reason=label) == cut_bytes
    assert agent.metric("buffer_cut_frames_total", reason=label) == 1
    assert agent.metric("buffer_corrupt_chunks_total") == 1
    assert agent.metric("buffer_recovered_records_total") == len(expected)
    assert agent.metric("output_records_total") == len(expected)

    # The damage is kept under corrupt/: the cut frame byte for byte, the other file whole.
    tail = corrupt_dir / f"{damaged.name}.cut-at-{bad_frame.offset}"
    assert tail.read_bytes() == original_damaged[bad_frame.offset : cut_end]
    assert (corrupt_dir / header_damaged.name).read_bytes() == original_header_damaged
    assert not damaged.exists() and not header_damaged.exists()  # delivered, or moved aside
    assert sorted(p.name for p in corrupt_dir.iterdir()) == sorted([tail.name, header_damaged.name])
    assert not list(chunks_dir.iterdir())
