"""The contract of filters: pure, synchronous functions over a batch of records of one tag.

A filter sees a batch only if its ``match``/``match_regex`` selects the batch's tag. It returns
the batches that come out, as (tag, records) pairs: usually one pair with the same tag; a filter
that re-tags records (``rewrite_tag``, ``audit``) may return several, and the filters after it
and the router see the new tags. A filter that holds records back (``multiline``) returns them
later from ``flush``, which the agent calls at least every ``flush_interval``.

Every filter owns the records it is given. A filter that keeps a record under its tag and also
sends it out under another one returns the same record object in both batches and says so with
``shares_records``: the chain copies it only if a later filter could see it (copying is most of
the cost of such a record, and after the last filter nothing changes records any more).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from itertools import compress
from typing import Any, ClassVar

import msgspec

from common.metrics import Metrics
from common.selectors import check_selector

Record = dict[str, Any]
Batch = tuple[str, list[Record]]


def _never(field: str) -> bool:
    return False


class Subset(list[Record]):
    """The records of ``source`` whose ``mask`` entry is true, in their order: what ``grep``
    returns when it drops some. When no filter of the chain may change ``time`` (see
    ``Filter.writes``), the agent finds their parsed event times through the mask instead of
    looking each record's text up. Filters that declare ``writes`` never change a list they
    were given or return (its records, yes)."""

    __slots__ = ("mask", "source")

    def __init__(self, source: list[Record], mask: list[bool]) -> None:
        super().__init__(compress(source, mask))
        self.source = source
        self.mask = mask


class FilterConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Keys every filter takes; a filter's own config subclasses this with
    ``tag_field="type"`` and its ``tag`` value."""

    name: str = ""
    """Labels metrics and log lines; defaults to "<type>.<position>"."""
    match: str | None = None
    """Glob over tags (``syslog.*``, ``docker.*.nginx``); neither this nor ``match_regex``
    means every tag."""
    match_regex: str | None = None
    """Regular expression over tags, instead of ``match``."""

    def __post_init__(self) -> None:
        check_selector(self.match, self.match_regex)


class FilterContext(msgspec.Struct, kw_only=True):
    name: str
    logger: logging.Logger
    metrics: Metrics


class Filter(abc.ABC):
    counts_drops: ClassVar[bool] = True
    """Fewer records out than in means records were dropped (counted). False for filters that
    join records (multiline), where fewer out is not a loss."""
    shares_records: bool = False
    """The batches ``process`` returns may hold one record object more than once; the chain
    gives each later filter its own copies (see the module's docstring)."""
    writes: frozenset[str] | None = None
    """The top-level fields this filter may set, change or remove in the records it is given;
    None: it may change anything. The agent reuses the parser's event times for records whose
    ``time`` no filter of the chain may change (``FilterChain.keeps``)."""
    replaces: frozenset[str] = frozenset()
    """Fields of ``writes`` that this filter only ever sets to an object of its own, never
    changing in place the dict or list a record already holds there. Records may then share
    one such object (``FilterChain.shares``): the ``tail`` input's ``kubernetes`` object."""

    def __init__(self, config: Any, context: FilterContext) -> None:
        self.config = config
        self.context = context
        self.later_shares: Callable[[str], bool] = _never
        """Set by the chain: ``later_shares(field)`` is true when no filter after this one
        changes a record's ``field`` object in place, so this filter may give records one
        shared object there (it must then treat that object as read-only itself)."""

    @abc.abstractmethod
    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        """Never raises for a bad record: a record it cannot handle passes through unchanged."""

    async def start(self) -> None:
        """Start background work (``kubernetes``: its watch), once, before inputs start."""

    async def stop(self) -> None:
        """Stop that background work, after ``close``."""

    def flush(self, now: float) -> list[Batch]:
        """Records held back whose time has come (``now`` is ``time.monotonic()``)."""
        return []

    def close(self) -> list[Batch]:
        """Everything still held back, at shutdown."""
        return []


class RecordFilter(Filter):
    """A filter that keeps the tag: implement ``apply``."""

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        return [(tag, self.apply(records))]

    @abc.abstractmethod
    def apply(self, records: list[Record]) -> list[Record]: ...
