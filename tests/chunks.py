"""Test doubles for driving an output directly, without the agent: a chunk that implements the
``outputs.base.Chunk`` protocol, a metrics recorder, a context, and ``deliver`` which sends
chunks the way the agent does (grouped into writes after the output's ``batching`` by the agent's
own ``Grouper``, up to ``workers`` writes at once, retrying RetryableError with backoff,
collecting FatalError as dead letters)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from agent.delivery import Grouper, write_group
from outputs.base import Chunk, Output, OutputContext
from tests.doubles import DeadLetters, RecordingMetrics

_sequence = itertools.count()
_stamp = int(time.time() * 1000)


def next_chunk_id() -> str:
    """Ids shaped like the disk buffer's: ``<start ms>-<sequence>``, sortable by creation."""
    return f"{_stamp:013d}-{next(_sequence):012d}"


class TestChunk:
    """An in-memory chunk: records of one tag, encoded once."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        tag: str,
        lines: Sequence[bytes],
        *,
        chunk_id: str | None = None,
        created: float | None = None,
        times: Sequence[float] | None = None,
    ) -> None:
        self.id = chunk_id or next_chunk_id()
        self.tag = tag
        self.created = time.time() if created is None else created
        self._lines = list(lines)
        self._times = list(times) if times is not None else [self.created] * len(self._lines)
        self._data = b"".join(line + b"\n" for line in self._lines)

    @property
    def records(self) -> int:
        return len(self._lines)

    @property
    def size(self) -> int:
        return len(self._data)

    def lines(self) -> Sequence[bytes]:
        return self._lines

    def release_cache(self) -> None:
        """Nothing to free: the data is the chunk (like the memory buffer's chunks)."""

    def times(self) -> Sequence[float]:
        return self._times

    def data(self) -> bytes:
        return self._data

    def parts(self) -> Sequence[bytes]:
        return [self.data()]

    def __repr__(self) -> str:
        return f"<TestChunk {self.id} tag={self.tag!r} records={self.records}>"


def make_chunks(
    count: int,
    records: int,
    *,
    tag: str = "syslog.test",
    created: float | None = None,
    payload: int = 40,
    random_payload: bool = False,
) -> list[TestChunk]:
    """``count`` chunks of ``records`` distinct JSON records each (``seq`` numbers them all)."""
    import base64
    import os

    chunks: list[TestChunk] = []
    base = next(_sequence) * 1_000_000_000
    encoder = msgspec.json.Encoder()
    for c in range(count):
        lines = []
        for r in range(records):
            seq = base + c * records + r
            if random_payload:
                text = base64.b64encode(os.urandom(payload)).decode()
            else:
                text = f"record {seq} " + "x" * payload
            lines.append(encoder.encode({"seq": seq, "tag": tag, "message": text}))
        chunks.append(TestChunk(tag, lines, created=created))
    return chunks


def make_context(data_dir: Path, name: str = "s3.0", node_name: str = "node-a") -> OutputContext:
    return OutputContext(
        name=name,
        data_dir=str(data_dir),
        node_name=node_name,
        logger=logging.getLogger(f"test.output.{name}"),
        metrics=RecordingMetrics(),
        dead_letter=DeadLetters(),
    )


@dataclass
class Delivery:
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retryable: list[tuple[str, str]] = field(default_factory=list)
    fatal: dict[str, str] = field(default_factory=dict)
    delivered: list[str] = field(default_factory=list)


async def send_each(output: Output, chunks: Sequence[Chunk]) -> None:
    """Start ``output``, send each chunk as a write of its own, stop it (also on failure): the
    output's own behaviour, without delivery's grouping, retries or acknowledgements."""
    await output.start()
    try:
        for chunk in chunks:
            await output.send([chunk])
    finally:
        await output.stop()


async def deliver(
    output: Output,
    chunks: Sequence[Chunk],
    *,
    max_attempts: int = 50,
    backoff: float = 0.05,
    max_backoff: float = 0.5,
    until: asyncio.Event | None = None,
) -> Delivery:
    """Send every chunk as the agent does; returns what happened to each. Every chunk is ready
    at once, so a partial group is written right away, unless ``until`` is given: then it waits
    (its chunks' caches released, as delivery does when nothing more is queued) for its
    ``max_age`` or until ``until`` is set (the agent's shutdown)."""
    result = Delivery()
    batching = output.batching
    workers = max(1, int(getattr(output.config, "workers", 1)))
    grouper = Grouper(batching, output.batch_key, workers * batching.max_chunks)
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(workers)

    async def write(group: list[Chunk]) -> None:
        async with slots:
            delay = backoff
            while True:
                for chunk in group:
                    result.attempts[chunk.id] += 1
                outcome = await write_group(output, group)
                if outcome.kind == "done":
                    result.delivered.extend(chunk.id for chunk in group)
                    return
                if outcome.kind in ("fatal", "gone"):
                    refused = outcome.refused
                    for chunk in group:
                        if refused is None or chunk.id in refused:
                            result.fatal[chunk.id] = outcome.reason
                        else:
                            result.delivered.append(chunk.id)
                    return
                result.retryable.extend((chunk.id, outcome.reason) for chunk in group)
                if max(result.attempts[chunk.id] for chunk in group) >= max_attempts:
                    for chunk in group:
                        result.fatal[chunk.id] = f"retry limit: {outcome.reason}"
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_backoff)

    writes: list[asyncio.Task[None]] = []
    for chunk in chunks:
        writes += [asyncio.create_task(write(g)) for g in grouper.add(chunk, loop.time())]
    if until is not None and grouper.open:
        grouper.release()
        while grouper.open and not until.is_set():
            deadline = grouper.next_deadline()
            assert deadline is not None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await until.wait()
            writes += [asyncio.create_task(write(g)) for g in grouper.due(loop.time())]
    writes += [asyncio.create_task(write(g)) for g in grouper.close_all()]
    await asyncio.gather(*writes)
    return result
