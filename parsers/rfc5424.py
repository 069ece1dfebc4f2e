"""RFC 5424 messages: the header regexes and STRUCTURED-DATA, parsed into a dict of dicts.

The hot loop (``syslog.SyslogParser``) matches ``RFC5424_FAST`` and reads well-formed SD without
backslashes through its cached shape (``sd_shape``); everything else goes through the reference
grammar (``RFC5424``, ``reference_sd``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "RFC5424",
    "RFC5424_FAST",
    "RFC5424_PREFIX",
    "SdBuilder",
    "SdCache",
    "SdDict",
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
# The same header for the hot loop, every repeat possessive: giving back a digit or a non-space
# never lets the rest match (a field ends at a space, the fraction's digits are followed by
# "Z" or an offset), and re then keeps no state to backtrack into. Each greedy repeat left a
# context on re's stack for the rest of the match; an SD line outgrew the first allocation of
# that stack and paid a second one (~0.8k instructions), every line paid ~0.7k in all. The
# optional fraction is an atomic group, "(?>X|)", not "(?:X)?+": see _SD_RUNS below.
_HEADER_FAST = (
    r"<(\d{1,3}+)>1 "
    r"(?:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)((?>\.\d{1,6}+|))\d*+(Z|[+-]\d\d:\d\d)|-) "
    r"(\S++) (\S++) (\S++) (\S++) "
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
# Not on CPython 3.11.0-3.11.4, which keep what a failed attempt at a possessive group consumed
# (gh-106052: "[a] msg" matched nothing, the "]" of a failed "](?! |\Z)" was kept): there the
# repeat of "]" and a run is greedy inside an atomic group, the same matches for ~0.45k more
# instructions a line with SD. Atomic groups and possessive single characters are right there.
_SD_RUNS = (
    r"(?:\](?! |\Z)[^\]]*+)*+" if sys.version_info >= (3, 11, 5) else r"(?>(?:\](?! |\Z)[^\]]*)*)"
)
RFC5424_FAST = re.compile(
    _HEADER_FAST + r"(-|\[[^\]]*+" + _SD_RUNS + r"\])" + "(?: \ufeff| |\\Z)(.*+)\\Z",
    re.DOTALL | re.ASCII,
)
RFC5424_PREFIX = re.compile(r"<\d{1,3}>1 ", re.ASCII)
_SD_BLOCK = re.compile(rf"(?:{_SD_ELEMENT})+", re.ASCII)
_SD_ELEMENTS = re.compile(rf"\[({_SD_NAME})((?: {_SD_NAME}= *{_SD_VALUE})*)\]", re.ASCII)
_SD_PARAMS = re.compile(rf' ({_SD_NAME})= *"([^"\\]*(?:\\.[^"\\]*)*)"', re.ASCII)
_SD_ESCAPE = re.compile(r'\\(["\\\]])')
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


SdDict = dict[str, dict[str, str]]
# Reads the parsed SD out of structured data split at '"' (values at odd positions) when the
# pieces around the values are its shape's; else it hands the pieces on to the next builder of
# the same first piece, the last one to SdCache.build.
SdBuilder = Callable[[list[str]], SdDict | None]
# SD-IDs with their parameter names, in order; () for a shape the fast path does not take.
SdElements = tuple[tuple[str, tuple[str, ...]], ...]
# Shapes that share their first piece ("[mdc@18060 traceId=") are tried in turn, up to this many.
_SD_CHAIN_LIMIT = 4


def _sd_builder(elements: SdElements, tail: tuple[str, ...], other: SdBuilder) -> SdBuilder:
    """The builder of one well-formed shape: its SD-IDs and names, and ``tail``, the pieces
    around the values after the first (the cache's key matched the first). One element of up
    to six parameters is checked piece by piece and built by one dict display (much cheaper
    than dict(zip(...)) or comparing a slice, docs/performance.md); other shapes in a loop."""
    if len(elements) == 1 and len(tail) <= 6:
        i, n = elements[0]
        if not n:
            return lambda p: {i: {}} if len(p) == 1 else other(p)
        if len(n) == 1:
            (n0,), (t0,) = n, tail
            return lambda p: {i: {n0: p[1]}} if len(p) == 3 and p[2] == t0 else other(p)
        if len(n) == 2:
            n0, n1 = n
            t0, t1 = tail
            return lambda p: (
                {i: {n0: p[1], n1: p[3]}} if len(p) == 5 and p[2] == t0 and p[4] == t1 else other(p)
            )
        if len(n) == 3:
            n0, n1, n2 = n
            t0, t1, t2 = tail
            return lambda p: (
                {i: {n0: p[1], n1: p[3], n2: p[5]}}
                if len(p) == 7 and p[2] == t0 and p[4] == t1 and p[6] == t2
                else other(p)
            )
        if len(n) == 4:
            n0, n1, n2, n3 = n
            t0, t1, t2, t3 = tail
            return lambda p: (
                {i: {n0: p[1], n1: p[3], n2: p[5], n3: p[7]}}
                if len(p) == 9 and p[2] == t0 and p[4] == t1 and p[6] == t2 and p[8] == t3
                else other(p)
            )
        if len(n) == 5:
            n0, n1, n2, n3, n4 = n
            t0, t1, t2, t3, t4 = tail
            return lambda p: (
                {i: {n0: p[1], n1: p[3], n2: p[5], n3: p[7], n4: p[9]}}
                if len(p) == 11
                and p[2] == t0
                and p[4] == t1
                and p[6] == t2
                and p[8] == t3
                and p[10] == t4
                else other(p)
            )
        n0, n1, n2, n3, n4, n5 = n
        t0, t1, t2, t3, t4, t5 = tail
        return lambda p: (
            {i: {n0: p[1], n1: p[3], n2: p[5], n3: p[7], n4: p[9], n5: p[11]}}
            if len(p) == 13
            and p[2] == t0
            and p[4] == t1
            and p[6] == t2
            and p[8] == t3
            and p[10] == t4
            and p[12] == t5
            else other(p)
        )
    size = 2 * len(tail) + 1
    pieces = list(tail)

    def build(p: list[str]) -> SdDict | None:
        if len(p) != size or p[2::2] != pieces:
            return other(p)
        parsed: SdDict = {}
        start = 1
        for sd_id, names in elements:
            parsed[sd_id] = dict(zip(names, p[start::2], strict=False))  # stops at the names
            start += 2 * len(names)
        return parsed

    return build


def sd_shape(key: str) -> SdElements:
    """The SD-IDs and parameter names of structured data without backslashes whose text around
    the values is ``key`` (the SD split at '"', values left out, joined with '"'), or () when
    it is not well-formed or repeats an SD-ID (repeated SD-IDs merge: left to
    parse_structured_data). A value without a backslash holds no '"' and never decides whether
    SD is well-formed, so the shape is checked with every value empty."""
    blank = key.replace('"', '""')
    if not _SD_BLOCK.fullmatch(blank):
        return ()
    elements = tuple(
        (element[1], tuple(name for name, _ in _SD_PARAMS.findall(element[2])))
        for element in _SD_ELEMENTS.finditer(blank)
    )
    if len({sd_id for sd_id, _ in elements}) != len(elements):
        return ()
    return elements


class SdCache:
    """Per parser: how to read structured data without backslashes, split at '"'. The hot
    loop looks up the first piece (the text before the first value) in ``builders`` and calls
    what it finds, or ``build`` when nothing is there. ``build`` works out the shape (the
    pieces around the values), once per shape, checked against the grammar, and puts its
    builder first for its first piece. Both caches are bounded whatever senders send (~2 MiB
    each), and so are the builders tried for one first piece."""

    def __init__(self) -> None:
        self.builders: dict[str, SdBuilder] = {}
        self.shapes: dict[str, SdElements] = {}
        self._chain: dict[str, int] = {}

    def build(self, parts: list[str]) -> SdDict | None:
        """The parsed SD of ``parts`` (the SD split at '"'), or None when the fast path does
        not take it (not well-formed, a repeated SD-ID, an odd number of quotes)."""
        if not len(parts) & 1:
            return None
        key = '"'.join(parts[0::2])
        shapes = self.shapes
        elements = shapes.get(key)
        if elements is None:
            elements = sd_shape(key)
            if len(key) <= _SD_SHAPE_KEY_LIMIT:
                if len(shapes) >= _SD_SHAPE_LIMIT:
                    shapes.clear()
                shapes[key] = elements
        if not elements:
            return None
        first = parts[0]
        tail = tuple(parts[2::2])
        if len(first) > _SD_SHAPE_KEY_LIMIT:
            return _sd_builder(elements, tail, self.build)(parts)
        builders, chain = self.builders, self._chain
        if len(builders) >= _SD_SHAPE_LIMIT:
            builders.clear()
            chain.clear()
        # This shape is none of those tried for its first piece (a builder matches exactly its
        # own): it goes first, ahead of them unless there are too many.
        other = builders.get(first)
        depth = chain.get(first, 0) + 1
        if other is None or depth > _SD_CHAIN_LIMIT:
            other, depth = self.build, 1
        builder = builders[first] = _sd_builder(elements, tail, other)
        chain[first] = depth
        return builder(parts)


def reference_sd(text: str) -> tuple[str, Any, str] | None:
    """(raw SD, parsed SD, MSG) by the reference grammar, for SD the fast path does not take;
    None when the RFC 5424 header is not well-formed."""
    match = RFC5424.match(text)
    if match is None:
        return None
    sd, message = match.group(9, 10)
    return sd, parse_structured_data(sd), message
