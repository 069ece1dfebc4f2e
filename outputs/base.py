"""The contract between the agent and every output.

The agent owns the buffer, the retries and the dead-letter directory; an output only turns a
group of chunks of already-encoded records into one write at its destination and says how that
went. How chunks group into one write is the output's ``batching`` (and ``batch_key``); the
agent's delivery forms the groups, runs at most ``workers`` writes at once, retries a group as a
whole and acknowledges each of its chunks after the write:

* ``send`` returns once the destination confirmed every record of the group (or the output
  dead-lettered the ones the destination refused for good, through ``OutputContext.dead_letter``);
* it raises ``RetryableError`` when trying again later may work (network, 5xx, throttling);
* it raises ``FatalError`` when the destination refused the data itself; the agent moves the
  chunks (all of the group, or those the error names) to the dead-letter directory with the
  reason.

This module is a leaf: it imports nothing from ``agent``. Types that every component shares
(``Duration``, ``Size``, ``Metrics``) live in ``common``.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, ClassVar, Protocol

import msgspec

from common.metrics import Metrics
from common.selectors import check_selector
from common.units import Duration

# ------------------------------------------------------------------------------ config


class OutputConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Keys every output takes. Each output's own config subclasses this with
    ``tag_field="type"`` and its ``tag`` (the value of ``type`` in the TOML)."""

    name: str = ""
    """Labels metrics and log lines; defaults to "<type>.<position>"."""
    match: str | None = None
    """Glob over tags ("*", "syslog.*", "docker.*.nginx"); neither this nor ``match_regex``
    means every tag."""
    match_regex: str | None = None
    """Regular expression over tags, instead of ``match``."""
    retry_limit: int | str = "unlimited"
    """Failed attempts per chunk before it goes to the dead-letter directory, or "unlimited"
    (the default: an outage only fills the buffer, bounded by ``[buffer] max_bytes``)."""
    retry_base: Duration = Duration(1.0)
    """Backoff before the first retry of a write; it doubles with each failed attempt (full
    jitter: a uniform pick up to that bound)."""
    retry_max: Duration = Duration(60.0)
    """Upper bound of the backoff between attempts."""
    workers: int = 2
    """Writes in flight at once (each write holds one group of chunks, see ``Batching``)."""

    def __post_init__(self) -> None:
        if isinstance(self.retry_limit, str) and self.retry_limit != "unlimited":
            raise ValueError(
                f'retry_limit must be a number or "unlimited", got {self.retry_limit!r}'
            )
        if isinstance(self.retry_limit, int) and self.retry_limit < 0:
            raise ValueError("retry_limit cannot be negative")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.retry_base <= 0:
            raise ValueError("retry_base: must be more than 0 seconds")
        if self.retry_max < self.retry_base:
            raise ValueError(
                f"retry_max: must be at least retry_base ({float(self.retry_base):g}s), "
                f"got {float(self.retry_max):g}s"
            )
        check_selector(self.match, self.match_regex)


# ------------------------------------------------------------------------------------- chunks


class Chunk(Protocol):
    """A read-only view of one buffer chunk: records of one tag, already encoded.

    ``lines()`` are the records as JSON objects (msgspec-encoded once at ingestion), each without
    its newline; ``data()`` is the same as NDJSON bytes (every line followed by a newline).
    ``times()`` holds each record's event time in seconds since the epoch (UTC), computed at
    ingestion, so an output never decodes a record to find it. ``id`` is stable across restarts:
    derive object keys and document ids from it (and a record's position) so a resend overwrites
    instead of duplicating.
    """

    @property
    def id(self) -> str: ...

    @property
    def tag(self) -> str: ...

    @property
    def created(self) -> float:
        """When the chunk was opened, seconds since the epoch."""
        ...

    @property
    def records(self) -> int: ...

    @property
    def size(self) -> int:
        """Bytes of ``data()``."""
        ...

    def lines(self) -> Sequence[bytes]: ...

    def times(self) -> Sequence[float]: ...

    def data(self) -> bytes: ...

    def parts(self) -> Sequence[bytes]:
        """``data()`` in pieces (their concatenation is ``data()``): the batches as they entered
        the buffer, for an output that writes them out as they are (``os.writev``) and so never
        needs the joined copy. Implementations without pieces return ``[self.data()]``."""
        ...

    def release_cache(self) -> None:
        """Whoever holds the chunk will not read it for a while (delivery, while the chunk
        waits in a partial group; an output, once it has what it needs of the chunk): the chunk
        may free its in-memory copy. Reading it again afterwards is allowed and reads it back."""
        ...


# ---------------------------------------------------------------------------------- errors


class OutputError(Exception):
    """Base of the errors ``Output.send`` may raise."""


class RetryableError(OutputError):
    """The write may succeed later: network error, timeout, 5xx, throttling."""


class FatalError(OutputError):
    """The destination refused the data itself; retrying cannot help.

    ``chunks`` names the chunks of the group that were refused when the others were written
    (S3 leaves a chunk it cannot read out of its object); None means the whole group."""

    def __init__(self, message: str, chunks: Iterable[str] | None = None) -> None:
        super().__init__(message)
        self.chunks: frozenset[str] | None = None if chunks is None else frozenset(chunks)


BLOCKED_CAUSES = (
    "no_bucket",
    "denied",
    "credentials",
    "kms",
    "auth",
    "cluster",
    "dead_letter_full",
    "dead_letter_unwritable",
)
"""Every ``BlockedError.cause``: the values of the ``cause`` label of ``output_blocked``."""


class BlockedError(RetryableError):
    """The write failed for a reason that is not about the data: the bucket does not exist (yet),
    the credentials or the KMS key are refused, the cluster blocks writes, the dead-letter
    directory is full or not writable. The agent keeps the records and retries with backoff for
    as long as it takes (``retry_limit`` does not apply: these would dead-letter good data), and
    shows ``cause`` (one of ``BLOCKED_CAUSES``) in /readyz and ``output_blocked``."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        if cause not in BLOCKED_CAUSES:
            raise ValueError(f"unknown blocked cause {cause!r}")
        self.cause = cause


class DeadLetterError(BlockedError):
    """Records could not be kept in the dead-letter directory (full: ``dead_letter_max_bytes``;
    or a write failed). Raised by ``OutputContext.dead_letter``; an output lets it propagate so
    the chunk stays in the buffer, unacknowledged, and is tried again later."""


# --------------------------------------------------------------------------------- context


DeadLetter = Callable[[Chunk, Sequence[bytes], str], None]
"""``dead_letter(chunk, lines, reason)``: keep ``lines`` of ``chunk`` that the destination refused
for good, with the reason, in the agent's dead-letter directory. Raises ``DeadLetterError`` when
they could not be kept (the directory is full or not writable): the output must let it propagate
and must not count those records as settled, so the chunk stays in the buffer."""

DeadLettered = Callable[[Chunk, int, str], None]
"""``dead_lettered(chunk, records, reason)``: ``records`` of ``chunk`` were kept somewhere other
than the destination's normal place by the output itself (an Elasticsearch
``dead_letter_index``); the agent counts them apart from the delivered ones. ``reason`` is a short
fixed label."""


def _not_counted(chunk: Chunk, records: int, reason: str) -> None:
    return None


class OutputContext(msgspec.Struct, kw_only=True):
    name: str
    data_dir: str
    node_name: str
    logger: logging.Logger
    metrics: Metrics
    dead_letter: DeadLetter
    dead_lettered: DeadLettered = _not_counted


# -------------------------------------------------------------------------------- batching


class Batching(msgspec.Struct, frozen=True, kw_only=True):
    """How an output's chunks group into one write (``Output.send``). Delivery adds ready chunks
    of one ``Output.batch_key`` to an open group and writes the group when one of the bounds
    is reached, when ``max_age`` passed since its first chunk, or when the agent shuts down."""

    max_chunks: int = 1
    """Chunks per write; 1 writes every chunk on its own (no grouping)."""
    max_bytes: int = 0
    """Upper bound on a write's bytes (``Chunk.size`` summed): a group closes before it would
    exceed this (a single chunk larger than this is written alone). 0: no upper bound."""
    target_bytes: int = 0
    """A group closes as soon as it holds at least this many bytes (it may pass it by one
    chunk; S3's ``total_file_size``). 0: no such bound."""
    max_age: float = 0.0
    """Seconds a partial group waits for more chunks before it is written; 0 writes it as soon
    as no further chunk is ready."""

    def __post_init__(self) -> None:
        if self.max_chunks < 1:
            raise ValueError("max_chunks must be at least 1")
        if self.max_bytes < 0 or self.target_bytes < 0 or self.max_age < 0:
            raise ValueError("max_bytes, target_bytes and max_age cannot be negative")


# ---------------------------------------------------------------------------------- output


class Output(abc.ABC):
    """One destination. Built from its config struct and the context; the agent calls
    ``start`` once, then ``send`` for each group of chunks routed to it (grouped after
    ``batching`` and ``batch_key``, at most ``workers`` writes at once), then ``stop``."""

    type_name: ClassVar[str]

    def __init__(self, config: Any, context: OutputContext) -> None:
        self.config = config
        self.context = context
        self.ready = True
        """False while the destination is known unreachable (shown by /readyz)."""

    @property
    def batching(self) -> Batching:
        """How chunks group into one write; the default writes each chunk on its own."""
        return Batching()

    def batch_key(self, chunk: Chunk) -> Hashable:
        """Chunks share a write only when their keys are equal. The default keeps tags apart;
        an output whose writes may mix tags returns a constant, one whose write depends on more
        than the tag (S3: the rendered object key) says so here."""
        return chunk.tag

    async def start(self) -> None:
        """Open connections, check the destination. Must not raise for an unreachable
        destination: set ``ready = False`` and log; chunks wait in the buffer."""

    @abc.abstractmethod
    async def send(self, chunks: Sequence[Chunk]) -> None:
        """Write the group of chunks as one write; return once the destination confirmed it."""

    async def stop(self) -> None:
        """Release connections."""
