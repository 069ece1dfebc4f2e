"""Parse a message body into fields: JSON objects, logfmt pairs, or a regex's named groups.

Pure functions: no I/O, no imports from ``agent``. Each returns a dict on success and ``None``
when the text is not of that format, so callers count failures without catching exceptions.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_json_decode = msgspec.json.Decoder().decode

# key, then optionally =value or ="quoted value"; a key holds no space, '=' or '"'.
_LOGFMT_PAIR = re.compile(r'\s*([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*)))?(?=\s|$)')
_LOGFMT_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
# fluent-bit (Onigmo) writes named groups as (?<name>...); Python wants (?P<name>...).
_ONIGMO_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def parse_json(text: str | bytes) -> dict[str, Any] | None:
    """The JSON object in ``text``, or None if it is not one (arrays and scalars are not)."""
    if isinstance(text, str):
        stripped = text.lstrip()
        if not stripped.startswith("{"):
            return None
    try:
        value = _json_decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _ESCAPES.get(char, char)


def parse_logfmt(text: str) -> dict[str, Any] | None:
    """``a=1 b="x y" flag`` -> ``{"a": "1", "b": "x y", "flag": True}``; None if not logfmt.

    Values stay strings (as in fluent-bit's logfmt parser); a bare key is ``True``. Text with
    anything that is not a pair (a stray quote, no pair at all) is not logfmt.
    """
    result: dict[str, Any] = {}
    pos = 0
    end = len(text.rstrip())
    saw_value = False
    while pos < end:
        match = _LOGFMT_PAIR.match(text, pos)
        if match is None:
            return None
        key, quoted, plain = match.groups()
        if quoted is not None:
            result[key] = _LOGFMT_ESCAPE.sub(_unescape, quoted) if "\\" in quoted else quoted
            saw_value = True
        elif plain is not None:
            result[key] = plain
            saw_value = True
        else:
            result[key] = True
        pos = match.end()
    # Plain prose ("connection reset by peer") is all bare keys: not logfmt.
    return result if saw_value else None


def compile_body_regex(pattern: str) -> re.Pattern[str]:
    """Compile a regex with named groups, accepting Onigmo's ``(?<name>...)`` as fluent-bit does.

    Raises ``re.error`` for an invalid pattern and ValueError when it has no named group.
    """
    compiled = re.compile(_ONIGMO_GROUP.sub("(?P<", pattern))
    if not compiled.groupindex:
        raise ValueError("the regex has no named group (?P<name>...) to turn into a field")
    return compiled


def parse_regex(pattern: re.Pattern[str], text: str) -> dict[str, Any] | None:
    """The named groups of the first match of ``pattern`` in ``text`` (unmatched groups left
    out), or None when it does not match."""
    match = pattern.search(text)
    if match is None:
        return None
    return {key: value for key, value in match.groupdict().items() if value is not None}
