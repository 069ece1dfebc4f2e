"""The contract between an input and the rest of the agent.

An input owns sockets, framing and limits. It turns bytes into frames (one syslog message each)
and hands them to its ``FrameSink`` in batches: whatever one read or one ``recvmmsg``-style drain
produced, never one call per message. The sink parses, filters, tags and buffers synchronously.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import msgspec

from common.metrics import Metrics


class FrameSink(Protocol):
    def submit(
        self, frames: list[bytes], source: str | None = None, truncated: Sequence[int] = ()
    ) -> bool:
        """Parse, filter, tag and buffer ``frames`` (``truncated`` holds the indexes of frames
        the input cut at ``max_message_bytes``; their records are flagged). Returns False, having
        counted the drop, when the buffer is full and the frames were not taken: a datagram input
        moves on, a stream input should have waited on ``wait_room`` first."""
        ...

    def submit_records(self, tag: str, records: list[dict[str, Any]], times: list[float]) -> bool:
        """For inputs that parse their own lines (tail): filter, encode and buffer ``records``
        under ``tag``; ``times`` are their event times as seconds since the epoch, exactly
        ``timeutil.rfc3339_to_epoch(record["time"])``. False when the buffer was full or
        failed: nothing was taken, the input keeps its data, waits on ``wait_room`` and tries
        again."""
        ...

    def has_room(self) -> bool:
        """False while the buffer is over its limit."""
        ...

    async def wait_room(self) -> None:
        """Return once the buffer has room; stream inputs await this before reading more, so
        the backpressure reaches the sender through TCP/UNIX flow control."""
        ...

    async def commit(self) -> None:
        """Return once everything submitted so far is as durable as ``[buffer] sync`` asks for.
        Acknowledging inputs (RELP) acknowledge only after this."""
        ...


class InputConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Keys every input takes; an input's own config subclasses this with
    ``tag_field="type"`` and its ``tag`` value."""

    name: str = ""
    """Labels metrics and log lines; defaults to "<type>.<position>"."""
    tag: str = "syslog"
    """Tag of the records; may hold ``${field}`` placeholders (``docker.${container_name}``)."""
    format: Literal["auto", "rfc5424", "rfc3164"] = "auto"
    """Syslog format: "auto" decides per message, "rfc5424" or "rfc3164" force one."""
    timezone: str = "UTC"
    """Zone of RFC 3164 timestamps, which carry none; any IANA name."""
    tag_pattern: str | None = None
    """Regex with named groups (``container_name``, ``container_id``, ``image``, ...) searched
    in the syslog tag; the groups become fields."""
    source_key: str | None = None
    """Record field that receives the sender: ``ip:port`` (``[ip]:port`` for IPv6) for network
    modes; for UNIX datagrams the sender's socket path when it bound one, else our own
    ``path``; for UNIX streams our ``path``."""


class InputContext(msgspec.Struct, kw_only=True):
    name: str
    logger: logging.Logger
    metrics: Metrics
    sink: FrameSink
    data_dir: str = ""
    """The agent's data_dir, for inputs that keep state (tail's read positions)."""


class Input(abc.ABC):
    def __init__(self, config: Any, context: InputContext) -> None:
        self.config = config
        self.context = context

    @abc.abstractmethod
    async def start(self) -> None:
        """Bind and start serving; raises OSError with a clear message if it cannot bind."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop accepting and reading; frames already read are submitted first."""

    @property
    def ready(self) -> bool:
        """True while bound and serving."""
        return True

    def problems(self) -> list[str]:
        """Why /readyz should not say ready on this input's account (empty when fine)."""
        return [] if self.ready else ["not serving"]

    def open_connections(self) -> int:
        """Connections open now (stream inputs), for the reload's log line."""
        return 0

    def describe(self) -> str:
        """Where it listens, for the start-up log line and ``--check``."""
        return self.context.name
