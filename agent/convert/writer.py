"""The converted config as agent.toml text: the notes as a comment block at the top, then
[agent], [buffer], [[inputs]], [[filters]], [[outputs]]. tomllib reads; nothing in the stdlib
writes TOML, and the shapes here are few (scalars, arrays, arrays of arrays)."""

from __future__ import annotations

import math
from typing import Any

from agent.convert.mapping import Result


def _string(text: str) -> str:
    # Regexes read best as literal strings (no escaping of backslashes).
    if "\\" in text and "'" not in text and not any(ord(c) < 32 or c == "\x7f" for c in text):
        return f"'{text}'"
    out = []
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 32 or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def value(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if not math.isfinite(item):
            raise ValueError(f"cannot write {item!r} in TOML")
        return repr(item)
    if isinstance(item, str):
        return _string(item)
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(x) for x in item) + "]"
    if isinstance(item, dict):
        return "{" + ", ".join(f"{_key(k)} = {value(v)}" for k, v in item.items()) + "}"
    raise TypeError(f"cannot write {type(item).__name__} in TOML")


def _key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return _string(key)


def _table(values: dict[str, Any]) -> list[str]:
    first = ("type", "name", "match", "match_regex")
    ordered = sorted(values, key=lambda k: first.index(k) if k in first else len(first))
    return [f"{_key(k)} = {value(values[k])}" for k in ordered]


def _comment(text: str) -> list[str]:
    return ["# " + line if line else "#" for line in text.splitlines()]


def render(result: Result, source: str, base: str = "") -> str:
    lines = [f"# Converted from {source} by `python -m agent convert`."]
    left_out = [n for n in result.notes if n.left_out]
    notes = [n for n in result.notes if not n.left_out]
    if left_out:
        lines += ["#", f"# NOT TRANSLATED ({len(left_out)}): review each before use."]
        lines += _comment("\n".join("  - " + n.render(base) for n in left_out))
    if notes:
        lines += ["#", "# Translated with a difference, or not needed here:"]
        lines += _comment("\n".join("  - " + n.render(base) for n in notes))
    config = result.config
    for section in ("agent", "buffer"):
        if section in config:
            lines += ["", f"[{section}]", *_table(config[section])]
    for family in ("inputs", "filters", "outputs"):
        for item in config.get(family, []):
            lines += ["", f"[[{family}]]", *_table(item)]
    return "\n".join(lines) + "\n"
