"""One stream connection of the syslog input (TCP or UNIX stream): every read is framed
(``framing.StreamFramer``) and submitted as one batch; while the sink has no room the connection
stops reading, so TCP/UNIX flow control pushes back on the sender (rsyslog keeps the backlog in
its queue). RELP sessions (``relp.py``) are such connections with their own framing and answers.

A connection knows its input only through ``ConnectionOwner``, so this module imports nothing of
the input that accepts connections."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, cast

from agent.inputs.base import InputContext
from agent.inputs.framing import Framing, StreamFramer
from agent.inputs.listener import format_address


class StreamOptions(Protocol):
    """The keys of the input's config that a stream connection reads."""

    @property
    def framing(self) -> Framing: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def path(self) -> str | None: ...


class ConnectionOwner(Protocol):
    """What a stream connection asks of the input that accepted it."""

    @property
    def context(self) -> InputContext: ...

    @property
    def config(self) -> StreamOptions: ...

    def connection_opened(self, connection: StreamConnection) -> bool:
        """Registers a new connection; False (counted by the owner) when it is refused."""
        ...

    def connection_closed(self, connection: StreamConnection) -> None: ...


class StreamConnection(asyncio.Protocol):
    """One TCP or UNIX stream connection: frames every read, submits it as one batch, and
    stops reading while the sink is full."""

    def __init__(self, owner: ConnectionOwner) -> None:
        self.owner = owner
        self.sink = owner.context.sink
        self.metrics = owner.context.metrics
        self.logger = owner.context.logger
        config = owner.config
        self.framer = StreamFramer(config.framing, int(config.max_message_bytes))
        self.transport: asyncio.Transport | None = None
        self.source = config.path or ""
        self._registered = False
        self._closed = False
        self._eof = False
        self._warned = False
        self._waiting: asyncio.Task[None] | None = None
        self._yielding = False
        """Reading paused until the next loop iteration (``_yield_to_loop``)."""
        self._held: list[tuple[list[bytes], list[int], Any]] = []
        """Batches read but not yet taken by the sink (it was full), with their tokens."""

    # asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer and isinstance(peer, tuple):
            self.source = format_address(peer)
        if not self.owner.connection_opened(self):
            self.transport.abort()
            return
        self._registered = True

    def data_received(self, data: bytes) -> None:
        self.metrics.inc("input_bytes_total", len(data))
        frames, truncated = self.framer.feed(data)
        self._report_framer()
        if frames:
            self.deliver(frames, truncated)
            self._yield_to_loop()

    def _yield_to_loop(self) -> None:
        """One read per loop iteration. uvloop (libuv) reads a busy socket up to 32 times per
        iteration, 8 MiB of messages parsed before any other callback runs: outputs then
        advance one step per such burst, fall behind, and their chunks are evicted from
        memory and read back from disk. Pausing until the next iteration lets every task
        take its turn between two reads (TCP flow control holds the sender meanwhile)."""
        if self._yielding or self._waiting is not None or self._closed or self.transport is None:
            return
        self._yielding = True
        self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._resume_after_yield)

    def _resume_after_yield(self) -> None:
        self._yielding = False
        if self._waiting is not None or self._closed or self.transport is None:
            return  # waiting for room: _wait_for_room resumes
        if self.may_read():
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        frames, truncated = self.framer.finish()
        self._report_framer()
        if frames:
            self.deliver(frames, truncated)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if not self._eof:
            # Reset by the peer or closed by our stop: a partial message read so far is kept.
            frames, truncated = self.framer.finish()
            self._report_framer()
            if frames:
                self.metrics.inc("input_frames_total", len(frames))
                self._held.append((frames, truncated, None))
        if self._held and self.submit_held_on_close:
            # Nothing more will be read: hand over what is held even if the sink then counts
            # it as dropped, rather than losing it silently.
            for frames, truncated, _ in self._held:
                self.sink.submit(frames, self.source, truncated)
        self._held.clear()
        if self._waiting is not None:
            self._waiting.cancel()
        if self._registered:
            self.owner.connection_closed(self)

    # batches and backpressure --------------------------------------------------------

    submit_held_on_close = True
    """Plain syslog senders cannot resend; RELP senders resend whatever was not answered."""

    def deliver(self, frames: list[bytes], truncated: list[int], token: Any = None) -> None:
        self.metrics.inc("input_frames_total", len(frames))
        if truncated:
            self.metrics.inc("input_truncated_total", len(truncated))
        if self._held or not self.sink.has_room():
            self._held.append((frames, truncated, token))
            self._pause()
            return
        if not self.sink.submit(frames, self.source, truncated):
            self._held.append((frames, truncated, token))
            self._pause()
            return
        self.submitted(token)
        if not self.sink.has_room():
            self._pause()

    def submitted(self, token: Any) -> None:
        """The sink took the batch ``token`` came with (RELP acknowledges it once committed)."""

    def _pause(self) -> None:
        if self._waiting is not None or self._closed or self.transport is None:
            return
        self.transport.pause_reading()
        self.metrics.inc("input_backpressure_pauses_total", reason="buffer_full")
        self._waiting = asyncio.get_running_loop().create_task(self._wait_for_room())

    async def _wait_for_room(self) -> None:
        try:
            while True:
                await self.sink.wait_room()
                while self._held and self.sink.has_room():
                    frames, truncated, token = self._held[0]
                    if not self.sink.submit(frames, self.source, truncated):
                        break
                    self._held.pop(0)
                    self.submitted(token)
                if not self._held and self.sink.has_room():
                    break
                if self._held and self.sink.has_room():
                    await asyncio.sleep(0.01)  # taken by another input in between; retry
        finally:
            self._waiting = None
        if not self._closed and self.transport is not None and self.may_read():
            self.transport.resume_reading()

    def may_read(self) -> bool:
        return True

    def _report_framer(self) -> None:
        framer = self.framer
        if framer.framing_errors:
            self.metrics.inc("input_framing_errors_total", framer.framing_errors)
            if not self._warned:
                # Once per connection: a peer sending garbage must not flood our own log.
                self._warned = True
                self.logger.warning(
                    "%s: malformed octet-counted frame from %s kept as a newline-framed message "
                    "(further ones on this connection are only counted)",
                    self.owner.context.name,
                    self.source,
                )
            framer.framing_errors = 0
        if framer.discarded_bytes:
            self.metrics.inc("input_discarded_bytes_total", framer.discarded_bytes)
            framer.discarded_bytes = 0

    # shutdown -------------------------------------------------------------------------

    async def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._held.clear()
        if self.transport is not None:
            self.transport.abort()
