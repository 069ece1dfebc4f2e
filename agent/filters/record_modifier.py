"""``record_modifier``: append fields from templates, remove keys, or keep only some keys
(fluent-bit's record_modifier)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from agent.fields import compile_template, delete_field, set_field
from agent.filters.base import FilterConfig, FilterContext, Record, RecordFilter
from agent.filters.common import expect_pairs, parse_path

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


class RecordModifierConfig(FilterConfig, tag_field="type", tag="record_modifier"):
    record: list[list[str]] = []
    """``[["key", "value"], ...]``: set ``key`` to the value; ``${NAME}`` naming a set
    environment variable is resolved at start, any other ``${field.path}`` per record."""
    remove_keys: list[str] = []
    """Field paths to remove."""
    allowlist_keys: list[str] = []
    """Top-level keys to keep; every other key is removed (empty: keep all)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.record or self.remove_keys or self.allowlist_keys):
            raise ValueError("record, remove_keys, allowlist_keys: give at least one")


def resolve_environment(template: str) -> str:
    """Replace placeholders that name a set environment variable, leaving field placeholders."""

    def replace(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        return match.group(0) if value is None else value

    return _PLACEHOLDER.sub(replace, template)


class RecordModifierFilter(RecordFilter):
    def __init__(self, config: RecordModifierConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        expect_pairs(config.record, "record", 2)
        self._constants: dict[str, Any] = {}
        self._templates: list[tuple[tuple[str, ...], Callable[[dict[str, Any]], str]]] = []
        for index, (field, value) in enumerate(config.record):
            key = f"record[{index}]"
            parts = parse_path(field, key)
            resolved = resolve_environment(value)
            try:
                render = compile_template(resolved)
            except ValueError as exc:
                raise ValueError(f"{key}: bad template {value!r}: {exc}") from None
            if len(parts) == 1 and not _PLACEHOLDER.search(resolved):
                self._constants[parts[0]] = resolved
            else:
                self._templates.append((parts, render))
        self._remove = [
            parse_path(field, f"remove_keys[{i}]") for i, field in enumerate(config.remove_keys)
        ]
        self._allow = frozenset(config.allowlist_keys)

    def apply(self, records: list[Record]) -> list[Record]:
        allow, remove = self._allow, self._remove
        constants, templates = self._constants, self._templates
        for record in records:
            # Templates see the record as it arrived, so a value can move into a new key and
            # its old key be removed by the same filter.
            rendered = [(parts, render(record)) for parts, render in templates]
            if allow:
                for name in [name for name in record if name not in allow]:
                    del record[name]
            for parts in remove:
                delete_field(record, parts)
            if constants:
                record.update(constants)
            for parts, value in rendered:
                set_field(record, parts, value)
        return records
