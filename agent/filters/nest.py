"""``nest``: move top-level keys under a map, or lift a map's keys to the top level
(fluent-bit's nest filter)."""

from __future__ import annotations

import re
from typing import Literal

from agent.fields import delete_field, get_field, set_field
from agent.filters.base import FilterConfig, FilterContext, Record, RecordFilter
from agent.filters.common import parse_path


class NestConfig(FilterConfig, tag_field="type", tag="nest"):
    operation: Literal["nest", "lift"]
    """``nest`` moves top-level keys into a map; ``lift`` moves a map's keys to the top level."""
    wildcard: list[str] = []
    """nest: globs over top-level keys to move (``kubernetes_*``, ``*``)."""
    nest_under: str | None = None
    """nest: field path of the map that receives them (merged into it if it exists)."""
    nested_under: str | None = None
    """lift: field path of the map whose keys go to the top level."""
    add_prefix: str = ""
    """Prefix added to each moved key (after remove_prefix)."""
    remove_prefix: str = ""
    """Prefix removed from each moved key that starts with it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.operation == "nest":
            if not self.wildcard:
                raise ValueError('wildcard: required with operation = "nest"')
            if not self.nest_under:
                raise ValueError('nest_under: required with operation = "nest"')
            if self.nested_under is not None:
                raise ValueError('nested_under: only used with operation = "lift"')
        else:
            if not self.nested_under:
                raise ValueError('nested_under: required with operation = "lift"')
            if self.wildcard or self.nest_under is not None:
                raise ValueError('wildcard, nest_under: only used with operation = "nest"')


class NestFilter(RecordFilter):
    def __init__(self, config: NestConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        if config.operation == "nest":
            self._path = parse_path(config.nest_under, "nest_under")
            source = "|".join(
                ".*".join(re.escape(part) for part in pattern.split("*"))
                for pattern in config.wildcard
            )
            self._key_match = re.compile(f"^(?:{source})$").match
        else:
            self._path = parse_path(config.nested_under, "nested_under")

    def _rename(self, name: str) -> str:
        prefix = self.config.remove_prefix
        if prefix and name.startswith(prefix):
            name = name[len(prefix) :]
        return self.config.add_prefix + name

    def apply(self, records: list[Record]) -> list[Record]:
        if self.config.operation == "nest":
            for record in records:
                self._nest(record)
        else:
            for record in records:
                self._lift(record)
        return records

    def _nest(self, record: Record) -> None:
        path, match = self._path, self._key_match
        names = [name for name in record if match(name) and name != path[0]]
        if not names:
            return
        existing = get_field(record, path)
        if existing is None:
            existing = {}
        elif isinstance(existing, dict):
            existing = existing.copy()  # records may share it: a changed copy replaces it
        else:
            return  # the target holds a value: moving keys into it would lose it
        for name in names:
            existing[self._rename(name)] = record.pop(name)
        set_field(record, path, existing)

    def _lift(self, record: Record) -> None:
        nested = get_field(record, self._path)
        if not isinstance(nested, dict):
            return
        delete_field(record, self._path)
        for name, value in nested.items():
            record[self._rename(name)] = value
