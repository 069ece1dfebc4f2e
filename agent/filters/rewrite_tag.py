"""``rewrite_tag``: send records whose field matches a regex out under a new tag
(fluent-bit's rewrite_tag).

``rules = [["field", "regex", "new.tag.$1.${field}", keep], ...]``: the first matching rule
wins; ``$0``..``$9`` are the regex's groups, ``$TAG`` the old tag, ``$TAG[n]`` its n-th dotted
part, ``${path}`` a record field. ``keep = true`` also keeps the record under the old tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agent.fields import get_field
from agent.filters.base import Batch, Filter, FilterConfig, FilterContext, Record
from agent.filters.common import as_text, compile_regex, expect_pairs, make_getter, parse_path

_TAG_PIECE = re.compile(r"\$TAG\[(\d+)\]|\$TAG|\$(\d)|\$\{([^}]+)\}")

Render = Callable[[re.Match[str], str, Record], str]


class RewriteTagConfig(FilterConfig, tag_field="type", tag="rewrite_tag"):
    rules: list[list[Any]] = []
    """``[field, regex, new_tag, keep]`` lists, tried in order."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rules:
            raise ValueError("rules: give at least one [field, regex, new_tag, keep] rule")


def compile_new_tag(template: str, key: str, groups: int) -> Render:
    """Pieces: ("text", str), ("tag", n or -1 for the whole tag), ("group", n), ("field", path)."""
    pieces: list[tuple[str, Any]] = []
    pos = 0
    for match in _TAG_PIECE.finditer(template):
        pieces.append(("text", template[pos : match.start()]))
        tag_index, group, field = match.groups()
        if tag_index is not None:
            pieces.append(("tag", int(tag_index)))
        elif group is not None:
            if int(group) > groups:
                raise ValueError(f"{key}: ${group} but the regex has only {groups} group(s)")
            pieces.append(("group", int(group)))
        elif field is not None:
            pieces.append(("field", parse_path(field, key)))
        else:
            pieces.append(("tag", -1))
        pos = match.end()
    pieces.append(("text", template[pos:]))

    def render(match: re.Match[str], tag: str, record: Record) -> str:
        out: list[str] = []
        tag_parts = tag.split(".")
        for kind, value in pieces:
            if kind == "text":
                out.append(value)
            elif kind == "group":
                out.append(match.group(value) or "")
            elif kind == "field":
                out.append(as_text(get_field(record, value)) or "")
            elif value < 0:
                out.append(tag)
            elif value < len(tag_parts):
                out.append(tag_parts[value])
        return "".join(out)

    return render


class RewriteTagFilter(Filter):
    def __init__(self, config: RewriteTagConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        expect_pairs(config.rules, "rules", (3, 4))
        self._rules: list[tuple[Callable[[Record], Any], Any, Render, bool]] = []
        for index, rule in enumerate(config.rules):
            key = f"rules[{index}]"
            field, pattern, new_tag = rule[0], rule[1], rule[2]
            keep = rule[3] if len(rule) == 4 else False
            if isinstance(keep, str) and keep.lower() in ("true", "false"):
                keep = keep.lower() == "true"
            if not isinstance(keep, bool):
                raise ValueError(f"{key}[3]: keep must be true or false, got {keep!r}")
            if not isinstance(new_tag, str) or not new_tag:
                raise ValueError(f"{key}[2]: the new tag must be a non-empty string")
            regex = compile_regex(pattern, f"{key}[1]")
            getter = make_getter(parse_path(field, f"{key}[0]"))
            self._rules.append(
                (getter, regex.search, compile_new_tag(new_tag, f"{key}[2]", regex.groups), keep)
            )

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        stay: list[Record] = []
        moved: dict[str, list[Record]] = {}
        for record in records:
            for getter, search, render, keep in self._rules:
                text = as_text(getter(record))
                if text is None:
                    continue
                match = search(text)
                if match is None:
                    continue
                new_tag = render(match, tag, record)
                if not new_tag:
                    # An empty tag cannot be routed: the record stays where it was.
                    self.context.metrics.inc("filter_rewrite_tag_empty_total")
                    stay.append(record)
                    break
                if keep:
                    # and under the new tag: one object, which the chain copies only if a later
                    # filter could change it
                    stay.append(record)
                moved.setdefault(new_tag, []).append(record)
                break
            else:
                stay.append(record)
        if not moved:
            return [(tag, records)]  # the list itself: the chain keeps its event times
        out: list[Batch] = [(tag, stay)] if stay else []
        out.extend(moved.items())
        return out
