"""The filter chain: every configured filter in order, each on the batches whose tag it matches.

A filter's output batches go on to the next filter, which matches them by their (possibly new)
tag. Records a filter held back (``multiline``) come out of ``flush``/``close`` and go through
the filters after it. Per filter, the chain counts records in and out and those dropped
(``filter_records_total{direction}``, ``filter_dropped_records_total``); a filter that raises
despite its contract is counted (``filter_errors_total``) and its batch passes on unchanged.
When a filter returns more than one batch, a record in more than one of them is copied before
any later filter sees it. Beside the records, the chain carries the parser's event times
(``process_with_times``; see ``agent.filters.times``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import compress
from typing import cast

from agent.components import build
from agent.filters.base import Batch, Filter, FilterConfig, FilterContext, KeepFilter, Record
from agent.filters.common import copy_record
from agent.filters.times import Settle
from agent.router import TagMatcher

_log = logging.getLogger(__name__)

_Carried = tuple[str, list[Record], list[float] | None, list[object] | None]
"""A batch with what the chain carries beside its records: their event times (None: not
known) and the ``time`` texts those are of, position by position (None: not taken yet, since
only keep-masks ran on these records); see ``Settle``."""
TimedBatch = tuple[str, list[Record], list[float]]


class _Stage:
    __slots__ = ("context", "counts_drops", "filter", "masks", "matches")

    def __init__(self, filter_: Filter, context: FilterContext, matcher: TagMatcher) -> None:
        self.filter = filter_
        self.context = context
        self.matches = matcher.matches
        self.counts_drops = filter_.counts_drops
        self.masks = isinstance(filter_, KeepFilter)


def unshare(batches: list[Batch]) -> list[Batch]:
    """The batches with every record object after its first appearance replaced by a copy, so
    no two places hold one record that a filter may change."""
    return [(tag, records) for tag, records, _, _ in _unshare([_carry(b) for b in batches])]


def merge_batches(batches: list[Batch]) -> list[Batch]:
    """Join consecutive batches of one tag and leave out empty ones."""
    return [(tag, records) for tag, records, _, _ in _merge([_carry(b) for b in batches])]


def _carry(batch: Batch) -> _Carried:
    return batch[0], batch[1], None, None


def _unshare(batches: list[_Carried]) -> list[_Carried]:
    seen: set[int] = set()
    out: list[_Carried] = []
    for batch in batches:
        tag, records, times, texts = batch
        ids = list(map(id, records))
        if seen.isdisjoint(ids) and len(set(ids)) == len(ids):
            seen.update(ids)
            out.append(batch)
            continue
        own: list[Record] = []
        for record, key in zip(records, ids, strict=True):
            if key in seen:
                record = copy_record(record)
            else:
                seen.add(key)
            own.append(record)
        out.append((tag, own, times, texts))  # the same places: what they carry still fits
    return out


def _merge(batches: list[_Carried]) -> list[_Carried]:
    merged: list[_Carried] = []
    for batch in batches:
        tag, records, times, texts = batch
        if not records:
            continue
        if merged and merged[-1][0] == tag:
            _, before, before_times, before_texts = merged[-1]
            if before_times is None or times is None or (before_texts is None) != (texts is None):
                merged[-1] = (tag, before + records, None, None)
            elif before_texts is None or texts is None:
                merged[-1] = (tag, before + records, before_times + times, None)
            else:
                merged[-1] = (tag, before + records, before_times + times, before_texts + texts)
        else:
            merged.append(batch)
    return merged


class FilterChain:
    def __init__(self, filters: Sequence[tuple[FilterConfig, FilterContext]]) -> None:
        self._stages: list[_Stage] = []
        for index, (config, context) in enumerate(filters):
            filter_: Filter = build("filters", index, config, context)
            matcher = TagMatcher(config.match, config.match_regex)
            self._stages.append(_Stage(filter_, context, matcher))

    def __len__(self) -> int:
        return len(self._stages)

    @property
    def filters(self) -> list[Filter]:
        return [stage.filter for stage in self._stages]

    async def start(self) -> None:
        """Start every filter's background work (``Filter.start``)."""
        for stage in self._stages:
            await stage.filter.start()

    async def stop(self) -> None:
        """Stop every filter's background work; a failure is logged, the others still stop."""
        for stage in self._stages:
            try:
                await stage.filter.stop()
            except Exception:
                stage.context.logger.exception("filter %s failed to stop", stage.context.name)

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        if not self._stages:
            return [(tag, records)] if records else []
        return [(t, r) for t, r, _, _ in self._run(0, [(tag, records, None, None)], None)]

    def process_with_times(
        self, tag: str, records: list[Record], times: list[float]
    ) -> list[TimedBatch]:
        """``process`` for records whose event times are known (``times``: each one's, exactly
        ``rfc3339_to_epoch(record["time"])``): the batches that come out, each with its
        records' event times."""
        if not self._stages:
            return [(tag, records, times)] if records else []
        settle = Settle(len(records))
        out = self._run(0, [(tag, records, times, None)], settle)
        return [(t, r, settle.of(r, t_times, t_texts)) for t, r, t_times, t_texts in out]

    def flush(self, now: float) -> list[Batch]:
        """Held-back records whose time has come, through the rest of the chain."""
        return self._release("flush", now)

    def close(self) -> list[Batch]:
        """Everything held back, through the rest of the chain (which is closed after)."""
        return self._release("close", None)

    def _release(self, method: str, now: float | None) -> list[Batch]:
        out: list[Batch] = []
        for index, stage in enumerate(self._stages):
            released = self._call(stage, method, now)
            if released:
                carried = [_carry(batch) for batch in released]
                out.extend((t, r) for t, r, _, _ in self._run(index + 1, carried, None))
        return merge_batches(out)

    def _call(self, stage: _Stage, method: str, now: float | None) -> list[Batch]:
        try:
            if method == "flush":
                released = merge_batches(stage.filter.flush(now or 0.0))
            else:
                released = merge_batches(stage.filter.close())
        except Exception:
            stage.context.metrics.inc("filter_errors_total")
            stage.context.logger.exception("filter %s failed in %s", stage.context.name, method)
            return []
        if released:
            count = sum(len(records) for _, records in released)
            stage.context.metrics.inc("filter_records_total", count, direction="out")
        return released

    @staticmethod
    def _apply(stage: _Stage, batch: _Carried) -> list[_Carried]:
        """What ``stage`` makes of ``batch``, with what the chain carries beside the records
        kept where it still fits."""
        tag, records, times, texts = batch
        if stage.masks:
            mask = cast(KeepFilter, stage.filter).keep(records)
            if len(mask) != len(records):
                raise ValueError(f"{len(mask)} keep flags for {len(records)} records")
            if all(mask):
                return [batch]
            if times is not None:
                times = list(compress(times, mask))
                if texts is not None:
                    texts = list(compress(texts, mask))
            return [(tag, list(compress(records, mask)), times, texts)]
        return [
            (new_tag, new, times, texts) if new is records else (new_tag, new, None, None)
            for new_tag, new in stage.filter.process(tag, records)
        ]

    def _run(
        self, start: int, batches: list[_Carried], settle: Settle | None
    ) -> list[_Carried]:
        last = len(self._stages) - 1
        for index in range(start, last + 1):
            stage = self._stages[index]
            out: list[_Carried] = []
            split = False
            for batch in batches:
                if not stage.matches(batch[0]):
                    out.append(batch)
                    continue
                tag, records, times, texts = batch
                count_in = len(records)
                if texts is None and times is not None and settle is not None and not stage.masks:
                    # Before a filter that may change `time` in place, even if it then raises.
                    batch = (tag, records, times, settle.capture(records, times))
                try:
                    produced = self._apply(stage, batch)
                except Exception:
                    # A bug in a filter must not lose the batch nor stop the input.
                    stage.context.metrics.inc("filter_errors_total")
                    stage.context.logger.exception(
                        "filter %s failed; its batch passes through unchanged", stage.context.name
                    )
                    produced = [batch]
                count_out = 0
                for new in produced:
                    count_out += len(new[1])
                out.extend(produced)
                split = split or len(produced) > 1
                metrics = stage.context.metrics
                metrics.inc("filter_records_total", count_in, direction="in")
                metrics.inc("filter_records_total", count_out, direction="out")
                if stage.counts_drops and count_out < count_in:
                    metrics.inc("filter_dropped_records_total", count_in - count_out)
            batches = _merge(out)
            if not batches:
                return []
            if split and index < last:
                # One record may be in two of the batches (kept and re-tagged): the filters
                # after must not change both through one object.
                batches = _unshare(batches)
        return batches
