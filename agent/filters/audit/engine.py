"""The audit rules' matching engine: each rule compiled into closures over a record (cheap
tests first, regexes behind literal gates, one regex run once a record when several rules share
it), and the counting of stateful rules (``threshold`` matches within ``window`` per group).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import msgspec

from agent.fields import get_field
from agent.filters.audit.rules import SEVERITIES, AuditCondition, AuditRule
from agent.filters.base import Record
from agent.filters.common import as_text, compile_regex, make_getter, parse_path
from agent.filters.literals import Gate, groups_always_set, regex_gate
from agent.router import TagMatcher

_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
INDEX_FIELD = "ident"
"""The field rules are indexed by: most rules name the program, and one dict lookup per record
then skips every rule written for other programs."""


Check = Callable[[Record], bool]
Capture = Callable[[Record], "dict[str, str] | None"]


NO_FIELDS: dict[str, Any] = {}
"""Shared "matched, captured nothing": never stored in a record, never mutated."""


FieldGate = tuple[str, Gate]
"""A top-level field and a literal test that its text passes whenever a condition holds."""


def _gate_key(gate: Gate) -> tuple[int, int, int]:
    """Prefer gates whose literals are long enough to be rare, then fewer ``in`` tests."""
    cost = 1 if gate.prefixes else len(gate.needles)
    return (min(gate.score, 6), -cost, gate.score)


def _capture(regex: re.Pattern[str], gate: Gate | None, top: str | None, parts: Any) -> Capture:
    """The regex test of a condition: its named groups when it matches (``NO_FIELDS`` for a
    regex without any), None when not. The literal gate runs first, in its cheapest form:
    startswith, one ``in``, or the general test."""
    search = regex.search
    named = bool(regex.groupindex)
    always_set = groups_always_set(regex)
    gate_prefixes: tuple[str, ...] | None = None
    gate_needle: str | None = None
    gate_passes: Callable[[str], bool] | None = None
    if gate is not None:
        if not gate.needles:
            gate_prefixes = gate.prefixes
        elif not gate.prefixes and len(gate.needles) == 1:
            gate_needle = gate.needles[0]
        else:
            gate_passes = gate.passes

    def capture(r: Record) -> dict[str, Any] | None:
        v = r.get(top) if top is not None else get_field(r, parts)
        t = v if v.__class__ is str else as_text(v)
        if t is None:
            return None
        if gate_prefixes is not None:
            if not t.startswith(gate_prefixes):
                return None
        elif gate_needle is not None:
            if gate_needle not in t:
                return None
        elif gate_passes is not None and not gate_passes(t):
            return None
        match = search(t)
        if match is None:
            return None
        if not named:
            return NO_FIELDS
        found = match.groupdict()
        if always_set or None not in found.values():
            return found
        return {k: g for k, g in found.items() if g is not None}  # drop groups not taken

    return capture


SharedCaptures = dict[tuple[str, str], "Capture | None"]
"""The (field, regex) pairs that more than one rule of a filter tests, each with its capture
once built: rules that share a regex (the SSH burst and failure rules) run it once a record."""


def _remember_last(capture: Capture, field: str) -> Capture:
    """``capture`` that answers again for the same record and text without running the regex:
    the rules sharing it run back to back on each record. The answer depends on the text alone,
    and holding both objects keeps their identities from being reused."""
    last: list[Any] = [None, None, None]  # record, its text, the answer

    def remembered(r: Record) -> dict[str, Any] | None:
        text = r.get(field)
        if r is last[0] and text is last[1]:
            return cast("dict[str, Any] | None", last[2])
        found = capture(r)
        last[0], last[1], last[2] = r, text, found
        return found

    return remembered


def _check(
    condition: AuditCondition, key: str, shared: SharedCaptures | None = None
) -> tuple[list[Check], list[Capture], list[FieldGate]]:
    """Cheap checks (existence, equality, membership, substring), regex checks, and the literal
    gates the field's text must pass for the condition to hold.

    The closures read a top-level field with one ``dict.get`` (most rules test ``ident`` and
    ``message``): this runs for nearly every record, so no extra call level."""
    parts = parse_path(condition.field, f"{key}.field")
    top = parts[0] if len(parts) == 1 else None
    cheap: list[Check] = []
    costly: list[Capture] = []
    gates: list[FieldGate] = []
    if condition.exists is not None:
        want = condition.exists

        def exists(r: Record) -> bool:
            v = r.get(top) if top is not None else get_field(r, parts)
            return (v is not None) is want

        cheap.append(exists)
    if condition.equals is not None:
        expected = condition.equals
        expected_text = as_text(expected)

        def equals(r: Record) -> bool:
            v = r.get(top) if top is not None else get_field(r, parts)
            return bool(v == expected) or as_text(v) == expected_text

        cheap.append(equals)
    if condition.in_ is not None:
        options = frozenset(as_text(v) for v in condition.in_)

        def member(r: Record) -> bool:
            v = r.get(top) if top is not None else get_field(r, parts)
            return (v if v.__class__ is str else as_text(v)) in options

        cheap.append(member)
    if condition.contains is not None:
        needle = condition.contains

        def contains(r: Record) -> bool:
            v = r.get(top) if top is not None else get_field(r, parts)
            t = v if v.__class__ is str else as_text(v)
            return t is not None and needle in t

        cheap.append(contains)
        if top is not None and needle:
            gates.append((top, Gate((), (needle,))))
    if condition.regex is not None:
        regex = compile_regex(condition.regex, f"{key}.regex")
        gate = regex_gate(regex)
        if gate is not None and top is not None:
            gates.append((top, gate))
        pair = (condition.field, condition.regex)
        if shared is not None and top is not None and pair in shared:
            capture = shared[pair]
            if capture is None:
                capture = shared[pair] = _remember_last(_capture(regex, gate, top, parts), top)
        else:
            capture = _capture(regex, gate, top, parts)
        costly.append(capture)
    if condition.not_regex is not None:
        avoid_regex = compile_regex(condition.not_regex, f"{key}.not_regex")
        avoid = avoid_regex.search
        avoid_gate = regex_gate(avoid_regex)
        could_match = avoid_gate.passes if avoid_gate is not None else None

        def avoids(r: Record) -> dict[str, Any] | None:
            v = r.get(top) if top is not None else get_field(r, parts)
            t = v if v.__class__ is str else as_text(v)
            if t is None or (could_match is not None and not could_match(t)):
                return NO_FIELDS
            return NO_FIELDS if avoid(t) is None else None

        costly.append(avoids)
    if not cheap and not costly:
        raise ValueError(
            f"{key}: a condition needs one of equals, in, contains, regex, not_regex, exists"
        )
    return cheap, costly, gates


GroupKey = Callable[[Record, dict[str, Any]], tuple[Any, ...]]


def _group_key(names: list[tuple[str, Callable[[Record], Any]]]) -> GroupKey:
    """A stateful rule's group: each ``group_by`` name is a named group the regex captured or
    else a field of the record. One and two names (``host``, ``src_ip``) get their own
    function: this runs for every counted match, as often as a brute force sends lines."""
    if len(names) == 1:
        ((n1, g1),) = names
        return lambda r, f: (f[n1] if n1 in f else as_text(g1(r)),)
    if len(names) == 2:
        (n1, g1), (n2, g2) = names
        return lambda r, f: (
            f[n1] if n1 in f else as_text(g1(r)),
            f[n2] if n2 in f else as_text(g2(r)),
        )
    return lambda r, f: tuple([f[n] if n in f else as_text(g(r)) for n, g in names])


class CompiledRule:
    def __init__(
        self,
        rule: AuditRule,
        order: int,
        key: str,
        max_groups: int,
        shared: SharedCaptures | None = None,
    ) -> None:
        if not _RULE_ID.match(rule.id):
            raise ValueError(f"{key}.id: {rule.id!r} must be letters, digits, '-' or '_'")
        if not rule.when:
            raise ValueError(f"{key}.when: a rule needs at least one condition")
        self.id = rule.id
        self.severity = rule.severity
        self.description = rule.description
        self.rank = (_RANK[rule.severity], order)
        self.mark: dict[str, Any] = {
            "rule": rule.id,
            "severity": rule.severity,
            "description": rule.description,
        }
        """The start of every mark this rule makes (copied, never handed out)."""
        self.tags = [TagMatcher(glob) for glob in rule.tags]
        self.index_values: frozenset[str] | None = None
        cheap: list[Check] = []
        costly: list[Capture] = []
        gates: list[FieldGate] = []
        for i, condition in enumerate(rule.when):
            ckey = f"{key}.when[{i}]"
            indexable = self._index_values(condition)
            if indexable is not None and self.index_values is None:
                self.index_values = indexable
                # The index lookup already guarantees this condition; other ops still run.
                condition = msgspec.structs.replace(condition, equals=None, in_=None)
                if all(
                    getattr(condition, name) is None
                    for name in ("contains", "regex", "not_regex", "exists")
                ):
                    continue
            c, r, g = _check(condition, ckey, shared)
            cheap.extend(c)
            costly.extend(r)
            gates.extend(g)
        self.gates: dict[str, Gate] = {}
        """Per top-level field, the best literal test its text passes when the rule matches."""
        for field, gate in sorted(gates, key=lambda fg: _gate_key(fg[1]), reverse=True):
            self.gates.setdefault(field, gate)
        self._cheap = cheap
        self._costly = costly
        self.threshold = rule.threshold
        self.window = float(rule.window)
        if rule.threshold < 0:
            raise ValueError(f"{key}.threshold: cannot be negative")
        if rule.group_by and not rule.threshold:
            raise ValueError(f"{key}.group_by: only used with threshold")
        self._group_of = _group_key(
            [
                (name, make_getter(parse_path(name, f"{key}.group_by[{i}]")))
                for i, name in enumerate(rule.group_by)
            ]
        )
        """``group_of(record, fields)``: the group a match counts in."""
        self._groups: dict[tuple[Any, ...], deque[float]] = {}
        self._max_groups = max_groups
        self.now = 0.0
        """Set by the filter before each batch (stateful rules)."""
        self.test = self._specialised()
        """``test(record)``: the captured fields ({} for none) or None; the hot path."""

    @staticmethod
    def _index_values(condition: AuditCondition) -> frozenset[str] | None:
        if condition.field != INDEX_FIELD:
            return None
        if isinstance(condition.equals, str) and condition.in_ is None:
            return frozenset([condition.equals])
        if condition.in_ is not None and condition.equals is None:
            values = [v for v in condition.in_ if isinstance(v, str)]
            if len(values) == len(condition.in_):
                return frozenset(values)
        return None

    def applies_to(self, tag: str) -> bool:
        return not self.tags or any(m.matches(tag) for m in self.tags)

    def _specialised(self) -> Callable[[Record], dict[str, Any] | None]:
        # The common shapes (after the ident index took its condition) skip match()'s loops.
        cheap, costly = self._cheap, self._costly
        if self.threshold and not cheap and len(costly) == 1:
            capture, count = costly[0], self._count

            def counted(record: Record) -> dict[str, Any] | None:
                fields = capture(record)
                return None if fields is None else count(record, fields, self.now)

            return counted
        if self.threshold:
            return lambda record: self.match(record, self.now)
        if not cheap and len(costly) == 1:
            return costly[0]
        if len(cheap) == 1 and not costly:
            only = cheap[0]
            return lambda record: NO_FIELDS if only(record) else None
        if len(cheap) == 1 and len(costly) == 1:
            check, capture = cheap[0], costly[0]
            return lambda record: capture(record) if check(record) else None
        return lambda record: self.match(record, self.now)

    def match(self, record: Record, now: float) -> dict[str, Any] | None:
        for check in self._cheap:
            if not check(record):
                return None
        fields = NO_FIELDS
        for capture in self._costly:
            found = capture(record)
            if found is None:
                return None
            if found:
                fields = found if fields is NO_FIELDS else {**fields, **found}
        if self.threshold:
            return self._count(record, fields, now)
        return fields

    def _count(self, record: Record, fields: dict[str, Any], now: float) -> dict[str, Any] | None:
        group = self._group_of(record, fields)
        times = self._groups.pop(group, None)  # re-inserted below: LRU order
        if times is None:
            times = deque()
            if len(self._groups) >= self._max_groups:
                del self._groups[next(iter(self._groups))]
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        times.append(now)
        if len(times) < self.threshold:
            self._groups[group] = times
            return None
        # Fired: start counting afresh so a sustained attack yields one mark per threshold.
        fields = {**fields, "count": len(times), "window_seconds": self.window}
        return fields


def compile_rules(enabled: list[tuple[AuditRule, str]], max_groups: int) -> list[CompiledRule]:
    """``enabled`` (rule, where it was written) compiled, in that order; a regex that several
    rules test on one field runs once a record for all of them."""
    uses: dict[tuple[str, str], int] = {}
    for rule, _ in enabled:
        for condition in rule.when:
            if condition.regex is not None:
                pair = (condition.field, condition.regex)
                uses[pair] = uses.get(pair, 0) + 1
    shared: SharedCaptures = {pair: None for pair, count in uses.items() if count > 1}
    return [
        CompiledRule(rule, order, key, max_groups, shared)
        for order, (rule, key) in enumerate(enabled)
    ]
