"""Field paths and templates: the one syntax for addressing record fields everywhere.

A field path is dotted: ``message``, ``sd.origin.ip`` (the ``ip`` key of the ``origin`` dict
inside ``sd``). A key that itself holds a dot is reached with brackets:
``sd["exampleSDID@32473"].iut``.
A template holds ``${path}`` placeholders (``docker.${container_name}``); a missing field renders
as the template's ``missing`` text (default empty).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_SEGMENT = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|([^.\[\]]+)')
_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
_MISSING = object()


def split_path(path: str) -> tuple[str, ...]:
    """``'sd["a.b"].c'`` -> ``("sd", "a.b", "c")``; raises ValueError for an empty or bad path."""
    parts: list[str] = []
    pos = 0
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        match = _SEGMENT.match(path, pos)
        if not match:
            raise ValueError(f"invalid field path {path!r} at position {pos}")
        quoted, plain = match.groups()
        parts.append(quoted.replace('\\"', '"') if quoted is not None else plain)
        pos = match.end()
    if not parts:
        raise ValueError(f"invalid field path {path!r}: empty")
    return tuple(parts)


def get_field(record: dict[str, Any], parts: tuple[str, ...], default: Any = None) -> Any:
    value: Any = record
    for part in parts:
        if not isinstance(value, dict):
            return default
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return default
    return value


def set_field(record: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """Set a nested field, creating dicts on the way (a non-dict in the way is replaced). The
    dicts on the way are replaced by changed copies, never changed in place: records may share
    them (agent.filters.base)."""
    target = record
    for part in parts[:-1]:
        nxt = target.get(part)
        nxt = nxt.copy() if isinstance(nxt, dict) else {}
        target[part] = nxt
        target = nxt
    target[parts[-1]] = value


def delete_field(record: dict[str, Any], parts: tuple[str, ...]) -> bool:
    """Remove a nested field; False if it is not there. Like ``set_field``, the dicts on the
    way are replaced by changed copies."""
    target: Any = record
    for part in parts[:-1]:
        target = target.get(part) if isinstance(target, dict) else None
        if target is None:
            return False
    if not isinstance(target, dict) or parts[-1] not in target:
        return False
    target = record
    for part in parts[:-1]:
        nxt = target[part].copy()
        target[part] = nxt
        target = nxt
    del target[parts[-1]]
    return True


def has_placeholders(template: str) -> bool:
    return _PLACEHOLDER.search(template) is not None


def compile_template(template: str, missing: str = "") -> Callable[[dict[str, Any]], str]:
    """A function rendering ``template`` against a record; validates paths now (ValueError)."""
    pieces: list[str | tuple[str, ...]] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(template):
        pieces.append(template[pos : match.start()])
        pieces.append(split_path(match.group(1)))
        pos = match.end()
    pieces.append(template[pos:])
    if len(pieces) == 1:
        constant = template
        return lambda record: constant

    def render(record: dict[str, Any]) -> str:
        out: list[str] = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                value = get_field(record, piece)
                out.append(missing if value is None else str(value))
        return "".join(out)

    return render
