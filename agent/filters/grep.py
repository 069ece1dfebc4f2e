"""``grep``: keep or drop records by regular expressions over their fields (fluent-bit's grep)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from agent.filters.base import FilterConfig, FilterContext, Record, RecordFilter
from agent.filters.common import as_text, compile_regex, expect_pairs, make_getter, parse_path

Test = Callable[[Record], bool]


class GrepConfig(FilterConfig, tag_field="type", tag="grep"):
    regex: list[list[str]] = []
    """``[["field", "pattern"], ...]``: records whose field matches are kept."""
    exclude: list[list[str]] = []
    """``[["field", "pattern"], ...]``: records whose field matches are dropped."""
    logical_op: Literal["legacy", "and", "or"] = "legacy"
    """legacy/and: every regex must match, and (legacy) any exclude / (and) every exclude drops;
    or: any regex keeps, any exclude drops."""


def _make_test(field: str, pattern: str, key: str) -> Test:
    getter = make_getter(parse_path(field, f"{key}[0]"))
    search = compile_regex(pattern, f"{key}[1]").search

    def test(record: Record) -> bool:
        value = getter(record)
        if value.__class__ is not str:
            value = as_text(value)
            if value is None:
                return False
        return search(value) is not None

    return test


class GrepFilter(RecordFilter):
    def __init__(self, config: GrepConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        expect_pairs(config.regex, "regex", 2)
        expect_pairs(config.exclude, "exclude", 2)
        if not config.regex and not config.exclude:
            raise ValueError("regex, exclude: give at least one rule")
        self._keep = [_make_test(f, p, f"regex[{i}]") for i, (f, p) in enumerate(config.regex)]
        self._drop = [_make_test(f, p, f"exclude[{i}]") for i, (f, p) in enumerate(config.exclude)]
        self._single = self._single_regex(config)
        combine_keep = any if config.logical_op == "or" else all
        combine_drop = all if config.logical_op == "and" else any
        keep, drop = self._keep, self._drop

        def wanted(record: Record) -> bool:
            if keep and not combine_keep(test(record) for test in keep):
                return False
            return not (drop and combine_drop(test(record) for test in drop))

        self._wanted = wanted

    @staticmethod
    def _single_regex(config: GrepConfig) -> tuple[str, Any, bool] | None:
        """(field, search, keep) for the common case of one rule on a top-level field."""
        rules = [(r, True) for r in config.regex] + [(r, False) for r in config.exclude]
        if len(rules) != 1:
            return None
        (field, pattern), keep = rules[0]
        parts = parse_path(field, "regex[0]" if keep else "exclude[0]")
        if len(parts) != 1:
            return None
        return parts[0], compile_regex(pattern, "regex[0]").search, keep

    def apply(self, records: list[Record]) -> list[Record]:
        if self._single is not None:
            field, search, keep = self._single
            out = []
            for record in records:
                value = record.get(field)
                if value.__class__ is not str:
                    value = as_text(value)
                matched = value is not None and search(value) is not None
                if matched is keep:
                    out.append(record)
            return out
        wanted = self._wanted
        return [record for record in records if wanted(record)]
