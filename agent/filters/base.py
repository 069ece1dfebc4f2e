"""The contract of filters: pure, synchronous functions over a batch of records of one tag.

A filter sees a batch only if its ``match``/``match_regex`` selects the batch's tag. Most
filters keep the tag and subclass ``RecordFilter``: ``apply(records) -> records``. A filter
that only drops records may subclass ``KeepFilter`` instead and say which to keep:
``keep(records) -> [bool, ...]``; the chain then takes the kept records, and everything it
carries beside them, by that mask. A filter that re-tags records (``rewrite_tag``, ``audit``)
implements ``process`` and returns the batches that come out as (tag, records) pairs; the
filters after it and the router see the new tags. A filter that holds records back
(``multiline``) returns them later from ``flush``, which the agent calls at least every
``flush_interval``.

A filter owns the records it is given: it may set, change and remove their fields, return
them, new ones or some of them, in any order, and return one record in more than one batch
(the chain copies it for the filters after). It does not own the dicts and lists inside them,
which records may share (one ``kubernetes`` object for every record of a container): to
change a nested value it puts a changed copy in its place (``agent.fields.set_field`` and
``delete_field`` do), never edits it in place.
"""

from __future__ import annotations

import abc
import logging
from itertools import compress
from typing import Any, ClassVar

import msgspec

from common.metrics import Metrics
from common.selectors import check_selector

Record = dict[str, Any]
Batch = tuple[str, list[Record]]


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

    def __init__(self, config: Any, context: FilterContext) -> None:
        self.config = config
        self.context = context

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


class KeepFilter(Filter):
    """A filter that only drops records and changes none: implement ``keep``, which returns
    one bool per record, true for those to keep. The chain keeps what it carries beside the
    records (the parser's event times) by the same mask."""

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        mask = self.keep(records)
        return [(tag, records if all(mask) else list(compress(records, mask)))]

    @abc.abstractmethod
    def keep(self, records: list[Record]) -> list[bool]: ...
