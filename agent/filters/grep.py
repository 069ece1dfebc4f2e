"""``grep``: keep or drop records by regular expressions over their fields (fluent-bit's grep)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from operator import not_
from typing import Any, Literal

from agent.filters.base import FilterConfig, FilterContext, KeepFilter, Record
from agent.filters.common import as_text, compile_regex, expect_pairs, make_getter, parse_path
from agent.filters.literals import literal_prefixes, regex_gate

Test = Callable[[Record], bool]
_get: Callable[[Record, str], Any] = dict.get
_startswith: Callable[[str, tuple[str, ...]], bool] = str.startswith


class GrepConfig(FilterConfig, tag_field="type", tag="grep"):
    regex: list[list[str]] = []
    """``[["field", "pattern"], ...]``: records whose field matches are kept."""
    exclude: list[list[str]] = []
    """``[["field", "pattern"], ...]``: records whose field matches are dropped."""
    logical_op: Literal["legacy", "and", "or"] = "legacy"
    """legacy/and: every regex must match, and (legacy) any exclude / (and) every exclude drops;
    or: any regex keeps, any exclude drops."""


def _matcher(pattern: str, key: str) -> Callable[[str], bool]:
    """``pattern``'s search as a yes/no, with a literal test first when the regex has one
    (``^GET /healthz`` is a ``startswith``; most lines are ruled out without the regex)."""
    regex = compile_regex(pattern, key)
    search = regex.search
    gate = regex_gate(regex)
    if gate is None:
        return lambda text: search(text) is not None
    if gate.prefixes and not gate.needles:
        prefixes = gate.prefixes
        return lambda text: text.startswith(prefixes) and search(text) is not None
    if len(gate.needles) == 1 and not gate.prefixes:
        needle = gate.needles[0]
        return lambda text: needle in text and search(text) is not None
    passes = gate.passes
    return lambda text: passes(text) and search(text) is not None


def _make_test(field: str, pattern: str, key: str) -> Test:
    getter = make_getter(parse_path(field, f"{key}[0]"))
    matches = _matcher(pattern, f"{key}[1]")

    def test(record: Record) -> bool:
        value = getter(record)
        if value.__class__ is not str:
            value = as_text(value)
            if value is None:
                return False
        return matches(value)

    return test


class GrepFilter(KeepFilter):
    def __init__(self, config: GrepConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        expect_pairs(config.regex, "regex", 2)
        expect_pairs(config.exclude, "exclude", 2)
        if not config.regex and not config.exclude:
            raise ValueError("regex, exclude: give at least one rule")
        self._keep = [_make_test(f, p, f"regex[{i}]") for i, (f, p) in enumerate(config.regex)]
        self._drop = [_make_test(f, p, f"exclude[{i}]") for i, (f, p) in enumerate(config.exclude)]
        self._single = self._single_regex(config)
        self._all_text = True
        """The single rule's field has held a string in every record so far."""
        combine_keep = any if config.logical_op == "or" else all
        combine_drop = all if config.logical_op == "and" else any
        keep, drop = self._keep, self._drop

        def wanted(record: Record) -> bool:
            if keep and not combine_keep(test(record) for test in keep):
                return False
            return not (drop and combine_drop(test(record) for test in drop))

        self._wanted = wanted

    @staticmethod
    def _single_regex(
        config: GrepConfig,
    ) -> tuple[str, tuple[str, ...] | None, Callable[[str], bool], bool] | None:
        """(field, prefixes, matches, keep) for the common case of one rule on a top-level
        field; prefixes when the regex is an anchored literal (``^GET /healthz``), which
        ``startswith`` decides alone."""
        rules = [(r, True) for r in config.regex] + [(r, False) for r in config.exclude]
        if len(rules) != 1:
            return None
        (field, pattern), keep = rules[0]
        parts = parse_path(field, "regex[0]" if keep else "exclude[0]")
        if len(parts) != 1:
            return None
        key = "regex[0]" if keep else "exclude[0]"
        prefixes = literal_prefixes(compile_regex(pattern, key))
        if prefixes is None:
            return parts[0], None, _matcher(pattern, key), keep
        starts = prefixes
        return parts[0], prefixes, lambda text: text.startswith(starts), keep

    def keep(self, records: list[Record]) -> list[bool]:
        if self._single is None:
            wanted = self._wanted
            return [wanted(record) for record in records]
        field, prefixes, matches, keep = self._single

        def slow(value: Any) -> bool:
            """Whether a field that is not a string matches (numbers as JSON text)."""
            text = as_text(value)
            return text is not None and matches(text)

        if prefixes is not None and self._all_text:
            # The most common grep (an anchored literal on one field) over a batch of strings:
            # a pass of C calls, no per-record bytecode. A value that is not a string (a
            # number, missing) raises, and the comprehension below takes over for good.
            try:
                hits = list(map(_startswith, map(_get, records, repeat(field)), repeat(prefixes)))
            except TypeError:
                self._all_text = False
            else:
                return hits if keep else list(map(not_, hits))
        # One comprehension: the hot loop of the most common grep (one regex on one field).
        if prefixes is not None:
            return [
                (
                    value.startswith(prefixes)
                    if (value := record.get(field)).__class__ is str
                    else slow(value)
                )
                is keep
                for record in records
            ]
        return [
            (matches(value) if (value := record.get(field)).__class__ is str else slow(value))
            is keep
            for record in records
        ]
