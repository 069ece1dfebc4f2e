"""The contract of the buffer: the single source of truth for a record until every output its
tag routes to has acknowledged it.

Ingestion side (synchronous, per batch, on the hot path): ``append`` encoded lines of one tag
to that tag's open chunk. ``commit`` makes what was appended as durable as ``sync`` says.

Delivery side: a chunk is sealed at ``chunk_bytes`` or after ``flush_interval``; each sealed
chunk is offered to every output its tag routes to (``routes(tag)``, given to ``open``);
``take(output)`` waits for the next one. ``ack`` records that an output has it (persisted, so a
restart does not resend to that output); once every routed output acknowledged, the chunk is
deleted. ``dead_letter`` moves an output's copy of a chunk to the dead-letter directory with a
reason and counts as that output's acknowledgement.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from agent.buffer.deadletter import DeadLetterDir
from common.units import Duration, Size
from outputs.base import Chunk


class BufferConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where records wait between the inputs and the outputs' acknowledgements (details in
    docs/buffer.md)."""

    type: Literal["disk", "memory"] = "disk"
    """``disk``: chunk files under ``data_dir/chunks/``, survive crashes and restarts.
    ``memory``: the same behaviour without files; **everything not yet acknowledged is lost
    when the process stops, crashes or restarts**."""
    chunk_bytes: Size = Size(2 * 1024 * 1024)
    """A tag's open chunk is sealed (handed to the outputs) when it would grow past this many
    bytes of records. A chunk is the unit of delivery: one S3 object, one Elasticsearch bulk
    request. One ``append`` (one batch from an input) is never split, so a single batch larger
    than this makes one larger chunk."""
    flush_interval: Duration = Duration(1.0)
    """...or this long after the chunk's first record, whichever comes first: the latency a
    quiet tag adds. Sooner when its input paused (no batch for four times its usual gap between
    batches, and at least 50 ms): the chunk is sealed then, so the end of a burst goes out
    without waiting. A steady stream, however slow, keeps its gaps and fills its chunks as
    before; a chunk of a single batch waits for ``flush_interval``."""
    max_bytes: Size = Size(1024 * 1024 * 1024)
    """Bound on the buffer: bytes of records (the NDJSON sent to outputs) in open chunks and in
    sealed chunks that some output has not acknowledged yet. Must be at least ``chunk_bytes``.
    On disk each record costs about 8 bytes more (its event time) plus 8 bytes per batch and a
    small header per chunk."""
    sync: Literal["none", "batch", "always"] = "none"
    """When the disk buffer calls fsync: ``none`` (the OS decides: survives a process crash, not
    a power loss), ``batch`` (once per commit; RELP acknowledges after it), ``always`` (on every
    append). Ignored by the memory buffer; see docs/buffer.md, "Sync"."""
    when_full: Literal["block", "drop_oldest"] = "block"
    """What happens at ``max_bytes``. ``block``: stream inputs stop reading (the sender waits),
    datagram inputs drop the newest (counted). ``drop_oldest``: the oldest sealed chunk is
    deleted (counted) to make room."""

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1:
            raise ValueError("chunk_bytes: must be at least 1 byte")
        if self.max_bytes < self.chunk_bytes:
            raise ValueError(
                f"max_bytes: must be at least chunk_bytes ({int(self.chunk_bytes)} bytes), "
                f"got {int(self.max_bytes)} bytes"
            )
        if self.flush_interval <= 0:
            raise ValueError("flush_interval: must be more than 0 seconds")


Routes = Callable[[str], Sequence[str]]
"""tag -> names of the outputs that take it."""


class BufferStats(msgspec.Struct):
    chunks: int
    bytes: int
    """Bytes of every chunk not yet acknowledged by all its outputs."""
    memory_bytes: int
    """Bytes held in memory (open chunks, and everything for the memory buffer)."""
    disk_bytes: int


class Buffer(abc.ABC):
    dead_letters: DeadLetterDir
    """``data_dir/dead-letter``, bounded by ``[agent] dead_letter_max_bytes``: where chunks and
    records that outputs gave up on go (``dead_letter``, and delivery through it)."""

    @abc.abstractmethod
    async def open(self, routes: Routes) -> None:
        """Recover what is on disk (validate, truncate torn tails, move corrupt chunks aside)
        and queue every recovered chunk for the outputs that have not acknowledged it."""

    @abc.abstractmethod
    def append(self, tag: str, lines: list[bytes], times: list[float]) -> None:
        """Append records (encoded JSON, no newline; event time per record) to tag's chunk."""

    def append_ndjson(self, tag: str, ndjson: bytes, records: int, times: list[float]) -> None:
        """``append`` for a batch already encoded as NDJSON (``records`` lines, each ending in
        a newline, as ``msgspec.json.Encoder.encode_lines`` gives it): the hot path's form, with
        no per-record bytes objects. JSON text never holds a raw newline, so splitting is safe."""
        self.append(tag, ndjson.split(b"\n")[:records], times)

    @abc.abstractmethod
    async def commit(self) -> None:
        """Return when everything appended so far is durable per ``sync``."""

    @abc.abstractmethod
    def has_room(self) -> bool: ...

    @abc.abstractmethod
    async def wait_room(self) -> None: ...

    @abc.abstractmethod
    def seal_due(self, now: float) -> None:
        """Seal open chunks older than ``flush_interval``, and those whose input paused (the
        end of a burst: ``OpenChunk.paused``); ``now`` is ``time.time()``. The agent calls this
        at ``next_seal`` and at least every few hundred milliseconds."""

    @abc.abstractmethod
    def next_seal(self) -> float | None:
        """When (``time.time()``) ``seal_due`` will next seal an open chunk if no batch comes
        before; ``None`` when no chunk is open."""

    @abc.abstractmethod
    async def take(self, output: str) -> Chunk:
        """The next sealed chunk for ``output``, waiting for one."""

    @abc.abstractmethod
    def ack(self, chunk: Chunk, output: str) -> None: ...

    @abc.abstractmethod
    def dead_letter(self, chunk: Chunk, output: str, reason: str) -> str:
        """Move ``output``'s copy of ``chunk`` to the dead-letter directory with ``reason``;
        returns the path written. Counts as ``output``'s acknowledgement. Raises
        DeadLetterError (the chunk stays, unacknowledged) if ``dead_letters`` cannot take it."""

    @abc.abstractmethod
    def pending(self, output: str) -> int:
        """Sealed chunks waiting for, or being sent to, ``output``."""

    @abc.abstractmethod
    def stats(self) -> BufferStats: ...

    def update_gauges(self) -> None:
        """Refresh the ``buffer_*`` gauges now (the agent calls this before a scrape)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Seal open chunks and release files; what is unacknowledged stays for the next start."""
