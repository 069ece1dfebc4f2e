"""The ``audit`` filter: which compiled rules may match a record (by tag, by the ``ident``
index, by the literal screen on one field), the mark it gets, and the batches that go out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from agent.filters.audit.config import AuditConfig
from agent.filters.audit.engine import INDEX_FIELD, CompiledRule, compile_rules
from agent.filters.audit.rules import enabled_rules
from agent.filters.base import Batch, Filter, FilterContext, Record
from agent.filters.common import as_text

Test = Callable[[Record], "dict[str, Any] | None"]


_Pick = tuple[tuple[Test, ...], tuple[CompiledRule, ...]]
"""Rules in severity order, and their ``test`` functions (looked up once, not per record)."""


class _Screen:
    """The rules that may match records of one tag and ident value, and the literal screen in
    front of them: a rule with a gate on the screened field can only match a text that starts
    with one of its prefixes or contains one of its needles, so a text that hits none of them
    leaves only the ungated (``quiet``) rules, and one that hits some leaves only their rules.
    """

    __slots__ = ("_cache", "_gated", "_selected", "by_first", "needles", "quiet")

    def __init__(self, selected: list[CompiledRule], field: str) -> None:
        self._selected = selected
        self._gated = {id(r): r.gates[field] for r in selected if field in r.gates}
        prefixes = sorted({p for gate in self._gated.values() for p in gate.prefixes})
        self.by_first: dict[str, tuple[str, ...]] = {}
        """The prefixes by their first character: one dict lookup rules most of them out."""
        for prefix in prefixes:
            self.by_first[prefix[0]] = (*self.by_first.get(prefix[0], ()), prefix)
        self.needles = tuple(sorted({n for gate in self._gated.values() for n in gate.needles}))
        self.quiet: _Pick = self._pick((), ())
        self._cache: dict[tuple[tuple[str, ...], tuple[str, ...]], _Pick] = {}
        """By the literals a text hit: the prefixes, the needles."""

    def _pick(self, prefixes: tuple[str, ...], needles: tuple[str, ...]) -> _Pick:
        rules = tuple(
            r
            for r in self._selected
            if id(r) not in self._gated
            or not set(self._gated[id(r)].prefixes).isdisjoint(prefixes)
            or not set(self._gated[id(r)].needles).isdisjoint(needles)
        )
        return tuple(r.test for r in rules), rules

    def pick(self, text: str) -> _Pick:
        """The rules left for a text that passed the screen (rare: a few percent of lines)."""
        prefixes = self.by_first.get(text[:1])
        hit: tuple[str, ...] = ()
        if prefixes is not None:
            for prefix in prefixes:
                if text.startswith(prefix):
                    hit += (prefix,)
        found: tuple[str, ...] = ()
        for needle in self.needles:
            if needle in text:
                found += (needle,)
        key = (hit, found)
        picked = self._cache.get(key)
        if picked is None:
            if len(self._cache) > 256:
                self._cache.clear()
            picked = self._cache[key] = self._pick(hit, found)
        return picked


_Candidates = tuple[
    Callable[[str], "tuple[str, ...] | None"], tuple[str, ...], _Pick, Callable[[str], _Pick]
]
"""A screen's parts, unpacked per record: prefixes by first character, needles, quiet and
pick."""
_TagRules = tuple[dict[str, _Candidates], _Candidates, bool]
"""Per tag: candidates by ident value (generic rules merged in), the generic rules, and
whether any rule applies to the tag at all."""


class AuditFilter(Filter):
    def __init__(self, config: AuditConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self.clock: Callable[[], float] = time.monotonic
        self.rules = compile_rules(enabled_rules(config), config.max_groups)
        self._stateful = [rule for rule in self.rules if rule.threshold]
        self._field = self._screen_field()
        self._retag = {rule.id: f"{config.tag_prefix}.{rule.id}" for rule in self.rules}
        self._per_tag: dict[str, _TagRules] = {}

    def _screen_field(self) -> str:
        """The field most rules have a literal gate on (``message`` with the defaults)."""
        counts: dict[str, int] = {}
        for rule in self.rules:
            for field in rule.gates:
                counts[field] = counts.get(field, 0) + 1
        if not counts:
            return "message"
        return max(sorted(counts), key=lambda field: (counts[field], field == "message"))

    def _candidates(self, selected: list[CompiledRule]) -> _Candidates:
        screen = _Screen(selected, self._field)
        return screen.by_first.get, screen.needles, screen.quiet, screen.pick

    def _rules_for(self, tag: str) -> _TagRules:
        cached = self._per_tag.get(tag)
        if cached is not None:
            return cached
        rules = sorted((r for r in self.rules if r.applies_to(tag)), key=lambda r: r.rank)
        generic = [r for r in rules if r.index_values is None]
        values = {value for rule in rules for value in rule.index_values or ()}
        table = {
            value: self._candidates(
                [r for r in rules if r.index_values is None or value in r.index_values]
            )
            for value in values
        }
        if len(self._per_tag) > 1024:
            self._per_tag.clear()
        self._per_tag[tag] = (table, self._candidates(generic), bool(rules))
        return self._per_tag[tag]

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        table, generic, any_rules = self._rules_for(tag)
        if not any_rules:
            return [(tag, records)]
        config = self.config
        now = self.clock()
        for rule in self._stateful:
            rule.now = now
        moved: dict[str, list[Record]] = {}
        # stay: the records left under the old tag when matches move away; None: all stay.
        stay: list[Record] | None = None if config.keep_original or not config.retag else []
        # Any ident may be looked up: a missing or non-string one finds nothing (generic).
        lookup = cast(Callable[[Any, _Candidates], _Candidates], table.get)
        field = self._field
        index_field = INDEX_FIELD
        retag = self._retag if config.retag else None
        mark_field = config.field
        marked = 0
        for record in records:
            try:
                prefixes_by_first, needles, picked, pick = lookup(record.get(index_field), generic)
            except TypeError:  # an unhashable ident (a dict or list) names no program
                prefixes_by_first, needles, picked, pick = generic
            # The screen: most records contain none of the rules' literals, and a dict lookup
            # and an ``in`` or two rule them all out before any regex runs; only the rules
            # without a literal on the screened field (usually none) are left to test.
            text = record.get(field)
            if text.__class__ is str or (text := as_text(text)) is not None:
                prefixes = prefixes_by_first(text[:1])
                if prefixes is not None and text.startswith(prefixes):
                    picked = pick(text)
                else:
                    for needle in needles:
                        if needle in text:
                            picked = pick(text)
                            break
            tests, rules = picked
            if not tests:
                if stay is not None:
                    stay.append(record)
                continue
            for test in tests:
                fields = test(record)
                if fields is not None:
                    break
            else:
                if stay is not None:
                    stay.append(record)
                continue
            # A match (rare): mark it and run the rest, whose stateful rules must count too.
            first = tests.index(test)
            top = rules[first]
            mark = top.mark.copy()
            if fields:
                mark["fields"] = fields
            matched = [top.id]
            for rule in rules[first + 1 :]:
                if rule.test(record) is not None:
                    matched.append(rule.id)
            if len(matched) > 1:
                mark["matched"] = matched
            marked += 1
            if retag is not None:
                # With keep_original the record stays in ``records`` too: one object in two
                # batches, which the chain copies only if a later filter could change it.
                moved.setdefault(retag[top.id], []).append(record)
            record[mark_field] = mark
        if marked:
            self.context.metrics.inc("filter_audit_matches_total", marked)
        out: list[Batch] = []
        kept = records if stay is None else stay
        if kept:
            out.append((tag, kept))
        out.extend(moved.items())
        return out
