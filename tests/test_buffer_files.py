"""What the buffer keeps under data_dir besides its records: chunk ids that stay fixed-width
whatever else lies in the directories, one agent per data_dir (an flock, tried with real agent
processes), and owner-only modes for everything it writes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from agent.buffer.base import BufferConfig
from agent.buffer.chunk import ID_PATTERN
from agent.buffer.disk import DiskBuffer
from bench.harness import AgentProcess
from common.units import Duration
from tests.agent_config import agent_toml, syslog_input
from tests.conftest import agent_command, agent_env, free_port
from tests.doubles import NullMetrics

LOG = logging.getLogger("test.buffer.files")


def new_buffer(directory: Path, resident: int = 1 << 20) -> DiskBuffer:
    config = BufferConfig(flush_interval=Duration(1000.0))
    return DiskBuffer(config, str(directory), NullMetrics(), LOG, resident_bytes=resident)


def lines(start: int, count: int) -> tuple[list[bytes], list[float]]:
    return ([msgspec.json.encode({"n": n}) for n in range(start, start + count)],
            [float(n) for n in range(start, start + count)])


def routes(tag: str) -> tuple[str, ...]:
    return ("out",)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------ chunk ids


def test_foreign_files_with_large_numeric_names_do_not_widen_chunk_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Files that are not the buffer's, named with large numbers, in chunks/ and corrupt/: ids
    stay <13 digits>-<12 digits> and keep sorting after the chunks already there."""

    async def first_run() -> None:
        buffer = new_buffer(tmp_path)
        await buffer.open(routes)
        buffer.append("t", *lines(0, 3))
        await buffer.close()

    asyncio.run(first_run())
    (old_file,) = (tmp_path / "chunks").glob("*.chunk")
    old_id = old_file.name.split(".")[0]
    foreign = [
        tmp_path / "chunks" / "99999999999999-000000000000.t.chunk",  # 14 digits
        tmp_path / "chunks" / "123456789012345678.chunk",
        tmp_path / "chunks" / "notes.txt",
        tmp_path / "corrupt" / "99999999999999-000000000001.t.chunk",
        tmp_path / "corrupt" / "99999999999999999999.chunk",
    ]
    for path in foreign:
        path.write_bytes(b"not ours")
    # Our shape, but so far ahead (year 2286) that the next stamp would need a 14th digit.
    far = tmp_path / "corrupt" / "9999999999999-000000000000.t.chunk"
    far.write_bytes(b"not ours either")

    async def second_run() -> list[str]:
        buffer = new_buffer(tmp_path)
        await buffer.open(routes)
        buffer.append("t", *lines(3, 3))
        buffer.seal_due(1e12)
        buffer.append("u", *lines(6, 3))
        await buffer.close()
        ids = []
        while buffer.pending("out"):
            chunk = await asyncio.wait_for(buffer.take("out"), 5)
            ids.append(chunk.id)
            buffer.ack(chunk, "out")
        return ids

    with caplog.at_level(logging.INFO, logger=LOG.name):
        ids = asyncio.run(second_run())
    assert ids[0] == old_id and len(ids) == 3
    assert all(ID_PATTERN.fullmatch(chunk_id) for chunk_id in ids), ids
    assert ids == sorted(ids)
    for path in [*foreign, far]:
        assert path.exists(), path  # left alone
    text = caplog.text
    assert "99999999999999-000000000000.t.chunk: not a file of the buffer's" in text
    assert "notes.txt: not a file of the buffer's" in text
    assert "chunk id 9999999999999-000000000000 is not one this buffer makes" in text
    assert "holds 2 files whose names are not the buffer's (e.g. 99999999999999-" in text


# ------------------------------------------------------------------------ one agent a dir


def agent_config(data_dir: Path) -> str:
    return agent_toml(
        data_dir.parent,
        syslog_input("udp", free_port(), tag="app"),
        agent={"grace_period": "1s"},
        outputs=[{"type": "null", "match": "*"}],
        data_dir=data_dir,
    )


def test_second_agent_on_the_same_data_dir_exits_2_naming_it(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """Two real agents, one data_dir: the second refuses with exit 2 and a message naming the
    directory and the first agent's pid. The lock goes with its holder: after a clean stop, and
    after kill -9 (the lock file stays, the kernel drops the lock), the next agent starts."""
    data_dir = tmp_path / "data"
    first = start_agent(agent_config(data_dir))
    second_config = tmp_path / "second.toml"
    second_config.write_text(agent_config(data_dir))
    refused = subprocess.run(
        agent_command("--config", str(second_config)),
        capture_output=True, text=True, env=agent_env(), timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"data_dir: {data_dir} is in use by another running agent (pid {first.pid}" in (
        refused.stderr
    )
    assert first.ready()  # the first one is unharmed
    assert mode(data_dir / "buffer.lock") == 0o600
    assert first.stop() == 0

    after_stop = start_agent(agent_config(data_dir))
    after_stop.kill()  # kill -9: no cleanup at all
    assert (data_dir / "buffer.lock").exists()
    after_kill = start_agent(agent_config(data_dir))
    assert after_kill.ready()
    assert (data_dir / "buffer.lock").read_text().strip() == str(after_kill.pid)
    assert after_kill.stop() == 0


# ----------------------------------------------------------------------- owner-only modes


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: files and directories get exactly the mode they are created with."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_everything_the_buffer_writes_is_owner_only(tmp_path: Path, open_umask: None) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        buffer = new_buffer(data_dir, resident=0)
        await buffer.open(lambda tag: ("a", "b"))
        buffer.append("t", *lines(0, 5))
        buffer.append("t", *lines(5, 5))
        buffer.seal_due(1e12)
        chunk = await asyncio.wait_for(buffer.take("a"), 5)
        buffer.ack(chunk, "a")  # an .acks file: "b" has not acknowledged yet
        buffer.append("broken", *lines(10, 5))
        await buffer.close()

    asyncio.run(scenario())
    chunk_file = next((data_dir / "chunks").glob("*.t.chunk"))
    content = bytearray(chunk_file.read_bytes())
    content[-3] ^= 0x10  # the last frame: cut (to corrupt/) at the next start
    chunk_file.write_bytes(bytes(content))
    broken = next((data_dir / "chunks").glob("*.broken.chunk"))
    broken.write_bytes(b"CAB1 garbage")  # moved whole to corrupt/
    os.chmod(chunk_file, 0o600)
    os.chmod(broken, 0o600)

    async def reopen() -> None:
        buffer = new_buffer(data_dir)
        await buffer.open(lambda tag: ("a", "b"))
        await buffer.close()

    asyncio.run(reopen())
    written = list(data_dir.rglob("*"))
    files = [path for path in written if path.is_file()]
    directories = [data_dir] + [path for path in written if path.is_dir()]
    assert {p.name for p in directories} >= {"data", "chunks", "corrupt", "dead-letter"}
    assert any(p.suffix == ".acks" for p in files)
    assert any(".cut-at-" in p.name for p in files)
    assert any(p.name == broken.name for p in (data_dir / "corrupt").iterdir())
    assert {str(p): oct(mode(p)) for p in directories} == {str(p): "0o700" for p in directories}
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}


def test_looser_directories_and_files_are_tightened_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, open_umask: None
) -> None:
    data_dir = tmp_path / "data"
    for directory in (data_dir, data_dir / "chunks", data_dir / "corrupt"):
        directory.mkdir(mode=0o755)
    old = data_dir / "corrupt" / "0000000000001-000000000000.t.chunk.tail-at-99"
    old.write_bytes(b"cut by an older version")
    os.chmod(old, 0o644)
    lock = data_dir / "buffer.lock"
    lock.write_text("")
    os.chmod(lock, 0o644)

    async def scenario() -> None:
        buffer = new_buffer(data_dir)
        await buffer.open(routes)
        await buffer.close()

    with caplog.at_level(logging.INFO, logger=LOG.name):
        asyncio.run(scenario())
    for directory in (data_dir, data_dir / "chunks", data_dir / "corrupt"):
        assert mode(directory) == 0o700, directory
        assert f"tightened the mode of {directory} from 0755 to 0700" in caplog.text
    assert mode(old) == 0o600 and mode(lock) == 0o600
    assert "made 1 files under" in caplog.text


def test_tags_and_acks_survive_tightening(tmp_path: Path) -> None:
    """A restart after tightening delivers what the chunks hold (modes change, data not)."""
    data_dir = tmp_path / "data"

    async def write() -> None:
        buffer = new_buffer(data_dir)
        await buffer.open(routes)
        buffer.append("t", *lines(0, 4))
        await buffer.close()

    asyncio.run(write())
    for path in (data_dir / "chunks").iterdir():
        os.chmod(path, 0o644)
    os.chmod(data_dir / "chunks", 0o755)

    async def read() -> list[int]:
        buffer = new_buffer(data_dir)
        await buffer.open(routes)
        chunk = await asyncio.wait_for(buffer.take("out"), 5)
        got = [json.loads(line)["n"] for line in chunk.lines()]
        buffer.ack(chunk, "out")
        await buffer.close()
        return got

    assert asyncio.run(read()) == [0, 1, 2, 3]
    assert mode(data_dir / "chunks") == 0o700
