"""Event times beside records: what the filter chain hands the buffer with each batch.

The parser computes each record's event time (seconds since the epoch) from its ``time``
text, and the buffer needs it again after the filters. Filters know nothing of it: the chain
carries the parser's epochs beside the records, with the ``time`` texts they were computed
from, takes both by a ``KeepFilter``'s mask, and keeps both while a filter returns the list
it was given. At the end, a batch whose records still hold those texts, position by
position, gets the parser's epochs as they are; any other batch is looked up by text, or
parsed where a filter set a new time.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any, cast

from parsers.timeutil import rfc3339_to_epoch

Record = dict[str, Any]
_NAN = float("nan")
_get: Callable[[Record, str], Any] = dict.get

_FEW = 8
"""A batch this many times smaller than the chain's input gets its times from its texts: the
table of the parser's epochs costs more than parsing a few (an audit tag's copies)."""


def stamps(records: list[Record]) -> list[Any]:
    """Each record's ``time`` (None where missing), in C: no per-record bytecode."""
    return list(map(_get, records, repeat("time")))


def _texts(records: list[Record]) -> list[Any]:
    """``stamps``, by the cheapest way there is when every record has a ``time``."""
    try:
        return [record["time"] for record in records]
    except KeyError:
        return stamps(records)


def _epoch_of(stamp: object) -> float:
    return rfc3339_to_epoch(stamp) if isinstance(stamp, str) else _NAN


def event_times(records: list[Record], known: dict[Any, float] | None = None) -> list[float]:
    """Each record's event time (seconds since the epoch) from its ``time`` text, NaN where it
    is missing or not RFC 3339.

    ``known``: epochs already computed for time texts (the parser's, for the batch that went
    into the filter chain). A record whose ``time`` a filter left alone then costs a dict
    lookup instead of a parse; one that a filter set or changed is parsed from its text. Both
    give the same number: the parser's epochs are exactly ``rfc3339_to_epoch`` of its texts."""
    if known:
        try:
            found = list(map(known.get, map(_get, records, repeat("time"))))
            # A None (a text the parser did not give) fails the sum: one C loop, where a
            # `None in` test compares every float with None.
            sum(cast("list[float]", found))
            return cast("list[float]", found)
        except TypeError:  # that, or a filter made some `time` a list or dict (unhashable)
            pass
    texts = stamps(records)
    if not known:
        return [_epoch_of(stamp) for stamp in texts]
    lookup = known.get
    return [
        epoch if (epoch := _lookup(lookup, stamp)) is not None else _epoch_of(stamp)
        for stamp in texts
    ]


def _lookup(lookup: Callable[[Any], float | None], stamp: object) -> float | None:
    try:
        return lookup(stamp)
    except TypeError:  # unhashable
        return None


class Settle:
    """The event times of the batches a chain returns, from the parser's for the batch that
    went in (``count`` records).

    Beside a batch's records the chain carries their times and, once a filter that may edit
    records in place is about to see them, the ``time`` texts those times are of
    (``capture``). A batch that only keep-masks touched has its times as they are; one that
    still holds the captured texts, position by position, too; any other batch is looked up
    by text among the captured ones, or parsed where a filter set a new time."""

    __slots__ = ("_captured", "_count", "_known")

    def __init__(self, count: int) -> None:
        self._count = count
        self._captured: list[tuple[list[Any], list[float]]] = []
        self._known: dict[Any, float] | None = None

    def capture(self, records: list[Record], times: list[float]) -> list[Any]:
        """The ``time`` texts of ``records`` (whose epochs are ``times``), before a filter
        that may change them runs."""
        texts = _texts(records)
        self._captured.append((texts, times))
        return texts

    def of(
        self, records: list[Record], times: list[float] | None, texts: list[Any] | None
    ) -> list[float]:
        """``times``/``texts``: what the chain carried beside ``records`` (None, None when it
        could not follow them: a filter returned other lists)."""
        if times is not None and (texts is None or _texts(records) == texts):
            return times  # `==` on the texts: identity first, in C
        if self._known is None:
            if len(records) * _FEW < self._count or not self._captured:
                return event_times(records)
            known: dict[Any, float] = {}
            for captured_texts, captured_times in self._captured:
                known.update(zip(captured_texts, captured_times, strict=True))
            self._known = known
        return event_times(records, self._known)
