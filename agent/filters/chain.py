"""The filter chain: every configured filter in order, each on the batches whose tag it matches.

A filter's output batches go on to the next filter, which matches them by their (possibly new)
tag. Records a filter held back (``multiline``) come out of ``flush``/``close`` and go through
the filters after it. Per filter, the chain counts records in and out and those dropped
(``filter_records_total{direction}``, ``filter_dropped_records_total``); a filter that raises
despite its contract is counted (``filter_errors_total``) and its batch passes on unchanged.
After a filter that shares records (``Filter.shares_records``), a record its ``process``
returns more than once is copied before any later filter sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from agent.components import build
from agent.filters.base import Batch, Filter, FilterConfig, FilterContext, Record
from agent.filters.common import copy_record
from agent.router import TagMatcher

_log = logging.getLogger(__name__)


class _Stage:
    __slots__ = ("context", "counts_drops", "filter", "matches", "shares_records")

    def __init__(self, filter_: Filter, context: FilterContext, matcher: TagMatcher) -> None:
        self.filter = filter_
        self.context = context
        self.matches = matcher.matches
        self.counts_drops = filter_.counts_drops
        self.shares_records = filter_.shares_records


def unshare(batches: list[Batch]) -> list[Batch]:
    """The batches with every record object after its first appearance replaced by a copy, so
    no two places hold one record that a filter may change."""
    seen: set[int] = set()
    out: list[Batch] = []
    for tag, records in batches:
        ids = list(map(id, records))
        if seen.isdisjoint(ids) and len(set(ids)) == len(ids):
            seen.update(ids)
            out.append((tag, records))
            continue
        own: list[Record] = []
        for record, key in zip(records, ids, strict=True):
            if key in seen:
                record = copy_record(record)
            else:
                seen.add(key)
            own.append(record)
        out.append((tag, own))
    return out


def _share(filters: Sequence[Filter], field: str) -> bool:
    return all(
        f.writes is not None and (field not in f.writes or field in f.replaces) for f in filters
    )


def merge_batches(batches: list[Batch]) -> list[Batch]:
    """Join consecutive batches of one tag and leave out empty ones."""
    merged: list[Batch] = []
    for tag, records in batches:
        if not records:
            continue
        if merged and merged[-1][0] == tag:
            previous = merged[-1][1]
            merged[-1] = (tag, previous + records)
        else:
            merged.append((tag, records))
    return merged


class FilterChain:
    def __init__(self, filters: Sequence[tuple[FilterConfig, FilterContext]]) -> None:
        self._stages: list[_Stage] = []
        for index, (config, context) in enumerate(filters):
            filter_: Filter = build("filters", index, config, context)
            matcher = TagMatcher(config.match, config.match_regex)
            self._stages.append(_Stage(filter_, context, matcher))
        for index, stage in enumerate(self._stages):
            later = [s.filter for s in self._stages[index + 1 :]]
            stage.filter.later_shares = partial(_share, later)

    def __len__(self) -> int:
        return len(self._stages)

    def keeps(self, field: str) -> bool:
        """No filter of the chain may set, change or remove the top-level ``field``."""
        return all(
            stage.filter.writes is not None and field not in stage.filter.writes
            for stage in self._stages
        )

    def shares(self, field: str) -> bool:
        """Records may hold one shared object under the top-level ``field``: no filter of the
        chain changes it in place (each either leaves ``field`` alone or only ever replaces it,
        ``Filter.replaces``). Records are encoded right after the chain, so nothing else does."""
        return _share(self.filters, field)

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
        return self._run(0, [(tag, records)])

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
                out.extend(self._run(index + 1, released))
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

    def _run(self, start: int, batches: list[Batch]) -> list[Batch]:
        last = len(self._stages) - 1
        for index in range(start, last + 1):
            stage = self._stages[index]
            out: list[Batch] = []
            for tag, records in batches:
                if not stage.matches(tag):
                    out.append((tag, records))
                    continue
                count_in = len(records)
                try:
                    produced = stage.filter.process(tag, records)
                except Exception:
                    # A bug in a filter must not lose the batch nor stop the input.
                    stage.context.metrics.inc("filter_errors_total")
                    stage.context.logger.exception(
                        "filter %s failed; its batch passes through unchanged", stage.context.name
                    )
                    produced = [(tag, records)]
                count_out = sum(len(r) for _, r in produced)
                metrics = stage.context.metrics
                metrics.inc("filter_records_total", count_in, direction="in")
                metrics.inc("filter_records_total", count_out, direction="out")
                if stage.counts_drops and count_out < count_in:
                    metrics.inc("filter_dropped_records_total", count_in - count_out)
                out.extend(produced)
            batches = merge_batches(out)
            if not batches:
                return []
            if stage.shares_records and index < last:
                batches = unshare(batches)
        return batches
