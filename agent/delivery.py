"""Delivery: takes an output's chunks from the buffer, sends them with at most ``concurrency`` in
flight, retries with exponential backoff and full jitter, and acknowledges or dead-letters.

A chunk leaves the buffer for an output only through ``ack`` (the destination confirmed it) or
``dead_letter`` (refused for good, or past ``retry_limit``): never silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from agent.buffer.base import Buffer
from agent.logs import REPEATS
from agent.metrics import ComponentMetrics
from outputs.base import Chunk, FatalError, Output, RetryableError

log = logging.getLogger("agent.delivery")


def backoff(attempt: int, base: float, cap: float) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 32))))


class Dispatcher:
    def __init__(
        self, name: str, output: Output, buffer: Buffer, metrics: ComponentMetrics
    ) -> None:
        self.name = name
        self.output = output
        self.buffer = buffer
        self.metrics = metrics
        config = output.config
        self.retry_limit: int | None = (
            None if config.retry_limit == "unlimited" else int(config.retry_limit)
        )
        self.retry_base = float(config.retry_base)
        self.retry_max = float(config.retry_max)
        self.failing_since: float | None = None
        self.workers = max(1, output.concurrency)
        self.tasks: list[asyncio.Task[None]] = []

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

    async def _deliver(self, chunk: Chunk) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self.output.send(chunk)
            except FatalError as exc:
                self._dead_letter(chunk, f"rejected: {exc}")
                return
            except FileNotFoundError as exc:
                # when_full = "drop_oldest" deleted the chunk while it was being sent: its
                # records are already counted as dropped by the buffer; retrying cannot help.
                log.warning(
                    "output %s: chunk %s left the buffer while being sent (%s); not retrying",
                    self.name, chunk.id, exc,
                )
                return
            except (RetryableError, Exception) as exc:  # a bug in an output is retried too
                if not isinstance(exc, RetryableError):
                    log.exception(
                        "output %s: unexpected error sending chunk %s", self.name, chunk.id
                    )
                attempt += 1
                self.metrics.inc("output_retries_total")
                if self.failing_since is None:
                    self.failing_since = time.time()
                if self.retry_limit is not None and attempt > self.retry_limit:
                    self._dead_letter(chunk, f"gave up after {attempt} attempts: {exc}")
                    return
                delay = backoff(attempt - 1, self.retry_base, self.retry_max)
                log.warning(
                    "output %s: chunk %s (%d records) failed (attempt %d), retrying in %.1fs: %s",
                    self.name,
                    chunk.id,
                    chunk.records,
                    attempt,
                    delay,
                    exc,
                    extra=REPEATS,
                )
                await asyncio.sleep(delay)
                continue
            self.failing_since = None
            self.metrics.observe("output_request_seconds", time.monotonic() - started)
            self.metrics.inc("output_records_total", chunk.records)
            self.metrics.inc("output_bytes_total", chunk.size)
            self.metrics.inc("output_chunks_total")
            self.buffer.ack(chunk, self.name)
            log.debug(
                "output %s: chunk %s (%d records, %d bytes) acknowledged after %d retries",
                self.name, chunk.id, chunk.records, chunk.size, attempt,
            )
            return

    def _dead_letter(self, chunk: Chunk, reason: str) -> None:
        try:
            # The buffer logs it, one line per dead letter (chunk, tag, records, output, reason,
            # where it was written).
            self.buffer.dead_letter(chunk, self.name, reason)
        except OSError as exc:
            log.error(
                "output %s: chunk %s (%d records) could not be dead-lettered (%s); it stays "
                "in the buffer for the next start. Reason it was refused: %s",
                self.name, chunk.id, chunk.records, exc, reason,
            )
            return
        self.metrics.inc("output_dead_lettered_records_total", chunk.records, reason="chunk")

    async def stop(self) -> None:
        """Stop taking chunks and cancel sends in flight: unacknowledged chunks stay buffered."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
