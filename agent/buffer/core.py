"""What the disk and the memory buffer share: open chunks per tag, sealing, per-output queues in
creation order, acknowledgements, the ``max_bytes`` bound and the dead-letter directory.

Storage is left to subclasses through a few hooks (``_write_frame``, ``_release_open``,
``_delete_files``, ``_persist_ack``, ``_quarantine_files``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from array import array

import msgspec

from agent.buffer.base import Buffer, BufferConfig, BufferStats, Routes
from agent.buffer.chunk import BufferChunk, ChunkIds, OpenChunk
from agent.buffer.deadletter import DEFAULT_MAX_BYTES, DeadLetterDir, dead_letter_path
from agent.buffer.frames import CorruptChunk, Cut, FrameScan, describe_cuts, join_lines
from common.metrics import Metrics
from outputs.base import Chunk

DEFAULT_RESIDENT_BYTES = 16 * 1024 * 1024
"""Sealed chunks kept in memory after sealing, at most (disk buffer); the rest is read back from
disk when taken, so memory stays flat however much is queued."""


class Salvage(msgspec.Struct):
    """A sealed chunk found damaged when read back for delivery: its intact frames (``scan``),
    the damaged spans (``cuts``, their bytes saved in ``saved_in``) and the file's new length."""

    scan: FrameScan
    cuts: list[Cut]
    file_bytes: int
    saved_in: str


def _no_routes(tag: str) -> tuple[str, ...]:
    return ()


class ChunkBuffer(Buffer):
    """The buffer's bookkeeping; subclasses decide where the bytes live."""

    location = "memory"

    def __init__(
        self,
        config: BufferConfig,
        data_dir: str,
        metrics: Metrics,
        logger: logging.Logger,
        resident_bytes: int = DEFAULT_RESIDENT_BYTES,
        dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.metrics = metrics
        self.logger = logger
        self.dead_letters = DeadLetterDir(dead_letter_path(data_dir), dead_letter_max_bytes)
        self._resident_limit = resident_bytes
        self._resident_bytes = 0
        self._chunk_bytes = int(config.chunk_bytes)
        self._max_bytes = int(config.max_bytes)
        self._flush_interval = float(config.flush_interval)
        self._drop_oldest = config.when_full == "drop_oldest"
        self._routes: Routes = _no_routes
        self._ids = ChunkIds()
        self._open: dict[str, OpenChunk] = {}
        self._chunks: dict[str, BufferChunk] = {}
        """Sealed chunks not yet acknowledged by every output they route to."""
        self._queues: dict[str, list[tuple[str, BufferChunk]]] = {}
        """Per output: a heap by chunk id (creation order) of chunks to hand out."""
        self._ready: dict[str, asyncio.Event] = {}
        self._idle: dict[str, int] = {}
        """Per output: how many ``take`` calls are waiting for a chunk (its queue is empty)."""
        self._pending: dict[str, int] = {}
        self._stale: dict[str, int] = {}
        self._bytes = 0
        self._room: asyncio.Event | None = None
        self._gauges_updated = -1e9
        self._loads: dict[str, asyncio.Future[None]] = {}
        """Chunks being read back from disk: outputs taking the same chunk share one read."""

    # ------------------------------------------------------------------ storage hooks

    def _write_frame(self, chunk: OpenChunk, ndjson: bytes, times: array) -> None:
        """Persist one batch (before it is added to ``chunk``); raise OSError on failure."""

    def _after_append(self, chunk: OpenChunk) -> None:
        """The batch is in ``chunk``: make it as durable as ``sync`` says (may raise OSError)."""

    def _release_open(self, chunk: OpenChunk) -> None:
        """The open chunk is sealed: close its file."""

    def _delete_files(self, chunk: BufferChunk) -> None:
        """The chunk left the buffer: delete its file and acknowledgements."""

    def _persist_ack(self, chunk: BufferChunk, output: str) -> None:
        """Remember that ``output`` acknowledged ``chunk`` across restarts."""

    def _quarantine_files(self, chunk: BufferChunk) -> None:
        """Move an unreadable chunk's file aside (never delete it)."""

    def _read_back(self, chunk: BufferChunk) -> Salvage | None:
        """Load a sealed chunk's data from its file (blocking: runs in a thread). If frames were
        damaged since the chunk was validated, return what is left instead of filling the chunk
        (the loop applies it: ``_salvaged``). Raises OSError or CorruptChunk (nothing left)."""
        chunk.load()
        return None

    # ------------------------------------------------------------------------- ingestion

    def append(self, tag: str, lines: list[bytes], times: list[float]) -> None:
        if not lines:
            return
        if len(times) != len(lines):
            raise ValueError(f"append: {len(lines)} lines but {len(times)} times")
        self._append_frame(tag, join_lines(lines), array("d", times))

    def append_ndjson(self, tag: str, ndjson: bytes, records: int, times: list[float]) -> None:
        """``append`` for a batch already encoded as NDJSON (``records`` lines, each ending
        with b"\\n", as ``msgspec.json.Encoder.encode_lines`` gives): no per-line join.

        The caller guarantees the line count: JSON text never holds a raw newline, so an
        encoder's output has exactly one per record (counting them again here showed in the hot
        path's profile: docs/performance.md, section "What changed and why"). Only the cheap
        checks are made."""
        if not records:
            return
        if len(times) != records or ndjson[-1:] != b"\n":
            raise ValueError(
                f"append_ndjson: {records} records, {len(times)} times, "
                f"ends with {ndjson[-1:]!r}"
            )
        self._append_frame(tag, ndjson, array("d", times))

    def _append_frame(self, tag: str, ndjson: bytes, frame_times: array) -> None:
        chunk = self._open.get(tag)
        if chunk is not None and chunk.records and chunk.size + len(ndjson) > self._chunk_bytes:
            self._seal(chunk)
            chunk = None
        now = time.time()
        if chunk is None:
            chunk = OpenChunk(self._ids.next(), tag, now)
            self._open[tag] = chunk
        self._write_frame(chunk, ndjson, frame_times)
        chunk.add(ndjson, frame_times, now)
        self._bytes += len(ndjson)
        try:
            self._after_append(chunk)
        finally:
            if chunk.size >= self._chunk_bytes:
                self._seal(chunk)
            if self._drop_oldest and self._bytes > self._max_bytes:
                self._make_room()

    async def commit(self) -> None:
        return None

    def has_room(self) -> bool:
        # drop_oldest makes room on append, so ingestion never has to wait.
        return self._drop_oldest or self._bytes < self._max_bytes

    async def wait_room(self) -> None:
        while not self.has_room():
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            await self._room.wait()

    def seal_due(self, now: float) -> None:
        for chunk in list(self._open.values()):
            if now >= self._seal_at(chunk):
                self._seal(chunk)
        self._update_gauges()

    def next_seal(self) -> float | None:
        return min(map(self._seal_at, self._open.values()), default=None)

    def _seal_at(self, chunk: OpenChunk) -> float:
        return min(chunk.created + self._flush_interval, chunk.pause_at())

    def _seal(self, chunk: OpenChunk) -> None:
        if self._open.get(chunk.tag) is chunk:
            del self._open[chunk.tag]
        self._release_open(chunk)
        if not chunk.records:
            return
        sealed = chunk.seal()
        self.logger.debug(
            "chunk %s sealed: tag %r, %d records, %d bytes", sealed.id, sealed.tag,
            sealed.records, sealed.size,
        )
        budget_left = self._resident_limit - self._resident_bytes
        if sealed.path is None or sealed.loaded_bytes <= budget_left:
            sealed.resident = True
            self._resident_bytes += sealed.loaded_bytes
        elif not any(self._idle.get(name) for name in self._routes(sealed.tag)):
            sealed.unload()
        # else: over budget (chunks held for a slower output fill it), but an output is waiting
        # for this very chunk: it takes the bytes still in memory instead of reading them back
        # from disk, and ``ack`` drops them. Only chunks sealed before the waiter wakes (normally
        # this one) are kept this way.
        self._enqueue(sealed, acked=())

    def _enqueue(self, chunk: BufferChunk, acked: tuple[str, ...] | set[str]) -> bool:
        """Offer a sealed chunk (counted in ``_bytes`` already) to the outputs its tag routes to
        that have not acknowledged it; returns False if there are none (the chunk is deleted)."""
        outputs = [name for name in dict.fromkeys(self._routes(chunk.tag)) if name not in acked]
        if not outputs:
            if not acked:
                self.logger.warning(
                    "no output takes tag %r: dropping chunk %s (%d records)",
                    chunk.tag, chunk.id, chunk.records,
                )
                self._count_dropped(chunk, "no_route")
            self._forget(chunk)
            self._delete_files(chunk)
            return False
        chunk.waiting = set(outputs)
        self._chunks[chunk.id] = chunk
        for name in outputs:
            heapq.heappush(self._queues.setdefault(name, []), (chunk.id, chunk))
            self._pending[name] = self._pending.get(name, 0) + 1
            self._ready_event(name).set()
        return True

    # -------------------------------------------------------------------------- delivery

    def _ready_event(self, output: str) -> asyncio.Event:
        event = self._ready.get(output)
        if event is None:
            event = self._ready[output] = asyncio.Event()
        return event

    def _is_live(self, chunk: BufferChunk, output: str) -> bool:
        return self._chunks.get(chunk.id) is chunk and output in chunk.waiting

    async def take(self, output: str) -> Chunk:
        while True:
            heap = self._queues.setdefault(output, [])
            while heap:
                _, chunk = heapq.heappop(heap)
                if not self._is_live(chunk, output) or output in chunk.in_flight:
                    continue
                if not chunk.loaded:
                    try:
                        await self._load(chunk)
                    except (OSError, CorruptChunk) as exc:
                        if self._chunks.get(chunk.id) is chunk:
                            self._quarantine(chunk, str(exc))
                        continue
                    except BaseException:
                        # Cancelled while reading: the chunk goes back in line for this output.
                        heapq.heappush(heap, (chunk.id, chunk))
                        raise
                    if not self._is_live(chunk, output) or not chunk.loaded:
                        continue
                chunk.in_flight.add(output)
                return chunk
            event = self._ready_event(output)
            event.clear()
            self._idle[output] = self._idle.get(output, 0) + 1
            try:
                await event.wait()
            finally:
                self._idle[output] -= 1

    async def _load(self, chunk: BufferChunk) -> None:
        """Read ``chunk`` back from disk once, however many outputs wait for it (so damage
        found on the way is saved and counted once)."""
        task = self._loads.get(chunk.id)
        if task is None:
            task = asyncio.ensure_future(self._load_once(chunk))
            self._loads[chunk.id] = task
            task.add_done_callback(lambda done: self._loaded(chunk.id, done))
        await asyncio.shield(task)

    def _loaded(self, chunk_id: str, task: asyncio.Future[None]) -> None:
        self._loads.pop(chunk_id, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter got it already

    async def _load_once(self, chunk: BufferChunk) -> None:
        salvage = await asyncio.to_thread(self._read_back, chunk)
        if salvage is not None and self._chunks.get(chunk.id) is chunk:
            self._salvaged(chunk, salvage)

    def _salvaged(self, chunk: BufferChunk, salvage: Salvage) -> None:
        """A chunk lost frames after it was validated: deliver what is left, count the rest."""
        lost_records = chunk.records - salvage.scan.records
        lost_size = chunk.size - salvage.scan.size
        chunk.fill(salvage.scan)
        chunk.file_bytes = salvage.file_bytes
        self._bytes -= lost_size
        for cut in salvage.cuts:
            self.metrics.inc("buffer_cut_bytes_total", cut.size, reason=cut.reason)
            self.metrics.inc("buffer_cut_frames_total", cut.frames, reason=cut.reason)
        self.metrics.inc("buffer_dropped_records_total", lost_records, reason="corrupt")
        self.metrics.inc("buffer_dropped_bytes_total", lost_size, reason="corrupt")
        self.logger.error(
            "chunk %s (tag %r) damaged on disk after it was validated: %s; delivering the %d "
            "records of its intact frames, %d records lost (the damaged bytes are in %s)",
            chunk.id, chunk.tag, describe_cuts(salvage.cuts), chunk.records, lost_records,
            salvage.saved_in,
        )
        if self._room is not None and self.has_room():
            self._room.set()

    def ack(self, chunk: Chunk, output: str) -> None:
        current = self._chunks.get(chunk.id)
        if current is None or output not in current.waiting:
            return  # already acknowledged, dropped, or never routed there
        current.waiting.discard(output)
        current.in_flight.discard(output)
        self._pending[output] -= 1
        if not current.waiting:
            self._forget(current)
            self._delete_files(current)
            self.metrics.inc("buffer_deleted_chunks_total")
            return
        try:
            self._persist_ack(current, output)
        except OSError as exc:
            # Not fatal: at worst the chunk is sent to this output again after a restart.
            self.logger.warning("cannot record ack of chunk %s by %s: %s", current.id, output, exc)
        if not current.in_flight and not current.resident:
            current.unload()

    def dead_letter(self, chunk: Chunk, output: str, reason: str) -> str:
        path = self.dead_letters.write_chunk(chunk, output, reason)
        self.logger.error(
            "chunk %s (tag %r, %d records) dead-lettered for output %s: %s; written to %s",
            chunk.id, chunk.tag, chunk.records, output, reason, path,
        )
        self.metrics.inc("buffer_dead_letter_records_total", chunk.records, output=output)
        self.metrics.inc("buffer_dead_letter_chunks_total", output=output)
        self.ack(chunk, output)
        return path

    def pending(self, output: str) -> int:
        return self._pending.get(output, 0)

    # --------------------------------------------------------------------- bookkeeping

    def _forget(self, chunk: BufferChunk) -> None:
        """Remove a sealed chunk from the books (not its files)."""
        if self._chunks.get(chunk.id) is chunk:
            del self._chunks[chunk.id]
        for name in chunk.waiting:
            self._pending[name] -= 1
            if name not in chunk.in_flight:
                self._note_stale(name)
        chunk.waiting = set()
        self._bytes -= chunk.size
        if chunk.resident:
            self._resident_bytes -= chunk.loaded_bytes
            chunk.resident = False
        if not chunk.in_flight:
            chunk.release()
        if self._room is not None and self.has_room():
            self._room.set()

    def _note_stale(self, output: str) -> None:
        """A chunk in ``output``'s queue left the buffer. Entries are skipped lazily by
        ``take``; rebuild the queue when they pile up (an output stuck while drop_oldest
        keeps dropping), so memory stays bounded."""
        stale = self._stale.get(output, 0) + 1
        heap = self._queues.get(output, [])
        if stale > 256 and 2 * stale > len(heap):
            heap[:] = [entry for entry in heap if self._is_live(entry[1], output)]
            heapq.heapify(heap)
            stale = 0
        self._stale[output] = stale

    def _count_dropped(self, chunk: BufferChunk, reason: str) -> None:
        self.metrics.inc("buffer_dropped_records_total", chunk.records, reason=reason)
        self.metrics.inc("buffer_dropped_bytes_total", chunk.size, reason=reason)

    def _make_room(self) -> None:
        """drop_oldest: delete the oldest sealed chunks (preferring ones no output is sending)
        until the buffer is back under ``max_bytes``."""
        while self._bytes > self._max_bytes and self._chunks:
            idle = [chunk for chunk in self._chunks.values() if not chunk.in_flight]
            victim = min(idle or self._chunks.values(), key=lambda chunk: chunk.id)
            self.logger.warning(
                "buffer full (%d > max_bytes %d): dropping oldest chunk %s (tag %r, %d records)",
                self._bytes, self._max_bytes, victim.id, victim.tag, victim.records,
            )
            self._count_dropped(victim, "drop_oldest")
            self._forget(victim)
            self._delete_files(victim)

    def _quarantine(self, chunk: BufferChunk, reason: str) -> None:
        self.logger.error("chunk %s unreadable, moved to corrupt/: %s", chunk.id, reason)
        self.metrics.inc("buffer_corrupt_chunks_total")
        self._count_dropped(chunk, "corrupt")
        self._forget(chunk)
        self._quarantine_files(chunk)

    # --------------------------------------------------------------------------- stats

    def stats(self) -> BufferStats:
        memory = sum(chunk.size + 8 * chunk.records for chunk in self._open.values())
        memory += sum(chunk.memory_bytes for chunk in self._chunks.values())
        disk = sum(chunk.file_bytes for chunk in self._open.values())
        disk += sum(chunk.file_bytes for chunk in self._chunks.values() if chunk.path)
        return BufferStats(
            chunks=len(self._open) + len(self._chunks),
            bytes=self._bytes,
            memory_bytes=memory,
            disk_bytes=disk,
        )

    def update_gauges(self) -> None:
        self._update_gauges(force=True)

    def _update_gauges(self, force: bool = False) -> None:
        # stats() walks every chunk: refresh the gauges at most once a second.
        now = time.monotonic()
        if not force and now - self._gauges_updated < 1.0:
            return
        self._gauges_updated = now
        stats = self.stats()
        # The only owner of these gauges: one buffer_chunks series (where the chunks live), so
        # sum() counts each chunk once; bytes held in memory, and on disk for a disk buffer.
        self.metrics.set("buffer_chunks", stats.chunks, location=self.location)
        self.metrics.set("buffer_bytes", stats.memory_bytes, location="memory")
        if self.location == "disk":
            self.metrics.set("buffer_bytes", stats.disk_bytes, location="disk")
