"""Delivery groups an output's chunks into writes after its ``Batching``: the real dispatcher over
the real memory buffer, with an output that records every write it is given."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.buffer.base import BufferConfig
from agent.buffer.memory import MemoryBuffer
from agent.delivery import Dispatcher, Grouper
from common.units import config_dec_hook
from outputs.base import (
    Batching,
    BlockedError,
    Chunk,
    FatalError,
    Output,
    OutputConfig,
    OutputContext,
    RetryableError,
)
from tests.chunks import RecordingMetrics, make_context

NAME = "out"


class RecordingConfig(
    OutputConfig, tag_field="type", tag="recording", kw_only=True, forbid_unknown_fields=True
):
    pass


class RecordingOutput(Output):
    """Keeps the chunk ids of every write; raises the queued errors first, one per write."""

    type_name = "recording"

    def __init__(self, context: OutputContext, batching: Batching, workers: int = 1) -> None:
        config = msgspec.convert(
            {"type": "recording", "name": NAME, "workers": workers, "retry_base": 0.01,
             "retry_max": 0.05},
            RecordingConfig,
            dec_hook=config_dec_hook,
        )
        super().__init__(config, context)
        self._batching = batching
        self.writes: list[list[str]] = []
        self.errors: list[BaseException] = []
        self.by_tag = True

    @property
    def batching(self) -> Batching:
        return self._batching

    def batch_key(self, chunk: Chunk) -> Hashable:
        return chunk.tag if self.by_tag else None

    async def send(self, chunks: Sequence[Chunk]) -> None:
        self.writes.append([chunk.id for chunk in chunks])
        if self.errors:
            raise self.errors.pop(0)


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class Rig:
    def __init__(self, tmp_path: Path, batching: Batching, workers: int = 1) -> None:
        self.metrics = RecordingMetrics()
        config = BufferConfig(type="memory")
        self.buffer = MemoryBuffer(
            config, str(tmp_path), RecordingMetrics(), logging.getLogger("test.buffer")
        )
        self.output = RecordingOutput(make_context(tmp_path, NAME), batching, workers)
        self.dispatcher = Dispatcher(NAME, self.output, self.buffer, self.metrics)
        self.ids: list[str] = []

    async def chunks(self, count: int, tag: str = "app", records: int = 10) -> list[str]:
        """``count`` sealed chunks of ``records`` records each (about 40 bytes a record)."""
        made = []
        for _ in range(count):
            lines = [json.dumps({"n": n, "pad": "x" * 20}).encode() for n in range(records)]
            before = set(self.buffer._chunks)
            self.buffer.append(tag, lines, [0.0] * records)
            self.buffer.seal_due(math.inf)
            made += sorted(set(self.buffer._chunks) - before)
        self.ids += made
        return made

    def size(self, chunk_id: str) -> int:
        return self.buffer._chunks[chunk_id].size

    async def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        await self.buffer.open(lambda tag: [NAME])
        try:
            await scenario()
        finally:
            await self.dispatcher.stop()
            await self.buffer.close()

    def settled(self) -> bool:
        return self.buffer.pending(NAME) == 0

    def deliver_with(self, batching: Batching) -> None:
        """Start delivering with ``batching`` (set once the chunks' sizes are known)."""
        self.output._batching = batching
        self.dispatcher = Dispatcher(NAME, self.output, self.buffer, self.metrics)
        self.dispatcher.start()


def run(coroutine: Awaitable[None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(60):
            await coroutine

    asyncio.run(bounded())


def test_without_batching_every_chunk_is_its_own_write(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(), workers=2)

    async def scenario() -> None:
        ids = await rig.chunks(5)
        rig.dispatcher.start()
        await until(rig.settled)
        assert sorted(rig.output.writes) == sorted([i] for i in ids)

    run(rig.run(scenario))
    assert rig.metrics.total("output_chunks_total") == 5


def test_max_chunks_groups_ready_chunks_and_acknowledges_each(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=3, max_age=3600))

    async def scenario() -> None:
        ids = await rig.chunks(7)
        rig.dispatcher.start()
        await until(lambda: len(rig.output.writes) == 2)
        assert rig.output.writes == [ids[0:3], ids[3:6]]
        # The seventh waits for more (max_age is an hour) until the agent shuts down.
        await until(lambda: rig.dispatcher.grouper.held == 1)
        assert rig.buffer.pending(NAME) == 1
        rig.dispatcher.drain()
        await until(rig.settled)
        assert rig.output.writes[2:] == [ids[6:]]

    run(rig.run(scenario))
    assert rig.metrics.total("output_chunks_total") == 7
    assert rig.metrics.total("output_records_total") == 70
    assert rig.metrics.observations("output_request_seconds") == 3


def test_max_bytes_closes_a_group_before_it_would_pass_the_bound(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=100))

    async def scenario() -> None:
        ids = await rig.chunks(5)
        size = rig.size(ids[0])
        assert all(rig.size(i) == size for i in ids)
        rig.deliver_with(Batching(max_chunks=100, max_bytes=size * 2 + size // 2))
        await until(rig.settled)
        assert rig.output.writes == [ids[0:2], ids[2:4], ids[4:]]

    run(rig.run(scenario))


def test_target_bytes_closes_a_group_once_reached(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=100))

    async def scenario() -> None:
        ids = await rig.chunks(5)
        size = rig.size(ids[0])
        rig.deliver_with(Batching(max_chunks=100, target_bytes=size + size // 2))
        await until(rig.settled)
        assert rig.output.writes == [ids[0:2], ids[2:4], ids[4:]]

    run(rig.run(scenario))


def test_max_age_writes_a_partial_group_without_a_shutdown(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=10, max_age=0.2), workers=2)

    async def scenario() -> None:
        ids = await rig.chunks(3)
        rig.dispatcher.start()
        await until(rig.settled)
        assert rig.output.writes == [ids]
        # A group opened while the other worker waits wakes that worker at its own deadline.
        later = await rig.chunks(1, tag="other")
        await until(rig.settled)
        assert rig.output.writes == [ids, later]

    run(rig.run(scenario))


def test_groups_never_mix_batch_keys(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=10, max_age=0.0))

    async def scenario() -> None:
        a = await rig.chunks(2, tag="a")
        b = await rig.chunks(2, tag="b")
        rig.dispatcher.start()
        await until(rig.settled)
        assert sorted(rig.output.writes) == sorted([a, b])

    run(rig.run(scenario))


def test_a_retried_group_is_written_whole_and_each_chunk_acknowledged(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=3, max_age=0.0))
    rig.output.errors = [RetryableError("503"), BlockedError("no bucket", "no_bucket")]

    async def scenario() -> None:
        ids = await rig.chunks(3)
        rig.dispatcher.start()
        await until(rig.settled)
        assert rig.output.writes == [ids, ids, ids]

    run(rig.run(scenario))
    assert rig.metrics.total("output_retries_total") == 2
    assert rig.metrics.total("output_blocked_total", cause="no_bucket") == 3
    assert rig.metrics.total("output_chunks_total") == 3
    assert not rig.dispatcher.blocked


def test_fatal_error_dead_letters_each_chunk_of_the_group(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=3, max_age=0.0))
    rig.output.errors = [FatalError("mapping refused")]

    async def scenario() -> None:
        await rig.chunks(3)
        rig.dispatcher.start()
        await until(rig.settled)

    run(rig.run(scenario))
    letters = sorted(p for p in os.listdir(tmp_path / "dead-letter") if p.endswith(".json"))
    assert len(letters) == 3
    for name in letters:
        reason = json.loads((tmp_path / "dead-letter" / name).read_text())
        assert reason["chunk"] in rig.ids
        assert "rejected: mapping refused" in reason["reason"]
    assert rig.metrics.total("output_dead_lettered_records_total", reason="rejected") == 30
    assert rig.metrics.total("output_chunks_total") == 0


def test_fatal_error_naming_chunks_dead_letters_only_those(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Batching(max_chunks=3, max_age=0.0))

    async def scenario() -> None:
        ids = await rig.chunks(3)
        rig.output.errors = [FatalError("cannot read", chunks=[ids[1]])]
        rig.dispatcher.start()
        await until(rig.settled)
        directory = tmp_path / "dead-letter"
        letters = [p for p in os.listdir(directory) if p.endswith(".json")]
        assert [json.loads((directory / p).read_text())["chunk"] for p in letters] == [ids[1]]

    run(rig.run(scenario))
    assert rig.metrics.total("output_chunks_total") == 2
    assert rig.metrics.total("output_records_total") == 20
    assert rig.metrics.total("output_dead_lettered_records_total", reason="rejected") == 10


def test_held_chunks_are_bounded_by_workers_times_max_chunks() -> None:
    batching = Batching(max_chunks=2, max_age=60)

    def key(chunk: Any) -> Hashable:
        return chunk.tag

    class Plain:
        def __init__(self, tag: str) -> None:
            self.tag, self.size, self.id = tag, 10, tag

    grouper = Grouper(batching, key, held_limit=2)
    assert grouper.add(Plain("a"), 0.0) == []  # type: ignore[arg-type]
    assert grouper.add(Plain("b"), 0.0) == []  # type: ignore[arg-type]
    # A third busy key would hold more than the limit: the oldest group goes now.
    closed = grouper.add(Plain("c"), 0.0)  # type: ignore[arg-type]
    assert [[c.id for c in group] for group in closed] == [["a"]]
    assert grouper.held == 2


@pytest.mark.parametrize("values", [{"max_chunks": 0}, {"max_bytes": -1}, {"max_age": -1.0}])
def test_batching_bounds_are_checked(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Batching(**values)
