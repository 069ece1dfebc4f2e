"""Run an input on an event loop in a background thread, feeding a ``CollectingSink``.

The sink is a real ``FrameSink`` that keeps frames in a list (no parsing): tests assert on what
the input delivered. ``room`` and ``commit_gate`` let a test hold the sink full or hold commits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import msgspec

from agent.inputs.base import InputContext
from agent.inputs.syslog import SyslogInput, SyslogInputConfig
from common.units import config_dec_hook
from tests.doubles import RecordingMetrics

T = TypeVar("T")


class CollectingSink:
    """Collects frames. All methods run on the loop thread."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.sources: list[str | None] = []
        self.truncated: list[bytes] = []
        self.records: list[tuple[str, dict[str, Any]]] = []
        """(tag, record) of what an input that parses its own lines submitted."""
        self.batches = 0
        self.commits = 0
        self.dropped = 0
        self.room = True
        self._room_event: asyncio.Event | None = None
        self.commit_gate: asyncio.Event | None = None
        """When set to an unset Event, ``commit`` waits for it."""
        self.committed = 0
        """How many frames had been submitted when the last commit returned."""

    def submit(
        self, frames: list[bytes], source: str | None = None, truncated: Sequence[int] = ()
    ) -> bool:
        if not self.room:
            self.dropped += len(frames)
            return False
        self.batches += 1
        self.frames.extend(frames)
        self.sources.extend([source] * len(frames))
        self.truncated.extend(frames[i] for i in truncated)
        return True

    def submit_records(self, tag: str, records: list[dict[str, Any]], times: list[float]) -> bool:
        if not self.room:
            return False  # nothing taken: the input keeps its records and waits for room
        self.batches += 1
        self.records.extend((tag, record) for record in records)
        return True

    def has_room(self) -> bool:
        return self.room

    async def wait_room(self) -> None:
        while not self.room:
            if self._room_event is None:
                self._room_event = asyncio.Event()
            await self._room_event.wait()

    def set_room(self, room: bool) -> None:
        self.room = room
        if room and self._room_event is not None:
            self._room_event.set()
            self._room_event = None

    async def commit(self) -> None:
        submitted = len(self.frames)
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        self.commits += 1
        self.committed = max(self.committed, submitted)


class InputHarness:
    def __init__(self, use_uvloop: bool = False) -> None:
        if use_uvloop:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.sink = CollectingSink()
        self.metrics = RecordingMetrics()
        self.logger = logging.getLogger("test.input")
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.inputs: list[SyslogInput] = []

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a plain function on the loop thread and return its result."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as error:
                future.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return future.result(30)

    def start(self, **config: Any) -> SyslogInput:
        cfg = msgspec.convert(
            {"type": "syslog", **config}, SyslogInputConfig, dec_hook=config_dec_hook
        )
        context = InputContext(
            name=f"syslog.{len(self.inputs)}",
            logger=self.logger,
            metrics=self.metrics,
            sink=self.sink,
        )
        syslog_input = SyslogInput(cfg, context)
        self.run(syslog_input.start())
        self.inputs.append(syslog_input)
        return syslog_input

    def stop(self, syslog_input: SyslogInput) -> None:
        self.run(syslog_input.stop())
        self.inputs.remove(syslog_input)

    def abort(self, syslog_input: SyslogInput) -> None:
        self.call(syslog_input.abort)
        self.inputs.remove(syslog_input)

    def frames(self) -> list[bytes]:
        return self.call(lambda: list(self.sink.frames))

    def count(self) -> int:
        return self.call(lambda: len(self.sink.frames))

    def close(self) -> None:
        try:
            for syslog_input in list(self.inputs):
                self.stop(syslog_input)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@contextmanager
def input_harness(use_uvloop: bool = False) -> Iterator[InputHarness]:
    harness = InputHarness(use_uvloop)
    try:
        yield harness
    finally:
        harness.close()
