"""Delivery: takes an output's chunks from the buffer, sends them with at most ``concurrency`` in
flight, retries with exponential backoff and full jitter, and acknowledges or dead-letters.

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
from collections.abc import Sequence

from agent.buffer.base import Buffer
from agent.buffer.deadletter import DeadLetterDir
from agent.logs import REPEATS
from common.metrics import Metrics
from common.redact import redact_text
from outputs.base import (
    BLOCKED_CAUSES,
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
        self.workers = max(1, output.concurrency)
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

    async def _work(self) -> None:
        # ``concurrency`` long-lived workers, each taking the next chunk as soon as its last one
        # is acknowledged. A task per chunk behind a semaphore cost ~5 extra event-loop
        # iterations per chunk (task done callback, semaphore wake-up, task creation), and each
        # iteration also parses a 256 KiB read per busy connection: the output fell behind
        # ingestion, its sealed chunks went past the buffer's resident budget and were read back
        # from disk (docs/performance.md).
        while True:
            chunk = await self.buffer.take(self.name)
            try:
                await self._deliver(chunk)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("output %s: delivery of chunk %s failed", self.name, chunk.id)
            finally:
                self._unblock(chunk)
                self.sink.lettered.pop(chunk.id, None)

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

    async def _deliver(self, chunk: Chunk) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self.output.send(chunk)
            except FatalError as exc:
                if self._dead_letter(chunk, f"rejected: {exc}", "rejected"):
                    return
                attempt += 1
            except FileNotFoundError as exc:
                # when_full = "drop_oldest" deleted the chunk while it was being sent: its
                # records are already counted as dropped by the buffer; retrying cannot help.
                log.warning(
                    "output %s: chunk %s left the buffer while being sent (%s); not retrying",
                    self.name, chunk.id, exc,
                )
                return
            except BlockedError as exc:
                # Not about the data: kept and retried for as long as it takes.
                attempt += 1
                reason = redact_text(str(exc))
                self._block(chunk, exc.cause, reason)
                self.metrics.inc("output_retries_total")
                if self.failing_since is None:
                    self.failing_since = time.time()
                delay = backoff(attempt - 1, self.retry_base, self.retry_max)
                log.warning(
                    "output %s: chunk %s (%d records) held (%s, attempt %d), retrying in %.1fs: "
                    "%s",
                    self.name, chunk.id, chunk.records, exc.cause, attempt, delay, reason,
                )
                await asyncio.sleep(delay)
                continue
            except (RetryableError, Exception) as exc:  # a bug in an output is retried too
                if not isinstance(exc, RetryableError):
                    log.exception(
                        "output %s: unexpected error sending chunk %s", self.name, chunk.id
                    )
                attempt += 1
                reason = redact_text(str(exc))
                self.metrics.inc("output_retries_total")
                if self.failing_since is None:
                    self.failing_since = time.time()
                if self.retry_limit is not None and attempt > self.retry_limit:
                    if self._dead_letter(
                        chunk, f"gave up after {attempt} attempts: {reason}", "retry_limit"
                    ):
                        return
                else:
                    self._unblock(chunk)
                    delay = backoff(attempt - 1, self.retry_base, self.retry_max)
                    log.warning(
                        "output %s: chunk %s (%d records) failed (attempt %d), retrying in "
                        "%.1fs: %s",
                        self.name, chunk.id, chunk.records, attempt, delay, reason,
                        extra=REPEATS,
                    )
                    await asyncio.sleep(delay)
                    continue
            else:
                self.failing_since = None
                lettered = self.sink.lettered.pop(chunk.id, 0)
                self.metrics.observe("output_request_seconds", time.monotonic() - started)
                self.metrics.inc("output_records_total", max(0, chunk.records - lettered))
                self.metrics.inc("output_bytes_total", chunk.size)
                self.metrics.inc("output_chunks_total")
                self.buffer.ack(chunk, self.name)
                log.debug(
                    "output %s: chunk %s (%d records, %d bytes) acknowledged after %d retries",
                    self.name, chunk.id, chunk.records, chunk.size, attempt - 1,
                )
                return
            # The chunk could not be dead-lettered: it stays, and is sent again after a pause
            # (the destination may take it by then; if not, dead-lettering is tried again).
            await asyncio.sleep(backoff(attempt - 1, self.retry_base, self.retry_max))

    def _dead_letter(self, chunk: Chunk, reason: str, label: str) -> bool:
        """Keep the whole chunk in the dead-letter directory and acknowledge it; False (the
        chunk stays in the buffer, unacknowledged, and is marked blocked) if that failed."""
        reason = redact_text(reason)
        try:
            path = self.sink.dead_letters.write_chunk(chunk, self.name, reason)
        except DeadLetterError as exc:
            self._block(chunk, exc.cause, str(exc))
            log.error(
                "output %s: chunk %s (%d records) kept in the buffer, not dead-lettered: %s. "
                "Reason it was refused: %s",
                self.name, chunk.id, chunk.records, exc, reason,
            )
            return False
        self.metrics.inc("output_dead_lettered_records_total", chunk.records, reason=label)
        buffer_metrics = self.sink.buffer_metrics
        if buffer_metrics is not None:
            buffer_metrics.inc("buffer_dead_letter_records_total", chunk.records, output=self.name)
            buffer_metrics.inc("buffer_dead_letter_chunks_total", output=self.name)
        self.sink.lettered.pop(chunk.id, None)
        self.buffer.ack(chunk, self.name)
        log.error(
            "output %s: chunk %s (%d records, tag %r) dead-lettered to %s: %s",
            self.name, chunk.id, chunk.records, chunk.tag, path, reason,
        )
        return True

    async def stop(self) -> None:
        """Stop taking chunks and cancel sends in flight: unacknowledged chunks stay buffered."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
