"""``audit``: mark records that show someone inside a container or on a node where they should
not be (exec sessions, shells, package managers, su/sudo, SSH logins and brute force, reads of
secrets, user and group changes).

Rules come from the default set shipped beside this module (``audit_rules.toml``) and an
optional ``rules_file``; docs/filters.md describes the format. A matching record gets
``audit = {rule, severity, description[, fields][, matched]}`` for its most severe matching
rule, and (``retag``) it also goes out under the tag ``audit.<rule id>``.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import msgspec

from agent.fields import get_field
from agent.filters.base import Batch, Filter, FilterConfig, FilterContext, Record
from agent.filters.common import as_text, compile_regex, make_getter, parse_path
from agent.filters.literals import Gate, groups_always_set, regex_gate
from agent.router import TagMatcher
from common.units import Duration, config_dec_hook

SEVERITIES = ("critical", "high", "medium", "low", "info")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_INDEX_FIELD = "ident"
"""The field rules are indexed by: most rules name the program, and one dict lookup per record
then skips every rule written for other programs."""

Scalar = str | int | float | bool


class AuditCondition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    field: str
    equals: Scalar | None = None
    in_: list[Scalar] | None = msgspec.field(default=None, name="in")
    contains: str | None = None
    regex: str | None = None
    not_regex: str | None = None
    exists: bool | None = None


class AuditRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    severity: Literal["critical", "high", "medium", "low", "info"]
    description: str
    when: list[AuditCondition]
    tags: list[str] = []
    """Globs over the record's tag; empty: any tag."""
    threshold: int = 0
    """Stateful rule: fire when this many matches fall within ``window`` for one group."""
    window: Duration = Duration(60.0)
    group_by: list[str] = []
    """Named regex groups or field paths that identify a group (source IP, host)."""


class AuditRulesFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rule: list[AuditRule] = []


class AuditConfig(FilterConfig, tag_field="type", tag="audit"):
    rules_file: str | None = None
    """Extra rules (TOML, same format as the defaults); a rule with a default's id replaces it."""
    default_rules: bool = True
    """Load the rules shipped with the agent."""
    disable: list[str] = []
    """Rule ids to turn off."""
    only: list[str] | None = None
    """If given, only these rule ids are on."""
    retag: bool = True
    """Send matching records out under ``<tag_prefix>.<rule id>`` too."""
    keep_original: bool = True
    """With retag: the record also stays in its own stream (marked), not only under the
    audit tag."""
    tag_prefix: str = "audit"
    field: str = "audit"
    """Top-level key receiving the mark."""
    max_groups: int = 10000
    """Groups a stateful rule tracks at most; the least recently seen is forgotten beyond."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tag_prefix:
            raise ValueError("tag_prefix: cannot be empty")
        if self.max_groups < 1:
            raise ValueError("max_groups: must be at least 1")


def load_rules_text(text: str, source: str) -> list[AuditRule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: invalid TOML: {exc}") from None
    try:
        parsed = msgspec.convert(data, AuditRulesFile, dec_hook=config_dec_hook)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return parsed.rule


def default_rules_text() -> str:
    return resources.files("agent.filters").joinpath("audit_rules.toml").read_text("utf-8")


Check = Callable[[Record], bool]
Capture = Callable[[Record], "dict[str, str] | None"]


_NO_FIELDS: dict[str, Any] = {}
"""Shared "matched, captured nothing": never stored in a record, never mutated."""


FieldGate = tuple[str, Gate]
"""A top-level field and a literal test that its text passes whenever a condition holds."""


def _gate_key(gate: Gate) -> tuple[int, int, int]:
    """Prefer gates whose literals are long enough to be rare, then fewer ``in`` tests."""
    cost = 1 if gate.prefixes else len(gate.needles)
    return (min(gate.score, 6), -cost, gate.score)


def _capture(regex: re.Pattern[str], gate: Gate | None, top: str | None, parts: Any) -> Capture:
    """The regex test of a condition: its named groups when it matches (``_NO_FIELDS`` for a
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
            return _NO_FIELDS
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
                return _NO_FIELDS
            return _NO_FIELDS if avoid(t) is None else None

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
        if condition.field != _INDEX_FIELD:
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
            return lambda record: _NO_FIELDS if only(record) else None
        if len(cheap) == 1 and len(costly) == 1:
            check, capture = cheap[0], costly[0]
            return lambda record: capture(record) if check(record) else None
        return lambda record: self.match(record, self.now)

    def match(self, record: Record, now: float) -> dict[str, Any] | None:
        for check in self._cheap:
            if not check(record):
                return None
        fields = _NO_FIELDS
        for capture in self._costly:
            found = capture(record)
            if found is None:
                return None
            if found:
                fields = found if fields is _NO_FIELDS else {**fields, **found}
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


Test = Callable[[Record], "dict[str, Any] | None"]


_Pick = tuple[tuple[Test, ...], tuple[CompiledRule, ...]]
"""Rules in severity order, and their ``test`` functions (looked up once, not per record)."""


class _Screen:
    """The rules that may match records of one tag and ident value, and the literal screen in
    front of them: a rule with a gate on the screened field can only match a text that starts
    with one of its prefixes or contains one of its needles, so a text that hits none of them
    leaves only the ungated (``quiet``) rules, and one that hits some leaves only their rules.
    """

    __slots__ = ("_cache", "_gated", "_selected", "by_first", "needles", "quiet")

    def __init__(self, selected: list[CompiledRule], field: str) -> None:
        self._selected = selected
        self._gated = {id(r): r.gates[field] for r in selected if field in r.gates}
        prefixes = sorted({p for gate in self._gated.values() for p in gate.prefixes})
        self.by_first: dict[str, tuple[str, ...]] = {}
        """The prefixes by their first character: one dict lookup rules most of them out."""
        for prefix in prefixes:
            self.by_first[prefix[0]] = (*self.by_first.get(prefix[0], ()), prefix)
        self.needles = tuple(sorted({n for gate in self._gated.values() for n in gate.needles}))
        self.quiet: _Pick = self._pick((), ())
        self._cache: dict[tuple[tuple[str, ...], tuple[str, ...]], _Pick] = {}
        """By the literals a text hit: the prefixes, the needles."""

    def _pick(self, prefixes: tuple[str, ...], needles: tuple[str, ...]) -> _Pick:
        rules = tuple(
            r
            for r in self._selected
            if id(r) not in self._gated
            or not set(self._gated[id(r)].prefixes).isdisjoint(prefixes)
            or not set(self._gated[id(r)].needles).isdisjoint(needles)
        )
        return tuple(r.test for r in rules), rules

    def pick(self, text: str) -> _Pick:
        """The rules left for a text that passed the screen (rare: a few percent of lines)."""
        prefixes = self.by_first.get(text[:1])
        hit: tuple[str, ...] = ()
        if prefixes is not None:
            for prefix in prefixes:
                if text.startswith(prefix):
                    hit += (prefix,)
        found: tuple[str, ...] = ()
        for needle in self.needles:
            if needle in text:
                found += (needle,)
        key = (hit, found)
        picked = self._cache.get(key)
        if picked is None:
            if len(self._cache) > 256:
                self._cache.clear()
            picked = self._cache[key] = self._pick(hit, found)
        return picked


_Candidates = tuple[
    Callable[[str], "tuple[str, ...] | None"], tuple[str, ...], _Pick, Callable[[str], _Pick]
]
"""A screen's parts, unpacked per record: prefixes by first character, needles, quiet and
pick."""
_TagRules = tuple[dict[str, _Candidates], _Candidates, bool]
"""Per tag: candidates by ident value (generic rules merged in), the generic rules, and
whether any rule applies to the tag at all."""


class AuditFilter(Filter):
    def __init__(self, config: AuditConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self.clock: Callable[[], float] = time.monotonic
        rules: dict[str, tuple[AuditRule, str]] = {}
        sources: list[tuple[str, str]] = []
        if config.default_rules:
            sources.append(("default rules", default_rules_text()))
        if config.rules_file:
            try:
                text = Path(config.rules_file).read_text("utf-8")
            except OSError as exc:
                raise ValueError(f"rules_file: cannot read {config.rules_file!r}: {exc}") from None
            sources.append((f"rules_file {config.rules_file}", text))
        for source, text in sources:
            seen: set[str] = set()
            for i, rule in enumerate(load_rules_text(text, source)):
                if rule.id in seen:
                    raise ValueError(f"{source}: rule[{i}].id: {rule.id!r} is defined twice")
                seen.add(rule.id)
                # A user rule with a default's id replaces it.
                rules[rule.id] = (rule, f"{source}: rule[{i}]")
        for i, rule_id in enumerate(config.disable):
            if rule_id not in rules:
                raise ValueError(f"disable[{i}]: no rule {rule_id!r}")
        if config.only is not None:
            for i, rule_id in enumerate(config.only):
                if rule_id not in rules:
                    raise ValueError(f"only[{i}]: no rule {rule_id!r}")
        enabled = [
            (rule, key)
            for rule, key in rules.values()
            if rule.id not in config.disable and (config.only is None or rule.id in config.only)
        ]
        uses: dict[tuple[str, str], int] = {}
        for rule, _ in enabled:
            for condition in rule.when:
                if condition.regex is not None:
                    pair = (condition.field, condition.regex)
                    uses[pair] = uses.get(pair, 0) + 1
        shared: SharedCaptures = {pair: None for pair, count in uses.items() if count > 1}
        self.rules = [
            CompiledRule(rule, order, key, config.max_groups, shared)
            for order, (rule, key) in enumerate(enabled)
        ]
        self._stateful = [rule for rule in self.rules if rule.threshold]
        self._field = self._screen_field()
        self._retag = {rule.id: f"{config.tag_prefix}.{rule.id}" for rule in self.rules}
        self._per_tag: dict[str, _TagRules] = {}

    def _screen_field(self) -> str:
        """The field most rules have a literal gate on (``message`` with the defaults)."""
        counts: dict[str, int] = {}
        for rule in self.rules:
            for field in rule.gates:
                counts[field] = counts.get(field, 0) + 1
        if not counts:
            return "message"
        return max(sorted(counts), key=lambda field: (counts[field], field == "message"))

    def _candidates(self, selected: list[CompiledRule]) -> _Candidates:
        screen = _Screen(selected, self._field)
        return screen.by_first.get, screen.needles, screen.quiet, screen.pick

    def _rules_for(self, tag: str) -> _TagRules:
        cached = self._per_tag.get(tag)
        if cached is not None:
            return cached
        rules = sorted((r for r in self.rules if r.applies_to(tag)), key=lambda r: r.rank)
        generic = [r for r in rules if r.index_values is None]
        values = {value for rule in rules for value in rule.index_values or ()}
        table = {
            value: self._candidates(
                [r for r in rules if r.index_values is None or value in r.index_values]
            )
            for value in values
        }
        if len(self._per_tag) > 1024:
            self._per_tag.clear()
        self._per_tag[tag] = (table, self._candidates(generic), bool(rules))
        return self._per_tag[tag]

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        table, generic, any_rules = self._rules_for(tag)
        if not any_rules:
            return [(tag, records)]
        config = self.config
        now = self.clock()
        for rule in self._stateful:
            rule.now = now
        moved: dict[str, list[Record]] = {}
        # stay: the records left under the old tag when matches move away; None: all stay.
        stay: list[Record] | None = None if config.keep_original or not config.retag else []
        # Any ident may be looked up: a missing or non-string one finds nothing (generic).
        lookup = cast(Callable[[Any, _Candidates], _Candidates], table.get)
        field = self._field
        index_field = _INDEX_FIELD
        retag = self._retag if config.retag else None
        mark_field = config.field
        marked = 0
        for record in records:
            try:
                prefixes_by_first, needles, picked, pick = lookup(record.get(index_field), generic)
            except TypeError:  # an unhashable ident (a dict or list) names no program
                prefixes_by_first, needles, picked, pick = generic
            # The screen: most records contain none of the rules' literals, and a dict lookup
            # and an ``in`` or two rule them all out before any regex runs; only the rules
            # without a literal on the screened field (usually none) are left to test.
            text = record.get(field)
            if text.__class__ is str or (text := as_text(text)) is not None:
                prefixes = prefixes_by_first(text[:1])
                if prefixes is not None and text.startswith(prefixes):
                    picked = pick(text)
                else:
                    for needle in needles:
                        if needle in text:
                            picked = pick(text)
                            break
            tests, rules = picked
            if not tests:
                if stay is not None:
                    stay.append(record)
                continue
            for test in tests:
                fields = test(record)
                if fields is not None:
                    break
            else:
                if stay is not None:
                    stay.append(record)
                continue
            # A match (rare): mark it and run the rest, whose stateful rules must count too.
            first = tests.index(test)
            top = rules[first]
            mark = top.mark.copy()
            if fields:
                mark["fields"] = fields
            matched = [top.id]
            for rule in rules[first + 1 :]:
                if rule.test(record) is not None:
                    matched.append(rule.id)
            if len(matched) > 1:
                mark["matched"] = matched
            marked += 1
            if retag is not None:
                # With keep_original the record stays in ``records`` too: one object in two
                # batches, which the chain copies only if a later filter could change it.
                moved.setdefault(retag[top.id], []).append(record)
            record[mark_field] = mark
        if marked:
            self.context.metrics.inc("filter_audit_matches_total", marked)
        out: list[Batch] = []
        kept = records if stay is None else stay
        if kept:
            out.append((tag, kept))
        out.extend(moved.items())
        return out
