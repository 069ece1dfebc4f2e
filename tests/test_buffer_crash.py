"""kill -9 safety of the disk buffer: a real child process appends numbered records (each sync
mode; ``commit`` after every append) and reports each append once it returned; after kill -9,
every reported record must be recovered from the directory, once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.buffer.base import BufferConfig
from agent.buffer.factory import build_buffer
from tests.conftest import agent_env
from tests.doubles import NullMetrics

CHILD = textwrap.dedent(
    """
    import asyncio, logging, sys, time
    import msgspec
    from agent.buffer.base import BufferConfig
    from agent.buffer.factory import build_buffer
    from common.units import Duration, Size
    from tests.doubles import NullMetrics

    async def main():
        config = BufferConfig(
            sync=sys.argv[2], chunk_bytes=Size(20000), flush_interval=Duration(0.02)
        )
        buffer = build_buffer(config, sys.argv[1], NullMetrics(), logging.getLogger("child"))
        await buffer.open(lambda tag: ["out"])
        n = 0
        while True:
            size = 1 + n % 37
            lines = [msgspec.json.encode({"n": i, "pad": "y" * (i % 90)})
                     for i in range(n, n + size)]
            buffer.append(f"tag.{n % 3}", lines, [time.time()] * size)
            await buffer.commit()
            n += size
            sys.stdout.write(f"{n - 1}\\n")
            sys.stdout.flush()
            buffer.seal_due(time.time())

    asyncio.run(main())
    """
)


def append_until_killed(data_dir: Path, kill_after: int, sync: str = "none") -> int:
    """Run the child until it reported ``kill_after`` records, kill -9 it; return the last
    record number it reported as appended."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), sync],
        stdout=subprocess.PIPE,
        env=agent_env(),
        start_new_session=True,
    )
    last = -1
    try:
        assert child.stdout is not None
        for line in child.stdout:
            last = int(line)
            if last >= kill_after:
                os.killpg(child.pid, signal.SIGKILL)
                break
        # Lines already written before the kill are appends that returned.
        for line in child.stdout:
            if line.strip():
                last = max(last, int(line))
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.returncode
    return last


def recover_numbers(data_dir: Path) -> list[int]:
    async def scenario() -> list[int]:
        config = BufferConfig(flush_interval=1000.0)  # type: ignore[arg-type]
        buffer = build_buffer(config, str(data_dir), NullMetrics(), logging.getLogger("t"))
        await buffer.open(lambda tag: ["out"])
        got: list[int] = []
        while buffer.pending("out"):
            chunk = await asyncio.wait_for(buffer.take("out"), 10)
            got += [json.loads(line)["n"] for line in chunk.lines()]
            assert len(chunk.times()) == chunk.records == len(chunk.lines())
            buffer.ack(chunk, "out")
        await buffer.close()
        return got

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("sync", "kill_after"), [("none", 3_000), ("none", 40_000), ("batch", 3_000), ("always", 3_000)]
)
def test_kill_9_loses_nothing_that_was_appended(
    tmp_path: Path, sync: str, kill_after: int
) -> None:
    last = append_until_killed(tmp_path, kill_after, sync)
    assert last >= kill_after
    got = recover_numbers(tmp_path)
    assert len(got) == len(set(got)), "a record was recovered twice"
    missing = set(range(last + 1)) - set(got)
    assert not missing, f"{len(missing)} appended records lost, e.g. {sorted(missing)[:5]}"
    # Everything is delivered once: the directory is empty afterwards.
    assert recover_numbers(tmp_path) == []


def test_kill_9_twice_in_a_row_keeps_both_runs(tmp_path: Path) -> None:
    first = append_until_killed(tmp_path, 2_000)
    second = append_until_killed(tmp_path, 2_000)
    got = recover_numbers(tmp_path)
    # Both runs numbered from 0: each number up to the smaller last appears at least twice.
    for n in range(min(first, second) + 1):
        assert got.count(n) == 2, n
    assert len(got) >= first + second + 2
