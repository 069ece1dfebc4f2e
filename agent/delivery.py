"""Delivery: takes an output's chunks from the buffer, groups them into writes after the output's
``batching`` (``Grouper``), runs at most ``workers`` writes at once (``write_group`` classifies
how each went), retries a group as a whole with exponential backoff and full jitter, and
acknowledges each chunk of a written group or dead-letters it.

A group holds chunks of one ``Output.batch_key`` (the tag unless the output says otherwise; S3:
the tag and the rendered object key, so its objects are keyed as they always were). It is
written when it holds ``max_chunks`` chunks or ``target_bytes`` bytes, before a chunk would take
it past ``max_bytes``, ``max_age`` after its first chunk, or at once when the agent shuts down
(``drain``). Chunks waiting in a partial group drop their in-memory copies
(``Chunk.release_cache``; the buffer's budgeted recent copies stay), so open groups cost no
memory of their own; the output reads them again when the group is written.

A chunk leaves the buffer for an output only through ``ack`` (the destination confirmed it, or
the output kept the records it refused in the dead-letter directory) or through the dead-letter
directory (refused for good, or past ``retry_limit``): never silently. When the dead letters
cannot be written (the directory is full or not writable) the chunk stays, unacknowledged, and
is tried again later.

Errors that are not about the data (``BlockedError``: a missing bucket, refused credentials, a
full dead-letter directory) are retried for as long as it takes, whatever ``retry_limit`` says;
the cause is shown in /readyz and in ``output_blocked{cause=...}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Literal

import msgspec

from agent.buffer.base import Buffer
from agent.buffer.deadletter import DeadLetterDir
from agent.logs import REPEATS
from common.metrics import Metrics
from common.redact import redact_text
from outputs.base import (
    BLOCKED_CAUSES,
    Batching,
    BlockedError,
    Chunk,
    DeadLetterError,
    FatalError,
    Output,
    RetryableError,
)

log = logging.getLogger("agent.delivery")

DEAD_LETTER_REASONS = ("rejected", "retry_limit", "refused", "dead_letter_index")
"""Values of the ``reason`` label of ``output_dead_lettered_records_total``: the destination
refused the chunk (``rejected``), it failed ``retry_limit`` times (``retry_limit``), the
destination refused single records (``refused``), or the output kept them in its own
dead-letter place (``dead_letter_index``)."""


def backoff(attempt: int, base: float, cap: float) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 32))))


class DeadLetterSink:
    """One output's way into the dead-letter directory for records its destination refused one
    by one (``OutputContext.dead_letter``), and its count of records kept elsewhere
    (``OutputContext.dead_lettered``). Remembers per chunk how many records went there, so the
    chunk's acknowledgement counts only the rest as delivered."""

    def __init__(
        self,
        name: str,
        dead_letters: DeadLetterDir,
        metrics: Metrics,
        buffer_metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.buffer_metrics = buffer_metrics
        self.lettered: dict[str, int] = {}
        """chunk id -> records of it dead-lettered so far (until it is acknowledged)."""

    def write(self, chunk: Chunk, lines: Sequence[bytes], reason: str) -> None:
        """``OutputContext.dead_letter``: raises DeadLetterError when the records could not be
        kept (the output then leaves the chunk unacknowledged)."""
        reason = redact_text(reason)
        path = self.dead_letters.write(chunk, self.name, lines, reason)
        count = len(lines)
        self.lettered[chunk.id] = self.lettered.get(chunk.id, 0) + count
        self.metrics.inc("output_dead_lettered_records_total", count, reason="refused")
        if self.buffer_metrics is not None:
            self.buffer_metrics.inc("buffer_dead_letter_records_total", count, output=self.name)
        log.error(
            "output %s: %d records of chunk %s refused by the destination, kept in %s: %s",
            self.name, count, chunk.id, path, reason,
        )

    def count(self, chunk: Chunk, records: int, reason: str) -> None:
        """``OutputContext.dead_lettered``."""
        if reason not in DEAD_LETTER_REASONS:
            reason = "refused"
        self.lettered[chunk.id] = self.lettered.get(chunk.id, 0) + records
        self.metrics.inc("output_dead_lettered_records_total", records, reason=reason)


# ------------------------------------------------------------------------------ grouping


class _Group:
    __slots__ = ("chunks", "deadline", "key", "released", "size")

    def __init__(self, key: Hashable, deadline: float) -> None:
        self.key = key
        self.deadline = deadline
        self.chunks: list[Chunk] = []
        self.size = 0
        self.released = 0
        """Chunks at the start of ``chunks`` whose cache was released already."""


class Grouper:
    """The open (partial) groups of one output: bookkeeping only, no I/O. ``add`` returns the
    groups a chunk closed; ``due`` the groups whose ``max_age`` passed. At most ``held_limit``
    chunks wait in open groups: past it the oldest group is written early, so many busy keys
    (tags) cannot take the whole buffer in flight."""

    def __init__(
        self, batching: Batching, key: Callable[[Chunk], Hashable], held_limit: int
    ) -> None:
        self.batching = batching
        self.key = key
        self.held_limit = max(1, held_limit)
        self.open: dict[Hashable, _Group] = {}
        self.held = 0
        """Chunks in open groups."""
        self.draining = False
        """Shutting down: a partial group waits for nothing (``max_age`` 0)."""

    @property
    def grouping(self) -> bool:
        return self.batching.max_chunks > 1

    def add(self, chunk: Chunk, now: float) -> list[list[Chunk]]:
        """Put ``chunk`` in its group; the groups this closed (to be written), oldest first."""
        batching = self.batching
        if not self.grouping:
            return [[chunk]]
        closed: list[list[Chunk]] = []
        key = self.key(chunk)
        group = self.open.get(key)
        if group is not None and 0 < batching.max_bytes < group.size + chunk.size:
            closed.append(self._close(group))
            group = None
        if group is None:
            age = 0.0 if self.draining else batching.max_age
            group = self.open[key] = _Group(key, now + age)
        group.chunks.append(chunk)
        group.size += chunk.size
        self.held += 1
        if (
            len(group.chunks) >= batching.max_chunks
            or (batching.max_bytes and group.size >= batching.max_bytes)
            or (batching.target_bytes and group.size >= batching.target_bytes)
        ):
            closed.append(self._close(group))
        elif self.held > self.held_limit:
            closed.append(self._close(next(iter(self.open.values()))))
        return closed

    def next_deadline(self) -> float | None:
        return min((group.deadline for group in self.open.values()), default=None)

    def due(self, now: float) -> list[list[Chunk]]:
        """Close and return every open group whose ``max_age`` passed, oldest first."""
        return [self._close(g) for g in list(self.open.values()) if g.deadline <= now]

    def close_all(self) -> list[list[Chunk]]:
        return [self._close(group) for group in list(self.open.values())]

    def release(self) -> None:
        """Let the chunks waiting in open groups drop their in-memory copies."""
        for group in self.open.values():
            for chunk in group.chunks[group.released :]:
                chunk.release_cache()
            group.released = len(group.chunks)

    def _close(self, group: _Group) -> list[Chunk]:
        del self.open[group.key]
        self.held -= len(group.chunks)
        return group.chunks


# ------------------------------------------------------------------------------- writing


class Outcome(msgspec.Struct, frozen=True):
    """How one write went (``write_group``)."""

    kind: Literal["done", "fatal", "blocked", "retryable", "gone"]
    """done: written; fatal: refused for good (``refused`` names the chunks, None: all of
    them; the others were written); blocked: not about the data (``cause``), retry for as long
    as it takes; retryable: may work later; gone: a chunk left the buffer while it was sent."""
    reason: str = ""
    cause: str = ""
    refused: frozenset[str] | None = None
    seconds: float = 0.0


async def write_group(output: Output, chunks: Sequence[Chunk], name: str = "") -> Outcome:
    """One ``send`` of ``chunks``, its exception sorted into an ``Outcome`` (reasons redacted).
    A bug in an output (any other exception) is logged and counted as retryable."""
    started = time.monotonic()
    try:
        await output.send(chunks)
    except FatalError as exc:
        return Outcome("fatal", redact_text(str(exc)), refused=exc.chunks)
    except FileNotFoundError as exc:
        # when_full = "drop_oldest" deleted a chunk while it was being sent: its records are
        # already counted as dropped by the buffer.
        return Outcome("gone", str(exc))
    except BlockedError as exc:
        return Outcome("blocked", redact_text(str(exc)), cause=exc.cause)
    except RetryableError as exc:
        return Outcome("retryable", redact_text(str(exc)))
    except Exception as exc:
        first = chunks[0].id if chunks else "-"
        log.exception("output %s: unexpected error writing chunks from %s", name, first)
        return Outcome("retryable", redact_text(str(exc)))
    return Outcome("done", seconds=time.monotonic() - started)


# ---------------------------------------------------------------------------- dispatcher


class Dispatcher:
    def __init__(
        self,
        name: str,
        output: Output,
        buffer: Buffer,
        metrics: Metrics,
        sink: DeadLetterSink | None = None,
    ) -> None:
        self.name = name
        self.output = output
        self.buffer = buffer
        self.metrics = metrics
        self.sink = sink or DeadLetterSink(name, buffer.dead_letters, metrics)
        config = output.config
        self.retry_limit: int | None = (
            None if config.retry_limit == "unlimited" else int(config.retry_limit)
        )
        self.retry_base = float(config.retry_base)
        self.retry_max = float(config.retry_max)
        self.failing_since: float | None = None
        self.workers = max(1, int(getattr(config, "workers", 1)))
        batching = output.batching
        self.grouper = Grouper(batching, output.batch_key, self.workers * batching.max_chunks)
        self.ready: deque[list[Chunk]] = deque()
        """Closed groups waiting for a worker."""
        self._timers: set[asyncio.Timeout] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.blocked: dict[str, tuple[str, str]] = {}
        """chunk id -> (cause, reason) for chunks held because of an error not about the data."""
        for cause in BLOCKED_CAUSES:
            self.metrics.set("output_blocked_chunks", 0, cause=cause)

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._work(), name=f"dispatch:{self.name}:{index}")
            for index in range(self.workers)
        ]

    def drain(self) -> None:
        """Shutting down: write partial groups now instead of waiting for ``max_age``."""
        self.grouper.draining = True
        self.ready.extend(self.grouper.close_all())
        self._wake(asyncio.get_running_loop().time())

    async def _work(self) -> None:
        # ``workers`` long-lived workers, each forming or taking the next group as soon as its
        # last write is settled; without grouping a worker just takes the next chunk. A task
        # per chunk behind a semaphore cost extra event-loop iterations per chunk, and each
        # iteration also parses a read per busy connection: the output fell behind ingestion
        # (docs/performance.md).
        while True:
            group = self.ready.popleft() if self.ready else await self._collect()
            if group is None:
                continue
            try:
                await self._deliver(group)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "output %s: delivery of %d chunks (first %s) failed",
                    self.name, len(group), group[0].id,
                )
            finally:
                for chunk in group:
                    self._unblock(chunk)
                    self.sink.lettered.pop(chunk.id, None)

    async def _collect(self) -> list[Chunk] | None:
        """Take the next chunk into its group; the group to write now, if any."""
        grouper = self.grouper
        if not grouper.grouping:
            return [await self.buffer.take(self.name)]
        loop = asyncio.get_running_loop()
        try:
            # Every waiting worker's timer is registered, so a group opened meanwhile by
            # another worker can bring its wake-up forward (``_wake``).
            async with asyncio.timeout_at(grouper.next_deadline()) as timer:
                self._timers.add(timer)
                try:
                    chunk = await self.buffer.take(self.name)
                finally:
                    self._timers.discard(timer)
        except TimeoutError:
            self.ready.extend(grouper.due(loop.time()))
            return self.ready.popleft() if self.ready else None
        now = loop.time()
        closed = grouper.add(chunk, now)
        if grouper.open:
            deadline = grouper.next_deadline()
            if deadline is not None:
                self._wake(deadline)
            if grouper.batching.max_age > 0 and not grouper.draining:
                grouper.release()
        if not closed:
            return None
        self.ready.extend(closed[1:])
        return closed[0]

    def _wake(self, when: float) -> None:
        for timer in self._timers:
            current = timer.when()
            if current is None or current > when:
                timer.reschedule(when)

    def not_ready(self) -> str | None:
        """Why this output holds chunks back, for /readyz; None when nothing is blocked."""
        if not self.blocked:
            return None
        cause, reason = next(iter(self.blocked.values()))
        held = len(self.blocked)
        return f"output {self.name} blocked ({cause}, {held} chunks held): {reason}"

    def _block(self, chunk: Chunk, cause: str, reason: str) -> None:
        previous = self.blocked.get(chunk.id)
        self.blocked[chunk.id] = (cause, reason)
        self.metrics.inc("output_blocked_total", cause=cause)
        if previous is None or previous[0] != cause:
            self._set_blocked_gauges()

    def _unblock(self, chunk: Chunk) -> None:
        if self.blocked.pop(chunk.id, None) is not None:
            self._set_blocked_gauges()

    def _set_blocked_gauges(self) -> None:
        counts = dict.fromkeys(BLOCKED_CAUSES, 0)
        for cause, _ in self.blocked.values():
            counts[cause] = counts.get(cause, 0) + 1
        for cause, count in counts.items():
            self.metrics.set("output_blocked_chunks", count, cause=cause)

    async def _deliver(self, group: list[Chunk]) -> None:
        """Write ``group`` until each of its chunks is acknowledged or dead-lettered."""
        attempt = 0
        while group:
            outcome = await write_group(self.output, group, self.name)
            first = group[0].id
            records = sum(chunk.records for chunk in group)
            if outcome.kind == "done":
                self.failing_since = None
                self.metrics.observe("output_request_seconds", outcome.seconds)
                for chunk in group:
                    self._acknowledge(chunk)
                    log.debug(
                        "output %s: chunk %s (%d records, %d bytes) acknowledged after %d "
                        "retries",
                        self.name, chunk.id, chunk.records, chunk.size, attempt,
                    )
                return
            if outcome.kind == "gone":
                if len(group) > 1:
                    # Which chunk left is unknown: the others go on, each on its own.
                    for chunk in group:
                        await self._deliver([chunk])
                    return
                log.warning(
                    "output %s: chunk %s left the buffer while being sent (%s); not retrying",
                    self.name, first, outcome.reason,
                )
                return
            attempt += 1
            if outcome.kind == "fatal":
                refused = outcome.refused
                if refused is not None:
                    for chunk in group:
                        if chunk.id not in refused:
                            self._acknowledge(chunk)
                    group = [chunk for chunk in group if chunk.id in refused]
                group = self._dead_letter(group, f"rejected: {outcome.reason}", "rejected")
                if group:
                    # The chunks could not be dead-lettered: they stay, and are sent again
                    # after a pause (the destination may take them by then; if not,
                    # dead-lettering is tried again).
                    await asyncio.sleep(backoff(attempt - 1, self.retry_base, self.retry_max))
                continue
            self.metrics.inc("output_retries_total")
            if self.failing_since is None:
                self.failing_since = time.time()
            delay = backoff(attempt - 1, self.retry_base, self.retry_max)
            if outcome.kind == "blocked":
                # Not about the data: kept and retried for as long as it takes.
                for chunk in group:
                    self._block(chunk, outcome.cause, outcome.reason)
                log.warning(
                    "output %s: %d chunks (first %s, %d records) held (%s, attempt %d), "
                    "retrying in %.1fs: %s",
                    self.name, len(group), first, records, outcome.cause, attempt, delay,
                    outcome.reason,
                )
            elif self.retry_limit is not None and attempt > self.retry_limit:
                reason = f"gave up after {attempt} attempts: {outcome.reason}"
                group = self._dead_letter(group, reason, "retry_limit")
            else:
                for chunk in group:
                    self._unblock(chunk)
                log.warning(
                    "output %s: %d chunks (first %s, %d records) failed (attempt %d), retrying "
                    "in %.1fs: %s",
                    self.name, len(group), first, records, attempt, delay, outcome.reason,
                    extra=REPEATS,
                )
            if group:
                await asyncio.sleep(delay)

    def _acknowledge(self, chunk: Chunk) -> None:
        lettered = self.sink.lettered.pop(chunk.id, 0)
        self.metrics.inc("output_records_total", max(0, chunk.records - lettered))
        self.metrics.inc("output_bytes_total", chunk.size)
        self.metrics.inc("output_chunks_total")
        self.buffer.ack(chunk, self.name)

    def _dead_letter(self, group: list[Chunk], reason: str, label: str) -> list[Chunk]:
        """Keep each chunk of ``group`` in the dead-letter directory and acknowledge it; the
        chunks that could not be kept (they stay in the buffer, unacknowledged, marked
        blocked)."""
        reason = redact_text(reason)
        kept: list[Chunk] = []
        for chunk in group:
            try:
                path = self.sink.dead_letters.write_chunk(chunk, self.name, reason)
            except DeadLetterError as exc:
                self._block(chunk, exc.cause, str(exc))
                log.error(
                    "output %s: chunk %s (%d records) kept in the buffer, not dead-lettered: "
                    "%s. Reason it was refused: %s",
                    self.name, chunk.id, chunk.records, exc, reason,
                )
                kept.append(chunk)
                continue
            self.metrics.inc("output_dead_lettered_records_total", chunk.records, reason=label)
            buffer_metrics = self.sink.buffer_metrics
            if buffer_metrics is not None:
                buffer_metrics.inc(
                    "buffer_dead_letter_records_total", chunk.records, output=self.name
                )
                buffer_metrics.inc("buffer_dead_letter_chunks_total", output=self.name)
            self.sink.lettered.pop(chunk.id, None)
            self.buffer.ack(chunk, self.name)
            log.error(
                "output %s: chunk %s (%d records, tag %r) dead-lettered to %s: %s",
                self.name, chunk.id, chunk.records, chunk.tag, path, reason,
            )
        return kept

    async def stop(self) -> None:
        """Stop taking chunks and cancel writes in flight: unacknowledged chunks (in open
        groups too) stay buffered."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
