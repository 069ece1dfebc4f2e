"""``modify``: set, add, remove, rename and copy fields under conditions (fluent-bit's modify).

Rules run in the order written, each a list whose first item names the operation::

    rules = [["set", "cluster", "prod"], ["rename", "msg", "message"], ["remove", "password"]]
    condition = [["key_exists", "ident"], ["key_value_matches", "ident", "^ssh"]]

Every condition must hold for the rules to run on a record.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from agent.fields import delete_field, get_field, set_field
from agent.filters.base import FilterConfig, FilterContext, Record, RecordFilter
from agent.filters.common import as_text, compile_regex, copy_value, parse_path

Action = Callable[[Record], None]
Check = Callable[[Record], bool]

_MISSING = object()


class ModifyConfig(FilterConfig, tag_field="type", tag="modify"):
    rules: list[list[Any]] = []
    """Ordered ``[operation, args...]`` lists; see docs/filters.md."""
    condition: list[list[Any]] = []
    """``[condition, args...]`` lists; all must hold."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rules:
            raise ValueError("rules: give at least one rule")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def _args(entry: list[Any], key: str, names: tuple[str, ...]) -> list[Any]:
    if len(entry) - 1 != len(names):
        raise ValueError(
            f"{key}: {entry[0]!r} takes {len(names)} argument(s) ({', '.join(names)}), "
            f"got {entry[1:]!r}"
        )
    return entry[1:]


def _build_rule(entry: list[Any], key: str) -> Action:
    if not entry or not isinstance(entry[0], str):
        raise ValueError(f"{key}: expected [operation, args...], got {entry!r}")
    op = entry[0].lower()
    if op in ("set", "add"):
        field, value = _args(entry, key, ("field", "value"))
        parts = parse_path(field, key)
        # A table or array value is copied per record: records must never share it.
        fresh: Callable[[], Any] = (
            (lambda: copy.deepcopy(value)) if isinstance(value, dict | list) else (lambda: value)
        )
        if op == "set":
            return lambda record: set_field(record, parts, fresh())

        def add(record: Record) -> None:
            if get_field(record, parts, _MISSING) is _MISSING:
                set_field(record, parts, fresh())

        return add
    if op == "remove":
        (field,) = _args(entry, key, ("field",))
        parts = parse_path(field, key)

        def remove(record: Record) -> None:
            delete_field(record, parts)

        return remove
    if op in ("remove_wildcard", "remove_regex"):
        (pattern,) = _args(entry, key, ("pattern",))
        if not isinstance(pattern, str):
            raise ValueError(f"{key}: expected a pattern string, got {pattern!r}")
        regex = _glob_regex(pattern) if op == "remove_wildcard" else compile_regex(pattern, key)
        search = regex.search

        def remove_matching(record: Record) -> None:
            for name in [name for name in record if search(name)]:
                del record[name]

        return remove_matching
    if op in ("rename", "hard_rename", "copy", "hard_copy"):
        source, target = _args(entry, key, ("from", "to"))
        src, dst = parse_path(source, key), parse_path(target, key)
        overwrite = op.startswith("hard_")
        move = op.endswith("rename")

        def rename_or_copy(record: Record) -> None:
            value = get_field(record, src, _MISSING)
            if value is _MISSING:
                return
            if not overwrite and get_field(record, dst, _MISSING) is not _MISSING:
                return
            if move:
                delete_field(record, src)
            elif value.__class__ is dict or value.__class__ is list:
                # A copy of its own: the source may be an object records share (kubernetes).
                value = copy_value(value)
            set_field(record, dst, value)

        return rename_or_copy
    if op in ("move_to_start", "move_to_end"):
        (pattern,) = _args(entry, key, ("wildcard",))
        search = _glob_regex(str(pattern)).search
        to_start = op == "move_to_start"

        def move_keys(record: Record) -> None:
            moved = {name: record[name] for name in record if search(name)}
            if not moved:
                return
            for name in moved:
                del record[name]
            if to_start:
                rest = dict(record)
                record.clear()
                record.update(moved)
                record.update(rest)
            else:
                record.update(moved)

        return move_keys
    raise ValueError(
        f"{key}: unknown operation {entry[0]!r} (expected set, add, remove, remove_wildcard, "
        "remove_regex, rename, hard_rename, copy, hard_copy, move_to_start, move_to_end)"
    )


def _value_is(expected: Any) -> Callable[[Any], bool]:
    text = as_text(expected)

    def equals(value: Any) -> bool:
        return bool(value == expected) or (text is not None and as_text(value) == text)

    return equals


def _build_condition(entry: list[Any], key: str) -> Check:
    if not entry or not isinstance(entry[0], str):
        raise ValueError(f"{key}: expected [condition, args...], got {entry!r}")
    op = entry[0].lower()
    if op in ("key_exists", "key_does_not_exist"):
        (field,) = _args(entry, key, ("field",))
        parts = parse_path(field, key)
        exists = op == "key_exists"
        return lambda record: (get_field(record, parts, _MISSING) is not _MISSING) is exists
    if op in ("a_key_matches", "no_key_matches"):
        (pattern,) = _args(entry, key, ("regex",))
        search = compile_regex(pattern, key).search
        any_wanted = op == "a_key_matches"
        return lambda record: any(search(name) for name in record) is any_wanted
    if op in ("key_value_equals", "key_value_does_not_equal"):
        field, expected = _args(entry, key, ("field", "value"))
        parts = parse_path(field, key)
        equals = _value_is(expected)
        want = op == "key_value_equals"

        def value_equals(record: Record) -> bool:
            value = get_field(record, parts, _MISSING)
            return value is not _MISSING and equals(value) is want

        return value_equals
    if op in ("key_value_matches", "key_value_does_not_match"):
        field, pattern = _args(entry, key, ("field", "regex"))
        parts = parse_path(field, key)
        search = compile_regex(pattern, key).search
        want = op == "key_value_matches"

        def value_matches(record: Record) -> bool:
            value = get_field(record, parts, _MISSING)
            if value is _MISSING:
                return False
            text = as_text(value)
            return (text is not None and search(text) is not None) is want

        return value_matches
    if op in ("matching_keys_have_matching_values", "matching_keys_do_not_have_matching_values"):
        key_pattern, value_pattern = _args(entry, key, ("key_regex", "value_regex"))
        key_search = compile_regex(key_pattern, key).search
        value_search = compile_regex(value_pattern, key).search
        want = op == "matching_keys_have_matching_values"

        def keys_values(record: Record) -> bool:
            values = [record[name] for name in record if key_search(name)]
            if not values:
                return False
            hits = [(t := as_text(v)) is not None and value_search(t) is not None for v in values]
            return all(hits) if want else not any(hits)

        return keys_values
    raise ValueError(
        f"{key}: unknown condition {entry[0]!r} (expected key_exists, key_does_not_exist, "
        "a_key_matches, no_key_matches, key_value_equals, key_value_does_not_equal, "
        "key_value_matches, key_value_does_not_match, matching_keys_have_matching_values, "
        "matching_keys_do_not_have_matching_values)"
    )


class ModifyFilter(RecordFilter):
    def __init__(self, config: ModifyConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self._rules = [_build_rule(e, f"rules[{i}]") for i, e in enumerate(config.rules)]
        self._conditions = [
            _build_condition(e, f"condition[{i}]") for i, e in enumerate(config.condition)
        ]
        self._fast_set = self._constant_sets(config)

    @staticmethod
    def _constant_sets(config: ModifyConfig) -> dict[str, Any] | None:
        """Unconditional top-level ``set`` rules alone collapse into one ``dict.update``."""
        if config.condition or any(str(e[0]).lower() != "set" for e in config.rules):
            return None
        parts = [parse_path(e[1], "rules") for e in config.rules]
        if any(len(p) != 1 for p in parts):
            return None
        if any(isinstance(e[2], dict | list) for e in config.rules):
            return None
        return {p[0]: e[2] for p, e in zip(parts, config.rules, strict=True)}

    def apply(self, records: list[Record]) -> list[Record]:
        if self._fast_set is not None:
            values = self._fast_set
            if len(values) == 2:  # the usual "cluster and environment": two stores beat update
                (key1, value1), (key2, value2) = values.items()
                for record in records:
                    record[key1] = value1
                    record[key2] = value2
            elif len(values) == 1:
                ((key1, value1),) = values.items()
                for record in records:
                    record[key1] = value1
            else:
                for record in records:
                    record.update(values)
            return records
        rules, conditions = self._rules, self._conditions
        for record in records:
            if conditions and not all(check(record) for check in conditions):
                continue
            for rule in rules:
                rule(record)
        return records
