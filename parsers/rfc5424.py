"""RFC 5424 messages: the header regexes and STRUCTURED-DATA, parsed into a dict of dicts.

The hot loop (``syslog.SyslogParser``) matches ``RFC5424_FAST`` and reads well-formed SD without
backslashes through its cached shape (``sd_shape``); everything else goes through the reference
grammar (``RFC5424``, ``reference_sd``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "RFC5424",
    "RFC5424_FAST",
    "RFC5424_PREFIX",
    "SdShape",
    "parse_structured_data",
    "reference_sd",
    "sd_shape",
]

# --- RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG] ----------
# Optional parts are written as groups that always take part (``((?:\.\d{1,6})?)``) so that they
# give "" rather than None and the hot loop needs no test before concatenating them. Fraction
# digits past the sixth are matched and dropped. A BOM at the start of MSG is matched and dropped.
_SD_NAME = r'[^\s="\]]+'
# A quoted value: any character but '"' and '\', or a backslash and the character after it,
# written unrolled (a class per run of plain characters: re runs that many times faster than
# an alternation per character). Spaces after "=" are accepted (rsyslog and Vector do too).
_SD_VALUE = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_SD_ELEMENT = rf"\[{_SD_NAME}(?: {_SD_NAME}= *{_SD_VALUE})*\]"
_HEADER = (
    r"<(\d{1,3})>1 "
    r"(?:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)((?:\.\d{1,6})?)\d*(Z|[+-]\d\d:\d\d)|-) "
    r"(\S+) (\S+) (\S+) (\S+) "
)
# The grammar: STRUCTURED-DATA is "-" or well-formed elements. This is the reference; the hot
# loop runs it only for structured data that the fast path does not take (escapes, odd cases).
RFC5424 = re.compile(
    _HEADER + rf"(-|(?:{_SD_ELEMENT})+)" + "(?: \ufeff| |\\Z)(.*)\\Z",
    re.DOTALL | re.ASCII,
)
# What the hot loop matches: the same header and MSG, and as STRUCTURED-DATA "-" or the text
# from "[" to the first "]" followed by SP or the end (what the grammar takes whenever that text
# is well-formed; the loop checks that, see sd_shape, and otherwise asks RFC5424). Scanning
# to a "]" is one character class; the grammar repeats a group per parameter, several times
# dearer (docs/performance.md#structured-data-is-no-longer-7x-dearer).
# The scans are possessive: giving back a character or a "]" never lets the rest match (a
# "]" given back is one not followed by SP or the end), and re skips the backtracking state.
RFC5424_FAST = re.compile(
    _HEADER + r"(-|\[[^\]]*+(?:\](?! |\Z)[^\]]*+)*+\])" + "(?: \ufeff| |\\Z)(.*)\\Z",
    re.DOTALL | re.ASCII,
)
RFC5424_PREFIX = re.compile(r"<\d{1,3}>1 ", re.ASCII)
_SD_BLOCK = re.compile(rf"(?:{_SD_ELEMENT})+", re.ASCII)
_SD_ELEMENTS = re.compile(rf"\[({_SD_NAME})((?: {_SD_NAME}= *{_SD_VALUE})*)\]", re.ASCII)
_SD_PARAMS = re.compile(rf' ({_SD_NAME})= *"([^"\\]*(?:\\.[^"\\]*)*)"', re.ASCII)
_SD_ESCAPE = re.compile(r'\\(["\\\]])')
# How to build the parsed structured data of one shape (see sd_shape): (function, a, b),
# called as function(a, b, parts); () for a shape that the fast path does not take.
SdShape = tuple[Any, ...]
# Structured-data shapes are few per application; longer or more are worked out each time.
_SD_SHAPE_LIMIT = 4096
_SD_SHAPE_KEY_LIMIT = 512


def parse_structured_data(text: str) -> dict[str, dict[str, str]]:
    """RFC 5424 STRUCTURED-DATA (``[id k="v"][id2 ...]``) to ``{id: {k: v}}``.

    Escapes ``\\"``, ``\\\\`` and ``\\]`` are resolved; a backslash before any other character
    stays, as RFC 5424 6.3.3 says. Repeated SD-IDs merge (later params win). Text that is not
    well-formed yields whatever elements could be read.
    """
    result: dict[str, dict[str, str]] = {}
    for element in _SD_ELEMENTS.finditer(text):
        params = result.setdefault(element.group(1), {})
        for name, value in _SD_PARAMS.findall(element.group(2)):
            params[name] = _SD_ESCAPE.sub(r"\1", value) if "\\" in value else value
    return result


# Dicts of one SD element with 0 to 6 parameters, from the SD split at '"' (values at odd
# positions): a dict display is much cheaper than dict(zip(...)) (docs/performance.md).
_SD_ONE: tuple[Callable[[str, tuple[str, ...], list[str]], dict[str, dict[str, str]]], ...] = (
    lambda i, n, p: {i: {}},
    lambda i, n, p: {i: {n[0]: p[1]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5], n[3]: p[7]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5], n[3]: p[7], n[4]: p[9]}},
    lambda i, n, p: {i: {n[0]: p[1], n[1]: p[3], n[2]: p[5], n[3]: p[7], n[4]: p[9], n[5]: p[11]}},
)


def _sd_elements(
    elements: tuple[tuple[str, tuple[str, ...]], ...], _: object, parts: list[str]
) -> dict[str, dict[str, str]]:
    """Any other shape: each element's names with its run of values."""
    parsed: dict[str, dict[str, str]] = {}
    start = 1
    for sd_id, names in elements:
        parsed[sd_id] = dict(zip(names, parts[start::2], strict=False))  # stops at the names
        start += 2 * len(names)
    return parsed


def sd_shape(key: str, shapes: dict[str, SdShape]) -> SdShape:
    """How to read structured data without backslashes whose text around the values is ``key``
    (the SD split at '"', values left out, joined with '"'), or () when it is not well-formed
    or repeats an SD-ID (repeated SD-IDs merge: left to parse_structured_data). A value without
    a backslash holds no '"' and never decides whether SD is well-formed, so the shape is checked
    with every value empty, once per distinct shape; SD-IDs and names come from that check."""
    blank = key.replace('"', '""')
    shape: SdShape = ()
    if _SD_BLOCK.fullmatch(blank):
        elements = tuple(
            (element[1], tuple(name for name, _ in _SD_PARAMS.findall(element[2])))
            for element in _SD_ELEMENTS.finditer(blank)
        )
        if len({sd_id for sd_id, _ in elements}) == len(elements):
            if len(elements) == 1 and len(elements[0][1]) < len(_SD_ONE):
                sd_id, names = elements[0]
                shape = (_SD_ONE[len(names)], sd_id, names)
            else:
                shape = (_sd_elements, elements, None)
    if len(key) <= _SD_SHAPE_KEY_LIMIT:  # bounded memory whatever senders send: ~2 MiB
        if len(shapes) >= _SD_SHAPE_LIMIT:
            shapes.clear()
        shapes[key] = shape
    return shape


def reference_sd(text: str) -> tuple[str, Any, str] | None:
    """(raw SD, parsed SD, MSG) by the reference grammar, for SD the fast path does not take;
    None when the RFC 5424 header is not well-formed."""
    match = RFC5424.match(text)
    if match is None:
        return None
    sd, message = match.group(9, 10)
    return sd, parse_structured_data(sd), message
