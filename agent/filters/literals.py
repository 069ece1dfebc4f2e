"""Literal text that every match of a regex must contain: a cheap test run before the regex.

``str.startswith`` and ``in`` find or rule out a literal far faster than ``re.search`` scans a
line, and on a node most lines match none of the audit rules. ``regex_gate`` reads the regex's
parse tree (the stdlib's own parser) and returns either the literal prefixes of an anchored
regex (every match starts the text with one of them) or a set of needles (every match contains
one of them). It is a necessary condition only: the regex still decides. When in doubt (case
folding, multi-line anchors, an unknown construct) it returns None and the regex runs alone.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, NamedTuple

try:  # the stdlib's regex parser; private, so a Python without it simply gets no gates
    _parser: Any = importlib.import_module("re._parser")
    _c: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover
    _parser = None

_MAX_SET = 64
"""Alternatives kept per literal set; past this a run is cut (the gate stays correct)."""


class Gate(NamedTuple):
    prefixes: tuple[str, ...]
    """Non-empty: the text must start with one of these."""
    needles: tuple[str, ...]
    """Non-empty (when prefixes is empty): the text must contain one of these."""

    def passes(self, text: str) -> bool:
        if self.prefixes and text.startswith(self.prefixes):
            return True
        return any(needle in text for needle in self.needles)

    @property
    def score(self) -> int:
        """Length of the shortest literal: how rarely the gate lets a line through."""
        return min(len(s) for s in self.prefixes or self.needles)


def merge_gates(gates: list[Gate]) -> Gate:
    """One gate that passes whatever any of ``gates`` passes, without redundant literals."""
    prefixes = {p for gate in gates for p in gate.prefixes}
    needles = {n for gate in gates for n in gate.needles}
    needles = {n for n in needles if not any(m != n and m in n for m in needles)}
    prefixes = {
        p
        for p in prefixes
        if not any(q != p and p.startswith(q) for q in prefixes)
        and not any(m in p for m in needles)
    }
    return Gate(tuple(sorted(prefixes)), tuple(sorted(needles)))


class _Unsupported(Exception):
    pass


class _Shape(NamedTuple):
    exact: frozenset[str] | None
    """Every string the node can match, when that is a small finite set."""
    prefixes: frozenset[str]
    """Every match starts with one of these ({""}: nothing known)."""
    needles: list[frozenset[str]]
    """Sets of literals; every match contains one literal of each set."""


_NOTHING = _Shape(None, frozenset({""}), [])


def _product(left: frozenset[str], right: frozenset[str]) -> frozenset[str]:
    return frozenset(a + b for a in left for b in right)


def _item(op: Any, av: Any) -> _Shape:
    if op is _c.LITERAL:
        return _Shape(frozenset({chr(av)}), frozenset({chr(av)}), [])
    if op is _c.AT or op is _c.ASSERT or op is _c.ASSERT_NOT:
        # Zero width: it consumes nothing, so it does not break a literal run.
        return _Shape(frozenset({""}), frozenset({""}), [])
    if op is _c.IN:
        if len(av) <= 4 and all(kind is _c.LITERAL for kind, _ in av):
            chars = frozenset(chr(code) for _, code in av)
            return _Shape(chars, chars, [])
        return _NOTHING
    if op is _c.SUBPATTERN:
        _group, add_flags, _del_flags, body = av
        if add_flags & (re.IGNORECASE | re.MULTILINE):
            raise _Unsupported
        return _sequence(body)
    if op is _c.ATOMIC_GROUP:
        return _sequence(av)
    if op is _c.BRANCH:
        alternatives = [_sequence(body) for body in av[1]]
        exacts = [a.exact for a in alternatives]
        if all(e is not None for e in exacts):
            union = frozenset().union(*(e for e in exacts if e is not None))
            if len(union) <= _MAX_SET:
                return _Shape(union, union, [])
        prefixes = frozenset().union(*(a.prefixes for a in alternatives))
        if "" in prefixes:
            prefixes = frozenset({""})
        best = [_best([*a.needles, a.prefixes]) for a in alternatives]
        union = frozenset[str]().union(*(b for b in best if b is not None))
        return _Shape(None, prefixes, [] if None in best else [union])
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
        low, high, body = av
        inner = _sequence(body)
        if inner.exact is not None and high == low == 1:
            return inner
        if inner.exact is not None and low == 0 and high == 1:
            return _Shape(inner.exact | {""}, inner.exact | {""}, [])
        if low >= 1:
            return _Shape(None, inner.prefixes, [*inner.needles, inner.exact or frozenset({""})])
        return _NOTHING
    return _NOTHING  # ANY, NOT_LITERAL, GROUPREF, conditionals...: something unknown


def _sequence(items: Any) -> _Shape:
    run = frozenset({""})  # the literal strings the current stretch of the sequence can be
    prefixes: frozenset[str] | None = None
    needles: list[frozenset[str]] = []
    exact = True
    for op, av in items:
        shape = _item(op, av)
        if shape.exact is not None and len(run) * len(shape.exact) <= _MAX_SET:
            run = _product(run, shape.exact)
            continue
        # The run ends here; what follows starts with shape.prefixes.
        fits = len(run) * len(shape.prefixes) <= _MAX_SET
        closed = _product(run, shape.prefixes) if fits else run
        needles.append(closed)
        needles.extend(shape.needles)
        if prefixes is None:
            prefixes = closed
        exact = False
        run = shape.exact if shape.exact is not None else frozenset({""})
    needles.append(run)
    if prefixes is None:
        prefixes = run
    return _Shape(run if exact else None, prefixes, needles)


def _best(candidates: list[frozenset[str]]) -> frozenset[str] | None:
    usable = [c for c in candidates if c and "" not in c]
    if not usable:
        return None
    return max(usable, key=lambda c: (min(len(s) for s in c), -len(c)))


def _is_start_anchor(item: Any) -> bool:
    """``^`` (without MULTILINE, checked by the callers) or ``\\A``."""
    return bool(item[0] is _c.AT and item[1] in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING))


def regex_gate(regex: re.Pattern[str]) -> Gate | None:
    """A literal test that every text ``regex.search`` matches passes, or None."""
    if _parser is None or regex.flags & (re.IGNORECASE | re.MULTILINE):
        return None
    try:
        tree = _parser.parse(regex.pattern, regex.flags)
        if tree.state.flags & (re.IGNORECASE | re.MULTILINE):
            return None
        items = list(tree.data)
        anchored = bool(items) and _is_start_anchor(items[0])
        if anchored:
            items = items[1:]
        shape = _sequence(items)
    except (_Unsupported, RecursionError, re.error):
        return None
    if anchored and "" not in shape.prefixes:
        return merge_gates([Gate(tuple(shape.prefixes), ())])
    best = _best(shape.needles)
    if best is None:
        return None
    return merge_gates([Gate((), tuple(best))])


def _exact(items: Any) -> frozenset[str] | None:
    """Every string a sequence matches, if it is made of literals, classes of a few literal
    characters, groups and alternations of those and ``?`` over them; None otherwise
    (anchors and lookarounds included: they are conditions, not text)."""
    run = frozenset({""})
    for op, av in items:
        options: frozenset[str] | None
        if op is _c.LITERAL:
            options = frozenset({chr(av)})
        elif op is _c.IN and len(av) <= 4 and all(kind is _c.LITERAL for kind, _ in av):
            options = frozenset(chr(code) for _, code in av)
        elif op is _c.SUBPATTERN and not av[1] & (re.IGNORECASE | re.MULTILINE):
            options = _exact(av[3])
        elif op is _c.BRANCH:
            alternatives = [_exact(body) for body in av[1]]
            known = [a for a in alternatives if a is not None]
            options = frozenset[str]().union(*known) if len(known) == len(alternatives) else None
        elif op is _c.MAX_REPEAT and av[0] in (0, 1) and av[1] == 1:
            inner = _exact(av[2])
            options = None if inner is None else inner | {""} if av[0] == 0 else inner
        else:
            return None
        if options is None or len(run) * len(options) > _MAX_SET:
            return None
        run = _product(run, options)
    return run


def literal_prefixes(regex: re.Pattern[str]) -> tuple[str, ...] | None:
    """For a regex that is exactly ``^`` and literal text (``^GET /healthz``,
    ``^(?:GET|HEAD) /ready``): the prefixes such that ``regex.search(text)`` matches exactly
    when ``text.startswith(prefixes)``. None for any other regex."""
    if _parser is None or regex.flags & (re.IGNORECASE | re.MULTILINE):
        return None
    try:
        tree = _parser.parse(regex.pattern, regex.flags)
    except (RecursionError, re.error):
        return None
    items = list(tree.data)
    if tree.state.flags & (re.IGNORECASE | re.MULTILINE) or not items:
        return None
    if not _is_start_anchor(items[0]):
        return None
    exact = _exact(items[1:])
    if exact is None:
        return None
    return merge_gates([Gate(tuple(exact), ())]).prefixes or ("",)


def _skippable_group(items: Any, optional: bool) -> bool:
    for op, av in items:
        if op is _c.SUBPATTERN:
            if (av[0] is not None and optional) or _skippable_group(av[3], optional):
                return True
        elif op is _c.BRANCH:
            if any(_skippable_group(body, True) for body in av[1]):
                return True
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            if _skippable_group(av[2], optional or av[0] == 0):
                return True
        elif op is _c.ATOMIC_GROUP:
            if _skippable_group(av, optional):
                return True
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            if _skippable_group(av[1], True):
                return True
        elif op is _c.GROUPREF_EXISTS:
            return True
    return False


def groups_always_set(regex: re.Pattern[str]) -> bool:
    """Whether every group of ``regex`` takes part in every match (none is ever None), so a
    match's ``groupdict()`` needs no filtering."""
    if not regex.groups:
        return True
    if _parser is None:
        return False
    try:
        tree = _parser.parse(regex.pattern, regex.flags)
    except (RecursionError, re.error):
        return False
    return not _skippable_group(tree.data, False)
