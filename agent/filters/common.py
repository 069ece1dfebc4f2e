"""Helpers shared by the filters: compiling config values with errors that name the key, and
fast field access."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agent.fields import get_field, split_path

Getter = Callable[[dict[str, Any]], Any]

_ONIGMO_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def compile_regex(pattern: object, key: str) -> re.Pattern[str]:
    """Compile a config regex; ValueError naming ``key`` when it is invalid.

    Onigmo's named groups ``(?<name>...)`` (fluent-bit's syntax) are accepted as well.
    """
    if not isinstance(pattern, str):
        raise ValueError(f"{key}: expected a regular expression string, got {pattern!r}")
    try:
        return re.compile(_ONIGMO_GROUP.sub("(?P<", pattern))
    except re.error as exc:
        raise ValueError(f"{key}: invalid regular expression {pattern!r}: {exc}") from None


def parse_path(path: object, key: str) -> tuple[str, ...]:
    if not isinstance(path, str):
        raise ValueError(f"{key}: expected a field path string, got {path!r}")
    try:
        return split_path(path)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def make_getter(parts: tuple[str, ...]) -> Getter:
    """A fast accessor: a plain ``dict.get`` for a top-level field, a path walk otherwise."""
    if len(parts) == 1:
        name = parts[0]
        return lambda record: record.get(name)
    return lambda record: get_field(record, parts)


def as_text(value: Any) -> str | None:
    """The text a pattern is matched against: strings as they are, numbers and booleans in
    their JSON spelling, anything else (missing, dicts, lists) None."""
    if value.__class__ is str:
        return value
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def expect_pairs(value: list[list[Any]], key: str, size: int | tuple[int, int]) -> None:
    """Check that every entry of a list-of-lists config value has the expected length."""
    low, high = (size, size) if isinstance(size, int) else size
    for index, entry in enumerate(value):
        if not isinstance(entry, list) or not low <= len(entry) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise ValueError(f"{key}[{index}]: expected a list of {want} items, got {entry!r}")


def copy_value(value: Any) -> Any:
    """``value`` with every dict and list in it copied (JSON values: the rest is immutable)."""
    if value.__class__ is dict:
        return {k: copy_value(v) for k, v in value.items()}
    if value.__class__ is list:
        return [copy_value(v) for v in value]
    return value


_CONTAINERS = frozenset((dict, list))


def copy_record(record: dict[str, Any]) -> dict[str, Any]:
    """An independent copy, so two batches never share a nested dict or list that a filter may
    edit. Records hold JSON values, so only dicts and lists need copying (strings and numbers
    are immutable); far cheaper than ``copy.deepcopy``, and for the usual flat record a
    ``dict.copy`` after one scan in C."""
    twin = record.copy()
    if _CONTAINERS.isdisjoint(map(type, record.values())):
        return twin
    for key, value in record.items():
        if value.__class__ is dict or value.__class__ is list:
            twin[key] = copy_value(value)
    return twin


def own_nested(records: list[dict[str, Any]]) -> None:
    """Give each record its own copy of every dict and list in it, for code that may change
    them in place (the ``python`` filter's user function): records may share them."""
    for record in records:
        if _CONTAINERS.isdisjoint(map(type, record.values())):
            continue
        for key, value in record.items():
            if value.__class__ is dict or value.__class__ is list:
                record[key] = copy_value(value)
